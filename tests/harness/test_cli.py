"""The `reprosr` command line: each command with --json prints one JSON object; errors are clear."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import architectures
from harness import downloads, published, store
from harness.cli import main
from harness.recipes import load as load_recipe


def run_json(capsys, *argv: str) -> dict:
    main([*argv, "--json"])
    out = capsys.readouterr().out
    return json.loads(out)


def test_models_lists_every_paper(capsys):
    payload = run_json(capsys, "models")
    names = {m["name"]: m for m in payload["models"]}
    assert set(names) == set(architectures.MODELS)
    for name, spec in architectures.MODELS.items():
        assert names[name]["variants"] == {v or "": list(s) for v, s in spec.scales.items()}
        assert (names[name]["test_time"], names[name]["forms"]) == (spec.test_time, list(spec.forms))


def test_degrade_then_metrics_against_matlab_lr(capsys, datasets_root, tmp_path):
    hr = datasets_root / "Set5" / "HR" / "baby.png"
    out = tmp_path / "lr.png"
    payload = run_json(capsys, "degrade", str(hr), "--scale", "4", "--out", str(out))
    assert out.exists() and payload["lr_size"] == [128, 128]
    matlab = datasets_root / "Set5" / "LR_bicubic" / "X4" / "baby.png"
    # Our LR against MATLAB's: PSNR with shave 0 would be inf if identical; ≥ 1-gray-level agreement is
    # what the degradation test asserts, here the CLI path must give a very high PSNR.
    scores = run_json(capsys, "metrics", str(out), str(matlab), "--scale", "1")
    psnr = float(scores["non_finite"]["psnr_y"]) if scores["psnr_y"] is None else scores["psnr_y"]
    assert psnr > 60 and scores["ssim_y"] > 0.999


def test_complexity_matches_published_drsan_multi_adds(capsys):
    payload = run_json(capsys, "complexity", "drsan", "--scale", "2", "--variant", "32s")
    official = published.official("drsan", "32s", 2, "train", "", "params")
    assert payload["params"] == official.value and payload["input_size"] == [1, 3, 360, 640]
    pub = published.lookup("drsan", "32s", 2, None, "multi_adds")
    assert abs(payload["macs"] - pub.value) / pub.value < 0.005


def test_complexity_ntire_convention(capsys):
    payload = run_json(
        capsys,
        "complexity",
        "span_esr",
        "--scale",
        "4",
        "--variant",
        "ch28",
        "--form",
        "deploy",
        "--convention",
        "ntire256",
    )
    assert payload["params"] == published.official("span_esr", "ch28", 4, "deploy", "", "params").value
    pub = published.lookup("span_esr", "ch28", 4, None, "flops")
    assert abs(payload["macs"] - pub.value) / pub.value < 0.005


def test_eval_with_a_wrong_width_checkpoint_says_what_to_pass(capsys, tmp_path, datasets_root):
    ckpt = tmp_path / "ch28.pth"
    torch.save(architectures.build("span_esr", 4, "ch28", form="deploy").state_dict(), ckpt)
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "eval",
                "span_esr",
                "--scale",
                "4",
                "--variant",
                "ch48",
                "--form",
                "deploy",
                "--checkpoint",
                str(ckpt),
                "--dataset",
                "Set5",
                "--data-root",
                str(datasets_root),
                "--json",
                "--no-store",
            ]
        )
    assert exc.value.code == 2
    err = json.loads(capsys.readouterr().out)["error"]
    assert "28" in err and "ch28" in err


def test_eval_on_set5_writes_per_image_rows(capsys, tmp_path, datasets_root, monkeypatch):
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    torch.save(
        {"params": architectures.build("drsan", 4, "32s", channels=8, n_drags=1, n_units=1).state_dict()},
        ckpt,
    )
    # A published-size model would need the official weights; a tiny override model exercises the path.
    monkeypatch.setattr(
        architectures,
        "build",
        lambda *a, **k: architectures.registry.build(*a, channels=8, n_drags=1, n_units=1, **k),
    )
    payload = run_json(
        capsys,
        "eval",
        "drsan",
        "--scale",
        "4",
        "--checkpoint",
        str(ckpt),
        "--dataset",
        "Set5",
        "--data-root",
        str(datasets_root),
    )
    assert [r["image"] for r in payload["per_image"]] == ["baby", "bird", "butterfly", "head", "woman"]
    mean = sum(r["psnr_y"] for r in payload["per_image"]) / 5
    assert payload["psnr_y"] == pytest.approx(mean)
    rows = store.read("results")
    assert set(rows.image) == {"", "baby", "bird", "butterfly", "head", "woman"}
    assert (rows.profile == "checkpoint").all() and rows.dataset_checksum.str.len().eq(64).all()
    timed = rows[rows.metric == "runtime_ms"]
    assert len(timed) == 6 and (timed.value > 0).all() and set(timed.unit) == {"ms"}
    assert payload["runtime_ms"] == pytest.approx(sorted(r["runtime_ms"] for r in payload["per_image"])[2])


def test_data_list_and_missing_dataset_error(capsys, tmp_path):
    payload = run_json(capsys, "data", "list", "--data-root", str(tmp_path))
    assert {"Set5", "Set14", "B100", "Urban100", "Manga109"} <= {d["name"] for d in payload["datasets"]}
    ckpt = tmp_path / "drsan.pth"  # a valid checkpoint, so that only the dataset is missing
    torch.save(architectures.build("drsan", 2, "32s").state_dict(), ckpt)
    argv = ["eval", "drsan", "--scale", "2", "--checkpoint", str(ckpt), "--dataset", "Set5"]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--data-root", str(tmp_path), "--no-store", "--json"])
    assert exc.value.code == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert "Set5" in error and str(tmp_path) in error


def test_python_dash_m_harness_is_the_same_program():
    out = subprocess.run(
        [sys.executable, "-m", "harness", "models", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert {m["name"] for m in json.loads(out.stdout)["models"]} >= {"drsan", "hspan"}


def test_verify_prints_a_truthful_verdict_table(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "empty-store"))
    payload = run_json(capsys, "verify", "drsan_32s_x2", "--data-root", str(tmp_path))
    by_tier: dict[str, set] = {}
    for v in payload["verdicts"]:
        by_tier.setdefault(v["tier"], set()).add(v["status"])
    # Manga109 has no published DRSAN value: "no published value" in both tiers, never "not run".
    assert by_tier == {
        "static": {"pass"},
        "checkpoint": {"not run", "no published value"},
        "retrain": {"not run", "no published value"},
    }
    retrain = [v for v in payload["verdicts"] if v["tier"] == "retrain"]
    assert all(
        ("no training run is in the results store" in v["reason"]) == (v["source"] != "") for v in retrain
    )
    checkpoint = [v for v in payload["verdicts"] if v["tier"] == "checkpoint"]
    sets = load_recipe("drsan_32s_x2").eval.benchmarks
    assert {(v["dataset"], v["metric"]) for v in checkpoint} == {
        (d, m) for d in sets for m in ("psnr_y", "ssim_y")
    }
    not_run = sum(v["status"] == "not run" for v in checkpoint + retrain)
    unpublished = sum(v["status"] == "no published value" for v in checkpoint + retrain)
    main(["verify", "drsan_32s_x2", "--data-root", str(tmp_path)])
    text = capsys.readouterr().out
    assert "macs_hr720p [train] vs paper" in text
    assert (
        f"verdicts: 3 pass, 0 fail, 0 indicative, {not_run} not run, {unpublished} no published value" in text
    )


def test_a_failed_download_is_a_clear_error_not_a_traceback(capsys, monkeypatch, tmp_path):
    def offline(url, dest, sha256=None):
        raise OSError(f"downloading {url} failed (offline); run the command again to resume")

    monkeypatch.setattr(downloads, "download", offline)
    monkeypatch.setenv("REPROSR_DATA", str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        main(["data", "fetch", "Set5"])
    assert exc.value.code == 2
    assert "run the command again to resume" in capsys.readouterr().err
