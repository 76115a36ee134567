"""The pix2pix model: networks, losses, the model and its training step, the optimizer registry and the run
files' format (modules: docs/architecture.md). The optimizers themselves are the standalone :mod:`tralgo`."""
