"""The leaderboard report: data → table logic on fixture results, escaping, determinism, crops."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness import published, report, store
from harness.recipes import load as load_recipe
from harness.schema import Confidence, ReferenceKind, Status, Tier
from harness.verdicts import Reference, Verdict, verdict_row

EVIL = "<script>alert(1)</script>"
PROVENANCE = {
    "git_commit": "0123abc",
    "package_versions": json.dumps({"torch": "2.13.0"}),
    "device": "cpu: test",
}
SET5 = {
    "baby": {"psnr_y": 30.0, "ssim_y": 0.90, "psnr_rgb": 28.5, "psnr_edsr": 30.1},
    "bird": {"psnr_y": 32.0, "ssim_y": 0.92, "psnr_rgb": 30.7, "psnr_edsr": 32.05},
}


def result(run_id: str, second: int, **kw) -> dict:
    """One results row of the fixture store; ``second`` orders the runs in time."""
    row = {
        **PROVENANCE,
        "run_id": run_id,
        "timestamp": f"2025-01-01T00:00:{second:02d}+00:00",
        "profile": "checkpoint",
        "tier": "checkpoint",
        "recipe": "drsan_32s_x2",
        "recipe_hash": "oldhash",
        "paper": "drsan",
        "model": "drsan",
        "variant": "32s",
        "scale": 2,
        "dataset": "Set5",
        "image": "",
        "metric": "psnr_y",
        "value": 0.0,
        "unit": "",
        "convention": "",
        "color": "y",
        "shave": 2,
        "inference": "whole",
        "degradation": "matlab_bicubic",
        "checkpoint": "ckpt.pth",
        "seed": 0,
        "dataset_checksum": "feed",
        "step": -1,
        "form": "train",
        "tile": 0,
        "tile_overlap": 0,
        "self_ensemble": False,
        "precision": "fp32",
        "runtime_protocol": "",
        "training_data": "",
        "run_state": "",
    }
    return {**row, **kw}


def scores(run_id: str, second: int, per_image: dict, **kw) -> list[dict]:
    """Per-image rows and set-mean rows (image "") of every metric in ``per_image``."""
    rows = [
        result(run_id, second, image=i, metric=m, value=v, **kw)
        for i, ms in per_image.items()
        for m, v in ms.items()
    ]
    metrics = next(iter(per_image.values()))
    rows += [
        result(run_id, second, metric=m, value=float(np.mean([ms[m] for ms in per_image.values()])), **kw)
        for m in metrics
    ]
    return rows


def verdict(
    run_id: str,
    tier: str,
    metric: str,
    status: str,
    dataset: str = "Set5",
    form: str = "",
    kind: ReferenceKind = ReferenceKind.PAPER,
) -> dict:
    reference = Reference(1.0, "paper table", kind, Confidence.HIGH)
    v = Verdict(Tier(tier), "drsan", "32s", 2, dataset, form, metric, 1.0, reference, 0.01, Status(status),
                f"fixture {status}")  # fmt: skip
    return verdict_row(v, run_id=run_id, timestamp="2025-01-01T00:00:09+00:00", profile="checkpoint",
                       recipe="drsan_32s_x2", paper="drsan")  # fmt: skip


CKPT = {"baby": {"psnr_y": 38.0, "ssim_y": 0.9606}, "bird": {"psnr_y": 38.02, "ssim_y": 0.9608}}


def fixture_store(root: Path) -> None:
    """Static, smoke-retrain, two checkpoint runs (older and newer), HSPAN chop/whole, and an evil name."""
    static = dict(profile="smoke", tier="static", dataset="", inference="", checkpoint="", color="", shave=0)
    rows = [
        result("static01", 0, metric="params", value=370_000.0, convention="train form, all", **static),
        result(
            "static01",
            0,
            metric="macs",
            value=85.4,
            unit="G",
            convention="hr720p, multi_adds op rule",
            **static,
        ),
        result("static01", 0, metric="runtime_ms", value=12.5, unit="ms", **static),
        *scores("smoke01", 1, SET5, profile="smoke", tier="retrain", checkpoint="runs/x/last.pth"),
        *[
            result(
                "smoke01",
                1,
                profile="smoke",
                tier="retrain",
                dataset="",
                image="",
                metric="train_loss",
                value=v,
                step=s,
            )
            for s, v in ((0, 0.3), (1, 0.2), (2, 0.15))
        ],
        *scores("ckpt00", 2, {"baby": {"psnr_y": 37.0, "ssim_y": 0.95}}),
        *scores("ckpt01", 3, CKPT),
        *scores(
            "hspan01",
            4,
            {"baby": {"psnr_y": 38.5}},
            recipe="hspan_x2",
            paper="hspan",
            model="hspan",
            variant="",
            inference="chop",
        ),
        *scores(
            "hspan02",
            5,
            {"baby": {"psnr_y": 38.52}},
            recipe="hspan_x2",
            paper="hspan",
            model="hspan",
            variant="",
            inference="whole",
        ),
        *scores("evil01", 6, {"baby": {"psnr_y": 30.0}}, recipe="", model=EVIL, variant=""),
    ]
    store.append(rows, root=root)
    store.append(
        [
            verdict("static01", "static", "params", "pass", "", "train", ReferenceKind.OFFICIAL_CODE),
            verdict("static01", "static", "params", "pass", dataset=""),
            verdict("static01", "static", "macs_hr720p", "fail", dataset=""),
            verdict("ckpt01", "checkpoint", "psnr_y", "pass"),
            verdict("ckpt01", "checkpoint", "ssim_y", "fail"),
            verdict("smoke01", "retrain", "psnr_y", "not run"),
            verdict("smoke01", "retrain", "ssim_y", "not run"),
        ],
        table="verdicts",
        root=root,
    )


@pytest.fixture
def fixture_root(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    fixture_store(root)
    return root


def boards(root: Path):
    return report.leaderboards(store.read("results", root), store.read("verdicts", root), published.load())


def pick(rows: list[dict], **match) -> dict:
    hits = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hits) == 1, hits
    return hits[0]


def test_leaderboard_row_is_the_newest_run_against_the_published_value(fixture_root):
    rows = boards(fixture_root)[(2, "Set5")]
    row = pick(rows, model="drsan", variant="32s", tier="checkpoint")
    pub_psnr = published.lookup("drsan", "32s", 2, "Set5", "psnr").value
    pub_ssim = published.lookup("drsan", "32s", 2, "Set5", "ssim").value
    assert row["run_id"] == "ckpt01"
    assert row["psnr"] == pytest.approx(38.01)
    assert (row["pub_psnr"], row["pub_ssim"]) == (pub_psnr, pub_ssim)
    assert row["d_psnr"] == pytest.approx(38.01 - pub_psnr)
    assert row["d_ssim"] == pytest.approx(0.9607 - pub_ssim)
    assert (row["psnr_verdict"]["status"], row["ssim_verdict"]["status"]) == ("pass", "fail")
    assert (row["params"], row["macs"], row["runtime_ms"]) == (0.37, 85.4, 12.5)
    assert row["macs_convention"] == "hr720p, multi_adds op rule" and row["complexity_source"] == "measured"


def test_smoke_rows_are_their_own_row_with_their_not_run_verdicts(fixture_root):
    row = pick(boards(fixture_root)[(2, "Set5")], model="drsan", variant="32s", tier="retrain")
    assert (row["profile"], row["run_id"], row["psnr"]) == ("smoke", "smoke01", 31.0)
    assert row["psnr_verdict"] == {"status": "not run", "reason": "fixture not run"}


def test_unreproduced_published_models_are_listed_as_not_run(fixture_root):
    all_boards = boards(fixture_root)
    table = published.load()
    quality = table[table.metric.isin(["psnr", "ssim"]) & (table.dataset != "") & (table.color == "y")]
    expected = {(r.model, r.variant, int(r.scale), r.dataset) for r in quality.itertuples()}
    listed = {(r["model"], r["variant"], s, d) for (s, d), rows in all_boards.items() for r in rows}
    assert expected <= listed
    for (scale, dataset), rows in all_boards.items():
        for r in rows:
            if not r["tier"]:
                assert math.isnan(r["psnr"]) and r["psnr_verdict"]["status"] == "not run"
                assert (
                    r["pub_psnr"]
                    == published.lookup(r["model"], r["variant"], scale, dataset, "psnr_y").value
                )


def test_rows_without_a_published_value_say_so(fixture_root):
    row = pick(boards(fixture_root)[(2, "Set5")], model=EVIL)
    assert row["psnr_verdict"]["status"] == "no published value" and math.isnan(row["d_psnr"])


def test_status_counts_of_the_newest_static_verdicts(fixture_root):
    static = report.latest_verdicts(store.read("verdicts", fixture_root), "static")
    assert report.status_counts(static.status) == {
        "pass": 2,
        "fail": 1,
        "indicative": 0,
        "not run": 0,
        "no published value": 0,
    }


def test_knob_effects_are_measured_from_the_same_images(fixture_root):
    results = store.read("results", fixture_root)
    assert "Y vs RGB" not in {e["knob"] for e in report.knob_effects(results)}  # smoke outputs say nothing
    results.loc[results.run_id == "smoke01", "profile"] = "full"
    effects = {e["knob"]: e for e in report.knob_effects(results)}
    rgb = [ms["psnr_y"] - ms["psnr_rgb"] for ms in SET5.values()]
    edsr = [ms["psnr_edsr"] - ms["psnr_y"] for ms in SET5.values()]
    assert effects["Y vs RGB"]["mean"] == pytest.approx(np.mean(rgb)) and effects["Y vs RGB"]["n"] == 2
    assert effects["EDSR calc_psnr vs BasicSR Y"]["max"] == pytest.approx(max(edsr))
    assert effects["chop vs whole image"]["mean"] == pytest.approx(38.5 - 38.52)


def test_markdown_tables_keep_their_heading_as_caption():
    text = (
        "# Kernels\n\n## soft threshold\n\nold\n\nTimes on\nthe GPU.\n\n    python bench.py\n\n"
        "| N | ms |\n|---:|---|\n| 64 | 0.1 |\n| 128 | 0.3 |\n\n| a |\n|---|\n| b |\n"
    )
    assert report.markdown_tables(text) == [
        {
            "caption": "soft threshold",
            "intro": "Times on the GPU.",
            "head": ["N", "ms"],
            "rows": [["64", "0.1"], ["128", "0.3"]],
        },
        {"caption": "soft threshold", "intro": "", "head": ["a"], "rows": [["b"]]},
    ]


def test_plot_points_fall_inside_the_axes():
    series = [
        {
            "name": "a",
            "color": "#000",
            "dash": False,
            "filled": True,
            "points": [{"x": 0.2, "y": 31.0, "label": "p"}, {"x": 30.0, "y": 33.5, "label": "q"}],
        }
    ]
    p = report.plot(series, "params", "PSNR", "t", log_x=True)
    placed = p["series"][0]["points"]
    assert all(0 <= q["px"] <= p["inner_w"] and 0 <= q["py"] <= p["inner_h"] for q in placed)
    assert placed[0]["px"] < placed[1]["px"] and placed[0]["py"] > placed[1]["py"]
    assert [t["label"] for t in p["x_ticks"]][:2] == ["0.2", "0.5"]


def fixture_runs(tmp_path: Path, datasets_root: Path | None) -> Path:
    """A run directory of the smoke run with SR outputs of two Set5 images (HR plus a ±3 level offset)."""
    runs = tmp_path / "runs"
    sr_dir = runs / "drsan_32s_x2-smoke" / "sr" / "Set5"
    sr_dir.mkdir(parents=True)
    if datasets_root is not None:
        for name in ("baby", "bird"):
            hr = np.asarray(
                Image.open(datasets_root / "Set5" / "HR" / f"{name}.png").convert("RGB"), np.int16
            )
            h, w = hr.shape[0] - hr.shape[0] % 2, hr.shape[1] - hr.shape[1] % 2
            Image.fromarray(np.clip(hr[:h, :w] + 3, 0, 255).astype(np.uint8)).save(sr_dir / f"{name}.png")
    run = {
        "run_id": "smoke01",
        "recipe": "drsan_32s_x2",
        "profile": "smoke",
        "data_root": str(datasets_root or tmp_path / "missing"),
        "sr_dirs": {"Set5": str(sr_dir)},
    }
    (runs / "drsan_32s_x2-smoke" / "run.json").write_text(json.dumps(run))
    return runs


def test_site_escapes_names_and_builds_every_page(fixture_root, tmp_path):
    index = report.build_site(tmp_path / "site", fixture_root, fixture_runs(tmp_path, None))
    pages = sorted(p.name for p in index.parent.glob("*.html"))
    assert pages == ["conventions.html", "index.html", "model-drsan_32s_x2.html", "model-hspan_x2.html"]
    html = index.read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'lang="en"' in html and "<caption>" in html and '<th scope="col">' in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    model = (index.parent / "model-drsan_32s_x2.html").read_text()
    assert "not available: no SR outputs of Set5" in model


def test_site_is_byte_identical_for_the_same_inputs(fixture_root, tmp_path, datasets_root):
    runs = fixture_runs(tmp_path, datasets_root)
    first = report.build_site(tmp_path / "a", fixture_root, runs).parent
    second = report.build_site(tmp_path / "b", fixture_root, runs).parent
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert any(f.suffix == ".png" for f in files)
    for f in files:
        assert (first / f).read_bytes() == (second / f).read_bytes(), f


def test_model_page_has_provenance_recipe_sources_crops_and_curve(fixture_root, tmp_path, datasets_root):
    site = tmp_path / "site"
    site.mkdir()
    results = store.read("results", fixture_root)
    page = report.model_page(
        "drsan_32s_x2", results, report.load_runs(fixture_runs(tmp_path, datasets_root)), site
    )
    recipe = load_recipe("drsan_32s_x2")
    assert page["recipe"]["hash"] == recipe.hash and page["recipe"]["stale"] == ["oldhash"]
    assert {f["field"]: f["source"] for f in page["recipe"]["fields"]}["optim.lr"] == recipe.source(
        "optim.lr"
    )
    assert [r["provenance"]["run_id"] for r in page["runs"]] == ["static01", "smoke01", "ckpt00", "ckpt01"]
    smoke = page["runs"][1]
    assert smoke["provenance"]["checksums"] == [("Set5", "feed")]
    table = smoke["per_image"][0]
    assert table["metrics"] == ["psnr_y", "ssim_y", "psnr_rgb", "psnr_edsr"]
    assert [r["image"] for r in table["rows"]] == ["baby", "bird", "set mean"]
    assert table["rows"][-1]["values"][0] == pytest.approx(31.0)
    assert [c["image"] for c in page["comparisons"]] == ["baby", "bird"] and not page["visual_notes"]
    crops = page["comparisons"][0]["crops"]
    assert [c["label"].split()[0] for c in crops] == ["HR", "bicubic", "SR"]
    hr, sr = (np.asarray(Image.open(site / c["src"]), np.int16) for c in (crops[0], crops[2]))
    assert hr.shape == (report.CROP, report.CROP, 3) and np.abs(sr - hr).max() == 3
    assert [p["y"] for p in page["curve"]["series"][0]["points"]] == [0.3, 0.2, 0.15]


def test_an_empty_store_still_lists_the_published_tables(tmp_path):
    index = report.build_site(tmp_path / "site", tmp_path / "empty-store", tmp_path / "no-runs")
    html = index.read_text()
    quality = published.load().query("metric == 'psnr' and dataset != '' and color == 'y'")
    assert html.count('<section class="board"') == len(quality.groupby(["scale", "dataset"]))
    assert "not available: the results store holds no verdicts yet" in html
    assert sorted(p.name for p in index.parent.iterdir()) == ["conventions.html", "index.html"]
