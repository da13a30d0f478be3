"""The main job: one recipe end to end — static checks, training (or a given checkpoint), evaluation with the
paper's test-time procedure, verdicts — every measurement and verdict appended to the results store.

The run directory (default ``runs/<recipe>-<profile>``) keeps the training state of each seed
(``train-seed<k>/``, resumable), the SR outputs of every evaluated set (``sr/<dataset>/<image>.png``) and
``run.json``, which the report reads. ``seeds=N`` trains N runs with seeds ``train.seed … train.seed+N-1``,
each stored as its own run; the retrain verdicts aggregate every complete run in the store
(``harness.retrain``). Under torchrun every rank trains; rank 0 alone evaluates and writes the store, so a
multi-process run is one run.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import architectures
from architectures import detect
from architectures.reading import content_hash
from harness import data, progress, released, retrain, runtime, store
from harness.errors import UserError
from harness.evaluate import ALL_CONVENTIONS, EvalResult, TestTime, evaluate, result_rows
from harness.files import atomic_file
from harness.recipes import Recipe, load
from harness.rows import RunContext, result_row
from harness.schema import Profile, Tier
from harness.sr_outputs import write_manifest
from harness.training import ddp
from harness.training.loop import TrainSummary, train
from harness.verdicts import Verdict, verdict_row
from harness.verify import checkpoint_tier, static_verdicts

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
    runs: list[str] = field(default_factory=list)  # every run id this call stored (one per seed)

    def as_dict(self) -> dict:
        return {
            "recipe": self.recipe,
            "profile": self.profile,
            "run_id": self.run_id,
            "runs": self.runs,
            "out_dir": str(self.out_dir),
            "evaluations": self.evaluations,
            "notes": self.notes,
            "verdicts": [v.as_dict() for v in self.verdicts],
        }

    def summary(self) -> str:
        runs = f"runs {', '.join(self.runs)}" if len(self.runs) > 1 else f"run {self.run_id}"
        lines = [f"{self.recipe} — profile {self.profile}, {runs}, outputs in {self.out_dir}"]
        for dataset, means in self.evaluations.items():
            lines.append(f"  {dataset}: " + "  ".join(f"{k} {v:.4f}" for k, v in means.items()))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _evaluate_sets(recipe: Recipe, model, sets: dict[str, list], out_dir: Path) -> dict[str, EvalResult]:
    results = {}
    for name, pairs in sets.items():
        progress.stage(f"evaluating on {name} ({len(pairs)} images, {recipe.eval.inference} inference)")
        results[name] = evaluate(
            model,
            pairs,
            recipe.scale,
            test_time=TestTime(recipe.eval.inference),
            conventions=ALL_CONVENTIONS,
            save_dir=out_dir / "sr" / name,
            desc=f"{name} ×{recipe.scale}",
        )
    return results


def _available_benchmarks(recipe: Recipe, data_root: Path | None) -> tuple[dict[str, list], list[str]]:
    sets, missing = {}, []
    for name in recipe.eval.benchmarks:
        try:
            sets[name] = data.benchmark_pairs(name, recipe.scale, data_root)
        except FileNotFoundError:
            missing.append(name)
    return sets, missing


@dataclass
class Stage:
    """What the checkpoint or training stage of a run produced. ``retrain`` gives the retrain verdicts once
    this run's results are in the store (they aggregate over the stored runs)."""

    verdicts: list[Verdict]
    results: dict[str, EvalResult]
    curve: list[tuple[int, float]]
    profile: str
    tier: str
    checkpoint: str
    retrain: Callable[[list[dict]], list[Verdict]]
    columns: dict = field(default_factory=dict)  # results columns this stage sets (seed, run_state, …)
    checkpoint_hash: str = ""  # content hash of the evaluated tensors
    curves: str = ""


def _checkpoint_stage(recipe: Recipe, checkpoint: str, data_root: Path | None, out: Path) -> Stage:
    """Evaluate ``checkpoint`` (a path, a zoo name, or "official") on every benchmark set of the recipe.

    A zoo checkpoint is fetched and verified first; when that is impossible (offline, a manual download, a
    file that fails its pins) this is a UserError that says where to put a file fetched by other means:
    nothing is evaluated or stored. A checkpoint run trains nothing, so it has no retrain verdicts."""
    name = official_checkpoint(recipe, checkpoint)
    if released.lookup(name) is not None:
        fetch_release(name)
    verdicts, results = checkpoint_tier(recipe, name, data_root, out / "sr")
    digest = content_hash(detect.read_weights(released.resolve(name)).state_dict)
    return Stage(
        verdicts=verdicts, results=results, curve=[], profile="checkpoint", tier="checkpoint",
        checkpoint=released.label(name), retrain=lambda rows: [], checkpoint_hash=digest,
    )  # fmt: skip


def fetch_release(name: str) -> Path:
    """Release ``name`` fetched (or reused) and verified; a UserError in a few lines when that cannot be done
    here: what failed, where a copy fetched by other means goes, and that ``--checkpoint PATH`` takes any
    file. Resuming is advised only when a partial download exists."""
    entry, target = released.released(name), released.cached_path(name)
    files = ", ".join(f.name for f in entry.files if f.required)
    try:
        return released.fetch_released(name)
    except released.ManualDownloadRequired as exc:
        raise UserError(f"{name} needs a manual download: {exc}") from None
    except (OSError, ValueError) as exc:
        first = str(exc).split(" | ")[0].splitlines()[0]
        partial = any(target.parent.glob("*.part"))
        raise UserError(
            f"could not fetch {name}: {first[:160]}. Nothing was evaluated or stored. Put {files} fetched by "
            f"other means in {target.parent} (checked against the pins on the next run), or evaluate any "
            "file with --checkpoint PATH"
            + (
                f"; a partial download is in {target.parent}: run the command again to resume it"
                if partial
                else ""
            )
        ) from None


def official_checkpoint(recipe: Recipe, checkpoint: str) -> str:
    """The zoo name or path a checkpoint argument names; "official" without a release is a UserError."""
    if checkpoint != OFFICIAL:
        entry = released.lookup(checkpoint)
        return entry.name if entry is not None else checkpoint
    entry = released.lookup(model=recipe.model, variant=recipe.variant, scale=recipe.scale)
    if entry is None:
        raise UserError(
            f"no official checkpoint of {recipe.model} {recipe.variant or ''} ×{recipe.scale} is published "
            "(`reprosr checkpoints` lists the zoo); pass --checkpoint PATH"
        )
    return entry.name


def _training_stage(
    recipe: Recipe, summary: TrainSummary, data_root: Path | None, out: Path, notes: list[str]
) -> Stage:
    """Evaluate the kept weights of a finished training run (rank 0); the retrain verdicts follow."""
    profile = summary.profile
    weights = summary.best_checkpoint or summary.final_checkpoint
    model = architectures.load_checkpoint(
        architectures.build(recipe.model, recipe.scale, recipe.variant, form=recipe.form), weights
    )
    judged = profile == "full" and summary.run_state == "complete"
    if profile == "smoke":
        # Smoke weights are a few iterations old: benchmark scores would mean nothing, so only the
        # embedded images are evaluated (the stage still runs for real).
        sets = {"embedded": data.embedded_pairs(recipe.scale)}
        notes.append(
            f"smoke profile: {summary.iterations} training iterations on the embedded images — "
            f"the full run was not done; it needs a CUDA GPU and DIV2K "
            f"(`nox -s reproduce-{recipe.name} -- --profile full`)"
        )
        reason = (
            f"smoke profile ({summary.iterations} iterations on embedded images) cannot reproduce "
            f"the paper's accuracy; run `nox -s reproduce-{recipe.name} -- --profile full` on a GPU"
        )
    else:
        sets, missing = _available_benchmarks(recipe, data_root)
        if missing:
            notes.append(
                f"benchmark sets not found (not evaluated): {', '.join(missing)}; "
                f"`reprosr data fetch NAME` or --data-root DIR"
            )
        if not judged:
            notes.append(
                f"truncated run (seed {summary.seed}): {summary.iterations} of {summary.plan.scheduled} "
                "iterations (--max-iters); stored with run_state=truncated and not judged"
            )
    notes += [f"substitute (seed {summary.seed}): {s}" for s in summary.substitutes]
    results = _evaluate_sets(recipe, model, sets, out)

    def retrain_verdicts(rows: list[dict]) -> list[Verdict]:
        if profile == "smoke":
            return retrain.not_run(recipe, reason)
        verdicts = retrain.stored_verdicts(recipe, pending=rows)
        if not judged:
            for v in verdicts:
                v.reason = (
                    f"this run is truncated ({summary.iterations} of {summary.plan.scheduled} iterations) "
                    + (f"and not judged; {v.reason}")
                )
        return verdicts

    training_data = summary.training_data
    if summary.substitutes:
        training_data += "; substitutes: " + "; ".join(summary.substitutes)
    columns = {
        "seed": summary.seed,
        "run_state": summary.run_state,
        "precision": summary.plan.precision,
        "training_data": training_data,
        "dataset_checksum": summary.dataset_checksum,
    }
    stage = Stage(
        verdicts=[], results=results, curve=curve(summary.curves), profile=profile, tier="retrain",
        checkpoint=f"{weights.parent.name}/{weights.name}", retrain=retrain_verdicts, columns=columns,
        curves=str(summary.curves), checkpoint_hash=content_hash(model.state_dict()),
    )  # fmt: skip
    return stage


def reproduce(
    name: str,
    *,
    profile: str = "smoke",
    checkpoint: str | None = None,
    data_root: Path | None = None,
    out_dir: Path | None = None,
    max_iters: int | None = None,
    device: str = "auto",
    seeds: int = 1,
    allow_substitutes: bool = False,
    workers: int | None = None,
) -> Outcome | None:
    """Run recipe ``name``; ``profile`` "smoke" (CPU, embedded images) or "full" (the pinned recipe).

    ``seeds`` training runs (seeds ``train.seed + k``); ``max_iters`` (≥ 1) truncates them (stored as
    truncated, never judged); ``allow_substitutes`` permits disclosed substitutes for missing data.
    ``device`` ("auto": CUDA when present, the local rank's GPU under torchrun) is where training and every
    evaluation of the run happen. The static tier is measured once per call and stored with each run.
    Returns the outcome of the last run on rank 0, None on the other ranks.
    """
    recipe = load(name)
    resolved = runtime.resolve_device(device)
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, not {seeds}")
    if max_iters is not None and max_iters < 1:
        raise UserError(f"--max-iters must be a positive number of iterations, not {max_iters}")
    out = Path(out_dir) if out_dir else RUNS / f"{recipe.name}-{'checkpoint' if checkpoint else profile}"
    if ddp.is_main():
        store.check_writable()
    if checkpoint:
        with runtime.on_device(resolved):
            stage = _checkpoint_stage(recipe, checkpoint, data_root, out)  # a failed fetch stores nothing
            static = _static(recipe)
            return _store_run(recipe, static, stage, data_root, out, [])
    static = _static(recipe) if ddp.is_main() else None
    outcome, run_ids = None, []
    for k in range(seeds):
        seed = recipe.train.seed + k
        progress.stage(f"training ({profile} profile, seed {seed}) on {runtime.device_label(resolved)}")
        summary = train(
            recipe,
            out_dir=out / f"train-seed{seed}",
            profile=profile,
            max_iters=max_iters,
            data_root=data_root,
            seed=seed,
            allow_substitutes=allow_substitutes,
            workers=workers,
            device=None if device == "auto" else resolved,
        )
        if not ddp.is_main():
            continue
        notes = []
        with runtime.on_device(resolved):
            stage = _training_stage(recipe, summary, data_root, out, notes)
            outcome = _store_run(recipe, static, stage, data_root, out, notes)
        run_ids.append(outcome.run_id)
    if outcome is not None:
        outcome.runs = run_ids
    return outcome


def _static(recipe: Recipe) -> tuple[list[Verdict], list[dict]]:
    progress.stage(f"{recipe.name}: static checks (parameter counts, MACs)")
    return static_verdicts(recipe)


def _store_run(
    recipe: Recipe,
    static: tuple[list[Verdict], list[dict]],
    stage: Stage,
    data_root: Path | None,
    out: Path,
    notes: list[str],
) -> Outcome:
    """The static verdicts, this run's results and the retrain verdicts (over the store and this run), stored
    together: both tables are validated before either is written."""
    ctx = RunContext.new(
        profile=Profile(stage.profile), tier=Tier.STATIC, paper=recipe.paper, model=recipe.model,
        variant=recipe.variant or "", form=recipe.form, scale=recipe.scale, recipe=recipe.name,
        recipe_hash=recipe.hash, seed=stage.columns.get("seed", recipe.train.seed),
        run_state=stage.columns.get("run_state", ""), training_data=stage.columns.get("training_data", ""),
        precision=stage.columns.get("precision", "fp32"),
    )  # fmt: skip
    static_verdicts_, measured = static
    rows = [
        result_row(
            ctx.but(form=m["form"]), m["metric"], m["value"], convention=m["convention"], unit=m["unit"]
        )
        for m in measured
    ]
    run = ctx.but(tier=Tier(stage.tier), checkpoint=stage.checkpoint, checkpoint_hash=stage.checkpoint_hash)
    rows += [
        result_row(
            run, "train_loss", loss, step=step, dataset_checksum=stage.columns.get("dataset_checksum", "")
        )
        for step, loss in stage.curve
    ]
    for dataset, result in stage.results.items():
        checksum = "" if dataset == "embedded" else data.dataset_checksum(dataset, data_root)
        rows += result_rows(result, run, dataset=dataset, dataset_checksum=checksum)
    progress.stage("verdicts and results store")
    verdicts = static_verdicts_ + stage.verdicts + stage.retrain(rows)  # retrain: over the store and this run
    context = {"run_id": ctx.run_id, "timestamp": ctx.timestamp, "recipe": recipe.name, "paper": recipe.paper}
    verdict_rows = [verdict_row(v, profile=stage.profile, **context) for v in verdicts]
    store.validate(rows)
    store.validate(verdict_rows, table="verdicts")
    store.append(rows)
    store.append(verdict_rows, table="verdicts")
    means = {k: r.mean for k, r in stage.results.items()}
    outcome = Outcome(recipe.name, stage.profile, ctx.run_id, out, verdicts, means, notes, [ctx.run_id])
    out.mkdir(parents=True, exist_ok=True)
    for dataset, result in stage.results.items():  # the SR images' hashes and run id, which publish checks
        write_manifest(out / "sr", dataset, result, {"run_id": ctx.run_id, "recipe": recipe.name})
    with atomic_file(out / "run.json") as f:
        f.write(
            json.dumps(
                {
                    **outcome.as_dict(),
                    "out_dir": str(out.resolve()),
                    "data_root": str(Path(data_root).resolve()) if data_root else "",
                    "sr_dirs": {k: str((out / "sr" / k).resolve()) for k in stage.results},
                    "curves": stage.curves,
                },
                indent=2,
                default=str,
            ).encode()
        )
    return outcome


def curve(curves: Path) -> list[tuple[int, float]]:
    """The training curve as (iteration, L1 loss) per logged iteration."""
    if not curves.exists():
        return []
    with curves.open() as f:
        return [(int(r["iteration"]), float(r["loss"])) for r in csv.DictReader(f) if r["loss"]]
