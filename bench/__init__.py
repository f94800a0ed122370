"""Benchmarks: what the stack costs, measured side by side in one run (``make bench``).

Owns: the load generator used for measurement, the minimal reference server, and the report.
Must not: be imported by the product. This machine is shared and noisy, so every headline is a
ratio of two things measured alternately in the same run, with absolute times for context.
"""
