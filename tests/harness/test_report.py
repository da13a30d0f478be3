"""The leaderboard report: store → tables on a fixture store, formatting, escaping, determinism, publish, and
the committed site rebuilt byte for byte from the committed store."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from harness import published, store
from harness.paths import REPO
from harness.publish import publish
from harness.recipes import load as load_recipe
from harness.report import build_site, leaderboards, numbers, queries, run_tables
from harness.report.markdown import markdown_tables
from harness.report.pages import model_page, page_key
from harness.report.plots import plot
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
        "checkpoint_hash": "",
        "seed": 0,
        "dataset_checksum": "feed",
        "step": -1,
        "form": "train",
        "tile": 0,
        "tile_overlap": 0,
        "self_ensemble": False,
        "precision": "fp32",
        "runtime_protocol": "",
        "training_data": "DIV2K",
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
            checkpoint_hash="hspan-weights",
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
            checkpoint_hash="hspan-weights",  # the same weights: the two runs pair as one knob effect
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


@pytest.fixture(autouse=True)
def committed_store_untouched():
    """No test may write into the committed store (it changes only through `reprosr publish` by a person)."""
    before = sorted(store.COMMITTED_ROOT.rglob("*"))
    yield
    assert sorted(store.COMMITTED_ROOT.rglob("*")) == before, "a test wrote into results/runs"


@pytest.fixture
def fixture_root(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    fixture_store(root)
    return root


def inputs(root: Path) -> queries.Inputs:
    return queries.load(root)


def board(root: Path, scale: int, dataset: str) -> dict:
    return next(
        b for b in leaderboards.leaderboards(inputs(root)) if (b["scale"], b["dataset"]) == (scale, dataset)
    )


def pick(entries: list[dict], **match) -> dict:
    hits = [e for e in entries if all(e[k] == v for k, v in match.items())]
    assert len(hits) == 1, hits
    return hits[0]


def test_reproduced_entry_is_the_newest_non_smoke_run_with_its_verdicts(fixture_root):
    entries = board(fixture_root, 2, "Set5")["entries"]
    e = pick(entries, model="drsan", variant="32s", origin="reproduced")
    assert (e["run_id"], e["tier"]) == ("ckpt01", "checkpoint")
    assert e["psnr"] == pytest.approx(38.01) and e["ssim"] == pytest.approx(0.9607)
    assert {(v["measure"], v["kind"], v["status"]) for v in e["verdicts"]} == {
        ("psnr_y", "paper", "pass"),
        ("ssim_y", "paper", "fail"),
    }
    cx = e["complexity"]
    assert (cx.params, cx.macs, cx.macs_convention, cx.source) == (
        0.37,
        85.4,
        "hr720p, multi_adds op rule",
        "measured",
    )
    assert e["fingerprint"].training_data == "DIV2K" and e["fingerprint"].color == "Y (BT.601)"


def test_smoke_runs_never_enter_a_leaderboard_but_the_diagnostics(fixture_root):
    for b in leaderboards.leaderboards(inputs(fixture_root)):
        assert all(e.get("profile") != "smoke" and e["run_id"] != "smoke01" for e in b["entries"])
    smoke = run_tables.diagnostics(inputs(fixture_root))
    assert [r["run_id"] for r in smoke] == ["static01", "smoke01"]  # both smoke-profile runs, in time order
    assert (smoke[1]["iterations"], smoke[1]["loss"]) == (2, 0.15)
    assert smoke[1]["sets"][0]["psnr"] == pytest.approx(31.0)


def test_published_entries_carry_kind_confidence_and_their_stated_conventions(fixture_root):
    e = pick(board(fixture_root, 2, "Set5")["entries"], model="drsan", variant="32s", origin="published")
    row = published.lookup("drsan", "32s", 2, "Set5", "psnr")
    assert (e["psnr"], e["kind"], e["confidence"]) == (row.value, "paper", row.confidence)
    fp = e["fingerprint"]
    assert (fp.color, fp.shave, fp.rounding) == ("Y (BT.601)", "2", "uint8")
    assert "LR generator" in fp.unknown() and "training data" in fp.unknown()


def test_ranks_compare_only_numbers_with_the_same_fingerprint(fixture_root):
    b = board(fixture_root, 2, "Set5")
    for group in b["groups"]:
        members = [e for e in b["entries"] if e["group"] == group["letter"]]
        assert {e["fingerprint"] for e in members} == {group["fingerprint"]}
        ranked = sorted((e for e in members if e["rank"]), key=lambda e: e["rank"])
        assert [e["rank"] for e in ranked] == list(range(1, len(ranked) + 1))
        assert [e["psnr"] for e in ranked] == sorted((e["psnr"] for e in ranked), reverse=True)
    reproduced = pick(b["entries"], model="drsan", variant="32s", origin="reproduced")
    paper = pick(b["entries"], model="drsan", variant="32s", origin="published")
    assert reproduced["group"] != paper["group"]


def test_verdict_summary_counts_the_newest_verdict_per_paper_and_tier(fixture_root):
    summary = {
        (r["paper"], r["tier"]): r["counts"] for r in queries.verdict_summary(inputs(fixture_root).verdicts)
    }
    assert summary[("drsan", "static")] == {
        "pass": 2, "fail": 1, "indicative": 0, "not run": 0, "no published value": 0,
    }  # fmt: skip
    assert summary[("drsan", "checkpoint")]["pass"] == 1 and summary[("drsan", "checkpoint")]["fail"] == 1
    assert summary[("drsan", "retrain")]["not run"] == 2


def test_v1_verdict_labels_are_read_with_their_reference_kind():
    v = store.read("verdicts", Path(__file__).parent / "data" / "store_v1")  # parts version 1 wrote
    assert (v.schema_version == 1).all()
    out = queries.normalize_verdicts(v)
    assert not out.metric.str.contains(" vs ").any()  # store.read translated every v1 label
    checks = out[(out.measure == "psnr_y") & (out.tier == "checkpoint")]
    assert "official code" in set(checks.kind)


def test_checkpoint_section_lists_measured_verdicts_and_groups_the_rest(fixture_root):
    measured, not_run = queries.checkpoint_results(inputs(fixture_root).verdicts)
    assert [(v["measure"], v["status"]) for v in measured] == [("psnr_y", "pass"), ("ssim_y", "fail")]
    assert not_run == []


def test_knob_effects_are_measured_from_the_same_images(fixture_root):
    results = inputs(fixture_root).results
    assert "Y vs RGB" not in {
        e["knob"] for e in run_tables.knob_effects(results)
    }  # smoke outputs say nothing
    results.loc[results.run_id == "smoke01", "profile"] = "full"
    effects = {e["knob"]: e for e in run_tables.knob_effects(results)}
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
    assert markdown_tables(text) == [
        {"caption": "soft threshold", "intro": "Times on the GPU.", "head": ["N", "ms"],
         "rows": [["64", "0.1"], ["128", "0.3"]]},
        {"caption": "soft threshold", "intro": "", "head": ["a"], "rows": [["b"]]},
    ]  # fmt: skip


def test_plot_points_fall_inside_the_axes_and_non_finite_points_are_dropped():
    points = [
        {"x": 0.2, "y": 31.0, "label": "p", "tag": "32s"},
        {"x": 30.0, "y": 33.5, "label": "q", "tag": "48m"},
        {"x": 3.0, "y": math.inf, "label": "identical images", "tag": "inf"},
    ]
    p = plot(
        [{"name": "a", "color": "#000", "dash": "", "filled": True, "points": points}],
        "x",
        "y",
        "t",
        log_x=True,
    )
    placed = p["series"][0]["points"]
    assert [q["tag"] for q in placed] == ["32s", "48m"]
    assert all(0 <= q["px"] <= p["inner_w"] and 0 <= q["py"] <= p["inner_h"] for q in placed)
    assert placed[0]["px"] < placed[1]["px"] and placed[0]["py"] > placed[1]["py"]
    assert [t["label"] for t in p["x_ticks"]][:2] == ["0.2", "0.5"]
    only_inf = [{"name": "b", "color": "#000", "dash": "", "filled": True, "points": points[2:]}]
    assert plot(only_inf, "x", "y", "t", log_x=False) is None


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (32.288698, "M", "32.29 M"),
        (85.4923, "G", "85.49 G"),
        (0.150688, "M", "0.151 M"),
        (1234.5, "G", "1234.50 G"),
    ],
)
def test_counts_are_written_as_researchers_write_them(value, unit, text):
    assert numbers.scaled(value, unit) == text


def test_no_number_is_printed_in_e_notation():
    assert numbers.measured(32288698.0) == "32,288,698" and numbers.measured(31.731633) == "31.7316"
    assert numbers.significant(3.32818e-06, sign=True) == "+3.33×10⁻⁶"
    assert numbers.fixed(math.inf, 2) == "∞" and numbers.fixed(math.nan, 2) == ""
    assert numbers.measured(-0.00012) == "−1.20×10⁻⁴"


@given(st.text(max_size=12), st.text(max_size=12))
def test_page_names_are_injective_and_file_safe(a, b):
    assert re.fullmatch(r"[A-Za-z0-9_.~-]+", page_key(a)) and not page_key(a).startswith(".")
    if a != b:
        assert page_key(a) != page_key(b)


def test_the_report_package_imports_no_run_stage():
    forbidden = {
        "harness.verify",
        "harness.reproduce",
        "harness.training.loop",
        "harness.evaluate",
        "harness.complexity",
    }
    for path in sorted((REPO / "harness" / "report").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            assert not forbidden & set(names), (path, names)


def fixture_runs(tmp_path: Path, datasets_root: Path | None) -> Path:
    """A run directory of run ckpt01 with SR outputs of two Set5 images (HR plus a +3 level offset)."""
    runs = tmp_path / "runs"
    sr_dir = runs / "drsan_32s_x2-checkpoint" / "sr" / "Set5"
    sr_dir.mkdir(parents=True)
    if datasets_root is not None:
        for name in ("baby", "bird"):
            hr = np.asarray(
                Image.open(datasets_root / "Set5" / "HR" / f"{name}.png").convert("RGB"), np.int16
            )
            h, w = hr.shape[0] - hr.shape[0] % 2, hr.shape[1] - hr.shape[1] % 2
            Image.fromarray(np.clip(hr[:h, :w] + 3, 0, 255).astype(np.uint8)).save(sr_dir / f"{name}.png")
    hashes = {
        f"Set5/{f.name}": {
            "sha256_pixels": hashlib.sha256(np.asarray(Image.open(f).convert("RGB")).tobytes()).hexdigest()
        }
        for f in sr_dir.glob("*.png")
    }
    sr_manifest = {"datasets": {"Set5": {"run_id": "ckpt01"}}, "images": hashes}
    (sr_dir.parent / "manifest.json").write_text(json.dumps(sr_manifest))
    run = {
        "run_id": "ckpt01",
        "recipe": "drsan_32s_x2",
        "profile": "checkpoint",
        "data_root": str(datasets_root or tmp_path / "missing"),
        "sr_dirs": {"Set5": str(sr_dir)},
    }
    (runs / "drsan_32s_x2-checkpoint" / "run.json").write_text(json.dumps(run))
    return runs


def test_publish_copies_rows_and_crops_once(fixture_root, tmp_path, datasets_root):
    committed, artifacts = tmp_path / "committed", tmp_path / "artifacts"
    runs = fixture_runs(tmp_path, datasets_root)
    done = publish(["ckpt01"], source=fixture_root, target=committed, artifacts=artifacts, runs_dir=runs)
    local = inputs(fixture_root).results
    assert (done[0].results, done[0].crops) == ((local.run_id == "ckpt01").sum(), 6)
    copied = store.read("results", committed)
    assert set(copied.run_id) == {"ckpt01"} and len(copied) == done[0].results
    assert set(store.read("verdicts", committed).run_id) == {"ckpt01"}
    manifest = json.loads((artifacts / "ckpt01" / "crops.json").read_text())
    assert [c["image"] for c in manifest["comparisons"]] == ["baby", "bird"]
    hr, sr = (
        np.asarray(Image.open(artifacts / "ckpt01" / f"Set5-baby-{k}.png"), np.int16) for k in ("HR", "SR")
    )
    assert hr.shape == (96, 96, 3) and np.abs(sr - hr).max() == 3
    again = publish(["ckpt01"], source=fixture_root, target=committed, artifacts=artifacts, runs_dir=runs)
    assert (again[0].results, again[0].verdicts) == (0, 0) and len(store.read("results", committed)) == len(
        copied
    )


def test_publishing_an_unknown_run_writes_nothing(fixture_root, tmp_path):
    committed = tmp_path / "committed"
    with pytest.raises(ValueError, match="'nope' is in neither the local store"):
        publish(
            ["ckpt01", "nope"],
            source=fixture_root,
            target=committed,
            artifacts=tmp_path / "a",
            runs_dir=tmp_path,
        )
    assert not committed.exists()


def test_model_page_has_verdicts_provenance_recipe_sources_crops_and_curve(
    fixture_root, tmp_path, datasets_root
):
    artifacts = tmp_path / "artifacts"
    runs = fixture_runs(tmp_path, datasets_root)
    publish(["ckpt01"], source=fixture_root, target=tmp_path / "c", artifacts=artifacts, runs_dir=runs)
    site = tmp_path / "site"
    page = model_page("drsan_32s_x2", inputs(fixture_root), artifacts, site)
    recipe = load_recipe("drsan_32s_x2")
    assert page["recipe"]["hash"] == recipe.hash and page["recipe"]["stale"] == ["oldhash"]
    sources = {f["field"]: f["source"] for f in page["recipe"]["fields"]}
    assert sources["optim.lr"] == recipe.source("optim.lr")
    assert [r["provenance"]["run_id"] for r in page["runs"]] == ["static01", "smoke01", "ckpt00", "ckpt01"]
    assert {(v["tier"], v["status"]) for v in page["verdicts"]} >= {
        ("checkpoint", "pass"),
        ("static", "fail"),
    }
    smoke = page["runs"][1]
    assert smoke["provenance"]["checksums"] == [("Set5", "feed")]
    table = smoke["per_image"][0]
    assert table["metrics"] == ["psnr_y", "ssim_y", "psnr_rgb", "psnr_edsr"]
    assert [r["image"] for r in table["rows"]] == ["baby", "bird", "set mean"]
    assert table["rows"][-1]["values"][0] == pytest.approx(31.0)
    crops = page["comparisons"][0]["crops"]
    assert [c["label"].split()[0] for c in crops] == ["HR", "bicubic", "SR"]
    assert (site / crops[0]["src"]).read_bytes() == (artifacts / "ckpt01" / crops[0]["file"]).read_bytes()
    assert [p["y"] for p in page["curve"]["series"][0]["points"]] == [0.3, 0.2, 0.15]


def site_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def broken_links(site: Path) -> list[str]:
    """Every href/src of every page that resolves neither to a file of the site (and its #anchor) nor to an
    http(s) URL."""
    broken = []
    ids = {p.name: set(re.findall(r'\bid="([^"]+)"', p.read_text())) for p in site.glob("*.html")}
    for page in sorted(site.glob("*.html")):
        for link in re.findall(r'(?:href|src)="([^"]+)"', page.read_text()):
            if re.match(r"https?://[^\s/]+\.[^\s]+$", link):
                continue
            target, _, anchor = link.partition("#")
            target = target or page.name
            if not (site / target).is_file() or (anchor and anchor not in ids.get(target, set())):
                broken.append(f"{page.name}: {link}")
    return broken


def test_site_escapes_names_links_resolve_and_builds_every_page(fixture_root, tmp_path):
    index = build_site(tmp_path / "site", fixture_root, tmp_path / "no-artifacts")
    pages = sorted(p.name for p in index.parent.glob("*.html"))
    assert {"index.html", "diagnostics.html", "conventions.html", "model-drsan_32s_x2.html"} <= set(pages)
    html = index.read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'lang="en"' in html and "<caption>" in html and '<th scope="col">' in html
    for page in index.parent.glob("*.html"):
        cells = re.findall(r'<td class="num[^"]*"[^>]*>(.*?)</td>', page.read_text(), flags=re.S)
        assert not [c for c in cells if re.search(r"\d[eE][+-]?\d", c)], page.name
    assert broken_links(index.parent) == []


def test_site_is_byte_identical_for_the_same_inputs(fixture_root, tmp_path, datasets_root):
    artifacts = tmp_path / "artifacts"
    publish(["ckpt01"], source=fixture_root, target=tmp_path / "c", artifacts=artifacts,
            runs_dir=fixture_runs(tmp_path, datasets_root))  # fmt: skip
    first = build_site(tmp_path / "a", fixture_root, artifacts).parent
    second = build_site(tmp_path / "b", fixture_root, artifacts).parent
    assert site_files(first) == site_files(second) and any(f.suffix == ".png" for f in site_files(first))
    for f in site_files(first):
        assert (first / f).read_bytes() == (second / f).read_bytes(), f


def test_a_rebuild_replaces_the_site_and_drops_stale_pages(fixture_root, tmp_path):
    site = build_site(tmp_path / "site", fixture_root, tmp_path / "none").parent
    (site / "model-gone.html").write_text("stale")
    build_site(site, fixture_root, tmp_path / "none")
    assert not (site / "model-gone.html").exists() and (site / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site", "store"]  # no temporary folder left


def test_committed_site_is_rebuilt_byte_for_byte_from_the_committed_store(tmp_path):
    """`nox -s report` from a clean clone reproduces the committed reports/ exactly."""
    built = build_site(tmp_path / "site").parent
    committed = REPO / "reports"
    assert site_files(built) == site_files(committed)
    different = [
        str(f) for f in site_files(built) if (built / f).read_bytes() != (committed / f).read_bytes()
    ]
    assert different == [], "reports/ is stale: run `nox -s report` and commit it"
    assert broken_links(built) == []


def test_committed_site_shows_the_ntire_checkpoint_verdict_in_front():
    html = (REPO / "reports" / "index.html").read_text()
    front = html.split('id="leaderboards"', 1)[0]
    assert 'id="verdicts"' in front and "span_esr ch28 ×4" in front
    ckpt = front.split('id="checkpoint"', 1)[1]
    assert re.search(r"31\.7316</td>\s*<td[^>]*>31\.7316 <small>official code", ckpt)
    assert 'data-status="pass"' in ckpt


def test_an_empty_local_preview_is_refused_not_an_empty_leaderboard(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results store"):
        build_site(tmp_path / "site", tmp_path / "missing-store")
    assert not (tmp_path / "site").exists()


def test_store_defaults_keep_local_runs_out_of_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv("REPROSR_RESULTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert store.default_root() == tmp_path / "cache" / "reprosr" / "results"
    assert store.COMMITTED_ROOT == REPO / "results" / "runs"
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "mine"))
    assert store.default_root() == tmp_path / "mine"


def test_cited_documents_are_in_the_repository():
    from harness.report import citations

    assert {d["repo_path"] for d in citations.documents()} == set(citations.CITED_DOCS.values())
    text = "../shared/specs/fidelity-notes.md (github laoyangui/HSPAN); arXiv 2404.10343"
    links = [s["href"] for s in citations.segments(text) if s["href"]]
    assert links == ["doc-specs-fidelity-notes.html", "https://github.com/laoyangui/HSPAN",
                     "https://arxiv.org/abs/2404.10343"]  # fmt: skip


def test_publish_command_prints_what_it_added(fixture_root, tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setenv("REPROSR_RESULTS", str(fixture_root))
    monkeypatch.setattr(store, "COMMITTED_ROOT", tmp_path / "committed")
    main(["publish", "ckpt01", "ckpt00", "--runs", str(tmp_path / "no-runs"), "--json"])
    payload = json.loads(capsys.readouterr().out)["published"]
    assert [(p["run_id"], p["crops"]) for p in payload] == [("ckpt01", 0), ("ckpt00", 0)]
    assert all(p["results"] > 0 and "no run directory" in p["note"] for p in payload)
    assert set(store.read("results", tmp_path / "committed").run_id) == {"ckpt00", "ckpt01"}


def test_publishing_a_second_run_of_a_published_checkpoint_adds_a_measurement_not_a_check(tmp_path):
    """Re-publishing the same measurement under the same conventions: the index counts and every check of
    every model page stay as they were; only the new run's measurements are added."""
    local, committed = tmp_path / "local", tmp_path / "committed"

    def run(run_id: str, second: int) -> None:
        rows = scores(run_id, second, SET5, checkpoint_hash="c0ffee")
        store.append(rows, root=local)
        checks = [
            verdict(run_id, t, m, s)
            for t, m, s in (
                ("checkpoint", "psnr_y", "pass"),
                ("checkpoint", "ssim_y", "pass"),
                ("static", "params", "pass"),
            )
        ]
        for v in checks:
            v["timestamp"] = rows[0]["timestamp"]
        checks.append(
            {
                **verdict(run_id, "checkpoint", "psnr_y", "pass", kind=ReferenceKind.OFFICIAL_CODE),
                "reference_source": "official code",
                "timestamp": rows[0]["timestamp"],
            }
        )
        store.append(checks, "verdicts", local)  # fmt: skip

    def views() -> tuple:
        inputs = queries.load(committed)
        latest = queries.latest_verdicts(inputs.verdicts)
        checks = sorted(latest[[*queries.VERDICT_KEYS, "status"]].astype(str).itertuples(index=False))
        return queries.verdict_summary(inputs.verdicts), checks, len(inputs.results)

    run("first0000001", 1)
    publish(["first0000001"], source=local, target=committed, artifacts=tmp_path / "a", runs_dir=tmp_path)
    summary, checks, n_results = views()
    run("second000002", 2)
    publish(["second000002"], source=local, target=committed, artifacts=tmp_path / "a", runs_dir=tmp_path)
    summary2, checks2, n_results2 = views()
    assert summary2 == summary and checks2 == checks
    assert n_results2 == 2 * n_results  # the new measurements are there
    assert sum(r["total"] for r in summary) == 4  # psnr_y (paper, official code), ssim_y, params


def test_nothing_committed_holds_a_path_of_the_machine_that_made_it():
    """The committed store, artifacts and site name checkpoints and folders relatively: no absolute path of
    a home, a checkout or a temp folder (the store's text columns and every site file are read)."""
    machine_paths = re.compile(r"(?<![\w.])/(?:root|home|work|tmp|Users|var/folders|mnt)/[\w.-]+")
    hits = []
    for table in ("results", "verdicts"):
        frame = store.read(table, store.COMMITTED_ROOT)
        for column in frame.columns:
            hits += [f"{table}.{column}: {v}" for v in set(frame[column]) if machine_paths.search(str(v))]
    for root in (REPO / "reports", REPO / "results" / "artifacts"):
        for path in root.rglob("*"):
            if path.is_file() and path.suffix in (".html", ".json", ".csv", ".svg", ".txt"):
                found = machine_paths.search(path.read_text(encoding="utf-8", errors="replace"))
                hits += [f"{path.relative_to(REPO)}: {found.group()}"] if found else []
    assert hits == []


def test_the_index_says_per_paper_how_many_published_numbers_were_checked():
    html = (REPO / "reports" / "index.html").read_text()
    sentences = re.findall(
        r"<li>(\w+): (\d+) published accuracy numbers \(PSNR/SSIM\); (\d+) checked, (\d+) reproduce", html
    )
    assert {s[0] for s in sentences} >= {"span_esr", "drsan"}
    for _, published_n, checked, ok in sentences:
        assert int(ok) <= int(checked) <= int(published_n)
