"""Shared fixtures: the real benchmark images and released checkpoints CI provides beside the checkout."""

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


def shared_checkpoint(filename: str) -> Path | None:
    """`$REPROSR_TEST_CHECKPOINTS/<filename>`, else `../shared/checkpoints/<filename>` beside the checkout,
    if that file exists (the NTIRE 2024 releases, copied unchanged: see its README)."""
    env = os.environ.get("REPROSR_TEST_CHECKPOINTS")
    folder = Path(env) if env else REPO.parent / "shared" / "checkpoints"
    path = folder / filename
    return path if path.is_file() else None


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
