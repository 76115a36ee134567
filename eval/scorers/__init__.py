"""The scorers: segmentation networks that judge generated images, and importers of the paper's originals.

* :mod:`~eval.scorers.base` - :class:`Segmenter`, a network with its input handling (images in [-1, 1]
  -> class scores, :meth:`~eval.scorers.base.Segmenter.predict`), and the [-1, 1] <-> uint8 conversions;
* :mod:`~eval.scorers.fcn8s` (FCN-8s, VGG16) and :mod:`~eval.scorers.deeplabv3plus` (DeepLabV3+ on a
  timm encoder): the scorers we train, with :mod:`~eval.scorers.pretrained` (their ImageNet weights);
* :mod:`~eval.scorers.caffe_fcn8s` (pix2pix's Caffe FCN-8s, Table 2),
  :mod:`~eval.scorers.dpc_xception71` (DeepLab's DPC Xception-71, Table 3) and :mod:`~eval.scorers.drn`
  (fyu/drn's DRN-D-105, the mIoU of later work): the originals rebuilt in PyTorch, each with the
  importer of its file;
* the file formats they read: :mod:`~eval.scorers.protobuf_wire` (the protobuf wire format),
  :mod:`~eval.scorers.caffemodel` (Caffe weights) and :mod:`~eval.scorers.frozen_graph` (TensorFlow graphs).

Nothing here imports the rest of :mod:`eval` (only its ``EvalError``): the registry that names the
architectures, and saving and loading segmenter files, are :mod:`eval.segmenters`, which imports them.
"""
