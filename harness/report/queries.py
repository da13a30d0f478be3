"""Store → tables: everything the pages show, computed from the store's rows and the published tables.

Conventions: the "newest" run of a key is the one with the latest ``timestamp``, ``run_id`` breaking ties;
the newest verdict per check likewise. Smoke runs (a few CPU iterations: pipeline checks) never enter a
leaderboard, a plot or a runtime comparison; :func:`diagnostics` lists them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from harness import published, store
from harness.report import fingerprint
from harness.schema import Profile, ReferenceKind, Status, Tier

DATASET_ORDER = ("Set5", "Set14", "B100", "Urban100", "Manga109")  # the papers' table order; others after
PAPER_ORDER = ("span_light", "span_esr", "hspan", "drsan")
QUALITY = {"psnr": "psnr", "ssim": "ssim", "psnr_y": "psnr", "ssim_y": "ssim", "psnr_rgb": "psnr"}
PUBLISHED_COLOR = {"psnr_rgb": "rgb"}  # published metrics whose name states the colour space
# v1 verdict labels carried the reference kind in the metric text ("psnr_y vs paper").
_V1_KIND_SUFFIX = {" vs official code": ReferenceKind.OFFICIAL_CODE, " vs paper": ReferenceKind.PAPER}
VERDICT_KEYS = ["tier", "paper", "model", "variant", "form", "scale", "dataset", "metric"]


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
        raise ValueError(
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
                raise ValueError(f"{where}: run {run_id} has a {column} that is not a JSON object ({value})")


def normalize_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Verdicts with ``measure`` (what was measured, e.g. ``psnr_y``), ``kind`` (the reference kind) and
    ``confidence``; labels that carry the kind (v1: ``"psnr_y vs paper"``) are read through
    :data:`_V1_KIND_SUFFIX`."""
    measures, kinds = [], []
    for metric, kind in zip(verdicts.metric, verdicts.reference_kind, strict=True):
        suffix = next((s for s in _V1_KIND_SUFFIX if metric.endswith(s)), None)
        measures.append(metric[: -len(suffix)] if suffix else metric)
        kinds.append(kind or (str(_V1_KIND_SUFFIX[suffix]) if suffix else ""))
    out = verdicts.assign(measure=measures, kind=kinds)
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


def _paper_order(paper: str) -> tuple:
    return (PAPER_ORDER.index(paper) if paper in PAPER_ORDER else len(PAPER_ORDER), paper)


def status_counts(statuses) -> dict[str, int]:
    """How many of each :class:`Status`, in the enum's order (zeros included)."""
    statuses = list(statuses)
    return {str(s): statuses.count(s) for s in Status}


def verdict_summary(verdicts: pd.DataFrame) -> list[dict]:
    """Per paper × tier: counts of the newest verdicts by status (every tier of every paper that appears)."""
    latest = latest_verdicts(verdicts)
    papers = sorted(set(latest.paper), key=_paper_order)
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
    measured = measured.assign(_d=[_dataset_rank(d) for d in measured.dataset]).sort_values(
        ["paper", "model", "variant", "scale", "_d", "measure", "kind"], kind="stable"
    )
    not_run = latest[latest.measured.isna() & (latest.status == Status.NOT_RUN)]
    groups = [
        {"reason": reason, "recipes": sorted(set(g.recipe))}
        for reason, g in not_run.groupby("reason", sort=True)
    ]
    return measured.drop(columns="_d").to_dict("records"), groups


def _dataset_rank(dataset: str) -> tuple:
    known = dataset in DATASET_ORDER
    return (not known, DATASET_ORDER.index(dataset) if known else 0, dataset)


# ------------------------------------------------------------------------------------ model-level values


@dataclass(frozen=True)
class Complexity:
    """Params (M) and MACs (G) of one model/variant/scale, with their conventions and where they come from."""

    params: float
    params_note: str
    macs: float
    macs_convention: str
    source: str  # "measured" or "paper"


NO_COMPLEXITY = Complexity(math.nan, "", math.nan, "", "")


def measured_complexity(results: pd.DataFrame, pub: pd.DataFrame) -> dict[tuple[str, str, int], Complexity]:
    """Newest static params/MACs per (model, variant, scale): params of the deploy form when there is one;
    MACs under the input size of the published MACs/FLOPs when the tables hold one, else the first stored."""
    static = results[(results.tier == Tier.STATIC) & results.metric.isin(["params", "macs"])]
    static = newest_run_rows(static, ["model", "variant", "scale"])
    pub_rule = {k: c.macs_convention for k, c in published_complexity(pub).items()}
    out = {}
    for (model, variant, scale), rows in static.groupby(["model", "variant", "scale"], sort=True):
        key = (model, variant, int(scale))
        params = rows[rows.metric == "params"].sort_values("convention", kind="stable")
        deploy = params[params.convention.str.startswith("deploy")]
        pick = deploy if not deploy.empty else params
        macs = rows[rows.metric == "macs"].sort_values("convention", kind="stable")
        rule = pub_rule.get(key, "").split(",")[0]
        preferred = macs[macs.convention.str.startswith(rule)] if rule else macs
        macs = preferred if not preferred.empty else macs
        out[key] = Complexity(
            pick.value.iloc[0] / 1e6 if not pick.empty else math.nan,
            pick.convention.iloc[0] if not pick.empty else "",
            macs.value.iloc[0] if not macs.empty else math.nan,
            macs.convention.iloc[0] if not macs.empty else "",
            "measured",
        )
    return out


def published_complexity(pub: pd.DataFrame) -> dict[tuple[str, str, int], Complexity]:
    """Published params (M) and Multi-Adds/FLOPs (G) per (model, variant, scale)."""
    out = {}
    level = pub[pub.dataset == ""]
    for (model, variant, scale), rows in level.groupby(["model", "variant", "scale"], sort=True):
        params = rows[rows.metric == "params"]
        macs = rows[rows.metric.isin(["multi_adds", "flops"])].sort_values("metric", kind="stable")
        rule = ""
        if not macs.empty:
            size = "ntire256" if "256x256" in macs.convention.iloc[0] else "hr720p"
            rule = f"{size}, {macs.metric.iloc[0]} as published"
        out[(model, variant, int(scale))] = Complexity(
            params.value.iloc[0] if not params.empty else math.nan,
            params.convention.iloc[0] if not params.empty else "",
            macs.value.iloc[0] if not macs.empty else math.nan,
            rule,
            "paper",
        )
    return out


def complexity_of(measured: dict, pub_cx: dict, key: tuple[str, str, int]) -> Complexity:
    """Measured params/MACs of ``key``, each falling back to the published value when not measured."""
    m, p = measured.get(key, NO_COMPLEXITY), pub_cx.get(key, NO_COMPLEXITY)
    params, note = (m.params, m.params_note) if not math.isnan(m.params) else (p.params, p.params_note)
    macs, rule = (m.macs, m.macs_convention) if not math.isnan(m.macs) else (p.macs, p.macs_convention)
    source = "measured" if not math.isnan(m.params) or not math.isnan(m.macs) else p.source
    return Complexity(params, note, macs, rule, source)


# ------------------------------------------------------------------------------------------ leaderboards


def _group_letters(entries: list[dict]) -> list[dict]:
    """Fingerprint groups of a board: letters A, B, … in order of first appearance; ranks (by PSNR, higher
    first) within each group only."""
    groups: dict[tuple, dict] = {}
    for e in entries:
        fp = e["fingerprint"]
        group = groups.setdefault(
            fp.key(), {"letter": chr(ord("A") + len(groups)), "fingerprint": fp, "n": 0}
        )
        group["n"] += 1
        e["group"] = group["letter"]
    for group in groups.values():
        members = [e for e in entries if e["group"] == group["letter"] and _finite(e["psnr"])]
        for rank, e in enumerate(sorted(members, key=lambda e: -e["psnr"]), start=1):
            e["rank"] = rank
        group["members"] = len(members)
    return list(groups.values())


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def leaderboards(inputs: Inputs) -> list[dict]:
    """One leaderboard per (scale, dataset): an entry per published number (paper or challenge report) and
    per reproduced number (newest non-smoke run per model, variant, tier, inference, checkpoint), each with
    its fingerprint, fingerprint group and rank within that group, and a reproduced entry's verdicts."""
    results, verdicts, pub = inputs.results, inputs.verdicts, inputs.published
    measured, pub_cx = measured_complexity(results, pub), published_complexity(pub)
    boards: dict[tuple[int, str], list[dict]] = {}

    def base(model: str, variant: str, scale: int) -> dict:
        cx = complexity_of(measured, pub_cx, (model, variant, scale))
        return {"model": model, "variant": variant, "scale": scale, "complexity": cx}

    quality = pub[pub.metric.isin(list(QUALITY)) & (pub.dataset != "")]
    keys = ["model", "variant", "scale", "dataset", "convention", "source", "confidence", "paper"]
    for key_values, rows in quality.groupby(keys, sort=True):
        key = dict(zip(keys, key_values, strict=True))
        scale = int(key["scale"])
        values = {QUALITY[m]: v for m, v in zip(rows.metric, rows.value, strict=True)}
        fp = fingerprint.published(key["convention"], scale)
        color = next((PUBLISHED_COLOR[m] for m in rows.metric if m in PUBLISHED_COLOR), "")
        if color:
            fp = fingerprint.Fingerprint(**{**fp.__dict__, "color": fingerprint.COLORS[color]})
        entry = base(key["model"], key["variant"], scale) | {
            "paper": key["paper"],
            "origin": "published",
            "kind": str(_published_kind(key["source"])),
            "confidence": key["confidence"],
            "citation": key["source"],
            "convention": key["convention"],
            "psnr": values.get("psnr", math.nan),
            "ssim": values.get("ssim", math.nan),
            "fingerprint": fp,
            "recipe": "",
            "run_id": "",
            "tier": "",
            "verdicts": [],
        }
        boards.setdefault((scale, key["dataset"]), []).append(entry)

    scored = (
        results.tier.isin([Tier.CHECKPOINT, Tier.RETRAIN])
        & results.metric.isin(["psnr_y", "ssim_y"])
        & (results.profile != Profile.SMOKE)
        & (results.image == "")
        & (results.dataset != "")
    )
    run_keys = ["model", "variant", "scale", "dataset", "tier", "inference", "checkpoint", "self_ensemble"]
    means = newest_run_rows(results[scored], run_keys)
    for key_values, rows in means.groupby([*run_keys, "run_id"], sort=True):
        key = dict(zip([*run_keys, "run_id"], key_values, strict=True))
        scale = int(key["scale"])
        psnr_rows = rows[rows.metric == "psnr_y"]
        first = (psnr_rows if not psnr_rows.empty else rows).iloc[0]
        values = {QUALITY[m]: v for m, v in zip(rows.metric, rows.value, strict=True)}
        mine = verdicts[
            (verdicts.run_id == key["run_id"]) & (verdicts.dataset == key["dataset"])
            & (verdicts.model == key["model"]) & (verdicts.variant == key["variant"])
            & verdicts.measure.isin(["psnr_y", "ssim_y"])
        ]  # fmt: skip
        mine = mine.sort_values(["timestamp"], kind="stable").groupby(["measure", "kind"], sort=True).tail(1)
        mine = mine.sort_values(["measure", "kind"], kind="stable")
        entry = base(key["model"], key["variant"], scale) | {
            "paper": first.paper,
            "origin": "reproduced",
            "kind": "",
            "confidence": "",
            "citation": "",
            "convention": first.convention,
            "psnr": values.get("psnr", math.nan),
            "ssim": values.get("ssim", math.nan),
            "fingerprint": fingerprint.measured(first),
            "recipe": first.recipe,
            "run_id": key["run_id"],
            "tier": key["tier"],
            "profile": first.profile,
            "checkpoint": key["checkpoint"],
            "verdicts": mine.to_dict("records"),
        }
        boards.setdefault((scale, key["dataset"]), []).append(entry)

    out = []
    for scale, dataset in sorted(boards, key=lambda k: (k[0], *_dataset_rank(k[1]))):
        entries = sorted(
            boards[(scale, dataset)],
            key=lambda e: (_paper_order(e["paper"]), e["model"], e["variant"], e["origin"] != "published",
                           e["tier"], e["run_id"]),
        )  # fmt: skip
        for e in entries:
            e["rank"] = None
        groups = _group_letters(entries)
        out.append({"scale": scale, "dataset": dataset, "entries": entries, "groups": groups})
    return out


def _published_kind(source: str) -> ReferenceKind:
    """Published tables hold papers and challenge reports (the NTIRE reports name themselves)."""
    return ReferenceKind.CHALLENGE_REPORT if "challenge report" in source.lower() else ReferenceKind.PAPER


# ---------------------------------------------------------------------------------------------- runtimes


def _protocol(row) -> str:
    if row.runtime_protocol:
        protocol = json.loads(row.runtime_protocol)
        return ", ".join(f"{k}: {protocol[k]}" for k in sorted(protocol))
    return row.convention


def runtimes(inputs: Inputs, smoke: bool = False) -> list[dict]:
    """Measured runtimes (set medians) grouped by device: one table per device, never compared across
    devices. ``smoke``: the smoke runs' runtimes (diagnostics) instead of the others."""
    results = inputs.results
    timed = results[(results.metric == "runtime_ms") & (results.image == "")]
    timed = timed[(timed.profile == Profile.SMOKE) == smoke]
    keys = ["model", "variant", "scale", "dataset", "device", "precision", "inference", "profile"]
    timed = newest_run_rows(timed, keys)
    devices = []
    for device, g in timed.groupby("device", sort=True):
        rows = [
            {
                "model": r.model, "variant": r.variant, "scale": int(r.scale), "dataset": r.dataset,
                "recipe": r.recipe, "run_id": r.run_id, "ms": r.value,
                "precision": r.precision or fingerprint.NOT_RECORDED, "inference": r.inference,
                "protocol": _protocol(r), "profile": r.profile,
            }
            for r in g.sort_values(["model", "variant", "scale", "dataset"], kind="stable").itertuples()
        ]  # fmt: skip
        devices.append({"device": device or fingerprint.NOT_RECORDED, "rows": rows})
    return devices


def published_runtimes(pub: pd.DataFrame) -> list[dict]:
    """Published runtimes with the device and protocol their source states (its convention text)."""
    rows = pub[pub.metric == "runtime_ms"].sort_values(["model", "variant", "scale"], kind="stable")
    return [
        {"model": r.model, "variant": r.variant, "scale": int(r.scale), "ms": r.value,
         "protocol": r.convention, "citation": r.source, "confidence": r.confidence}
        for r in rows.itertuples()
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------- diagnostics


def diagnostics(inputs: Inputs) -> list[dict]:
    """One row per smoke run (newest first within each recipe): its mean PSNR-Y/SSIM-Y on each evaluated
    set, last training loss and iterations, run state and device."""
    results = inputs.results
    smoke = results[results.profile == Profile.SMOKE]
    rows = []
    for (recipe, run_id), g in smoke.groupby(["recipe", "run_id"], sort=True):
        means = g[(g.image == "") & (g.dataset != "") & g.metric.isin(["psnr_y", "ssim_y"])]
        loss = g[g.metric == "train_loss"].sort_values("step", kind="stable")
        sets = [
            {"dataset": d, "psnr": _value(s, "psnr_y"), "ssim": _value(s, "ssim_y")}
            for d, s in means.groupby("dataset", sort=True)
        ]
        rows.append(
            {
                "recipe": recipe, "run_id": run_id, "timestamp": g.timestamp.iloc[0], "sets": sets,
                "loss": float(loss.value.iloc[-1]) if not loss.empty else math.nan,
                "iterations": int(loss.step.iloc[-1]) if not loss.empty else 0,
                "run_state": g.run_state.iloc[0] or fingerprint.NOT_RECORDED, "device": g.device.iloc[0],
            }
        )  # fmt: skip
    return sorted(rows, key=lambda r: (r["recipe"], r["timestamp"], r["run_id"]))


def _value(rows: pd.DataFrame, metric: str) -> float:
    hit = rows[rows.metric == metric]
    return float(hit.value.iloc[0]) if not hit.empty else math.nan


# ------------------------------------------------------------------------------------ knobs (conventions)

PSNR_METRICS = ("psnr_y", "psnr_rgb", "psnr_edsr")


def metric_conventions(results: pd.DataFrame) -> list[tuple[str, str]]:
    """Each stored quality/complexity metric with the convention text(s) its rows carry."""
    rows = results[["metric", "convention"]].drop_duplicates().sort_values(["metric", "convention"])
    return [(m, c) for m, c in rows.itertuples(index=False) if c]


def knob_effects(results: pd.DataFrame) -> list[dict]:
    """Measured size of each evaluation knob: per-image differences between two conventions (or inference
    modes) of the same run and image, summarised per (scale, dataset) as n, mean, min and max. Smoke runs
    are left out (a knob's effect on a few-iteration model says nothing about the papers); non-finite
    differences (identical images: PSNR = ∞) are left out and counted."""
    images = results[
        (results.image != "")
        & results.metric.isin([*PSNR_METRICS, "ssim_y"])
        & (results.profile != Profile.SMOKE)
    ]
    keys = ["run_id", "model", "variant", "scale", "dataset", "image", "inference"]
    wide = images.pivot_table(index=keys, columns="metric", values="value", aggfunc="first").reset_index()
    effects = []
    for knob, a, b in (
        ("Y vs RGB", "psnr_y", "psnr_rgb"),
        ("EDSR calc_psnr vs BasicSR Y", "psnr_edsr", "psnr_y"),
    ):
        if {a, b} <= set(wide.columns):
            both = wide.dropna(subset=[a, b])
            effects += _summaries(knob, f"{a} − {b}", both, both[a] - both[b])
    by_mode = images[images.metric == "psnr_y"].pivot_table(
        index=["model", "variant", "scale", "dataset", "image", "checkpoint"], columns="inference",
        values="value", aggfunc="last").reset_index()  # fmt: skip
    if {"chop", "whole"} <= set(by_mode.columns):
        both = by_mode.dropna(subset=["chop", "whole"])
        effects += _summaries(
            "chop vs whole image", "psnr_y(chop) − psnr_y(whole)", both, both.chop - both.whole
        )
    return effects


def _summaries(knob: str, expression: str, rows: pd.DataFrame, diff: pd.Series) -> list[dict]:
    out = []
    frame = rows.assign(diff=diff.to_numpy())
    for (scale, dataset), g in frame.groupby(["scale", "dataset"], sort=True):
        d = g["diff"].to_numpy(dtype=np.float64)
        finite = d[np.isfinite(d)]
        if not len(finite):
            continue
        out.append(
            {
                "knob": knob, "expression": expression, "scale": int(scale), "dataset": dataset,
                "n": len(finite), "non_finite": len(d) - len(finite), "mean": float(finite.mean()),
                "min": float(finite.min()), "max": float(finite.max()),
            }
        )  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------ model pages


def provenance(rows: pd.DataFrame) -> dict:
    """The provenance block of one run's rows (package versions are JSON: checked at :func:`load`)."""
    first = rows.sort_values(["dataset", "image", "metric"], kind="stable").iloc[0]
    versions = json.loads(first.package_versions) if first.package_versions else {}
    pairs = rows[["dataset", "dataset_checksum"]].drop_duplicates().itertuples(index=False)
    return {
        "run_id": first.run_id,
        "timestamp": first.timestamp,
        "profile": first.profile,
        "tiers": ", ".join(sorted(set(rows.tier))),
        "git_commit": first.git_commit,
        "device": first.device,
        "package_versions": sorted(versions.items()),
        "recipe_hash": first.recipe_hash,
        "seeds": ", ".join(str(s) for s in sorted(set(rows.seed))),
        "checkpoints": sorted(set(rows.checkpoint) - {""}),
        "checksums": sorted({(d, c) for d, c in pairs if d}),
        "run_state": first.run_state,
        "training_data": first.training_data,
    }


PER_IMAGE_METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "psnr_edsr", "runtime_ms")


def per_image(rows: pd.DataFrame) -> list[dict]:
    """Per-image tables of one run: one per (dataset, inference), set means last."""
    scored = rows[rows.metric.isin(PER_IMAGE_METRICS) & (rows.dataset != "")]
    tables = []
    for (dataset, inference), g in scored.groupby(["dataset", "inference"], sort=True):
        wide = g.pivot_table(index="image", columns="metric", values="value", aggfunc="first", dropna=False)
        metrics = [m for m in PER_IMAGE_METRICS if m in wide.columns]
        images = sorted(i for i in wide.index if i) + ([""] if "" in wide.index else [])
        tables.append(
            {
                "dataset": dataset,
                "inference": inference,
                "metrics": metrics,
                "rows": [
                    {
                        "image": i
                        or ("set mean (runtime: median)" if "runtime_ms" in metrics else "set mean"),
                        "mean": not i,
                        "values": [float(wide.at[i, m]) for m in metrics],
                    }
                    for i in images
                ],
            }
        )
    return tables
