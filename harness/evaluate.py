"""Evaluation: a model's super-resolved outputs on benchmark pairs, scored in named metric conventions,
with the test-time knobs the field uses, each recorded with the result.

Test-time procedure (``Inference``): ``whole`` runs the whole LR image in one forward (SPAN-light pads to
its window grid inside its forward, so "whole" is its official procedure too); ``chop`` calls the model's
``forward_chop`` (HSPAN's official chopped inference, its default); ``tile`` cuts the LR image into tiles
for any model (``harness.tiles.tiled``: overlap cropped, not blended). ``self_ensemble`` wraps any of them
in EDSR's ×8 flip/rotate ensemble. Device, precision and the runtime protocol: ``harness.runtime``.

Every SR output is quantised once (``metrics.to_uint8``); the scores, the saved PNGs (``save_dir``) and
the manifest's pixel hashes all use that same uint8 image, so the PNGs re-score to the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

import architectures
from harness import data, metrics, progress, released, runtime, tiles
from harness import store as results_store
from harness.data import Pair
from harness.errors import UserError
from harness.files import atomic_file
from harness.runtime import RuntimeProtocol
from harness.schema import Inference, Precision

CONVENTION_TEXT = {
    "psnr_y": "Y of MATLAB rgb2ycbcr, shave=scale, SR rounded to uint8 (BasicSR/MATLAB)",
    "ssim_y": "Y of rgb2ycbcr, shave=scale, uint8, Gaussian 11x11 sigma 1.5, valid (MATLAB ssim_index)",
    "psnr_rgb": "RGB, shave=scale, SR rounded to uint8 (NTIRE)",
    "psnr_edsr": "EDSR-PyTorch calc_psnr: Y-like weights/256 on the difference, shave=scale",
}
ALL_CONVENTIONS = tuple(CONVENTION_TEXT)  # what the main job and `reprosr eval` record for every image
RUNTIME_TEXT = {
    "runtime_ms": "test-time SR of one image on the device (batch 1): median of the protocol's repeats; "
    "set: median over images",
    "runtime_iqr_ms": "inter-quartile range of the repeats; set: median over images",
    "peak_memory_mb": "peak CUDA memory allocated during the image's runs (weights included); set: max",
}
MANIFEST = "manifest.json"


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
        if (self.inference is Inference.TILE) != (self.tile > 0):
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
    elif test_time.inference is Inference.TILE:

        def base(x: Tensor) -> Tensor:
            return tiles.tiled(model, x, scale, test_time.tile, test_time.tile_overlap)
    else:
        base = model
    if test_time.self_ensemble:
        return lambda x: tiles.self_ensemble(base, x)
    return base


def super_resolve(
    model: nn.Module, lr: Tensor, inference: str = "whole", *, test_time: TestTime | None = None
) -> Tensor:
    """SR of one LR image (3, h, w) in [0, 1] → (3, s·h, s·w) float32 on the model's device, unclipped.
    ``test_time`` (else ``TestTime(inference)``) picks tiles, ensemble and precision; the model must
    already be in that precision (``runtime.cast_model``)."""
    test_time = test_time or TestTime(Inference(inference))
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
    inference: str = "whole",
    conventions: Sequence[str] = ("psnr_y", "ssim_y"),
    save_dir: Path | None = None,
    test_time: TestTime | None = None,
    device: str | torch.device | None = None,
    protocol: RuntimeProtocol | None = None,
    desc: str = "",
) -> EvalResult:
    """Score ``model`` on ``pairs``.

    ``test_time`` (default ``TestTime(inference)``) sets the procedure, tiles, self-ensemble and precision;
    ``device`` ("auto", "cpu", "cuda[:i]"; default: that of an enclosing ``runtime.on_device`` block,
    else where the model is) is where the model is moved and the SR and the metrics run; ``protocol``
    times each image (default ``RuntimeProtocol.default``). ``save_dir`` keeps each SR output as
    ``<image>.png`` exactly as scored (see :func:`save_sr`).
    Progress per image on stderr (``desc`` names the set).
    """
    unknown = [c for c in conventions if c not in metrics.CONVENTIONS]
    if unknown:
        raise ValueError(f"unknown metric conventions {unknown}; known: {sorted(metrics.CONVENTIONS)}")
    test_time = test_time or TestTime(Inference(inference))
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
    if not rows:
        return {}
    mean = {c: math.fsum(r[c] for r in rows) / len(rows) for c in conventions}
    mean["runtime_ms"] = statistics.median(r["runtime_ms"] for r in rows)
    mean["runtime_iqr_ms"] = statistics.median(r["runtime_iqr_ms"] for r in rows)
    if "peak_memory_mb" in rows[0]:
        mean["peak_memory_mb"] = max(r["peak_memory_mb"] for r in rows)
    return mean


def pixel_sha256(img: Tensor) -> str:
    """sha256 of an image's raw pixels: (3, H, W) uint8 as H×W×3 RGB bytes in row-major order, i.e. of
    ``numpy.asarray(PIL.Image.open(png).convert("RGB")).tobytes()``."""
    return hashlib.sha256(img.permute(1, 2, 0).contiguous().cpu().numpy().tobytes()).hexdigest()


def save_sr(folder: Path, name: str, sr8: Tensor) -> Path:
    """Write one scored SR image (3, H, W) uint8 as ``folder/<name>.png``, atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    with atomic_file(path) as f:
        Image.fromarray(np.ascontiguousarray(sr8.permute(1, 2, 0).cpu().numpy()), "RGB").save(f, format="PNG")
    return path


def read_manifest(root: Path) -> dict:
    """The SR manifest ``root/manifest.json`` ({} if absent); a UserError naming the file when it is not one
    (checked before the first image, so a bad file does not cost an evaluation)."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not JSON ({exc}); move it away or pick another --save-sr folder") from None
    if not (
        isinstance(manifest, dict)
        and isinstance(manifest.get("datasets", {}), dict)
        and isinstance(manifest.get("images", {}), dict)
    ):
        raise UserError(
            f"{path} is not an SR manifest (an object with 'datasets' and 'images' objects): move it away or "
            "choose another --save-sr folder"
        )
    return manifest


def write_manifest(root: Path, dataset: str, result: EvalResult, context: dict) -> Path:
    """``root/manifest.json``: per saved image (``<dataset>/<image>.png``) its pixel sha256 and scores, and
    per dataset the run's knobs (``context``: model, checkpoint, scale…); merged with an existing manifest so
    several calls can share one folder."""
    path = Path(root) / MANIFEST
    manifest = read_manifest(root)
    manifest.setdefault("pixel_hash", pixel_sha256.__doc__.split(":", 1)[1].strip())
    manifest.setdefault("datasets", {})[dataset] = {**context, **result.test_time.columns()}
    images = manifest.setdefault("images", {})
    for row in result.per_image:
        png = Path(root) / dataset / f"{row['image']}.png"
        with Image.open(png) as img:
            pixels = np.asarray(img.convert("RGB"))
        images[f"{dataset}/{row['image']}.png"] = {
            "sha256_pixels": hashlib.sha256(pixels.tobytes()).hexdigest(),
            "size": [int(pixels.shape[1]), int(pixels.shape[0])],
            **{k: v for k, v in row.items() if k in metrics.CONVENTIONS},
        }
    with atomic_file(path) as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    return path


def result_rows(result: EvalResult, base: dict) -> list[dict]:
    """Results-store rows for one evaluation: one per (image, metric) and one per set mean (image "").

    The knob columns (inference, tile, tile_overlap, self_ensemble, precision) and the device come from
    ``result``; runtime rows carry the protocol as JSON text.
    """
    knobs = {**result.test_time.columns(), "device": result.device or base.get("device", "")}
    protocol = json.dumps(result.runtime_protocol, sort_keys=True)
    rows = []
    for image_row in [*result.per_image, {"image": "", **result.mean}]:
        for metric, value in image_row.items():
            if metric == "image":
                continue
            timing = metric in RUNTIME_TEXT
            unit = {"runtime_ms": "ms", "runtime_iqr_ms": "ms", "peak_memory_mb": "MiB"}.get(metric, "")
            rows.append(
                {
                    **base,
                    **knobs,
                    "image": image_row["image"],
                    "metric": metric,
                    "value": float(value),
                    "unit": unit or ("dB" if metric.startswith("psnr") else ""),
                    "convention": RUNTIME_TEXT[metric] if timing else CONVENTION_TEXT.get(metric, metric),
                    "color": "" if timing else "rgb" if metric == "psnr_rgb" else "y",
                    "shave": 0 if timing else base["scale"],
                    "runtime_protocol": protocol if timing else "",
                }
            )
    return rows


PAPER_SETS = "paper"  # `--dataset paper`: the benchmark list of the model's recipe (its paper's tables)


def dataset_names(spec: str | Sequence[str], model: str, variant: str | None, scale: int) -> list[str]:
    """``Set5,Set14`` → [Set5, Set14]; ``paper`` → the ``eval.benchmarks`` of the recipe of this model,
    variant and scale (a ValueError when there is none); a list is taken as given."""
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    if not names or any(not n for n in names):
        raise ValueError(f"--dataset {spec!r}: give dataset names separated by commas, or {PAPER_SETS!r}")
    out = []
    for name in names:
        if name == PAPER_SETS:
            out += _paper_sets(model, variant, scale)
        elif name not in out:
            out.append(name)
    return out


def _paper_sets(model: str, variant: str | None, scale: int) -> list[str]:
    from harness import recipes

    for name in recipes.RECIPES:
        recipe = recipes.load(name)
        if (recipe.model, recipe.variant, recipe.scale) == (model, variant, scale):
            return list(recipe["eval.benchmarks"])
    raise ValueError(
        f"--dataset {PAPER_SETS}: no recipe for {model} {variant or ''} ×{scale} names its paper's benchmark "
        "sets; list them instead (e.g. --dataset Set5,Set14)"
    )


def load_pairs(name: str, scale: int, root: Path | None) -> tuple[list[Pair], str]:
    """The pairs of a benchmark set and its checksum. ``<root>/<name>/HR`` (+ ``LR_bicubic/X<s>``) is the
    registry layout (``harness.data``); ``<root>/<name>_HR`` + ``<root>/<name>_LR/<image>x<s>.png`` is the
    NTIRE challenges' layout (e.g. ``DIV2K_LSDIR_valid``), read as the challenge's ``test_demo.py`` does."""

    base = data.cache_dir() if root is None else Path(root)
    ntire_hr, ntire_lr = base / f"{name}_HR", base / f"{name}_LR"
    if not (base / name / "HR").is_dir() and ntire_hr.is_dir():
        return _ntire_pairs(ntire_hr, ntire_lr, scale), _folder_checksum([ntire_hr, ntire_lr])
    return data.benchmark_pairs(name, scale, root), data.dataset_checksum(name, root)


def _ntire_pairs(hr_dir: Path, lr_dir: Path, scale: int) -> list[Pair]:
    from harness.data import read_image

    pairs = []
    for hr_path in sorted(hr_dir.glob("*.png")):
        lr_path = lr_dir / f"{hr_path.stem}x{scale}.png"
        if not lr_path.is_file():
            raise FileNotFoundError(f"{lr_path} missing: the NTIRE layout names the LR of {hr_path.name} so")
        hr, lr = read_image(hr_path), read_image(lr_path)
        h, w = lr.shape[-2] * scale, lr.shape[-1] * scale
        if hr.shape[-2] < h or hr.shape[-1] < w:
            raise ValueError(f"{lr_path} ×{scale} is larger than {hr_path}: is it the ×{scale} LR?")
        pairs.append(Pair(hr_path.stem, hr[:, :h, :w], lr))
    if not pairs:
        raise FileNotFoundError(f"no HR images in {hr_dir}")
    return pairs


def _folder_checksum(folders: list[Path]) -> str:
    from harness.downloads import sha256_file

    lines = "".join(
        f"{sha256_file(p)}  {p.parent.name}/{p.name}\n"
        for folder in folders
        for p in sorted(folder.glob("*.png"))
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def evaluate_checkpoint(
    model_name: str,
    scale: int,
    *,
    variant: str | None,
    form: str,
    checkpoint: str,
    dataset: str | Sequence[str],
    data_root: Path | None = None,
    inference: str | None = None,
    tile: int = 0,
    tile_overlap: int = 0,
    self_ensemble: bool = False,
    precision: str = "fp32",
    device: str = "auto",
    runtime_warmup: int | None = None,
    runtime_repeats: int | None = None,
    save_sr_dir: Path | None = None,
    store: bool = True,
) -> dict:
    """`reprosr eval`: build the model, load a checkpoint (path or released name), score benchmark sets.

    ``dataset``: one name, a comma-separated list, or ``paper`` (:func:`dataset_names`). ``inference``
    defaults to the paper's own procedure, or ``tile`` when ``tile`` > 0. Returns, for one set, its means,
    per-image rows and knobs; for several, ``{"results": [one such object per set]}``. Appends the rows to
    the results store (profile "checkpoint") unless ``store`` is false; ``save_sr_dir`` keeps the SR images
    as ``<dir>/<dataset>/<image>.png`` with ``<dir>/manifest.json``.
    """

    spec = architectures.spec(model_name)
    variant = spec.default_variant if variant is None else variant
    if tile and inference not in (None, Inference.TILE):
        raise ValueError(f"--tile replaces the {inference!r} procedure: give one of them")
    test_time = TestTime(
        Inference.TILE if tile else Inference(inference or spec.test_time),
        tile,
        tile_overlap,
        self_ensemble,
        Precision(precision),
    )
    where = runtime.resolve_device(device)
    runtime.check_precision(test_time.precision, where)
    default = RuntimeProtocol.default(where)
    protocol = RuntimeProtocol(
        default.warmup if runtime_warmup is None else runtime_warmup,
        default.repeats if runtime_repeats is None else runtime_repeats,
    )
    names = dataset_names(dataset, model_name, variant, scale)
    if save_sr_dir is not None:
        read_manifest(Path(save_sr_dir))
    path = released.resolve(checkpoint)
    model = architectures.load_checkpoint(architectures.build(model_name, scale, variant, form=form), path)
    run_id = uuid.uuid4().hex[:12]
    payloads, rows = [], []
    for name in names:
        pairs, checksum = load_pairs(name, scale, data_root)
        save_dir = None if save_sr_dir is None else Path(save_sr_dir) / name
        result = evaluate(
            model,
            pairs,
            scale,
            conventions=ALL_CONVENTIONS,
            save_dir=save_dir,
            test_time=test_time,
            device=where,
            protocol=protocol,
            desc=f"{name} ×{scale}",
        )
        context = {
            "model": model_name,
            "variant": variant,
            "scale": scale,
            "form": form,
            "checkpoint": str(path),
        }
        if save_sr_dir is not None:
            write_manifest(Path(save_sr_dir), name, result, context)
        payloads.append(
            {
                **context,
                "dataset": name,
                **result.test_time.columns(),
                "device": result.device,
                "runtime_protocol": {
                    "warmup": protocol.warmup,
                    "repeats": protocol.repeats,
                    **result.runtime_protocol,
                },
                "run_id": run_id,
                **result.mean,
                "per_image": result.per_image,
            }
        )
        base = {
            **results_store.provenance(),
            "run_id": run_id,
            "profile": "checkpoint",
            "tier": "checkpoint",
            "recipe": "",
            "recipe_hash": "",
            "paper": spec.paper,
            "model": model_name,
            "variant": variant or "",
            "form": form,
            "scale": scale,
            "dataset": name,
            "degradation": "matlab_bicubic",
            "training_data": "",
            "run_state": "",
            "checkpoint": str(path),
            "seed": -1,
            "step": -1,
            "dataset_checksum": checksum,
        }
        rows += result_rows(result, base)
    if store:
        results_store.append(rows)
    else:
        for p in payloads:
            del p["run_id"]
    return payloads[0] if len(payloads) == 1 else {"results": payloads}
