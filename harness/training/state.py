"""Training state that outlives a process: RNG states, the EMA model, and ``last.pt`` written atomically.

Every value is a tensor or a plain type, so that ``torch.load(weights_only=True)`` reads it back.
"""

from __future__ import annotations

import copy
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

CHECKPOINT_FORMAT = 3  # 2: per-rank RNG states; 3: best_score (of eval.select_metric)


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
    """Where a run stands: iterations done and the best validation so far (``best_score``: the recipe's
    ``eval.select_metric`` of the evaluated model)."""

    iteration: int = 0
    best_score: float = float("-inf")
    best_iteration: int = -1


def eval_weights(model: nn.Module, ema: EMA | None) -> dict[str, Tensor]:
    """The weights that are evaluated (the EMA's when the recipe uses one), on the CPU."""
    return {k: v.detach().cpu().clone() for k, v in (ema.state if ema else model.state_dict()).items()}


def clone_with(model: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    """A copy of ``model`` holding ``state`` (the EMA weights, for validation)."""
    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone


def non_finite(obj: object, where: str = "") -> str | None:
    """The key path of the first floating-point tensor in ``obj`` (nested dicts/lists) holding NaN/Inf."""
    if isinstance(obj, Tensor):
        return where if obj.is_floating_point() and not torch.isfinite(obj).all() else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else ()
    for key, value in items:
        found = non_finite(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def load_state(path: Path, device: torch.device) -> dict:
    """The training state in ``path``; a damaged or non-finite one raises ValueError saying what to do."""
    remedy = f"delete {path} to train from the start (the other files of {path.parent} are kept)"
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a damaged pickle fails in many ways (IndexError, KeyError, EOFError, …)
        lines = [line for line in str(exc).splitlines() if line.strip() and "eights" not in line]
        detail = lines[0] if lines else type(exc).__name__
        raise ValueError(f"{path} is damaged and cannot be resumed from ({detail[:200]}): {remedy}") from exc
    if not isinstance(state, dict) or not {"recipe_hash", "plan", "model", "iteration"} <= state.keys():
        raise ValueError(f"{path} is not a training state written by reprosr: {remedy}")
    where = non_finite({k: state.get(k, {}) for k in ("model", "ema", "optimizer")})
    if where is not None:
        raise ValueError(f"{path} holds NaN/Inf values (in {where}) and cannot be resumed from: {remedy}")
    return state
