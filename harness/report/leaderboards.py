"""Leaderboards: published and reproduced numbers per (scale, dataset), each with its convention fingerprint,
ranked only within its fingerprint group, with the params/MACs of its model (measured, else published).
Smoke runs never enter."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness.report import fingerprint
from harness.report.queries import Inputs, dataset_rank, newest_run_rows, paper_order
from harness.schema import Profile, ReferenceKind, Tier

QUALITY = {"psnr": "psnr", "ssim": "ssim", "psnr_y": "psnr", "ssim_y": "ssim", "psnr_rgb": "psnr"}
PUBLISHED_COLOR = {"psnr_rgb": "rgb"}  # published metrics whose name states the colour space


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
    for scale, dataset in sorted(boards, key=lambda k: (k[0], *dataset_rank(k[1]))):
        entries = sorted(
            boards[(scale, dataset)],
            key=lambda e: (paper_order(e["paper"]), e["model"], e["variant"], e["origin"] != "published",
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
