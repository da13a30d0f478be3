"""Per-run views: runtimes per device, the smoke runs (diagnostics), measured knob effects, and the
provenance and per-image tables of a model page."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from harness.report import fingerprint
from harness.report.queries import Inputs, newest_run_rows
from harness.schema import Profile

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
    # The weights a score came from: the tensors' content hash, else the run itself (no pairing across runs by
    # a path string); each image of one set of weights under one set of knobs counts once (the newest).
    images = images.assign(weights=images.checkpoint_hash.where(images.checkpoint_hash != "", images.run_id))
    knobs = ["inference", "tile", "tile_overlap", "self_ensemble", "precision"]
    images = images.sort_values(["timestamp", "run_id"], kind="stable").drop_duplicates(
        ["weights", "model", "variant", "scale", "dataset", "image", "metric", *knobs], keep="last"
    )
    keys = ["weights", "model", "variant", "scale", "dataset", "image", "inference"]
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
        index=["model", "variant", "scale", "dataset", "image", "weights"], columns="inference",
        values="value", aggfunc="last").reset_index()  # fmt: skip
    if {"chop", "whole"} <= set(by_mode.columns):
        both = by_mode.dropna(subset=["chop", "whole"])
        effects += _summaries(
            "chop vs whole image", "psnr_y(chop) − psnr_y(whole)", both, both.chop - both.whole
        )
    return effects + _test_time_effects(images[images.metric == "psnr_y"])


def _test_time_effects(psnr: pd.DataFrame) -> list[dict]:
    """PSNR-Y change of each test-time knob of `reprosr eval` against its baseline (fp32, no ensemble,
    whole image), per image of one checkpoint with every other knob equal."""
    rows = psnr[psnr.precision != ""]  # version-1 rows predate these columns
    tiles = "tile " + rows.tile.astype(str) + "/" + rows.tile_overlap.astype(str)
    rows = rows.assign(procedure=rows.inference.where(rows.tile == 0, tiles))
    effects = []
    for knob, column, base in (
        ("precision", "precision", "fp32"),
        ("self-ensemble ×8", "self_ensemble", False),
        ("tiles vs whole image", "procedure", "whole"),
    ):
        others = [c for c in ("procedure", "self_ensemble", "precision") if c != column]
        keys = ["model", "variant", "scale", "dataset", "image", "weights", *others]
        wide = rows.pivot_table(index=keys, columns=column, values="value", aggfunc="last").reset_index()
        if base not in wide.columns:
            continue
        for other in [c for c in wide.columns if c not in keys and c != base]:
            both = wide.dropna(subset=[base, other])
            if not both.empty and (column != "procedure" or str(other).startswith("tile")):
                expression = f"psnr_y({column}={other}) − psnr_y({column}={base})"
                effects += _summaries(knob, expression, both, both[other] - both[base])
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
