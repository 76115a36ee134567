"""Drivers that start the project's commands as jobs, imported by nothing: ``python -m experiments.demo``
(``make demo``) and ``python -m experiments.study`` (``make study``). Modules: docs/architecture.md."""
