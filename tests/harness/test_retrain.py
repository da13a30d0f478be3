"""Retrain tier: verdicts from ≥ 3 complete runs with distinct seeds, same recipe hash and code; truncated
runs are stored as such and never judged; ``verify`` picks runs by hash, completion and seed."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness import published, retrain, store
from harness.recipes import load
from harness.reproduce import reproduce

RECIPE = load("drsan_32s_x2")
pytestmark = pytest.mark.usefixtures("one_thread")
SET5_PSNR = published.lookup("drsan", "32s", 2, "Set5", "psnr").value


TS = "2026-01-01T00:00:00+00:00"


def result(run_id: str, seed: int, value: float, *, state="complete", commit="c1", ts=TS,
           recipe_hash=None, profile="full", dataset="Set5", metric="psnr_y") -> dict:  # fmt: skip
    """One stored set-mean row of a retrain run (every results column)."""
    return {
        "run_id": run_id, "timestamp": ts, "profile": profile, "tier": "retrain", "recipe": RECIPE.name,
        "recipe_hash": recipe_hash or RECIPE.hash, "paper": "drsan", "model": "drsan", "variant": "32s",
        "form": "train", "scale": 2, "dataset": dataset, "image": "", "metric": metric, "value": value,
        "unit": "dB", "convention": "", "color": "y", "shave": 2, "inference": "whole", "tile": 0,
        "tile_overlap": 0, "self_ensemble": False, "precision": "fp32", "runtime_protocol": "",
        "degradation": "matlab_bicubic", "training_data": "", "run_state": state, "checkpoint": "",
        "checkpoint_hash": "", "seed": seed, "git_commit": commit, "package_versions": "{}", "device": "cpu",
        "dataset_checksum": "",
        "step": -1,
    }  # fmt: skip


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def test_student_t_interval_of_the_mean():
    s = retrain.summarize([1.0, 2.0, 3.0])
    assert (s.n, s.mean, s.std) == (3, 2.0, 1.0)
    # t(0.975, 2) = 4.302652729911275 (tables); half width t·s/√n
    assert s.ci_high - s.mean == pytest.approx(4.302652729911275 / math.sqrt(3), rel=1e-9)
    assert s.ci_low == pytest.approx(2 * s.mean - s.ci_high)
    one = retrain.summarize([5.0])
    assert one.mean == 5.0 and math.isnan(one.std) and math.isnan(one.ci_low)


def test_selection_keeps_complete_runs_of_this_hash_and_code_one_per_seed():
    rows = [
        result("a", 0, 38.0, ts="2026-01-01T00:00:00+00:00"),
        result("a2", 0, 37.0, ts="2026-01-02T00:00:00+00:00"),  # same seed again: the newer wins
        result("b", 1, 38.1),
        result("c", 2, 38.2),
        result("t", 3, 10.4, state="truncated"),
        result("h", 4, 38.3, recipe_hash="0" * 64),
        result("o", 5, 38.4, commit="c0"),
        result("s", 0, 20.0, profile="smoke"),
    ]
    sel = retrain.select_runs(RECIPE, frame(rows))
    assert sel.seeds == [0, 1, 2] and [r.run_id for r in sel.runs] == ["a2", "b", "c"]
    for text in ("1 truncated", "1 run(s) of another version", "2 run(s) of other code", "1 smoke"):
        assert text in sel.excluded


def test_fewer_than_three_seeds_are_not_run_with_the_figures_shown():
    sel = retrain.select_runs(RECIPE, frame([result("a", 0, 37.9), result("b", 1, 38.1)]))
    (v,) = [v for v in retrain.verdicts(RECIPE, sel) if v.dataset == "Set5" and v.metric.startswith("psnr")]
    assert v.status == "not run" and v.reason.startswith("2 of 3 seeds")
    assert v.measured == pytest.approx(38.0) and v.n_runs == 2 and v.std == pytest.approx(math.sqrt(0.02))
    assert "not judged" in v.reason


@pytest.mark.parametrize(("offset", "status"), [(0.05, "pass"), (0.3, "fail")])
def test_three_seeds_judge_the_mean_with_an_interval(offset, status):
    values = [SET5_PSNR + offset + d for d in (-0.01, 0.0, 0.01)]
    sel = retrain.select_runs(RECIPE, frame([result(f"r{i}", i, v) for i, v in enumerate(values)]))
    by = {(v.dataset, v.metric): v for v in retrain.verdicts(RECIPE, sel)}
    v = by[("Set5", "psnr_y")]
    assert v.status == status and v.n_runs == 3 and v.measured == pytest.approx(SET5_PSNR + offset)
    assert v.ci_low < v.measured < v.ci_high and v.std == pytest.approx(0.01)
    assert "selected on Set5" in v.reason  # keep="best" selects on Set5, which is also judged
    assert by[("Set14", "psnr_y")].status == "not run"  # no Set14 evaluation in those runs
    assert "selected on" not in by[("Set14", "psnr_y")].reason


def test_verify_never_judges_the_newest_run_blindly(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path))
    store.append(
        [
            result("old", 0, SET5_PSNR),
            result("new", 7, 10.42, state="truncated", ts="2027-01-01T00:00:00+00:00"),
        ]
    )
    verdicts = [
        v for v in retrain.stored_verdicts(RECIPE) if v.dataset == "Set5" and v.metric.startswith("psnr")
    ]
    (v,) = verdicts
    assert v.status == "not run" and v.measured == pytest.approx(SET5_PSNR) and "1 truncated" in v.reason


# ------------------------------------------------------------------------------------- end to end


def _tiny_recipe(tmp_path: Path) -> Path:
    """drsan_32s_x2 on 3 training images, a 4-iteration schedule and small patches (a valid recipe file)."""
    text = load("drsan_32s_x2").path.read_text(encoding="utf-8")
    for old, new in (
        ("train_images = [1, 800]", "train_images = [1, 3]"),
        ("hr_patch = 96", "hr_patch = 32"),
        ("batch_per_gpu = 16", "batch_per_gpu = 2"),
        ("enlarge = 1000", "enlarge = 2"),
        ("total = 2_000_000", "total = 4"),
        ("checkpoint_every = 10_000", "checkpoint_every = 2"),
        ("val_every = 10_000", "val_every = 2"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "recipes" / "drsan_32s_x2.toml"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")
    return path


def _data_root(tmp_path: Path) -> Path:
    """Three DIV2K-like training images and a two-image stand-in for Set5 (small: this tests the plumbing)."""
    from harness.data import write_image
    from harness.degrade import bicubic_downsample

    root = tmp_path / "data"
    g = torch.Generator().manual_seed(0)
    for name, n, side in (("DIV2K_train", 3, 64), ("Set5", 2, 24)):
        for i in range(n):
            hr = torch.rand(3, side, side, generator=g)
            write_image(root / name / "HR" / f"{i + 1:04d}.png", hr)
            write_image(root / name / "LR_bicubic" / "X2" / f"{i + 1:04d}.png", bicubic_downsample(hr, 2)[1])
    return root


def test_truncated_full_run_is_stored_as_truncated_and_not_judged(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    recipe = _tiny_recipe(tmp_path)
    outcome = reproduce(
        str(recipe), profile="full", max_iters=2, data_root=_data_root(tmp_path),
        out_dir=tmp_path / "run", workers=0,
    )  # fmt: skip
    results = store.read("results")
    retrain_rows = results[results.tier == "retrain"]
    assert set(retrain_rows.run_state) == {"truncated"} and set(retrain_rows.profile) == {"full"}
    assert any("truncated run" in n for n in outcome.notes)
    retrain_verdicts = [v for v in outcome.verdicts if v.tier == "retrain" and v.reference is not None]
    assert {v.status for v in retrain_verdicts} == {"not run"}
    assert all("this run is truncated (2 of 4 iterations)" in v.reason for v in retrain_verdicts)


@pytest.mark.slow
def test_three_seeds_give_an_interval_in_the_verdicts_table(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    outcome = reproduce(
        str(_tiny_recipe(tmp_path)), profile="full", seeds=3, data_root=_data_root(tmp_path),
        out_dir=tmp_path / "run", workers=0,
    )  # fmt: skip
    assert len(outcome.runs) == 3
    results = store.read("results")
    assert sorted(results[results.tier == "retrain"].groupby("run_id").seed.first()) == [0, 1, 2]
    verdicts = store.read("verdicts")
    final = verdicts[(verdicts.run_id == outcome.run_id) & (verdicts.dataset == "Set5")]
    psnr = final[final.metric == "psnr_y"].iloc[0]
    assert psnr.n_runs == 3 and psnr.ci_low < psnr.measured < psnr.ci_high and psnr["std"] > 0
    assert psnr.status == "fail"  # 4 iterations are far from the paper: the check can fail
    first = verdicts[(verdicts.run_id == outcome.runs[0]) & (verdicts.dataset == "Set5")]
    assert first[first.metric == "psnr_y"].iloc[0].reason.startswith("1 of 3 seeds")


@pytest.mark.parametrize(
    "flag", [["--max-iters", "0"], ["--max-iters", "-2"], ["--seeds", "0"], ["--nproc", "0"]]
)
def test_nonpositive_counts_are_a_clear_error(flag, capsys):
    from harness.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "drsan_32s_x2", *flag])
    assert exc.value.code == 2 and "must be a positive integer" in capsys.readouterr().err


def test_torchrun_command_drops_nproc():
    from harness.launch import torchrun_command

    cmd = torchrun_command(
        2, ["reproduce", "span_light_x2", "--nproc", "2", "--profile", "smoke", "--nproc=2"]
    )
    assert cmd[1:5] == ["-m", "harness.launch", "--standalone", "--nproc_per_node=2"]
    assert cmd[5:] == ["-m", "harness", "reproduce", "span_light_x2", "--profile", "smoke"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_gpu_check_fails_fast_without_cuda():
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py"], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and "needs a CUDA GPU" in done.stderr
