"""What a ``last.pt`` must hold to be resumed into a model: checked before anything is loaded, so that a
state of another architecture or with malformed fields is a clear error (exit 2), not a traceback."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.errors import UserError


def check_resumable(state: dict, model: nn.Module, path: Path) -> None:
    """Raise a UserError naming ``path`` and the field unless ``state`` fits ``model``: the same weight names
    and shapes (model and EMA), a non-negative integer iteration, and RNG states of the layout
    :func:`harness.training.state.rng_state` writes (tried on throwaway generators)."""
    remedy = f"delete {path} to train from the start (the other files of {path.parent} are kept)"
    own = model.state_dict()
    for field in ("model", "ema"):
        weights = state.get(field)
        if field == "ema" and weights == {}:
            continue  # no EMA in this recipe
        if not isinstance(weights, dict) or set(weights) != set(own):
            names = sorted(set(weights) ^ set(own)) if isinstance(weights, dict) else []
            raise UserError(
                f"{path}: its {field} weights are not this model's (another architecture: names differ, e.g. "
                f"{names[:3]}): {remedy}"
            )
        for key, tensor in own.items():
            theirs = weights[key]
            if not isinstance(theirs, torch.Tensor) or tuple(theirs.shape) != tuple(tensor.shape):
                shape = tuple(theirs.shape) if isinstance(theirs, torch.Tensor) else type(theirs).__name__
                raise UserError(
                    f"{path}: {field} weight {key!r} is {shape}, this model's is {tuple(tensor.shape)} "
                    f"(another architecture or variant): {remedy}"
                )
    for field, least in (("iteration", 0), ("best_iteration", -1)):
        value = state.get(field, least)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"{path}: field {field!r} is {value!r}, not an iteration number: {remedy}")
    rngs = state.get("rng")
    if not isinstance(rngs, list) or not rngs:
        raise UserError(f"{path}: field 'rng' is not a list of per-rank RNG states: {remedy}")
    for rank, rng in enumerate(rngs):
        try:
            _try_rng(rng)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as exc:
            raise UserError(
                f"{path}: field 'rng' of rank {rank} is malformed ({type(exc).__name__}: {exc}): {remedy}"
            ) from None


def _try_rng(rng: dict) -> None:
    """Load each RNG state into a throwaway generator of its kind (raises on a malformed one)."""
    torch.Generator().set_state(rng["torch"])
    n = rng["numpy"]
    np.random.RandomState().set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = rng["python"]
    random.Random().setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if not isinstance(rng["cuda"], list):
        raise TypeError(f"cuda states are a {type(rng['cuda']).__name__}, not a list")
