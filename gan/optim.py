"""Former home of the TR optimizers, kept as a re-export of :mod:`tralgo`."""
from tralgo import TRAdam, TRSGD, TrajectoryRegularizer  # noqa: F401
