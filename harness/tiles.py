"""Test-time procedures that wrap any model's forward: tiles (BasicSR / Real-ESRGAN / HAT ``tile_process``)
and the ×8 geometric self-ensemble (EDSR / RCAN ``forward_x8``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Forward = Callable[[Tensor], Tensor]
SELF_ENSEMBLE_FORWARDS = 8  # forwards per image of the self-ensemble: its MACs are 8× the model's


def tiled(forward: Forward, x: Tensor, scale: int, tile: int, overlap: int) -> Tensor:
    """SR of x (B, C, h, w) tile by tile, as BasicSR/HAT's ``tile_process``: tiles of tile × tile LR pixels
    (smaller at the right and bottom edges), each run with ``overlap`` extra LR pixels of context on every
    side (clipped at the image border) and its output cropped back to the tile: overlaps are cropped, never
    blended. With overlap ≥ the model's receptive-field radius the result equals the whole-image forward
    up to floating-point summation order; models with global operations (pooling, global attention)
    differ whatever the overlap.
    """
    if tile < 1 or overlap < 0:
        raise ValueError(f"tiles need tile >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
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
