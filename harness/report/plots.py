"""SVG plot geometry for the ``svg_plot`` template macro: axes with round ticks, series of labelled points."""

from __future__ import annotations

import math

from harness.report.numbers import scaled

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


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


def plot(series: list[dict], x_label: str, y_label: str, title: str, *, log_x: bool) -> dict | None:
    """Geometry of a scatter/line plot for the ``svg`` template macros.

    ``series``: dicts with ``name``, ``color``, ``dash`` (SVG dasharray, "" for solid), ``filled`` (bool)
    and ``points`` — dicts with x, y, ``label`` (the point's <title>) and ``tag`` (text drawn beside the
    point, "" for none). Points are joined in x order. Non-finite points are dropped (PSNR = ∞ of identical
    images); None when no point is left.
    """
    series = [{**s, "points": [p for p in s["points"] if _finite(p["x"], p["y"], log_x)]} for s in series]
    series = [s for s in series if s["points"]]
    if not series:
        return None
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


def _finite(x: float, y: float, log_x: bool) -> bool:
    return math.isfinite(x) and math.isfinite(y) and (x > 0 or not log_x)


DASH = {"published": "", "checkpoint": "6 3", "retrain": "2 3"}  # line style per origin, as in the legend


def complexity_plots(board: dict, colors: dict[str, str]) -> list[dict]:
    """PSNR-vs-params and PSNR-vs-MACs plots (one per MACs rule) of one leaderboard (no smoke entries).

    A series per model and origin (published: filled points and solid line through the variants;
    reproduced: hollow points, dashed/dotted per tier); every point is tagged with its variant.
    """
    plots = []
    for axis in ("params", "macs"):
        groups: dict[str, dict[str, dict]] = {}
        for e in board["entries"]:
            cx = e["complexity"]
            x = cx.params if axis == "params" else cx.macs
            rule = cx.macs_convention.split(",")[0] if axis == "macs" else ""
            origin = "published" if e["origin"] == "published" else e["tier"]
            name = f"{e['model']} — {'published' if origin == 'published' else 'reproduced, ' + origin}"
            series = groups.setdefault(rule, {}).setdefault(name, {
                "name": name, "color": colors[e["model"]], "dash": DASH[origin],
                "filled": origin == "published", "points": {}})  # fmt: skip
            unit = (
                scaled(x, "M params") if axis == "params" else f"{scaled(x, 'G MACs')} ({cx.macs_convention})"
            )
            label = f"{e['model']} {e['variant']} {origin}: {e['psnr']:.2f} dB at {unit}"
            series["points"][label] = {"x": x, "y": e["psnr"], "label": label, "tag": e["variant"]}
        for rule, named in sorted(groups.items()):
            series = [{**s, "points": list(s["points"].values())} for _, s in sorted(named.items())]
            what = "parameters" if axis == "params" else f"MACs ({rule} input)"
            x_label = f"{what}, {'M' if axis == 'params' else 'G'}, log scale"
            title = f"×{board['scale']} {board['dataset']}: PSNR vs {what}"
            drawn = plot(series, x_label, "PSNR (dB)", title, log_x=True)
            if drawn is not None:
                plots.append(drawn)
    return plots
