"""Shared fixtures: a tiny synthetic Cityscapes generated once per test session.

Under pytest-xdist (``make test`` runs one worker per core) each worker and the commands its tests start
use one thread, unless the environment already says how many: the workers share the cores, and threads
beyond them only wait for each other."""
import os

from common.threads import thread_env

if os.environ.get("PYTEST_XDIST_WORKER"):  # before torch is imported
    for name, value in thread_env(1).items():
        os.environ.setdefault(name, value)

import pytest  # noqa: E402

from data.synthetic import generate  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """Root of a tiny pix2pix-layout dataset (4 train / 3 val frames, 64x64 halves, seed 0).

    The official layout of the same scenes is beside it: ``synthetic_root.parent / "cityscapes"``.
    """
    return generate(tmp_path_factory.mktemp("synthetic"), n_train=4, n_val=3, seed=0, size=64)
