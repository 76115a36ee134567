"""A pix2pix training run: train.py's options, the run's setup and resume, its checkpoints, what it logs
(TensorBoard, gradient-noise probes). Modules: docs/architecture.md."""
