"""Datasets and file formats: Cityscapes labels, the pix2pix aligned layout, the built-in synthetic city."""


class DataError(ValueError):
    """Bad input data; the message is one line naming the file and the problem."""
