"""`reprosr eval`: one typed request → one model → the pairs of every set → scores → rows → the store.

An :class:`EvalRequest` is built from the command line or from a TOML file (``reprosr eval --config``); the
job checks every set before the first image, builds and loads the model once, and appends each finished set
to the results store before starting the next, so a failure later keeps what was measured.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

import architectures
from architectures import detect
from architectures.reading import content_hash
from harness import data, half, metrics, ntire, progress, released, runtime, tiles
from harness import store as results_store
from harness.data import Pair
from harness.errors import UserError
from harness.eval_request import EvalRequest
from harness.evaluate import ALL_CONVENTIONS, TestTime, evaluate, result_rows, super_resolve
from harness.files import atomic_file
from harness.rows import RunContext
from harness.runtime import RuntimeProtocol
from harness.schema import Inference, Precision, Profile, Tier
from harness.sr_outputs import read_manifest, save_sr, write_manifest

PAPER_SETS = "paper"  # `--dataset paper`: the benchmark list of the model's recipe (its paper's tables)


def dataset_names(spec: str | Sequence[str], model: str, variant: str | None, scale: int) -> list[str]:
    """``Set5,Set14`` → [Set5, Set14]; ``paper`` → the ``eval.benchmarks`` of the recipe of this model,
    variant and scale; a list is taken as given (each entry may itself be comma-separated)."""
    items = [spec] if isinstance(spec, str) else list(spec)
    names = [n.strip() for item in items for n in item.split(",")]
    if not names or any(not n for n in names):
        raise UserError(f"--dataset {spec!r}: give dataset names separated by commas, or {PAPER_SETS!r}")
    out = []
    for name in names:
        for n in _paper_sets(model, variant, scale) if name == PAPER_SETS else [name]:
            if n not in out:
                out.append(n)
    return out


def _paper_sets(model: str, variant: str | None, scale: int) -> list[str]:
    from harness import recipes

    for name in recipes.RECIPES:
        recipe = recipes.load(name)
        if (recipe.model, recipe.variant or "", recipe.scale) == (model, variant or "", scale):
            return list(recipe.eval.benchmarks)
    raise UserError(
        f"--dataset {PAPER_SETS}: no recipe for {model} {variant or ''} ×{scale} names its paper's benchmark "
        "sets; list them instead (e.g. --dataset Set5,Set14)"
    )


def _test_time(request: EvalRequest, model: nn.Module) -> TestTime:
    """The test-time knobs: a tile overlap not given is the model's measured receptive field (a warning
    when tiles change the result: a global field, or a smaller overlap than the field)."""
    spec = architectures.registry.spec_of(model) or architectures.spec(request.model)
    if request.tile and request.inference not in (None, Inference.TILE, Inference.TILE_AVERAGE):
        raise UserError(f"--tile replaces the {request.inference!r} procedure: give one of them")
    overlap = 0
    if request.tile:
        inference = Inference.TILE_AVERAGE if request.tile_mode == "average" else Inference.TILE
        overlap, warning = tiles.resolve_overlap(model, request.tile_overlap, request.tile_mode)
        if warning:
            progress.stage(f"warning: {warning}")
    else:
        if request.tile_overlap:
            raise UserError("--tile-overlap needs a tile size (--tile N)")
        inference = Inference(request.inference or spec.test_time)
    try:
        return TestTime(inference, request.tile, overlap, request.self_ensemble, Precision(request.precision))
    except ValueError as exc:
        raise UserError(str(exc)) from None


def run_eval(request: EvalRequest) -> dict:
    """Evaluate ``request``; returns, for one set, its means, per-image rows and knobs, for several
    ``{"results": [...]}``; with ``run_id`` and ``stored`` (the results store written, "" if none)."""
    request.check()
    root = results_store.default_root()
    if request.store:
        results_store.check_writable(root)
    if request.save_sr is not None:
        read_manifest(Path(request.save_sr))  # a damaged manifest is refused before any work
    path = released.resolve(request.checkpoint)
    model, identity, digest = _load(request, path)
    model_name, variant, scale, form = identity
    spec = architectures.spec(model_name)
    test_time = _test_time(request, model)
    where = runtime.resolve_device(request.device)
    runtime.check_precision(test_time.precision, where)
    default = RuntimeProtocol.default(where)
    protocol = RuntimeProtocol(
        default.warmup if request.runtime_warmup is None else request.runtime_warmup,
        default.repeats if request.runtime_repeats is None else request.runtime_repeats,
    )
    if request.hr_dir is not None:
        folders = data.free_folders(request.hr_dir, request.lr_dir, scale, request.filename_tmpl)
        sets = {request.datasets[0]: (list(folders.iter_pairs()), folders.checksum())}
    else:
        names = dataset_names(request.datasets, model_name, variant, scale)
        sets = _load_sets(names, scale, request.data_root)  # every set before the first image

    ctx = RunContext.new(
        profile=Profile.CHECKPOINT,
        tier=Tier.CHECKPOINT,
        paper=spec.paper,
        model=model_name,
        variant=variant or "",
        form=form,
        scale=scale,
        checkpoint=released.label(request.checkpoint),
        checkpoint_hash=digest,
    )
    if request.store and request.config_text:
        results_store.keep_config(ctx.run_id, request.config_text, root)
    payloads = []
    for name, (pairs, checksum) in sets.items():
        result = evaluate(
            model, pairs, scale, conventions=ALL_CONVENTIONS, test_time=test_time, device=where,
            protocol=protocol, desc=f"{name} ×{scale}",
            save_dir=None if request.save_sr is None else Path(request.save_sr) / name,
        )  # fmt: skip
        context = {"model": model_name, "variant": variant or "", "scale": scale, "form": form,
                   "checkpoint": ctx.checkpoint, "checkpoint_hash": ctx.checkpoint_hash}  # fmt: skip
        if request.save_sr is not None:
            write_manifest(Path(request.save_sr), name, result, {**context, "run_id": ctx.run_id})
        if request.store:
            results_store.append(result_rows(result, ctx, dataset=name, dataset_checksum=checksum))
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
                },  # fmt: skip
                "run_id": ctx.run_id,
                "stored": str(root) if request.store else "",
                **(
                    {"half": _half_report(model, pairs, scale, where, test_time.precision)}
                    if test_time.precision in (Precision.FP16, Precision.BF16)
                    else {}
                ),  # fmt: skip
                **result.mean,
                "per_image": result.per_image,
            }
        )
    if request.ntire_report is not None:
        _write_ntire_report(Path(request.ntire_report), model, payloads, where)
    return payloads[0] if len(payloads) == 1 else {"results": payloads, "run_id": ctx.run_id}


def _half_report(model: nn.Module, pairs: list[Pair], scale: int, where, precision: Precision) -> dict:
    """A measured ``supports_half`` for a half-precision evaluation: NaN/Inf, black frames and ΔPSNR-Y
    against fp32, per image (``harness.half``)."""
    dtype = torch.float16 if precision is Precision.FP16 else torch.bfloat16
    report = half.half_check(model, pairs, scale, where, dtype)
    per_image = [{"image": i.image, "finite": i.finite, "black": i.black, "delta_db": i.delta_db}
                 for i in report.per_image]  # fmt: skip
    return {"supports_half": report.supports_half, "reason": report.reason, "per_image": per_image}


def _write_ntire_report(path: Path, model: nn.Module, payloads: list[dict], where) -> None:
    """NTIRE's ``results.txt``: one row per evaluated set (mean RGB PSNR, mean runtime, the statistics of
    ``test_demo.py`` at a 256×256 LR, the set's peak memory)."""
    stats = ntire.ntire_statistics(model, device=where)
    rows = [
        ntire.NtireRow(
            f"{p['model']}_{p['variant'] or ''}x{p['scale']}_{p['dataset']}".replace("__", "_"),
            p["psnr_rgb"],
            statistics.fmean(r["runtime_ms"] for r in p["per_image"]),
            stats,
            max((r.get("peak_memory_mb", math.nan) for r in p["per_image"]), default=math.nan),
        )
        for p in payloads
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        f.write(ntire.results_table(rows).encode())


def _load(request: EvalRequest, path: Path) -> tuple[nn.Module, tuple[str, str | None, int, str], str]:
    """The model with the checkpoint loaded, its (model, variant, scale, form) and the content hash of the
    checkpoint's tensors. Without --model/--scale everything comes from the file's tensors; flags that are
    given must agree with what the file is."""
    if request.model is not None and request.scale is not None:
        spec = architectures.spec(request.model)
        variant = spec.default_variant if request.variant is None else request.variant
        form = request.form or "train"
        model = architectures.build(request.model, request.scale, variant, form=form)
        model = architectures.load_checkpoint(model, path, param_key=request.param_key)
        digest = content_hash(detect.read_weights(path, request.param_key).state_dict)
        return model, (request.model, variant, request.scale, form), digest
    model, found = architectures.load_detected(path, request.param_key, form=request.form)
    digest = found.content_hash
    for key, given in (("model", request.model), ("variant", request.variant), ("scale", request.scale),
                       ("form", request.form)):  # fmt: skip
        if given is not None and given != getattr(found, key):
            raise UserError(f"{path} is a {found} checkpoint, but --{key} {given} was given: drop the flag")
    form = request.form or architectures.spec(found.model).eval_form
    progress.stage(f"detected {found} ({found.flags}) in {path.name}; content hash {digest[:12]}")
    return model, (found.model, found.variant, found.scale, form), digest


def _load_sets(names: list[str], scale: int, root: Path | None) -> dict[str, tuple[list[Pair], str]]:
    """The pairs and checksum of every named set; one UserError naming every set that is missing."""
    sets, missing = {}, []
    for name in names:
        try:
            sets[name] = load_pairs(name, scale, root)
        except FileNotFoundError as exc:
            missing.append(f"{name} ({exc})")
    if missing:
        raise UserError(
            f"benchmark sets not found: {'; '.join(missing)} — nothing was evaluated; "
            "`reprosr data fetch NAME` or --data-root DIR"
        )
    return sets


def load_pairs(name: str, scale: int, root: Path | None) -> tuple[list[Pair], str]:
    """The pairs of a benchmark set (its layout detected under ``root``: registry, EDSR, BasicSR or NTIRE;
    one pair-checking rule for all) and its checksum."""
    folders = data.locate(name, scale, root)
    return list(folders.iter_pairs()), folders.checksum()


def upscale(
    checkpoint: str,
    lr_dir: Path,
    out: Path,
    *,
    param_key: str | None = None,
    device: str = "auto",
    tile: int = 0,
    tile_overlap: int | None = None,
    precision: str = "fp32",
) -> dict:
    """`reprosr upscale`: SR of every image of ``lr_dir`` (no ground truth) with the checkpoint's model,
    detected from its tensors, written as ``out/<image>.png``. Every image is read before the first SR, so a
    corrupt file is named before any work. Returns what was written."""
    request = EvalRequest(checkpoint, ("-",), param_key=param_key, device=device, tile=tile,
                          tile_overlap=tile_overlap, precision=precision, store=False)  # fmt: skip
    request.check("upscale")
    images = data.lr_images(Path(lr_dir))
    path = released.resolve(checkpoint)
    model, (model_name, variant, scale, form), digest = _load(request, path)
    test_time = _test_time(request, model)
    where = runtime.resolve_device(device)
    runtime.check_precision(test_time.precision, where)
    runner = runtime.cast_model(model.to(where).eval(), test_time.precision)
    written = []
    for image in progress.track(images, desc=f"upscale ×{scale}", unit="img"):
        sr = super_resolve(runner, image.lr.to(where), test_time)
        written.append(str(save_sr(Path(out), image.name, metrics.to_uint8(sr))))
    return {"model": model_name, "variant": variant or "", "scale": scale, "form": form,
            "checkpoint_hash": digest, **test_time.columns(), "written": written}  # fmt: skip
