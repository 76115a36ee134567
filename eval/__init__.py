"""FCN-score evaluation: metrics, segmenters, generate -> segment -> score."""


class EvalError(ValueError):
    """Bad evaluation input; the message is one line naming the file and the problem."""
