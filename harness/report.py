"""The leaderboard report: a static HTML site built from the results store (`reprosr report --out DIR`).

Pages: ``index.html`` (a leaderboard per scale × dataset, PSNR-vs-complexity plots, the static-verification
table, the kernel benchmarks of ``benchmarks/RESULTS.md``), ``model-<recipe>.html`` per recipe with results
(provenance, recipe fields with their sources, per-image scores, visual comparisons, training curve) and
``conventions.html`` (every evaluation knob and the size of its effect measured from the results).

The site is self-contained (inline CSS/JS/SVG; PNG crops under ``img/`` linked relatively), works from
file:// and is byte-identical for identical inputs: every row order is a sort, and no build time is
written. Conventions: Δ = reproduced − published; params in millions (M), MACs in G (1e9
multiply-accumulates) under the convention named beside each value; the "newest" run of a key is the one
with the latest ``timestamp``, ``run_id`` breaking ties.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from PIL import Image

from harness import published, store
from harness.evaluate import ALL_CONVENTIONS
from harness.paths import REPO
from harness.schema import ReferenceKind, Status

TEMPLATES = Path(__file__).with_name("templates")
BENCHMARKS_MD = REPO / "benchmarks" / "RESULTS.md"
STATUSES = tuple(Status)
DATASET_ORDER = ("Set5", "Set14", "B100", "Urban100", "Manga109")  # the papers' table order; others after
CROP = 96  # HR pixels per side of a visual-comparison crop
CROPS_PER_SET = 2
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (recipe and image names come from the store, unchecked)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "_"


def _nan(value) -> float:
    return math.nan if value is None else float(value)


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


# ------------------------------------------------------------------------------------ model-level values


@dataclass(frozen=True)
class Complexity:
    """Params (M) and MACs (G) of one model/variant/scale with the conventions they were counted under."""

    params: float
    params_note: str
    macs: float
    macs_convention: str


def _input_size_rule(convention: str) -> str:
    """``hr720p`` or ``ntire256`` from a measured ("hr720p, fvcore op rule") or published convention text."""
    return "ntire256" if "256" in convention else "hr720p"


def measured_complexity(results: pd.DataFrame) -> dict[tuple[str, str, int], Complexity]:
    """Newest static params/MACs per (model, variant, scale); params of the deploy form when there is one."""
    static = results[(results.tier == "static") & results.metric.isin(["params", "macs"])]
    static = newest_run_rows(static, ["model", "variant", "scale"])
    out = {}
    for (model, variant, scale), rows in static.groupby(["model", "variant", "scale"], sort=True):
        params = rows[rows.metric == "params"].sort_values("convention", kind="stable")
        deploy = params[params.convention.str.startswith("deploy")]
        pick = deploy if not deploy.empty else params
        macs = rows[rows.metric == "macs"].sort_values("convention", kind="stable")
        out[(model, variant, int(scale))] = Complexity(
            pick.value.iloc[0] / 1e6 if not pick.empty else math.nan,
            pick.convention.iloc[0] if not pick.empty else "",
            macs.value.iloc[0] if not macs.empty else math.nan,
            macs.convention.iloc[0] if not macs.empty else "",
        )
    return out


def published_complexity(pub: pd.DataFrame) -> dict[tuple[str, str, int], Complexity]:
    """Published params (M) and Multi-Adds/FLOPs (G) per (model, variant, scale)."""
    out = {}
    level = pub[pub.dataset == ""]
    for (model, variant, scale), rows in level.groupby(["model", "variant", "scale"], sort=True):
        params = rows[rows.metric == "params"]
        macs = rows[rows.metric.isin(["multi_adds", "flops"])].sort_values("metric", kind="stable")
        out[(model, variant, int(scale))] = Complexity(
            params.value.iloc[0] if not params.empty else math.nan,
            params.convention.iloc[0] if not params.empty else "",
            macs.value.iloc[0] if not macs.empty else math.nan,
            _input_size_rule(macs.convention.iloc[0]) + f", {macs.metric.iloc[0]}" if not macs.empty else "",
        )
    return out


def measured_runtimes(results: pd.DataFrame) -> dict[tuple[str, str, int], tuple[float, str]]:
    """Newest model-level runtime (ms, device) per (model, variant, scale): rows without a dataset."""
    level = results[(results.metric == "runtime_ms") & (results.dataset == "")]
    rows = newest_run_rows(level, ["model", "variant", "scale"])
    rows = rows.sort_values(["model", "variant", "scale", "dataset", "image"], kind="stable")
    return {(m, v, int(s)): (float(g.value.iloc[0]), g.device.iloc[0])
            for (m, v, s), g in rows.groupby(["model", "variant", "scale"], sort=True)}  # fmt: skip


# ------------------------------------------------------------------------------------------ leaderboards


def _verdict(verdicts: pd.DataFrame, run_id: str, key: dict, metric: str, has_published: bool) -> dict:
    hit = verdicts[
        (verdicts.run_id == run_id) & (verdicts.tier == key["tier"]) & (verdicts.model == key["model"])
        & (verdicts.variant == key["variant"]) & (verdicts.scale == key["scale"])
        & (verdicts.dataset == key["dataset"]) & (verdicts.metric == metric)
        & (verdicts.reference_kind != ReferenceKind.OFFICIAL_CODE)
    ]  # fmt: skip
    if not hit.empty:
        row = hit.sort_values("timestamp", kind="stable").iloc[-1]
        return {"status": row.status, "reason": row.reason}
    if has_published:
        return {"status": "not run", "reason": "no verdict recorded for this run"}
    return {"status": "no published value", "reason": "the published tables hold no value for this"}


def leaderboards(
    results: pd.DataFrame, verdicts: pd.DataFrame, pub: pd.DataFrame
) -> dict[tuple[int, str], list]:
    """One leaderboard per (scale, dataset): a row per reproduced (model, variant, tier, profile, inference)
    — its newest run — plus a row per published model without any reproduction.

    Row fields: model, variant, recipe, run_id, params/params_note, macs/macs_convention (measured, else
    published with ``complexity_source`` "paper"), pub_psnr, pub_ssim, psnr, ssim, d_psnr, d_ssim (NaN when
    absent), psnr_verdict/ssim_verdict ({status, reason}), tier, profile, inference, runtime_ms, device.
    """
    keys = ["model", "variant", "scale", "dataset", "tier", "profile", "inference"]
    scored = results.tier.isin(["checkpoint", "retrain"]) & results.metric.isin(["psnr_y", "ssim_y"])
    means = results[scored & (results.image == "") & (results.dataset != "")]
    means = newest_run_rows(means, keys)
    quality = pub[pub.metric.isin(["psnr", "ssim"]) & (pub.dataset != "") & (pub.color == "y")]
    pub_value = {
        (r.model, r.variant, int(r.scale), r.dataset, r.metric): r.value for r in quality.itertuples()
    }
    measured, pub_cx = measured_complexity(results), published_complexity(pub)
    runtimes = measured_runtimes(results)
    timed = results[(results.metric == "runtime_ms") & (results.image == "")]
    set_runtime = {(r.run_id, r.dataset): (r.value, r.device) for r in timed.itertuples()}

    def base(model: str, variant: str, scale: int, dataset: str) -> dict:
        cx = measured.get((model, variant, scale))
        source = "measured"
        if cx is None or math.isnan(cx.params):
            cx, source = pub_cx.get((model, variant, scale), Complexity(math.nan, "", math.nan, "")), "paper"
        runtime, device = runtimes.get((model, variant, scale), (math.nan, ""))
        return {
            "model": model,
            "variant": variant,
            "scale": scale,
            "dataset": dataset,
            "params": cx.params,
            "params_note": cx.params_note,
            "macs": cx.macs,
            "macs_convention": cx.macs_convention,
            "complexity_source": source,
            "runtime_ms": runtime,
            "device": device,
            "pub_psnr": _nan(pub_value.get((model, variant, scale, dataset, "psnr"))),
            "pub_ssim": _nan(pub_value.get((model, variant, scale, dataset, "ssim"))),
        }

    boards: dict[tuple[int, str], list] = {}
    reproduced = set()
    for key_values, rows in means.groupby([*keys, "run_id", "recipe"], sort=True):
        key = dict(zip([*keys, "run_id", "recipe"], key_values, strict=True))
        key["scale"] = int(key["scale"])
        row = base(key["model"], key["variant"], key["scale"], key["dataset"])
        value = {m: _nan(rows[rows.metric == m].value.iloc[0]) if (rows.metric == m).any() else math.nan
                 for m in ("psnr_y", "ssim_y")}  # fmt: skip
        row.update(
            {k: key[k] for k in ("tier", "profile", "inference", "run_id", "recipe")},
            psnr=value["psnr_y"],
            ssim=value["ssim_y"],
            d_psnr=value["psnr_y"] - row["pub_psnr"],
            d_ssim=value["ssim_y"] - row["pub_ssim"],
            psnr_verdict=_verdict(verdicts, key["run_id"], key, "psnr_y", not math.isnan(row["pub_psnr"])),
            ssim_verdict=_verdict(verdicts, key["run_id"], key, "ssim_y", not math.isnan(row["pub_ssim"])),
        )
        if (key["run_id"], key["dataset"]) in set_runtime:
            row["runtime_ms"], row["device"] = set_runtime[(key["run_id"], key["dataset"])]
        boards.setdefault((key["scale"], key["dataset"]), []).append(row)
        reproduced.add((key["model"], key["variant"], key["scale"], key["dataset"]))
    not_run = {"status": "not run", "reason": "no run of this model in the results store"}
    for model, variant, scale, dataset in sorted({k[:4] for k in pub_value} - reproduced):
        row = base(model, variant, scale, dataset)
        row.update(
            tier="",
            profile="",
            inference="",
            run_id="",
            recipe="",
            psnr=math.nan,
            ssim=math.nan,
            d_psnr=math.nan,
            d_ssim=math.nan,
            psnr_verdict=not_run,
            ssim_verdict=not_run,
        )
        boards.setdefault((scale, dataset), []).append(row)
    return {k: boards[k] for k in sorted(boards, key=_board_order)}


def _board_order(key: tuple[int, str]) -> tuple:
    scale, dataset = key
    known = dataset in DATASET_ORDER
    return scale, not known, DATASET_ORDER.index(dataset) if known else 0, dataset


def status_counts(statuses) -> dict[str, int]:
    """How many of each verdict status, in :data:`STATUSES` order (zeros included)."""
    statuses = list(statuses)
    return {s: statuses.count(s) for s in STATUSES}


def latest_verdicts(verdicts: pd.DataFrame, tier: str | None = None) -> pd.DataFrame:
    """The newest verdict per (tier, model, variant, scale, dataset, metric, form, reference kind), sorted
    by that key."""
    keys = ["tier", "model", "variant", "scale", "dataset", "metric", "form", "reference_kind"]
    v = verdicts if tier is None else verdicts[verdicts.tier == tier]
    v = v.sort_values(["timestamp", "run_id"], kind="stable").groupby(keys, sort=False).tail(1)
    return v.sort_values(keys).reset_index(drop=True)


# ----------------------------------------------------------------------------------------- SVG geometry

PLOT_W, PLOT_H, MARGIN = 560, 340, {"left": 64, "right": 16, "top": 16, "bottom": 48}


def _nice_step(span: float) -> float:
    raw = span / 5 if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))


def linear_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    """Padded axis range and round tick values for data in [lo, hi]."""
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    pad = 0.06 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo)
    first = math.ceil(lo / step)
    ticks = [round(k * step, 10) for k in range(first, math.floor(hi / step) + 1)]
    return lo, hi, ticks


def log_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    """Padded log-axis range (positive data) and 1-2-5 tick values."""
    lo, hi = lo / 1.4, hi * 1.4
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1, 2, 5), range(1, 10)):
        ticks = [round(m * 10.0**e, 12) for e in decades for m in mantissas if lo <= m * 10.0**e <= hi]
        if len(ticks) >= 3:
            break
    return lo, hi, ticks


def _axis(lo: float, hi: float, ticks: list[float], log: bool, length: float, flip: bool):
    f = math.log10 if log else float
    a, b = f(lo), f(hi)

    def place(v: float) -> float:
        t = (f(v) - a) / (b - a)
        return round((1 - t if flip else t) * length, 2)

    return place, [{"at": place(t), "label": f"{t:g}"} for t in ticks]


def plot(series: list[dict], x_label: str, y_label: str, title: str, *, log_x: bool) -> dict:
    """Geometry of a scatter/line plot for the ``svg`` template macros.

    ``series``: dicts with ``name``, ``color``, ``dash`` (SVG dasharray, "" for solid), ``filled`` (bool)
    and ``points`` — dicts with x, y and ``label`` (the point's <title>). Points are joined in x order.
    """
    xs = [p["x"] for s in series for p in s["points"]]
    ys = [p["y"] for s in series for p in s["points"]]
    iw, ih = PLOT_W - MARGIN["left"] - MARGIN["right"], PLOT_H - MARGIN["top"] - MARGIN["bottom"]
    x_lo, x_hi, x_ticks = (log_ticks if log_x else linear_ticks)(min(xs), max(xs))
    y_lo, y_hi, y_ticks = linear_ticks(min(ys), max(ys))
    px, x_axis = _axis(x_lo, x_hi, x_ticks, log_x, iw, flip=False)
    py, y_axis = _axis(y_lo, y_hi, y_ticks, False, ih, flip=True)
    drawn = []
    for s in series:
        points = sorted(s["points"], key=lambda p: (p["x"], p["y"]))
        placed = [{**p, "px": px(p["x"]), "py": py(p["y"])} for p in points]
        drawn.append({**s, "points": placed, "path": " ".join(f"{p['px']},{p['py']}" for p in placed)})
    return {"width": PLOT_W, "height": PLOT_H, "margin": MARGIN, "inner_w": iw, "inner_h": ih,
            "x_ticks": x_axis, "y_ticks": y_axis, "x_label": x_label, "y_label": y_label, "title": title,
            "series": drawn}  # fmt: skip


DASH = {"published": "", "checkpoint": "6 3", "retrain": "2 3"}  # line style per source, as in the legend


def _plot_points(row: dict, pub: Complexity | None, axis: str) -> list[tuple[str, str, float, str, float]]:
    """(series kind, dash key, x, MACs convention, PSNR) of one leaderboard row: its published point and,
    unless the run is a smoke run (a pipeline check, far below the papers), its reproduced point."""
    x_of = (lambda c: (c.params, "")) if axis == "params" else (lambda c: (c.macs, c.macs_convention))
    points = [("published", "published", *x_of(pub), row["pub_psnr"])] if pub else []
    if row["tier"] and row["profile"] != "smoke" and row["complexity_source"] == "measured":
        x, convention = (row["params"], "") if axis == "params" else (row["macs"], row["macs_convention"])
        points.append(
            (f"reproduced ({row['tier']}, {row['profile']})", row["tier"], x, convention, row["psnr"])
        )
    return [p for p in points if p[2] > 0 and not math.isnan(p[4])]


def complexity_plots(
    board: list[dict], pub_cx: dict, colors: dict[str, str], scale: int, dataset: str
) -> list:
    """PSNR-vs-params and PSNR-vs-MACs plots (one per MACs input-size rule) of one leaderboard.

    Published points (filled, solid line per model through its variants) use published params/MACs;
    reproduced points (hollow, dashed or dotted per tier) the measured ones. Smoke runs are not plotted.
    """
    plots = []
    for axis in ("params", "macs"):
        groups: dict[str, dict[str, dict]] = {}
        for r in board:
            for kind, dash, x, convention, y in _plot_points(
                r, pub_cx.get((r["model"], r["variant"], scale)), axis
            ):
                rule = _input_size_rule(convention) if axis == "macs" else ""
                name = f"{r['model']} — {kind}"
                series = groups.setdefault(rule, {}).setdefault(name, {
                    "name": name, "color": colors[r["model"]], "dash": DASH[dash],
                    "filled": kind == "published", "points": {}})  # fmt: skip
                unit = "M params" if axis == "params" else f"G MACs ({convention})"
                label = f"{r['model']} {r['variant']} {kind}: {y:.3f} dB at {x:.4g} {unit}"
                series["points"][label] = {"x": x, "y": y, "label": label}
        for rule, named in sorted(groups.items()):
            series = [{**s, "points": list(s["points"].values())} for _, s in sorted(named.items())]
            what = "parameters" if axis == "params" else f"MACs ({rule} input)"
            x_label = f"{what}, {'M' if axis == 'params' else 'G'}, log scale"
            plots.append(
                plot(series, x_label, "PSNR-Y (dB)", f"×{scale} {dataset}: PSNR-Y vs {what}", log_x=True)
            )
    return plots


# ------------------------------------------------------------------------------------ knobs (conventions)


def knob_effects(results: pd.DataFrame) -> list[dict]:
    """Measured size of each evaluation knob: per-image differences between two conventions (or inference
    modes) of the same run and image, summarised per (scale, dataset) as n, mean, min and max. Smoke runs
    are left out: a knob's effect on the output of a few-iteration model says nothing about the papers."""
    images = results[
        (results.image != "") & results.metric.isin(ALL_CONVENTIONS) & (results.profile != "smoke")
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
        keys = ["model", "variant", "scale", "dataset", "image", "checkpoint", *others]
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
        out.append(
            {
                "knob": knob,
                "expression": expression,
                "scale": int(scale),
                "dataset": dataset,
                "n": len(d),
                "mean": float(d.mean()),
                "min": float(d.min()),
                "max": float(d.max()),
            }
        )
    return out


# -------------------------------------------------------------------------------- benchmarks (markdown)


def markdown_tables(text: str) -> list[dict]:
    """Pipe tables of a markdown file as ``{"caption", "intro", "head", "rows"}``: the caption is the nearest
    heading above, the intro the paragraph right above the table (both "" if none)."""
    tables, heading, paragraph, block = [], "", [], []

    def flush() -> None:
        if len(block) >= 2 and re.fullmatch(r"\|?[\s:|-]+\|?", block[1]):
            cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block]
            intro = " ".join(paragraph)
            tables.append({"caption": heading, "intro": intro, "head": cells[0], "rows": cells[2:]})
            paragraph.clear()
        block.clear()

    fresh = True
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            block.append(line.strip())
            continue
        flush()
        stripped = line.strip()
        if line.startswith("#"):
            heading, fresh = stripped.lstrip("#").strip(), True
            paragraph.clear()
        elif not stripped:
            fresh = True
        elif not line.startswith("    "):  # indented lines are code (commands), not prose
            if fresh:
                paragraph.clear()
            paragraph.append(stripped)
            fresh = False
    flush()
    return tables


# ---------------------------------------------------------------------------------------------- runs


def load_runs(runs_root: Path) -> list[dict]:
    """Every ``<runs_root>/*/run.json`` (sorted by folder name) with ``dir`` added."""
    runs = []
    for path in sorted(Path(runs_root).glob("*/run.json")):
        run = json.loads(path.read_text(encoding="utf-8"))
        runs.append({**run, "dir": str(path.parent)})
    return runs


def _pairs(dataset: str, scale: int, data_root: str):
    from harness import data

    if dataset == "embedded":
        return data.embedded_pairs(scale)
    return data.benchmark_pairs(dataset, scale, data_root or None)


def _to_pil(img) -> Image.Image:
    array = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def _detail_box(hr: Image.Image, side: int) -> tuple[int, int, int, int]:
    """The ``side``² window (on a half-window grid) with the most HR gradient energy: where SR differs."""
    gray = np.asarray(hr.convert("L"), np.float64)
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.abs(np.diff(gray, axis=1))
    energy[1:, :] += np.abs(np.diff(gray, axis=0))
    step = max(side // 2, 1)
    h, w = gray.shape
    tops, lefts = range(0, h - side + 1, step), range(0, w - side + 1, step)
    windows = [(energy[t : t + side, x : x + side].sum(), -t, -x) for t in tops for x in lefts]
    _, top, left = max(windows)
    top, left = -top, -left
    return left, top, left + side, top + side


def visual_comparisons(run: dict, scale: int, site: Path) -> tuple[list[dict], list[str]]:
    """HR / bicubic / SR crops of the first images of each evaluated set of ``run``, written under
    ``site/img/``; returns the comparisons ({dataset, image, crops: [{label, src, alt}]}) and the
    "not available" notes of what could not be shown."""
    comparisons, notes = [], []
    for dataset, folder in sorted(run.get("sr_dirs", {}).items()):
        sr_files = sorted(Path(folder).glob("*.png"))
        if not sr_files:
            notes.append(f"not available: no SR outputs of {dataset} in {folder}")
            continue
        try:
            pairs = {p.name: p for p in _pairs(dataset, scale, run.get("data_root", ""))}
        except (FileNotFoundError, ValueError) as exc:
            notes.append(f"not available: {dataset} HR images ({exc})")
            continue
        for sr_file in [f for f in sr_files if f.stem in pairs][:CROPS_PER_SET]:
            pair = pairs[sr_file.stem]
            hr = _to_pil(pair.hr)
            sr = Image.open(sr_file).convert("RGB")
            if sr.size != hr.size:
                notes.append(f"not available: {sr_file} is {sr.size}, HR is {hr.size}")
                continue
            bicubic = _to_pil(pair.lr).resize(hr.size, Image.Resampling.BICUBIC)
            side = min(CROP, *hr.size)
            box = _detail_box(hr, side)
            crops = []
            for label, image in (
                ("HR (ground truth)", hr),
                ("bicubic (PIL upsampling of the LR)", bicubic),
                (f"SR ({run.get('recipe', '')}, {run.get('profile', '')})", sr),
            ):
                rel = f"img/{slug(run['run_id'])}/{slug(dataset)}-{slug(sr_file.stem)}-{label.split()[0]}.png"
                (site / rel).parent.mkdir(parents=True, exist_ok=True)
                image.crop(box).save(site / rel)
                crops.append(
                    {
                        "label": label,
                        "src": rel,
                        "alt": f"{label}: {side}×{side} crop of {dataset}/{sr_file.stem} at {box[:2]}",
                    }
                )
            comparisons.append({"dataset": dataset, "image": sr_file.stem, "crops": crops})
    return comparisons, notes


# ------------------------------------------------------------------------------------------ model pages


def _recipe_fields(name: str, run_hashes: list[str]) -> dict:
    from harness.recipes import load

    try:
        recipe = load(name)
    except (KeyError, ValueError, OSError) as exc:
        return {"error": f"not available: recipe {name!r} could not be loaded ({exc})", "fields": []}
    fields = [
        {
            "field": f"{s}.{k}",
            "value": json.dumps(v) if isinstance(v, list | bool) else str(v),
            "source": recipe.sources[f"{s}.{k}"],
        }
        for s, section in recipe.data.items()
        for k, v in section.items()
    ]
    stale = sorted({h for h in run_hashes if h and h != recipe.hash})
    return {"error": "", "hash": recipe.hash, "path": recipe.path.name, "fields": fields, "stale": stale}


def _provenance(rows: pd.DataFrame) -> dict:
    first = rows.sort_values(["dataset", "image", "metric"], kind="stable").iloc[0]
    versions = json.loads(first.package_versions) if first.package_versions else {}
    pairs = rows[["dataset", "dataset_checksum"]].drop_duplicates().itertuples(index=False)
    checksums = {d: c for d, c in pairs if d}
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
        "checksums": sorted(checksums.items()),
    }


def _per_image(rows: pd.DataFrame) -> list[dict]:
    columns = (*ALL_CONVENTIONS, "runtime_ms")
    scored = rows[rows.metric.isin(columns) & (rows.dataset != "")]
    tables = []
    for (dataset, inference), g in scored.groupby(["dataset", "inference"], sort=True):
        wide = g.pivot_table(index="image", columns="metric", values="value", aggfunc="first")
        metrics = [m for m in columns if m in wide.columns]
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
                        "values": [_nan(wide.at[i, m]) for m in metrics],
                    }
                    for i in images
                ],
            }
        )
    return tables


def _curve(rows: pd.DataFrame) -> dict | None:
    loss = rows[rows.metric == "train_loss"].sort_values(["run_id", "step"], kind="stable")
    if loss.empty:
        return None
    series = [
        {
            "name": f"run {run_id} ({g.profile.iloc[0]})",
            "color": PALETTE[i % len(PALETTE)],
            "dash": "",
            "filled": True,
            "points": [
                {"x": float(s), "y": v, "label": f"iteration {s}: loss {v:.5g}"}
                for s, v in zip(g.step, g.value, strict=True)
            ],
        }
        for i, (run_id, g) in enumerate(loss.groupby("run_id", sort=True))
    ]
    return plot(series, "iteration", "L1 training loss", "training loss per logged iteration", log_x=False)


def model_page(name: str, results: pd.DataFrame, runs: list[dict], site: Path) -> dict:
    """Everything ``model.html`` shows for recipe ``name``; crops are written under ``site``."""
    rows = results[results.recipe == name]
    order = (
        rows[["run_id", "timestamp"]].drop_duplicates().sort_values(["timestamp", "run_id"], kind="stable")
    )
    scale = int(rows.scale.iloc[0])
    page_runs = []
    for run_id in order.run_id:
        run_rows = rows[rows.run_id == run_id]
        page_runs.append({"provenance": _provenance(run_rows), "per_image": _per_image(run_rows)})
    comparisons, notes = [], []
    dirs = [r for r in runs if r.get("recipe") == name]
    for run in dirs:
        c, n = visual_comparisons(run, scale, site)
        comparisons += [{**x, "run": run["run_id"]} for x in c]
        notes += n
    if not dirs:
        notes.append("not available: no run directory (run.json) of this recipe under the runs folder")
    return {
        "name": name,
        "slug": slug(name),
        "model": rows.model.iloc[0],
        "variant": rows.variant.iloc[0],
        "scale": scale,
        "paper": rows.paper.iloc[0],
        "recipe": _recipe_fields(name, sorted(set(rows.recipe_hash))),
        "runs": page_runs,
        "comparisons": comparisons,
        "visual_notes": notes,
        "curve": _curve(rows),
    }


# ---------------------------------------------------------------------------------------------- site


def _fmt(value, spec: str) -> str:
    """``format(value, spec)``, or "" for an absent (None/NaN) value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(value, spec)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["slug"] = slug
    env.filters["sortkey"] = lambda v: "" if isinstance(v, float) and math.isnan(v) else v
    return env


def _conventions_context(results: pd.DataFrame) -> dict:
    import architectures
    from harness import complexity, evaluate

    doc = complexity.__doc__ or ""
    return {
        "metric_text": sorted(evaluate.CONVENTION_TEXT.items()),
        "input_sizes": [(c.name, c.description) for c in complexity.CONVENTIONS.values()],
        "ops_by_paper": sorted({s.paper: s.counting.ops for s in architectures.MODELS.values()}.items()),
        "complexity_doc": doc.strip(),
        "effects": knob_effects(results),
    }


def build_site(out: Path, results_root: Path | None = None, runs_root: Path | None = None) -> Path:
    """Render the report into ``out`` (created; existing pages and crops are overwritten) from the results
    store at ``results_root`` (default :func:`harness.store.default_root`), the run directories under
    ``runs_root`` (default ``runs/``), the published tables and the recipes. Returns ``out/index.html``."""
    from harness.reproduce import RUNS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results, verdicts = store.read("results", results_root), store.read("verdicts", results_root)
    pub = published.load()
    runs = load_runs(Path(runs_root) if runs_root is not None else RUNS)
    boards = leaderboards(results, verdicts, pub)
    pub_cx = published_complexity(pub)
    models = sorted(set(results.model) | set(pub.model))
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
    recipes = sorted(set(results.recipe) - {""})
    pages = [model_page(name, results, runs, out) for name in recipes]
    static = latest_verdicts(verdicts, "static").to_dict("records")
    everything = latest_verdicts(verdicts)
    env = _environment()
    common = {
        "nav": [
            {"href": "index.html", "label": "Leaderboard"},
            {"href": "conventions.html", "label": "Conventions"},
            *({"href": f"model-{p['slug']}.html", "label": p["name"]} for p in pages),
        ]
    }
    bench = markdown_tables(BENCHMARKS_MD.read_text(encoding="utf-8")) if BENCHMARKS_MD.exists() else None
    index = env.get_template("index.html").render(
        **common,
        page="index.html",
        title="ReproSR leaderboard",
        boards=[
            {"scale": s, "dataset": d, "rows": rows, "plots": complexity_plots(rows, pub_cx, colors, s, d)}
            for (s, d), rows in boards.items()
        ],
        static=static,
        static_counts=status_counts(r["status"] for r in static),
        tier_counts={t: status_counts(g.status) for t, g in everything.groupby("tier", sort=True)},
        pages={p["name"]: p["slug"] for p in pages},
        benchmarks=bench,
        n_results=len(results),
        n_verdicts=len(verdicts),
    )
    (out / "index.html").write_text(index, encoding="utf-8")
    for p in pages:
        html = env.get_template("model.html").render(
            **common, page=f"model-{p['slug']}.html", title=f"{p['name']} — ReproSR", m=p
        )
        (out / f"model-{p['slug']}.html").write_text(html, encoding="utf-8")
    html = env.get_template("conventions.html").render(
        **common,
        page="conventions.html",
        title="Evaluation conventions — ReproSR",
        **_conventions_context(results),
    )
    (out / "conventions.html").write_text(html, encoding="utf-8")
    return out / "index.html"
