"""The segmenters: the segmentation networks that score generated images (FCN-8s, DeepLabV3+, and the
originals imported from their files: pix2pix's Caffe FCN-8s, DeepLab's DPC Xception-71, DRN-D-105), their
registry, their files and the training of the ones we train. Modules: docs/architecture.md.

``load_segmenter(path)`` -> (segmenter, metadata); ``segmenter.predict(images, out_size)``.
"""
from eval.segmenters.files import load_segmenter, save_segmenter
from eval.segmenters.registry import REGISTRY, build_segmenter

__all__ = ["REGISTRY", "build_segmenter", "load_segmenter", "save_segmenter"]
