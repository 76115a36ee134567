"""FCN-score evaluation: metrics, segmenters, generate -> segment -> score, and the tables built from them.

metrics (the numbers), segmenters (the registry of scorers; segmenter files), fcn_score (one image set
under one scorer), drn_score (DRN-D-105's mIoU protocols), fidelity and fidelity_table (FID/KID by
torch-fidelity), sources (what evaluate.py scores), tables (every source under every scorer), report
(Markdown and result files), statistics (across seeds); command lines: train_segmenter, import_segmenter,
study. The scorer architectures and their file importers are the subpackage :mod:`eval.scorers`, which
imports nothing of eval but :class:`EvalError`.
"""
from common.command_line import InputError


class EvalError(InputError):
    """Bad evaluation input; the message is one line naming the file and the problem."""
