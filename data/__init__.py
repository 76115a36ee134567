"""Datasets and file formats: Cityscapes labels, the pix2pix aligned layout, the built-in synthetic city
(modules: docs/architecture.md). Bad input raises DataError with a one-line message naming the file.
"""
from common.command_line import InputError


class DataError(InputError):
    """Bad input data; the message is one line naming the file and the problem."""
