"""The main job: one recipe end to end — static checks, training (or a given checkpoint), evaluation with the
paper's test-time procedure, verdicts — every measurement and verdict appended to the results store.

The run directory (default ``runs/<recipe>-<profile>``) keeps the training state (resumable), the SR
outputs of every evaluated set (``sr/<dataset>/<image>.png``) and ``run.json``, which the report reads.
"""

from __future__ import annotations

import csv
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import architectures
from harness import data, progress, published, released, runtime, store
from harness.evaluate import ALL_CONVENTIONS, EvalResult, evaluate, result_rows
from harness.recipes import load
from harness.schema import Tier
from harness.train import train
from harness.verdicts import Subject, Verdict, judge, verdict_row
from harness.verify import CHECKPOINT_TOL, QUALITY, checkpoint_tier, retrain_verdicts, static_verdicts

RUNS = Path("runs")
OFFICIAL = "official"  # --checkpoint official: the zoo's release of the recipe's model, variant and scale


@dataclass
class Outcome:
    recipe: str
    profile: str
    run_id: str
    out_dir: Path
    verdicts: list[Verdict]
    evaluations: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "recipe": self.recipe,
            "profile": self.profile,
            "run_id": self.run_id,
            "out_dir": str(self.out_dir),
            "evaluations": self.evaluations,
            "notes": self.notes,
            "verdicts": [v.as_dict() for v in self.verdicts],
        }

    def summary(self) -> str:
        lines = [f"{self.recipe} — profile {self.profile}, run {self.run_id}, outputs in {self.out_dir}"]
        for dataset, means in self.evaluations.items():
            lines.append(f"  {dataset}: " + "  ".join(f"{k} {v:.4f}" for k, v in means.items()))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _evaluate_sets(recipe, model, sets: dict[str, list], out_dir: Path) -> dict[str, EvalResult]:
    results = {}
    for name, pairs in sets.items():
        progress.stage(f"evaluating on {name} ({len(pairs)} images, {recipe['eval.inference']} inference)")
        results[name] = evaluate(
            model,
            pairs,
            recipe.scale,
            inference=recipe["eval.inference"],
            conventions=ALL_CONVENTIONS,
            save_dir=out_dir / "sr" / name,
            desc=f"{name} ×{recipe.scale}",
        )
    return results


def _available_benchmarks(recipe, data_root: Path | None) -> tuple[dict[str, list], list[str]]:
    sets, missing = {}, []
    for name in recipe["eval.benchmarks"]:
        try:
            sets[name] = data.benchmark_pairs(name, recipe.scale, data_root)
        except FileNotFoundError:
            missing.append(name)
    return sets, missing


@dataclass
class Stage:
    """What the checkpoint or training stage of a run produced."""

    verdicts: list[Verdict]
    results: dict[str, EvalResult]
    rows: list[dict]
    profile: str
    tier: str
    checkpoint: str


def _checkpoint_stage(recipe, checkpoint: str, data_root: Path | None, out: Path) -> Stage:
    """Evaluate ``checkpoint`` (a path, a zoo name, or "official") on every benchmark set of the recipe.

    A zoo checkpoint is fetched and verified first; when that is impossible (offline, a manual download,
    a file that fails its pins) every cell of the tier is "not run" with the reason and what to do."""
    name, reason = official_checkpoint(recipe, checkpoint)
    if not reason and name in released.RELEASED:
        try:
            released.fetch_released(name)
        except released.ManualDownloadRequired as exc:
            reason = f"{name} needs a manual download: {exc}"
        except (OSError, ValueError) as exc:
            reason = (
                f"{name} could not be fetched here: {exc} — on a machine with internet run "
                f"`reprosr reproduce {recipe.name} --checkpoint {checkpoint}`"
            )
    if reason:
        verdicts = unreachable_verdicts(recipe, reason)
        results: dict[str, EvalResult] = {}
    else:
        verdicts, results = checkpoint_tier(recipe, name, data_root, out / "sr")
    verdicts += retrain_verdicts(recipe, None, "a checkpoint was evaluated instead of training")
    known = released.identify(name) if name and name not in released.RELEASED else None
    label = f"{known.name} = {name}" if known else name  # a release under another name is reported as such
    return Stage(verdicts, results, [], "checkpoint", "checkpoint", label)


def official_checkpoint(recipe, checkpoint: str) -> tuple[str, str]:
    """(zoo name or path, "") for a checkpoint argument; ("", reason) when "official" has no release."""
    if checkpoint != OFFICIAL:
        return (released.released(checkpoint).name if checkpoint in released.RELEASED else checkpoint), ""
    entry = released.for_recipe(recipe.model, recipe.variant, recipe.scale)
    if entry is None:
        return "", (
            f"no official checkpoint of {recipe.model} {recipe.variant or ''} ×{recipe.scale} is published "
            "(`reprosr checkpoints` lists the zoo); pass --checkpoint PATH"
        )
    return entry.name, ""


def unreachable_verdicts(recipe, reason: str) -> list[Verdict]:
    """A "not run" verdict for every PSNR/SSIM cell of the recipe's benchmark sets, with ``reason``."""
    verdicts = []
    for dataset in recipe["eval.benchmarks"]:
        subject = Subject(
            Tier.CHECKPOINT, recipe.model, recipe.variant or "", recipe.scale, recipe.form, dataset
        )
        for metric in QUALITY:
            reference = published.lookup(recipe.model, recipe.variant, recipe.scale, dataset, metric)
            verdicts.append(judge(subject, metric, None, reference, CHECKPOINT_TOL[metric], not_run=reason))
    return verdicts


def _training_stage(
    recipe,
    profile: str,
    data_root: Path | None,
    out: Path,
    max_iters: int | None,
    base: dict,
    notes: list[str],
) -> Stage:
    """Train (resuming ``out/train`` if present), evaluate the kept weights, judge the retrain tier."""
    device = runtime.current_device()
    progress.stage(f"training ({profile} profile) on {runtime.device_label(device)}")
    summary = train(
        recipe,
        out_dir=out / "train",
        profile=profile,
        max_iters=max_iters,
        data_root=data_root,
        device=device,
    )
    weights = summary.best_checkpoint or summary.final_checkpoint
    model = architectures.load_checkpoint(
        architectures.build(recipe.model, recipe.scale, recipe.variant, form=recipe.form), weights
    )
    if profile == "smoke":
        # Smoke weights are a few iterations old: benchmark scores would mean nothing, so only the
        # embedded images are evaluated (the stage still runs for real).
        sets = {"embedded": data.embedded_pairs(recipe.scale)}
        notes.append(
            f"smoke profile: {summary.iterations} training iterations on the embedded images — "
            f"the full run was not done; it needs a CUDA GPU and DIV2K "
            f"(`nox -s reproduce-{recipe.name} -- --profile full`)"
        )
    else:
        sets, missing = _available_benchmarks(recipe, data_root)
        if missing:
            notes.append(
                f"benchmark sets not found (not evaluated): {', '.join(missing)}; "
                f"`reprosr data fetch NAME` or --data-root DIR"
            )
    results = _evaluate_sets(recipe, model, sets, out)
    if profile == "smoke":
        reason = (
            f"smoke profile ({summary.iterations} iterations on embedded images) cannot reproduce "
            f"the paper's accuracy; run `nox -s reproduce-{recipe.name} -- --profile full` on a GPU"
        )
        verdicts = retrain_verdicts(recipe, None, reason)
    else:
        verdicts = retrain_verdicts(recipe, {k: r.mean for k, r in results.items()})
    verdicts += checkpoint_tier(recipe, None, data_root)[0]
    curve = _curve_rows(
        summary.curves,
        {**base, "profile": profile, "tier": "retrain", "dataset_checksum": summary.dataset_checksum},
    )
    return Stage(verdicts, results, curve, profile, "retrain", str(weights))


def reproduce(
    name: str,
    *,
    profile: str = "smoke",
    checkpoint: str | None = None,
    data_root: Path | None = None,
    out_dir: Path | None = None,
    max_iters: int | None = None,
    device: str = "auto",
) -> Outcome:
    """Run recipe ``name``; ``profile`` "smoke" (CPU, embedded images) or "full" (the pinned recipe).
    ``device`` ("auto": CUDA when present) is where training and every evaluation of the run happen."""
    recipe = load(name)
    device = runtime.resolve_device(device)
    run_id = uuid.uuid4().hex[:12]
    out = Path(out_dir) if out_dir else RUNS / f"{recipe.name}-{'checkpoint' if checkpoint else profile}"
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    base = {
        **store.provenance(),
        "run_id": run_id,
        "recipe": recipe.name,
        "recipe_hash": recipe.hash,
        "paper": recipe.paper,
        "model": recipe.model,
        "variant": recipe.variant or "",
        "form": recipe.form,
        "scale": recipe.scale,
        "tile": 0,
        "tile_overlap": 0,
        "self_ensemble": False,
        "precision": "fp32",
        "runtime_protocol": "",
        "degradation": "matlab_bicubic",
        "training_data": "",
        "run_state": "",
        "seed": recipe["train.seed"],
        "step": -1,
    }

    progress.stage(f"{recipe.name}: static checks (parameter counts, MACs)")
    verdicts, static_rows = static_verdicts(recipe)
    rows = [
        {
            **base,
            "profile": profile if not checkpoint else "checkpoint",
            "tier": "static",
            "dataset": "",
            "image": "",
            "color": "",
            "shave": 0,
            "inference": "",
            "checkpoint": "",
            "dataset_checksum": "",
            **r,
        }
        for r in static_rows
    ]

    with runtime.on_device(device):
        stage = (
            _checkpoint_stage(recipe, checkpoint, data_root, out)
            if checkpoint
            else _training_stage(recipe, profile, data_root, out, max_iters, base, notes)
        )
    progress.stage("verdicts and results store")
    verdicts += stage.verdicts
    rows += stage.rows
    for dataset, result in stage.results.items():
        checksum = "" if dataset == "embedded" else data.dataset_checksum(dataset, data_root)
        rows += result_rows(
            result,
            {
                **base,
                "profile": stage.profile,
                "tier": stage.tier,
                "dataset": dataset,
                "inference": recipe["eval.inference"],
                "checkpoint": stage.checkpoint,
                "dataset_checksum": checksum,
            },
        )
    context = {k: base[k] for k in ("run_id", "timestamp", "recipe", "paper")}
    verdict_rows = [verdict_row(v, profile=stage.profile, **context) for v in verdicts]
    # Both tables are validated before either is written, so a bad row leaves no half-stored run.
    store.validate(rows)
    store.validate(verdict_rows, table="verdicts")
    store.append(rows)
    store.append(verdict_rows, table="verdicts")
    means = {k: r.mean for k, r in stage.results.items()}
    outcome = Outcome(recipe.name, stage.profile, run_id, out, verdicts, means, notes)
    (out / "run.json").write_text(
        json.dumps(
            {
                **outcome.as_dict(),
                "data_root": str(data_root or ""),
                "sr_dirs": {k: str(out / "sr" / k) for k in stage.results},
                "curves": str(out / "train" / "curves.csv") if not checkpoint else "",
            },
            indent=2,
            default=str,
        )
    )
    return outcome


def _curve_rows(curves: Path, base: dict) -> list[dict]:
    """The training curve (loss per logged iteration) as results rows, metric ``train_loss``."""
    if not curves.exists():
        return []
    with curves.open() as f:
        return [
            {
                **base,
                "dataset": "",
                "image": "",
                "metric": "train_loss",
                "value": float(r["loss"]),
                "unit": "",
                "convention": "L1 training loss",
                "color": "",
                "shave": 0,
                "inference": "",
                "checkpoint": "",
                "step": int(r["iteration"]),
            }
            for r in csv.DictReader(f)
            if r["loss"]
        ]
