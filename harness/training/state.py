"""Training state that outlives a process: RNG states, the EMA model, and ``last.pt`` written atomically.

Every value is a tensor or a plain type, so that ``torch.load(weights_only=True)`` reads it back.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

CHECKPOINT_FORMAT = 2  # 2: per-rank RNG states


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global generator and Python's ``random`` (BasicSR's ``set_random_seed``)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def rng_state() -> dict:
    """This process's RNG states as tensors and plain types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, mt, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace`` (never a torn file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class EMA:
    """BasicSR-style EMA (``ema = decay·ema + (1 − decay)·param``, started as a copy of the model), updated
    with one fused ``torch._foreach_lerp_`` over all floating-point tensors.

    Floating-point buffers are averaged like parameters and other buffers copied; the SR models here hold
    only constant buffers, for which this equals BasicSR (which averages parameters only).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        live = model.state_dict()
        floats = [k for k, v in live.items() if v.dtype.is_floating_point]
        torch._foreach_lerp_([self.state[k] for k in floats], [live[k] for k in floats], 1 - self.decay)
        for k, v in live.items():
            if not v.dtype.is_floating_point:
                self.state[k].copy_(v)


@dataclass
class Progress:
    """Where a run stands: iterations done and the best validation so far."""

    iteration: int = 0
    best_psnr_y: float = float("-inf")
    best_iteration: int = -1


def eval_weights(model: nn.Module, ema: EMA | None) -> dict[str, Tensor]:
    """The weights that are evaluated (the EMA's when the recipe uses one), on the CPU."""
    return {k: v.detach().cpu().clone() for k, v in (ema.state if ema else model.state_dict()).items()}
