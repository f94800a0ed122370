"""The ground floor: what every fraudlab process needs before it does anything else.

Owns: the typed settings object and the live overrides (``settings``), the lineage of a run
(``lineage``: the git commit a process runs), time conversions shared by data, features and
monitors (``timeutil``), and the rendering of ``.env.example`` from the settings model
(``env_example``).

Must not: import anything else of the project (import-linter enforces it: ``make lint``), or
import heavy libraries at module level, because every process imports this first.
"""
