"""The seeds study (``python -m experiments.study``): arms, jobs, run records, analysis, report. Modules:
docs/architecture.md."""
