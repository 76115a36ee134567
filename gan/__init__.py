"""The pix2pix GAN and its training (no dataset knowledge; files are read and written through common).

networks, losses and pix2pix (G, D, their optimizers, one training step); schedule (the lr schedule),
monitor (what a run logs), train_options (train.py's command line), resume (a resumed run's options)
and noise (gradient-noise probes). The optimizers themselves are the standalone package :mod:`tralgo`.
"""
