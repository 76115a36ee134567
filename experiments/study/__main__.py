"""``python -m experiments.study``: the seeds study's command line (:mod:`experiments.study.cli`)."""
import sys

from experiments.study.cli import main

sys.exit(main())
