"""FCN-score evaluation: metrics, segmenters, generate -> segment -> score."""
from common.command_line import InputError


class EvalError(InputError):
    """Bad evaluation input; the message is one line naming the file and the problem."""
