"""What every package and command line shares, with no model, dataset or scoring knowledge (modules:
docs/architecture.md)."""
