"""Evaluation: a model's super-resolved outputs on benchmark pairs, scored in named metric conventions.

The test-time procedure is the paper's own: ``inference="chop"`` calls the model's ``forward_chop``
(HSPAN's official chopped inference), ``"whole"`` runs the whole LR image in one forward (SPAN-light pads
to its window grid inside its forward and crops back, so "whole" is its official procedure too).
"""

from __future__ import annotations

import math
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import architectures
from harness import data, metrics, released
from harness import store as results_store
from harness.data import Pair, write_image
from harness.schema import TEST_TIME

CONVENTION_TEXT = {
    "psnr_y": "Y of MATLAB rgb2ycbcr, shave=scale, SR rounded to uint8 (BasicSR/MATLAB)",
    "ssim_y": "Y of rgb2ycbcr, shave=scale, uint8, Gaussian 11x11 sigma 1.5, valid (MATLAB ssim_index)",
    "psnr_rgb": "RGB, shave=scale, SR rounded to uint8 (NTIRE)",
    "psnr_edsr": "EDSR-PyTorch calc_psnr: Y-like weights/256 on the difference, shave=scale",
}
ALL_CONVENTIONS = tuple(CONVENTION_TEXT)  # what the main job records for every evaluated image
RUNTIME_TEXT = "wall time of the test-time SR of one image (batch 1, host copies included); set: median"


@dataclass
class EvalResult:
    """Per-image scores and their set means (the papers average per-image PSNR/SSIM over the set), plus the
    wall time of each image's SR (``runtime_ms``; its set value is the median, robust to the first call's
    warm-up)."""

    mean: dict[str, float]
    per_image: list[dict] = field(default_factory=list)


def super_resolve(model: nn.Module, lr: torch.Tensor, inference: str = "whole") -> torch.Tensor:
    """SR of one LR image (3, h, w) in [0, 1] → (3, s·h, s·w), on the model's device, unclipped."""
    if inference not in TEST_TIME:
        raise ValueError(f"inference must be one of {[str(m) for m in TEST_TIME]}, not {inference!r}")
    device = next(model.parameters()).device
    x = lr.unsqueeze(0).to(device)
    with torch.no_grad():
        if inference == "chop":
            if not hasattr(model, "forward_chop"):
                raise ValueError(f"{type(model).__name__} has no chopped test-time inference; use 'whole'")
            y = model.forward_chop(x)
        else:
            y = model(x)
    return y[0].float().cpu()


def evaluate(
    model: nn.Module,
    pairs: Sequence[Pair],
    scale: int,
    *,
    inference: str = "whole",
    conventions: Sequence[str] = ("psnr_y", "ssim_y"),
    save_dir: Path | None = None,
) -> EvalResult:
    """Score ``model`` on ``pairs``; ``save_dir`` keeps each SR output as ``<image>.png`` for reports."""
    unknown = [c for c in conventions if c not in metrics.CONVENTIONS]
    if unknown:
        raise ValueError(f"unknown metric conventions {unknown}; known: {sorted(metrics.CONVENTIONS)}")
    was_training = model.training
    model.eval()
    rows = []
    try:
        for pair in pairs:
            start = time.perf_counter()
            sr = super_resolve(model, pair.lr, inference)  # returns on the CPU: a GPU run is synchronised
            runtime_ms = (time.perf_counter() - start) * 1e3
            if sr.shape != pair.hr.shape:
                raise ValueError(
                    f"{pair.name}: SR is {tuple(sr.shape)} but HR is {tuple(pair.hr.shape)}; "
                    f"is the model really ×{scale}?"
                )
            if not torch.isfinite(sr).all():
                raise FloatingPointError(f"{pair.name}: the model produced NaN/Inf")
            row = {"image": pair.name}
            row.update({c: float(metrics.CONVENTIONS[c](sr, pair.hr, scale)) for c in conventions})
            row["runtime_ms"] = runtime_ms
            rows.append(row)
            if save_dir is not None:
                write_image(Path(save_dir) / f"{pair.name}.png", sr.clamp(0, 1))
    finally:
        model.train(was_training)
    mean = {c: math.fsum(r[c] for r in rows) / len(rows) for c in conventions} if rows else {}
    if rows:
        mean["runtime_ms"] = statistics.median(r["runtime_ms"] for r in rows)
    return EvalResult(mean=mean, per_image=rows)


def result_rows(result: EvalResult, base: dict) -> list[dict]:
    """Results-store rows for one evaluation: one per (image, metric) and one per set mean (image "")."""
    rows = []
    for image_row in [*result.per_image, {"image": "", **result.mean}]:
        for metric, value in image_row.items():
            if metric == "image":
                continue
            timing = metric == "runtime_ms"
            rows.append(
                {
                    **base,
                    "image": image_row["image"],
                    "metric": metric,
                    "value": float(value),
                    "unit": "ms" if timing else "dB" if metric.startswith("psnr") else "",
                    "convention": RUNTIME_TEXT if timing else CONVENTION_TEXT.get(metric, metric),
                    "color": "" if timing else "rgb" if metric == "psnr_rgb" else "y",
                    "shave": 0 if timing else base["scale"],
                }
            )
    return rows


def evaluate_checkpoint(
    model_name: str,
    scale: int,
    *,
    variant: str | None,
    form: str,
    checkpoint: str,
    dataset: str,
    data_root: Path | None = None,
    inference: str | None = None,
    store: bool = True,
) -> dict:
    """`reprosr eval`: build the model, load a checkpoint (path or released name), score one benchmark set.

    Returns the set means, the per-image rows and the knobs used; appends the rows to the results store
    (profile "checkpoint") unless ``store`` is false.
    """

    spec = architectures.spec(model_name)
    variant = spec.default_variant if variant is None else variant
    inference = inference or spec.test_time
    path = released.resolve(checkpoint)
    model = architectures.load_checkpoint(architectures.build(model_name, scale, variant, form=form), path)
    pairs = data.benchmark_pairs(dataset, scale, data_root)
    result = evaluate(model, pairs, scale, inference=inference)
    payload = {
        "model": model_name,
        "variant": variant,
        "scale": scale,
        "form": form,
        "checkpoint": str(path),
        "dataset": dataset,
        "inference": inference,
        **result.mean,
        "per_image": result.per_image,
    }
    if store:
        base = {
            **results_store.provenance(),
            "run_id": uuid.uuid4().hex[:12],
            "profile": "checkpoint",
            "tier": "checkpoint",
            "recipe": "",
            "recipe_hash": "",
            "paper": spec.paper,
            "model": model_name,
            "variant": variant or "",
            "form": form,
            "scale": scale,
            "dataset": dataset,
            "inference": inference,
            "tile": 0,
            "tile_overlap": 0,
            "self_ensemble": False,
            "precision": "fp32",
            "runtime_protocol": "",
            "degradation": "matlab_bicubic",
            "training_data": "",
            "run_state": "",
            "checkpoint": str(path),
            "seed": -1,
            "step": -1,
            "dataset_checksum": data.dataset_checksum(dataset, data_root),
        }
        payload["run_id"] = base["run_id"]
        results_store.append(result_rows(result, base))
    return payload
