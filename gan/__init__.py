"""The pix2pix GAN and the Trajectory Regularized optimizers (no dataset knowledge; files are read and written
through common)."""
