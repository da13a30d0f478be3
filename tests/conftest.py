"""Shared fixtures: the real benchmark images that CI provides beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_datasets_root() -> Path | None:
    """`$REPROSR_TEST_DATASETS`, else `../shared/datasets` beside the checkout, else None."""
    env = os.environ.get("REPROSR_TEST_DATASETS")
    candidates = [Path(env)] if env else [REPO.parent / "shared" / "datasets"]
    return next((p for p in candidates if (p / "Set5" / "HR").is_dir()), None)


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    root = shared_datasets_root()
    if root is None:
        pytest.skip("not run: real Set5/Set14 not found (set REPROSR_TEST_DATASETS to shared/datasets)")
    return root


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: intra-op threads only add contention on a 2-core CI machine (up to 5× slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
