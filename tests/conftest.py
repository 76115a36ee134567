"""Shared fixtures: a tiny synthetic Cityscapes generated once per test session."""
import pytest

from data.synthetic import generate


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """Root of a tiny pix2pix-layout dataset (4 train / 3 val frames, 64x64 halves, seed 0).

    The official layout of the same scenes is beside it: ``synthetic_root.parent / "cityscapes"``.
    """
    return generate(tmp_path_factory.mktemp("synthetic"), n_train=4, n_val=3, seed=0, size=64)
