"""Test-time procedures that wrap any model's forward: tiles and the ×8 geometric self-ensemble (EDSR / RCAN
``forward_x8``).

Two tile modes (:data:`TILE_MODES`):

- ``crop`` (BasicSR / Real-ESRGAN / HAT ``tile_process``): the image is cut into tile × tile LR cores, each
  run with ``overlap`` extra LR pixels of context per side (clipped at the border) and cropped back to its
  core. With ``overlap`` ≥ the model's receptive-field radius the result equals the whole-image forward up
  to floating-point summation order.
- ``average`` (NTIRE ESR ``test_demo.py`` ``forward(img_lq, model, tile, tile_overlap)``): patches of
  tile × tile LR pixels on a grid of stride ``tile - overlap`` (the last row and column of patches flush
  with the bottom and right edges), their outputs summed and divided by the number of patches covering
  each pixel. Never exact for a model that looks beyond one pixel: a patch's pixels near its inner edges
  are averaged in.

The overlap a model needs is measured (:func:`receptive_field`: the input pixels one output pixel depends
on) and is the default (:func:`resolve_overlap`), with a warning when a smaller one is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.errors import UserError

Forward = Callable[[Tensor], Tensor]
SELF_ENSEMBLE_FORWARDS = 8  # forwards per image of the self-ensemble: its MACs are 8× the model's
TILE_MODES = ("crop", "average")
RF_PROBE = 64  # LR side of the receptive-field probe: a radius that reaches its border counts as global
GLOBAL_OVERLAP = 32  # overlap for models with a global receptive field: NTIRE test_demo's tile_overlap


def tiled(forward: Forward, x: Tensor, scale: int, tile: int, overlap: int, mode: str = "crop") -> Tensor:
    """SR of x (B, C, h, w) tile by tile, in ``mode`` ``crop`` or ``average`` (see the module docstring):
    (B, C, scale·h, scale·w)."""
    if mode not in TILE_MODES:
        raise UserError(f"unknown tile mode {mode!r}; choose one of {TILE_MODES}")
    if tile < 1 or overlap < 0:
        raise UserError(f"tiles need tile >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
    if mode == "average":
        return _averaged(forward, x, scale, tile, overlap)
    h, w = x.shape[-2:]
    out = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            top_in, left_in = max(top - overlap, 0), max(left - overlap, 0)
            y = forward(x[..., top_in : min(bottom + overlap, h), left_in : min(right + overlap, w)])
            if out is None:
                out = y.new_empty(*y.shape[:-2], scale * h, scale * w)
            dt, dl = scale * (top - top_in), scale * (left - left_in)
            out[..., scale * top : scale * bottom, scale * left : scale * right] = y[
                ..., dt : dt + scale * (bottom - top), dl : dl + scale * (right - left)
            ]
    return out


def _averaged(forward: Forward, x: Tensor, scale: int, tile: int, overlap: int) -> Tensor:
    h, w = x.shape[-2:]
    patch = min(tile, h, w)
    if overlap >= patch:
        raise UserError(f"average tiles need overlap < tile (the patch side {patch}), got overlap={overlap}")
    stride = patch - overlap
    tops = [*range(0, h - patch, stride), h - patch]
    lefts = [*range(0, w - patch, stride), w - patch]
    total = weight = None
    for top in tops:
        for left in lefts:
            y = forward(x[..., top : top + patch, left : left + patch])
            if total is None:
                total = y.new_zeros(*y.shape[:-2], scale * h, scale * w)
                weight = torch.zeros_like(total)
            window = (
                ...,
                slice(scale * top, scale * (top + patch)),
                slice(scale * left, scale * (left + patch)),
            )
            total[window] += y
            weight[window] += 1
    return total / weight


@dataclass(frozen=True)
class ReceptiveField:
    """The LR input pixels the output of the probe's central LR pixel depends on: ``radius`` (Chebyshev,
    LR pixels), or None when they reach the border of the ``probe`` × ``probe`` input (global, or wider
    than the probe: no overlap makes tiles exact)."""

    radius: int | None
    probe: int


_MEASURED: dict[tuple, ReceptiveField] = {}


def receptive_field(model: nn.Module, probe: int = RF_PROBE) -> ReceptiveField:
    """Measure the receptive field of ``model`` (eval mode, its device and dtype): the gradient of the
    output pixels of the central LR pixel with respect to a random probe input; its nonzero support.
    Cached per architecture (class, parameter shapes, scale) and probe."""
    param = next(model.parameters(), torch.empty(0))
    key = (type(model), tuple(p.shape for p in model.parameters()), getattr(model, "scale", None), probe)
    if key not in _MEASURED:
        was_training = model.training
        try:
            _MEASURED[key] = _measure(model.eval(), probe, param.device, param.dtype)
        finally:
            model.train(was_training)
    return _MEASURED[key]


def _measure(model: nn.Module, probe: int, device: torch.device, dtype: torch.dtype) -> ReceptiveField:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, probe, probe, generator=generator).to(device, dtype).requires_grad_()
    with torch.enable_grad():
        y = model(x)
        s, c = y.shape[-1] // probe, probe // 2
        y[..., s * c : s * (c + 1), s * c : s * (c + 1)].sum().backward()
    support = (x.grad[0] != 0).any(dim=0).nonzero()
    low, high = support.min(dim=0).values, support.max(dim=0).values
    if low.min() == 0 or high.max() == probe - 1:
        return ReceptiveField(None, probe)
    return ReceptiveField(int(max(c - low.min(), high.max() - c)), probe)


def resolve_overlap(model: nn.Module, overlap: int | None, mode: str = "crop") -> tuple[int, str | None]:
    """The tile overlap to use and a warning for the user, or None.

    ``overlap`` None: the measured receptive-field radius (crop mode: the whole-image result), or
    :data:`GLOBAL_OVERLAP` for a global receptive field (with a warning that tiles change the result).
    A given overlap is kept; the warning says when it is smaller than the measured radius.
    """
    if mode not in TILE_MODES:
        raise UserError(f"unknown tile mode {mode!r}; choose one of {TILE_MODES}")
    rf = receptive_field(model)
    if rf.radius is None:
        chosen = GLOBAL_OVERLAP if overlap is None else overlap
        return chosen, (
            f"the model's receptive field reaches past a {rf.probe}x{rf.probe} LR probe (global operations): "
            f"tiled SR differs from whole-image SR whatever the overlap (using {chosen})"
        )
    if overlap is None:
        return rf.radius, None
    if overlap < rf.radius:
        return overlap, (
            f"tile overlap {overlap} is smaller than the model's measured receptive-field radius "
            f"({rf.radius} LR pixels): tiled SR will differ from whole-image SR; omit the overlap to use "
            f"{rf.radius}"
        )
    return overlap, None


def _flip_w(x: Tensor) -> Tensor:  # EDSR's 'v'
    return x.flip(-1)


def _flip_h(x: Tensor) -> Tensor:  # EDSR's 'h'
    return x.flip(-2)


def _transpose(x: Tensor) -> Tensor:  # EDSR's 't'
    return x.transpose(-2, -1)


def self_ensemble(forward: Forward, x: Tensor) -> Tensor:
    """EDSR-PyTorch ``Model.forward_x8``: the 8 flips/transpositions of x, each super-resolved by
    ``forward``, mapped back and averaged. Inputs in EDSR's order (x, v, h, hv, t, tv, th, thv); output i
    is un-transposed if i > 3, un-flipped along H if i % 4 > 1, along W if i is odd."""
    inputs = [x]
    for op in (_flip_w, _flip_h, _transpose):
        inputs += [op(t) for t in inputs]
    outputs = []
    for i, t in enumerate(inputs):
        y = forward(t)
        if i > 3:
            y = _transpose(y)
        if i % 4 > 1:
            y = _flip_h(y)
        if i % 2 == 1:
            y = _flip_w(y)
        outputs.append(y)
    return torch.stack(outputs).mean(dim=0)
