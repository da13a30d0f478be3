"""Verdicts: the tiers compare measured numbers with outside references and can fail; the main job
(`reproduce`) runs every stage for real and stores results and verdicts."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

import architectures
from harness import data, released, store, verify
from harness.degrade import bicubic_downsample
from harness.recipes import RECIPES, load
from harness.reproduce import reproduce
from harness.schema import Confidence, ReferenceKind, Status, Tier
from harness.verdicts import Reference, Subject, judge, rounds_to, verdict_row
from harness.verify import checkpoint_tier, runtime_verdicts, static_verdicts
from tests.conftest import shared_checkpoint

WHERE = Subject(Tier.STATIC, "m", "", 2)


def ref(value: float, confidence: Confidence = Confidence.HIGH) -> Reference:
    return Reference(value, "src", ReferenceKind.PAPER, confidence)


def test_judge_statuses():
    assert judge(WHERE, "x", 1.004, ref(1.0), 0.005).status == Status.PASS
    assert judge(WHERE, "x", 1.006, ref(1.0), 0.005).status == Status.FAIL
    assert judge(WHERE, "x", 100.6, ref(100.0), 0.005, relative=True).status == Status.FAIL
    assert judge(WHERE, "x", 1.0, None, 0.1).status == Status.NO_PUBLISHED_VALUE
    assert math.isnan(judge(WHERE, "x", None, None, 0.1).delta)
    v = judge(WHERE, "x", None, ref(1.0), 0.1, not_run="no GPU")
    assert v.status == Status.NOT_RUN and v.reason == "no GPU" and math.isnan(v.measured)


@pytest.mark.parametrize("measured", [1.0, 1.5])
def test_a_low_confidence_reference_is_indicative_never_pass_or_fail(measured):
    v = judge(WHERE, "x", measured, ref(1.0, Confidence.LOW), 0.005)
    assert v.status == Status.INDICATIVE and "low confidence" in v.reason
    assert v.as_dict()["reference_confidence"] == "low"


def test_medium_confidence_still_judges():
    assert judge(WHERE, "x", 1.5, ref(1.0, Confidence.MEDIUM), 0.005).status == Status.FAIL


def test_the_verdict_row_carries_the_reference_kind_and_confidence():
    reference = Reference(9.83, "NTIRE", ReferenceKind.CHALLENGE_REPORT, Confidence.MEDIUM)
    v = judge(Subject(Tier.STATIC, "span_esr", "ch28", 4, "deploy"), "macs_ntire256", 9.8, reference, 0.05)
    row = verdict_row(v, run_id="r", timestamp="2026-01-01T00:00:00+00:00", profile="smoke", recipe="x",
                      paper="span_esr")  # fmt: skip
    store.validate([row], table="verdicts")
    assert (row["metric"], row["form"], row["reference_kind"], row["reference_confidence"]) == (
        "macs_ntire256", "deploy", "challenge report", "medium"
    )  # fmt: skip


def test_rounding_tolerance_follows_published_digits():
    assert rounds_to(0.37) == pytest.approx(0.005)
    assert rounds_to(0.151) == pytest.approx(0.0005)
    assert rounds_to("49.40") == pytest.approx(0.005)


def test_published_runtime_is_reported_not_compared():
    (v,) = runtime_verdicts(load("span_esr_ch28_x4"))
    assert v.status == Status.NOT_RUN and "RTX 3090" in v.reason and v.reference.value == 5.59
    assert v.reference.kind == ReferenceKind.CHALLENGE_REPORT
    assert runtime_verdicts(load("drsan_32s_x2")) == []


def test_static_tier_passes_for_drsan_and_fails_for_a_wrong_port(monkeypatch):
    recipe = load("drsan_32s_x2")
    verdicts, measured = static_verdicts(recipe)
    assert {v.status for v in verdicts} == {Status.PASS} and len(verdicts) == 3
    kinds = {(v.metric, v.reference.kind) for v in verdicts}
    assert kinds == {("params", ReferenceKind.OFFICIAL_CODE), ("params", ReferenceKind.PAPER),
                     ("macs_hr720p", ReferenceKind.PAPER)}  # fmt: skip
    build = architectures.registry.build
    # One more DRAG than the official 32s: every static check must notice.
    monkeypatch.setattr(
        architectures, "build", lambda *a, **k: build(*a, channels=32, n_drags=5, n_units=4, **k)
    )
    wrong, _ = static_verdicts(recipe)
    assert {v.status for v in wrong} == {Status.FAIL}


def test_static_tier_span_esr_checks_both_forms():
    verdicts, _ = static_verdicts(load("span_esr_ch48_x4"))
    by = {(v.metric, v.form, v.reference.kind if v.reference else None): v.status for v in verdicts}
    assert by[("params", "train", ReferenceKind.OFFICIAL_CODE)] == Status.PASS
    assert by[("params", "deploy", ReferenceKind.OFFICIAL_CODE)] == Status.PASS
    assert by[("params", "deploy", None)] == Status.NO_PUBLISHED_VALUE


def test_static_tier_weighs_its_references(monkeypatch):
    """SPAN-ESR ch28: NTIRE 2026 organisers (high) and NTIRE 2024 Table 1 (medium) give the same FLOPs and
    params: judged once, against the confident one; SPAN-light's params read off a plot only indicate."""
    verdicts, _ = static_verdicts(load("span_esr_ch28_x4"))
    paper = [v for v in verdicts if v.reference and v.reference.kind == ReferenceKind.CHALLENGE_REPORT]
    assert sorted(v.metric for v in paper) == ["macs_ntire256", "params"]
    assert {(v.reference.confidence, v.status) for v in paper} == {(Confidence.HIGH, Status.PASS)}
    # SPAN-light's MACs (a full fvcore trace) are not this test's subject.
    monkeypatch.setattr(verify, "complexity", lambda *a, **k: SimpleNamespace(macs=0, ops="fvcore"))
    light = [v for v in static_verdicts(load("span_light_x4"))[0] if v.metric == "params" and v.reference]
    plot = [v for v in light if v.reference.kind == ReferenceKind.PAPER]
    assert [(v.status, v.reference.confidence) for v in plot] == [(Status.INDICATIVE, Confidence.LOW)]


@pytest.mark.slow
def test_static_tier_span_light_macs_against_the_official_fvcore_counts():
    verdicts = {
        (v.metric, v.reference.kind): v for v in static_verdicts(load("span_light_x4"))[0] if v.reference
    }
    for convention in ("hr720p", "ntire256"):
        v = verdicts[(f"macs_{convention}", ReferenceKind.OFFICIAL_CODE)]
        assert v.status == Status.PASS and v.tolerance == pytest.approx(0.005)


@pytest.mark.usefixtures("one_thread")
def test_smoke_reproduce_runs_every_stage_and_says_what_was_not_run(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    # The stages' cost is DRSAN's forwards over the embedded photos (validation, then evaluation): their
    # 48×48 corners run every stage the same way at a twentieth of the pixels.
    photos = data.embedded_pairs
    monkeypatch.setattr(
        data,
        "embedded_pairs",
        lambda s: [data.Pair(p.name, *bicubic_downsample(p.hr[:, :48, :48], s)) for p in photos(s)],
    )
    outcome = reproduce(
        "drsan_32s_x2", profile="smoke", data_root=tmp_path / "no-data", out_dir=tmp_path / "run"
    )
    statuses = {(v.tier, v.status) for v in outcome.verdicts}
    assert ("static", "pass") in statuses and ("retrain", "not run") in statuses
    retrain = [v for v in outcome.verdicts if v.tier == "retrain"]
    assert all(("smoke profile" in v.reason) == (v.reference is not None) for v in retrain)
    assert {v.status for v in retrain if v.reference is None} == {"no published value"}  # Manga109
    assert any("full run was not done" in n for n in outcome.notes)
    results, verdicts = store.read("results"), store.read("verdicts")
    assert set(results.profile) == {"smoke"} and {"static", "retrain"} <= set(results.tier)
    embedded = results[(results.dataset == "embedded") & (results.image == "") & (results.metric == "psnr_y")]
    assert len(embedded) == 1 and 0 < embedded.value.iloc[0] < 99
    assert len(verdicts) == len(outcome.verdicts) and (verdicts.run_id == outcome.run_id).all()
    assert (tmp_path / "run" / "run.json").exists() and any(
        (tmp_path / "run" / "sr" / "embedded").glob("*.png")
    )


def _ntire_checkpoint() -> Path | None:
    env = os.environ.get("REPROSR_NTIRE_CKPT")
    path = (
        Path(env)
        if env
        else shared_checkpoint("ntire2024_team38_span_ch28_x4.pth")
        or released.cached_path("span_esr_ch28_x4_ntire2024")
    )
    return path if path.exists() else None


def test_checkpoint_tier_ntire_span_matches_the_official_code(datasets_root, tmp_path, monkeypatch):
    ckpt = _ntire_checkpoint()
    if ckpt is None:
        pytest.skip(
            "not run: NTIRE 2024 SPAN checkpoint not available (set REPROSR_TEST_CHECKPOINTS to "
            "shared/checkpoints, REPROSR_NTIRE_CKPT to the file, or "
            "`reprosr eval span_esr --variant ch28 --scale 4 --form deploy "
            "--checkpoint span_esr_ch28_x4_ntire2024 ...` to fetch it)"
        )
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    root = tmp_path / "data"  # Set5 only (Set14 is checked in tests/architectures/test_ntire_checkpoint.py)
    root.mkdir()
    (root / "Set5").symlink_to(datasets_root / "Set5")
    verdicts, results = checkpoint_tier(load("span_esr_ch28_x4"), str(ckpt), root)
    official = [v for v in verdicts if v.reference and v.reference.kind == ReferenceKind.OFFICIAL_CODE]
    assert len(official) == 2 and {v.status for v in official} == {"pass"} and set(results) == {"Set5"}
    absent = [v for v in verdicts if v.dataset not in ("Set5", "")]
    assert absent and all(v.status == ("not run" if v.reference else "no published value") for v in absent)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_smoke_runs_green(name, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    outcome = reproduce(name, profile="smoke", data_root=tmp_path / "no-data", out_dir=tmp_path / "run")
    assert not [v for v in outcome.verdicts if v.status == "fail"]
    retrain = [v for v in outcome.verdicts if v.tier == "retrain"]
    assert retrain and all(v.status == ("not run" if v.reference else "no published value") for v in retrain)


def test_the_json_of_a_verdict_keeps_its_keys_and_adds_the_reference_weights():
    v = judge(WHERE, "params", 368427, ref(370000.0, Confidence.MEDIUM), 5000.0)
    d = json.loads(json.dumps(v.as_dict()))
    old = {"tier", "model", "variant", "scale", "dataset", "metric", "measured", "reference", "source",
           "tolerance", "status", "reason", "delta"}  # fmt: skip
    assert old <= set(d) and {"form", "reference_kind", "reference_confidence", "label"} <= set(d)
    got = (d["status"], d["reference"], d["source"], d["reference_kind"])
    assert got == ("pass", 370000.0, "src", "paper")
