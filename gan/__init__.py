"""The pix2pix GAN and the Trajectory Regularized optimizers (no data or file-format knowledge)."""
