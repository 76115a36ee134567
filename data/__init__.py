"""Datasets and file formats: Cityscapes labels, the pix2pix aligned layout, the built-in synthetic city.

Modules:
  cityscapes  label tables (from cityscapesscripts), label id / trainId / colour conversions,
              reader of the official leftImg8bit + gtFine layout
  aligned     AlignedDataset: the pix2pix A|B dataset with the reference training jitter and labels
  prepare     official Cityscapes -> pix2pix layout (``python -m data.prepare``)
  fingerprint digests of sets of files (has a dataset moved, have the sources changed?)
  synthetic   procedural Cityscapes-like scenes in both layouts (``python -m data.synthetic``) and
              ``default_dataset()``, the data used when no dataset is given

Bad input raises DataError with a one-line message naming the file.
"""
from common.command_line import InputError


class DataError(InputError):
    """Bad input data; the message is one line naming the file and the problem."""
