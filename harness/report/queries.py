"""The site's inputs and its verdict views: loading the store (refusing a folder that is not one), verdicts
with their reference kind and confidence, the per paper × tier summary and the checkpoint-tier results.

Conventions: the "newest" run of a key is the one with the latest ``timestamp``, ``run_id`` breaking ties;
the newest verdict per check likewise. Smoke runs (a few CPU iterations: pipeline checks) never enter a
leaderboard, a plot or a runtime comparison (:mod:`.leaderboards`); :func:`.run_tables.diagnostics` lists
them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from harness import published, store
from harness.errors import UserError
from harness.schema import ReferenceKind, Status, Tier
from harness.verdicts import CHECK_KEYS

DATASET_ORDER = ("Set5", "Set14", "B100", "Urban100", "Manga109")  # the papers' table order; others after
PAPER_ORDER = ("span_light", "span_esr", "hspan", "drsan")
VERDICT_KEYS = ["paper", *CHECK_KEYS]  # one check per identity (harness.verdicts.CHECK_KEYS)


@dataclass(frozen=True)
class Inputs:
    """The committed inputs of one site build."""

    root: Path
    results: pd.DataFrame
    verdicts: pd.DataFrame
    published: pd.DataFrame


def load(root: Path, published_root: Path | None = None) -> Inputs:
    """The store at ``root`` and the published tables. A folder that is not a results store (missing, or
    without part files: a mistyped path) raises instead of giving an empty leaderboard."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no results store at {root}: the folder does not exist")
    if not any(root.glob("*/part-*.parquet")):
        raise UserError(
            f"{root} is not a results store: it holds no results/part-*.parquet or verdicts/part-*.parquet; "
            "check the path (the committed store is results/runs of the repository)"
        )
    results = store.read("results", root)
    _check_json_columns(results, root)
    return Inputs(
        root, results, normalize_verdicts(store.read("verdicts", root)), published.load(published_root)
    )


def part_of(root: Path, table: str, run_id: str) -> str:
    """The part file(s) of ``table`` holding ``run_id`` (for error messages)."""
    hits = []
    for part in sorted((Path(root) / table).glob("part-*.parquet")):
        ids = pq.read_table(part, columns=["run_id"]).column("run_id").to_pylist()
        if run_id in ids:
            hits.append(str(part))
    return ", ".join(hits) or f"{root}/{table}"


def _check_json_columns(results: pd.DataFrame, root: Path) -> None:
    for column in ("package_versions", "runtime_protocol"):
        for run_id, text in sorted(set(zip(results.run_id, results[column], strict=True))):
            try:
                value = json.loads(text) if text else {}
            except json.JSONDecodeError as exc:
                value = exc
            if not isinstance(value, dict):
                where = part_of(root, "results", run_id)
                raise UserError(f"{where}: run {run_id} has a {column} that is not a JSON object ({value})")


def normalize_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Verdicts with ``measure`` (what was measured, e.g. ``psnr_y``), ``kind`` (the reference kind) and
    ``confidence`` (v1 labels such as ``"psnr_y vs paper"`` are already translated by ``store.read``)."""
    out = verdicts.assign(measure=verdicts.metric, kind=verdicts.reference_kind)
    recorded = out.reference_confidence != ""
    referenced = (out.kind != "") & out.reference.notna()
    out["confidence"] = np.where(recorded, out.reference_confidence, np.where(referenced, "not recorded", ""))
    return out


def newest_run_rows(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows of ``df`` that belong to the newest run of each ``keys`` group."""
    if df.empty:
        return df
    runs = (
        df[[*keys, "run_id", "timestamp"]]
        .drop_duplicates()
        .sort_values(["timestamp", "run_id"], kind="stable")
    )
    newest = runs.groupby(keys, sort=False).tail(1)[[*keys, "run_id"]]
    return df.merge(newest, on=[*keys, "run_id"])


def latest_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The newest verdict per check (:data:`VERDICT_KEYS`), sorted by tier (static, checkpoint, retrain),
    then by that key."""
    if verdicts.empty:
        return verdicts
    v = verdicts.sort_values(["timestamp", "run_id"], kind="stable").groupby(VERDICT_KEYS, sort=False).tail(1)
    tiers = [*Tier]
    v = v.assign(_tier=[tiers.index(t) if t in tiers else len(tiers) for t in v.tier])
    return v.sort_values(["_tier", *VERDICT_KEYS], kind="stable").drop(columns="_tier").reset_index(drop=True)


def paper_order(paper: str) -> tuple:
    return (PAPER_ORDER.index(paper) if paper in PAPER_ORDER else len(PAPER_ORDER), paper)


def status_counts(statuses) -> dict[str, int]:
    """How many of each :class:`Status`, in the enum's order (zeros included)."""
    statuses = list(statuses)
    return {str(s): statuses.count(s) for s in Status}


def verdict_summary(verdicts: pd.DataFrame) -> list[dict]:
    """Per paper × tier: counts of the newest verdicts by status (every tier of every paper that appears)."""
    latest = latest_verdicts(verdicts)
    papers = sorted(set(latest.paper), key=paper_order)
    rows = []
    for paper in papers:
        for tier in Tier:
            statuses = latest[(latest.paper == paper) & (latest.tier == tier)].status
            rows.append(
                {"paper": paper, "tier": str(tier), "counts": status_counts(statuses), "total": len(statuses)}
            )
    return rows


def verdict_records(verdicts: pd.DataFrame) -> list[dict]:
    """Verdict rows as dicts for the templates, newest per check."""
    return latest_verdicts(verdicts).to_dict("records")


def checkpoint_results(verdicts: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """The checkpoint tier: (verdicts with a measured value, newest per check) and the not-run ones grouped by
    reason ({reason, recipes})."""
    latest = latest_verdicts(verdicts[verdicts.tier == Tier.CHECKPOINT])
    if latest.empty:
        return [], []
    measured = latest[latest.measured.notna()]
    measured = measured.assign(_d=[dataset_rank(d) for d in measured.dataset]).sort_values(
        ["paper", "model", "variant", "scale", "_d", "measure", "kind"], kind="stable"
    )
    not_run = latest[latest.measured.isna() & (latest.status == Status.NOT_RUN)]
    groups = [
        {"reason": reason, "recipes": sorted(set(g.recipe))}
        for reason, g in not_run.groupby("reason", sort=True)
    ]
    return measured.drop(columns="_d").to_dict("records"), groups


def dataset_rank(dataset: str) -> tuple:
    known = dataset in DATASET_ORDER
    return (not known, DATASET_ORDER.index(dataset) if known else 0, dataset)


JUDGED = (Status.PASS, Status.FAIL, Status.INDICATIVE)


def paper_accuracy(
    verdicts: pd.DataFrame, pub: pd.DataFrame, released: set[tuple[str, str, int]]
) -> list[dict]:
    """Per paper: how many accuracy numbers (PSNR/SSIM on a benchmark set) its sources publish (the paper, a
    challenge report; not the official code's own outputs), how many a
    checkpoint or retrain verdict has judged against that very number, how many reproduce (a pass), and why
    the rest were not checked: ``released`` holds the (model, variant, scale) with released weights."""
    numbers = pub[
        pub.metric.isin(["psnr", "ssim"]) & (pub.dataset != "") & (pub.kind != ReferenceKind.OFFICIAL_CODE)
    ]
    latest = latest_verdicts(verdicts)
    judged = latest[latest.tier.isin([Tier.CHECKPOINT, Tier.RETRAIN]) & latest.status.isin(JUDGED)]
    measured = latest[(latest.tier == Tier.CHECKPOINT) & latest.measured.notna()]
    evaluated = {
        (m, v, int(s)) for m, v, s in zip(measured.model, measured.variant, measured.scale, strict=True)
    }
    outcome: dict[tuple, set[str]] = {}
    for v in judged.itertuples():
        metric, _, color = v.metric.partition("_")
        key = (v.model, v.variant, int(v.scale), v.dataset, metric, color, v.reference_source)
        outcome.setdefault(key, set()).add(v.status)
    rows = []
    for paper in sorted(set(pub.paper) | set(verdicts.paper), key=paper_order):
        group = numbers[numbers.paper == paper]
        counts = {
            "checked": 0,
            "reproduce": 0,
            "set_missing": 0,
            "released_not_evaluated": 0,
            "no_weights": 0,
        }
        for n in group.itertuples():
            statuses = outcome.get((n.model, n.variant, int(n.scale), n.dataset, n.metric, n.color, n.source))
            if statuses:
                counts["checked"] += 1
                counts["reproduce"] += Status.PASS in statuses
            elif (n.model, n.variant, int(n.scale)) in evaluated:
                counts["set_missing"] += 1
            elif (n.model, n.variant, int(n.scale)) in released:
                counts["released_not_evaluated"] += 1
            else:
                counts["no_weights"] += 1
        rows.append({"paper": paper, "published": len(group), **counts})
    return rows
