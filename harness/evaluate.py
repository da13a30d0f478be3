"""Evaluation: a model's super-resolved outputs on benchmark pairs, scored in named metric conventions,
with the test-time knobs the field uses, each recorded with the result.

Test-time procedure (``Inference``): ``whole`` runs the whole LR image in one forward (SPAN-light pads to
its window grid inside its forward, so "whole" is its official procedure too); ``chop`` calls the model's
``forward_chop`` (HSPAN's official chopped inference, its default); ``tile`` cuts the LR image into tiles
for any model (``harness.tiles.tiled``: overlap cropped), ``tile_average`` averages overlapping tiles as
NTIRE's ``test_demo.py`` does. ``self_ensemble`` wraps any of them
in EDSR's ×8 flip/rotate ensemble. Device, precision and the runtime protocol: ``harness.runtime``.

Every SR output is quantised once (``metrics.to_uint8``); the scores, the saved PNGs (``save_dir``) and
the manifest's pixel hashes all use that same uint8 image, so the PNGs re-score to the same numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from harness import metrics, progress, runtime, tiles
from harness.data import Pair
from harness.measures import MEASURES, QUALITY
from harness.rows import RunContext, result_row
from harness.runtime import RuntimeProtocol
from harness.schema import Inference, Precision
from harness.sr_outputs import save_sr

TILED = (Inference.TILE, Inference.TILE_AVERAGE)
ALL_CONVENTIONS = QUALITY  # what the main job and `reprosr eval` record for every image


@dataclass(frozen=True)
class TestTime:
    """How SR outputs are produced: procedure, tiles, ensemble, precision (recorded with every result)."""

    __test__ = False  # not a pytest test class despite its name

    inference: Inference = Inference.WHOLE
    tile: int = 0
    tile_overlap: int = 0
    self_ensemble: bool = False
    precision: Precision = Precision.FP32

    def __post_init__(self):
        object.__setattr__(self, "inference", Inference(self.inference))
        object.__setattr__(self, "precision", Precision(self.precision))
        if self.inference is Inference.PAD:
            raise ValueError("inference 'pad' is done inside the models that need it: use 'whole'")
        if (self.inference in TILED) != (self.tile > 0):
            raise ValueError(
                f"inference 'tile' needs a tile size > 0, and only it takes one (got {self.inference}, "
                f"tile {self.tile})"
            )
        if self.tile_overlap < 0 or (self.tile_overlap and not self.tile):
            raise ValueError(
                f"a tile overlap ({self.tile_overlap}) must be >= 0 and needs a tile size (--tile N)"
            )

    def columns(self) -> dict:
        """The results-store columns of these knobs."""
        return {
            "inference": str(self.inference),
            "tile": self.tile,
            "tile_overlap": self.tile_overlap,
            "self_ensemble": self.self_ensemble,
            "precision": str(self.precision),
        }


@dataclass
class EvalResult:
    """Per-image scores and their set means (the papers average per-image PSNR/SSIM over the set), the
    per-image runtime (set value: median) with its protocol, and where it ran."""

    mean: dict[str, float]
    per_image: list[dict] = field(default_factory=list)
    test_time: TestTime = TestTime()
    device: str = ""
    runtime_protocol: dict = field(default_factory=dict)


def _forward(model: nn.Module, test_time: TestTime, scale: int):
    """The test-time forward of a batched LR tensor, as ``test_time`` asks."""
    if test_time.inference is Inference.CHOP:
        if not hasattr(model, "forward_chop"):
            raise ValueError(f"{type(model).__name__} has no chopped test-time inference; use whole or tile")
        base = model.forward_chop
    elif test_time.inference in TILED:
        mode = "average" if test_time.inference is Inference.TILE_AVERAGE else "crop"

        def base(x: Tensor) -> Tensor:
            return tiles.tiled(model, x, scale, test_time.tile, test_time.tile_overlap, mode)
    else:
        base = model
    if test_time.self_ensemble:
        return lambda x: tiles.self_ensemble(base, x)
    return base


def super_resolve(model: nn.Module, lr: Tensor, test_time: TestTime = TestTime()) -> Tensor:
    """SR of one LR image (3, h, w) in [0, 1] → (3, s·h, s·w) float32 on the model's device, unclipped.
    ``test_time`` picks the procedure, tiles, ensemble and precision; the model must already be in that
    precision (``runtime.cast_model``)."""
    device = next(model.parameters()).device
    forward = _forward(model, test_time, model.scale)
    x = runtime.cast_input(lr.unsqueeze(0).to(device), test_time.precision)
    with torch.no_grad(), runtime.matmul_precision(test_time.precision, device):
        return forward(x)[0].float()


def evaluate(
    model: nn.Module,
    pairs: Sequence[Pair],
    scale: int,
    *,
    test_time: TestTime = TestTime(),
    conventions: Sequence[str] = ("psnr_y", "ssim_y"),
    save_dir: Path | None = None,
    device: str | torch.device | None = None,
    protocol: RuntimeProtocol | None = None,
    desc: str = "",
) -> EvalResult:
    """Score ``model`` on ``pairs``.

    ``test_time`` (default: whole image, fp32) sets the procedure, tiles, self-ensemble and precision;
    ``device`` ("auto", "cpu", "cuda[:i]"; default: that of an enclosing ``runtime.on_device`` block,
    else where the model is) is where the model is moved and the SR and the metrics run; ``protocol``
    times each image (default ``RuntimeProtocol.default``). ``save_dir`` keeps each SR output as
    ``<image>.png`` exactly as scored (see :func:`save_sr`).
    Progress per image on stderr (``desc`` names the set).
    """
    unknown = [c for c in conventions if c not in metrics.CONVENTIONS]
    if unknown:
        raise ValueError(f"unknown metric conventions {unknown}; known: {sorted(metrics.CONVENTIONS)}")
    if device is not None:
        where = runtime.resolve_device(device)
    else:
        where = runtime.current_device() or next(model.parameters()).device
    runtime.check_precision(test_time.precision, where)
    protocol = protocol or RuntimeProtocol.default(where)
    was_training = model.training
    model.to(where).eval()
    runner = runtime.cast_model(model, test_time.precision)
    rows = []
    try:
        if pairs:  # one untimed pass on a crop: lazy initialisation is not charged to the first image
            super_resolve(runner, pairs[0].lr[:, :48, :48], test_time=test_time)
        for pair in progress.track(pairs, desc=desc or "eval", unit="img"):
            rows.append(_score_one(runner, pair, scale, conventions, test_time, where, protocol, save_dir))
    finally:
        model.train(was_training)
    return EvalResult(
        mean=_set_means(rows, conventions),
        per_image=rows,
        test_time=test_time,
        device=runtime.device_label(where),
        runtime_protocol=protocol.describe(where),
    )


def _score_one(runner, pair, scale, conventions, test_time, device, protocol, save_dir) -> dict:
    lr = pair.lr.to(device)
    sr, timing = runtime.measure(lambda: super_resolve(runner, lr, test_time=test_time), protocol, device)
    if sr.shape != pair.hr.shape:
        raise ValueError(
            f"{pair.name}: SR is {tuple(sr.shape)} but HR is {tuple(pair.hr.shape)}; "
            f"is the model really ×{scale}?"
        )
    if not torch.isfinite(sr).all():
        raise FloatingPointError(f"{pair.name}: the model produced NaN/Inf")
    row = {"image": pair.name}
    row.update({c: float(v) for c, v in metrics.scores(sr, pair.hr, scale, conventions).items()})
    row["runtime_ms"], row["runtime_iqr_ms"] = timing.median_ms, timing.iqr_ms
    if not math.isnan(timing.peak_memory_mb):
        row["peak_memory_mb"] = timing.peak_memory_mb
    if save_dir is not None:
        save_sr(Path(save_dir), pair.name, metrics.to_uint8(sr))
    return row


def _set_means(rows: list[dict], conventions: Sequence[str]) -> dict[str, float]:
    """Set values of every measured metric, each made as its measure says (mean, median or max)."""
    if not rows:
        return {}
    make = {"mean": lambda v: math.fsum(v) / len(v), "median": statistics.median, "max": max}
    return {m: make[MEASURES[m].set_mean]([r[m] for r in rows]) for m in rows[0] if m != "image"}


def result_rows(
    result: EvalResult, ctx: RunContext, *, dataset: str, dataset_checksum: str = ""
) -> list[dict]:
    """Results-store rows for one evaluation of ``ctx``'s model on ``dataset``: one per (image, metric) and
    one per set mean (image ""), with the knob columns and the device of ``result``."""
    ctx = ctx.but(device=result.device or ctx.device)
    knobs = result.test_time.columns()
    return [
        result_row(
            ctx,
            metric,
            value,
            dataset=dataset,
            image=image_row["image"],
            knobs=knobs,
            runtime_protocol=result.runtime_protocol,
            dataset_checksum=dataset_checksum,
        )  # fmt: skip
        for image_row in [*result.per_image, {"image": "", **result.mean}]
        for metric, value in image_row.items()
        if metric != "image"
    ]
