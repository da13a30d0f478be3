"""Half precision measured, per model and image: does a model run in fp16 (or bf16) give its fp32 result?

The field runs efficient-SR models in half precision (EDSR-PyTorch ``--precision half``, NTIRE ESR teams'
``model.half()``), and some models break there: activations overflow to Inf, NaN spreads, or the output
collapses to a black (or flat) frame. :func:`half_check` runs every pair in fp32 and in the low precision
(``harness.runtime``'s casting: a cast copy of the model, the input cast likewise, the output back to
float32) and reports per image: non-finite outputs, black/flat frames, and ΔPSNR (Y, ``metrics.psnr_y``)
against fp32. ``supports_half`` is measured: every image finite, none black, and the set's mean ΔPSNR
within ``max_delta_db`` (the papers print set means to 0.01 dB; single images move more: on 96×96 crops
of Set5 the NTIRE SPAN release moves up to 0.011 dB in fp16 while its mean moves 0.002 dB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from harness import metrics, runtime
from harness.data import Pair
from harness.evaluate import TestTime, super_resolve
from harness.schema import Precision

PRECISION_OF = {torch.float16: Precision.FP16, torch.bfloat16: Precision.BF16}
MAX_DELTA_DB = 0.01  # |mean ΔPSNR| a precision may cost and count as supported (papers print 0.01 dB)


@dataclass(frozen=True)
class HalfImage:
    """One image: ``finite`` (no NaN/Inf in the low-precision SR), ``black`` (its uint8 SR is one flat value,
    black included, where fp32's is not), PSNR-Y of both and ``delta_db`` = low − fp32 (NaN if not finite)."""

    image: str
    finite: bool
    black: bool
    psnr_fp32: float
    psnr_half: float

    @property
    def delta_db(self) -> float:
        return self.psnr_half - self.psnr_fp32


@dataclass(frozen=True)
class HalfReport:
    """``supports_half``: every image finite, none black, |mean ΔPSNR| ≤ ``max_delta_db``; ``reason`` names
    every image that fails, or the mean ΔPSNR."""

    precision: Precision
    device: str
    max_delta_db: float
    per_image: list[HalfImage] = field(default_factory=list)
    supports_half: bool = False
    reason: str = ""


def half_check(
    model: nn.Module,
    pairs: Sequence[Pair],
    scale: int,
    device: str | torch.device = "auto",
    dtype: torch.dtype = torch.float16,
    max_delta_db: float = MAX_DELTA_DB,
) -> HalfReport:
    """Run ``model`` on ``pairs`` in fp32 and in ``dtype`` (float16 or bfloat16) on ``device`` and compare."""
    if dtype not in PRECISION_OF:
        raise ValueError(f"half_check compares float16 or bfloat16 with fp32, not {dtype}")
    if not pairs:
        raise ValueError("half_check needs at least one image pair")
    precision = PRECISION_OF[dtype]
    where = runtime.resolve_device(device)
    was_training = model.training
    model.to(where).eval()
    low = runtime.cast_model(model, precision)
    rows = []
    try:
        for pair in pairs:
            lr = pair.lr.to(where)
            reference = super_resolve(model, lr, test_time=TestTime())
            sr = super_resolve(low, lr, test_time=TestTime(precision=precision))
            rows.append(_compare(pair, reference, sr, scale))
    finally:
        model.train(was_training)
    failures = _failures(rows, max_delta_db)
    passed = f"{len(rows)} images finite, none black, {_mean_delta_text(rows)}"
    reason = "; ".join(failures) if failures else passed
    return HalfReport(
        precision=precision, device=runtime.device_label(where), max_delta_db=max_delta_db, per_image=rows,
        supports_half=not failures, reason=f"{precision}: {reason}",
    )  # fmt: skip


def _compare(pair: Pair, reference: torch.Tensor, sr: torch.Tensor, scale: int) -> HalfImage:
    psnr_fp32 = float(metrics.psnr_y(reference, pair.hr, scale))
    if not torch.isfinite(sr).all():
        return HalfImage(pair.name, finite=False, black=False, psnr_fp32=psnr_fp32, psnr_half=math.nan)
    flat = metrics.to_uint8(sr).unique().numel() == 1
    black = flat and metrics.to_uint8(reference).unique().numel() > 1
    return HalfImage(pair.name, True, black, psnr_fp32, float(metrics.psnr_y(sr, pair.hr, scale)))


def _mean_delta_text(rows: list[HalfImage]) -> str:
    return f"mean ΔPSNR {sum(r.delta_db for r in rows) / len(rows):+.4f} dB"


def _failures(rows: list[HalfImage], max_delta_db: float) -> list[str]:
    out = [f"NaN/Inf in the SR of {r.image}" for r in rows if not r.finite]
    out += [f"black/flat frame for {r.image}" for r in rows if r.black]
    if not out and abs(sum(r.delta_db for r in rows) / len(rows)) > max_delta_db:
        out.append(f"{_mean_delta_text(rows)} exceeds ±{max_delta_db} dB")
    return out
