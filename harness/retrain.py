"""The retrain tier: a recipe's training runs judged against the paper as a distribution, not one draw.

Only runs that count are used: profile ``full``, ``run_state`` complete (the recipe's whole schedule), the
recipe's current hash, and one code version (the git commit holding the most distinct seeds; the newest on
a tie); per seed the newest run. With at least :data:`MIN_SEEDS` seeds each benchmark set and metric gets
the mean, the sample standard deviation and a Student-t 95 % confidence interval of the mean, and the mean
is judged against the paper within the tier's tolerance. Fewer seeds give "not run: k of 3 seeds", with the
figures of the runs there are shown as such.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from scipy import stats as scipy_stats

from harness import published, store
from harness.recipes import Recipe
from harness.schema import Profile, RunState, Tier
from harness.verdicts import Subject, Verdict, judge

MIN_SEEDS = 3
CONFIDENCE = 0.95
METRICS = ("psnr_y", "ssim_y")
PSNR_TOL = {"Set5": 0.1, "Set14": 0.1, "B100": 0.1, "Urban100": 0.2, "Manga109": 0.2}
SSIM_TOL = 0.002  # ReproSR's choice: the papers state no SSIM tolerance for retraining


def tolerance(dataset: str, metric: str) -> float:
    return PSNR_TOL.get(dataset, 0.1) if metric == "psnr_y" else SSIM_TOL


@dataclass(frozen=True)
class Stats:
    """Mean, sample standard deviation and the Student-t interval of the mean (NaN where n is too small)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarize(values: list[float], confidence: float = CONFIDENCE) -> Stats:
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Stats(n, mean, math.nan, math.nan, math.nan)
    std = statistics.stdev(values)
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Run:
    """One stored training run's set means: ``means[(dataset, metric)]``."""

    run_id: str
    seed: int
    git_commit: str
    timestamp: str
    means: dict[tuple[str, str], float]


@dataclass(frozen=True)
class Selection:
    """The runs a verdict stands on, and why the others were left out."""

    runs: list[Run]
    excluded: str  # "" when nothing was left out

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]


def select_runs(recipe: Recipe, results: pd.DataFrame) -> Selection:
    """The complete full runs of ``recipe`` at its current hash, one code version, one run per seed."""
    rows = results[
        (results.recipe == recipe.name)
        & (results.tier == Tier.RETRAIN)
        & (results.image == "")
        & (results.dataset != "")
        & results.metric.isin(METRICS)
    ]
    full = rows[rows.profile == Profile.FULL]
    other_hash = full[full.recipe_hash != recipe.hash].run_id.nunique()
    current = full[full.recipe_hash == recipe.hash]
    truncated = current[current.run_state != RunState.COMPLETE].run_id.nunique()
    complete = current[current.run_state == RunState.COMPLETE]
    runs = [
        Run(
            str(run_id),
            int(g.seed.iloc[0]),
            str(g.git_commit.iloc[0]),
            str(g.timestamp.max()),
            {(d, m): float(v) for d, m, v in zip(g.dataset, g.metric, g.value, strict=True)},
        )
        for run_id, g in complete.groupby("run_id", sort=False)
    ]
    by_commit: dict[str, dict[int, Run]] = {}
    for run in sorted(runs, key=lambda r: r.timestamp):
        by_commit.setdefault(run.git_commit, {})[run.seed] = run  # the newest run per seed wins
    chosen = max(
        by_commit.values(), key=lambda per_seed: (len(per_seed), max(r.timestamp for r in per_seed.values())),
        default={},
    )  # fmt: skip
    other_code = len(runs) - len(chosen)
    left_out = [
        f"{n} {what}"
        for n, what in (
            (truncated, "truncated or unfinished run(s)"),
            (other_hash, "run(s) of another version of the recipe (hash)"),
            (other_code, "run(s) of other code versions or repeated seeds"),
        )
        if n
    ]
    if rows.run_id.nunique() > full.run_id.nunique():
        left_out.append(f"{rows.run_id.nunique() - full.run_id.nunique()} smoke run(s)")
    return Selection(sorted(chosen.values(), key=lambda r: r.seed), "; ".join(left_out))


def _subject(recipe: Recipe, dataset: str) -> Subject:
    return Subject(Tier.RETRAIN, recipe.model, recipe.variant or "", recipe.scale, recipe.form, dataset)


def _reference(recipe: Recipe, dataset: str, metric: str):
    return published.lookup(recipe.model, recipe.variant, recipe.scale, dataset, metric)


def not_run(recipe: Recipe, reason: str) -> list[Verdict]:
    """ "not run" for every benchmark set and metric of the recipe, with ``reason``."""
    return [
        judge(_subject(recipe, d), m, None, _reference(recipe, d, m), tolerance(d, m), not_run=reason)
        for d in recipe.eval.benchmarks
        for m in METRICS
    ]


def _selection_note(recipe: Recipe, dataset: str) -> str:
    if recipe.train.keep == "best" and dataset == recipe.eval.val_set:
        return (
            f"; the kept checkpoint was selected on {dataset} (eval.val_set), which is also this judged set: "
            "the figure is optimistic"
        )
    return ""


def verdicts(recipe: Recipe, selection: Selection, how_to: str = "") -> list[Verdict]:
    """Retrain verdicts of ``recipe`` from ``selection`` (see the module docstring)."""
    how_to = (
        how_to or f"`reprosr reproduce {recipe.name} --profile full --seeds {MIN_SEEDS}` on a GPU with DIV2K"
    )
    if not selection.runs:
        left = f" (left out: {selection.excluded})" if selection.excluded else ""
        seen = "no complete full run of this recipe is" if selection.excluded else "no training run is"
        return not_run(recipe, f"0 of {MIN_SEEDS} seeds: {seen} in the results store{left}; {how_to}")
    out = []
    for dataset in recipe.eval.benchmarks:
        for metric in METRICS:
            values = [r.means[(dataset, metric)] for r in selection.runs if (dataset, metric) in r.means]
            subject, tol = _subject(recipe, dataset), tolerance(dataset, metric)
            pub = _reference(recipe, dataset, metric)
            if not values:
                reason = f"no evaluation on {dataset} in the selected runs (dataset absent during the runs)"
                out.append(judge(subject, metric, None, pub, tol, not_run=reason))
                continue
            s = summarize(values)
            seeds = ", ".join(str(r.seed) for r in selection.runs if (dataset, metric) in r.means)
            spread = "" if s.n < 2 else f", std {s.std:.4g}, 95 % CI [{s.ci_low:.4f}, {s.ci_high:.4f}]"
            figures = f"mean of {s.n} seed(s) ({seeds}) {s.mean:.4f}{spread}"
            if s.n < MIN_SEEDS:
                why = f"{s.n} of {MIN_SEEDS} seeds; figures of the runs there are, not judged: {figures}"
                why += f"; {how_to}"
                v = judge(subject, metric, s.mean, pub, tol, not_run=why)
            else:
                v = judge(subject, metric, s.mean, pub, tol)
                v.reason = f"{figures}; {v.reason}"
            if selection.excluded:
                v.reason += f" (left out: {selection.excluded})"
            v.reason += _selection_note(recipe, dataset)
            out.append(replace(v, n_runs=s.n, std=s.std, ci_low=s.ci_low, ci_high=s.ci_high))
    return out


def stored_verdicts(recipe: Recipe, root: Path | None = None, pending: list[dict] = ()) -> list[Verdict]:
    """Retrain verdicts of ``recipe`` from the results store (``root``: the default store) and ``pending``
    results rows not yet written."""
    results = store.read("results", root)
    if pending:
        results = pd.concat([results, pd.DataFrame(list(pending))], ignore_index=True)
    return verdicts(recipe, select_runs(recipe, results))
