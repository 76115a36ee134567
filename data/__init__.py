"""Datasets and file formats: Cityscapes labels, the pix2pix aligned layout, the built-in synthetic city.

Modules:
  cityscapes  label tables (from cityscapesscripts), label id / trainId / colour conversions,
              reader of the official leftImg8bit + gtFine layout
  images      reading image files with one-line errors naming the file
  aligned     AlignedDataset: the pix2pix A|B dataset with the reference training jitter and labels
  sampling    the resumable, shardable data order (randomness from seed, epoch and position only)
  prepare     official Cityscapes -> pix2pix layout (``python -m data.prepare``)
  fingerprint digests of sets of files (has a dataset moved, have the sources changed?)
  synthetic   the built-in synthetic city written in both layouts (``python -m data.synthetic``) and
              ``default_dataset()``, the data used when no dataset is given (generated once, then cached)
  street      the renderer of its procedural Cityscapes-like street scenes (``render_scene``), one
              painter module per kind of thing; loaded only when frames are drawn

Bad input raises DataError with a one-line message naming the file.
"""
from common.command_line import InputError


class DataError(InputError):
    """Bad input data; the message is one line naming the file and the problem."""
