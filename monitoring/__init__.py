"""Monitoring: drift, training-serving skew, live performance, freshness and latency SLOs.

Owns: reading the prediction log and label feed and judging them against the champion's
reference statistics. Must not: change the model, the features or serving. (Arrives with the
monitoring issue; this package is empty until then.)
"""
