"""Scoring: FCN-scores of generated images by segmentation networks, the paper's Tables 2-3, DRN-D-105's
mIoU, FID/KID, and the segmenters themselves (modules: docs/architecture.md).
"""
from common.command_line import InputError


class EvalError(InputError):
    """Bad evaluation input; the message is one line naming the file and the problem."""
