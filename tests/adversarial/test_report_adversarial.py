"""Adversarial cases of the report (issue 13, cases 7 and 11): a mistyped store or output folder, a PSNR of
infinity, damaged inputs, and recipe names that differ only in characters a file name cannot hold."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from harness import store
from harness.cli import main
from harness.report import build_site
from harness.report.pages import page_key
from tests.harness.test_report import fixture_store, result, scores


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return exc.value.code, capsys.readouterr().err


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def committed_store_untouched():
    """No test may write into the committed store (it changes only through `reprosr publish` by a person)."""
    before = sorted(store.COMMITTED_ROOT.rglob("*"))
    yield
    assert sorted(store.COMMITTED_ROOT.rglob("*")) == before, "a test wrote into results/runs"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    fixture_store(tmp_path / "store")
    return build_site(tmp_path / "site", tmp_path / "store", tmp_path / "none").parent


# ----------------------------------------------------------------------- case 7: a mistyped --results / --out


def test_a_mistyped_results_folder_is_refused_and_the_site_is_untouched(capsys, site, tmp_path):
    before = tree(site)
    code, err = run_cli(capsys, "report", "--results", str(tmp_path / "stroe"), "--out", str(site))
    assert code == 2 and "no results store at" in err and "stroe" in err
    assert tree(site) == before


def test_a_folder_without_store_parts_is_not_an_empty_leaderboard(capsys, site, tmp_path):
    (tmp_path / "results").mkdir()
    before = tree(site)
    code, err = run_cli(capsys, "report", "--results", str(tmp_path), "--out", str(site))
    assert code == 2 and "is not a results store" in err
    assert tree(site) == before


def test_an_out_folder_that_is_not_a_site_is_never_replaced(capsys, tmp_path):
    fixture_store(tmp_path / "store")
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    code, err = run_cli(capsys, "report", "--results", str(tmp_path / "store"), "--out", str(home))
    assert code == 2 and "refusing to replace it" in err
    assert tree(home) == {"thesis.tex": b"years of work"}


def test_a_local_preview_never_overwrites_the_committed_site(capsys, monkeypatch, tmp_path):
    from harness.paths import REPO

    fixture_store(tmp_path / "store")
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    code, err = run_cli(capsys, "report", "--local", "--out", str(REPO / "reports"))
    assert code == 2 and "private preview" in err
    main(["report", "--local", "--out", str(tmp_path / "preview")])
    assert (tmp_path / "preview" / "index.html").is_file()


# ---------------------------------------------------------------------------------- case 11: damaged inputs


def test_a_psnr_of_infinity_is_shown_not_fatal(tmp_path):
    """Identical SR and HR give PSNR = ∞: the site still builds, prints ∞, and ranks and plots the rest."""
    root = tmp_path / "store"
    fixture_store(root)
    identical = {"baby": {"psnr_y": math.inf, "ssim_y": 1.0, "psnr_rgb": math.inf, "psnr_edsr": math.inf}}
    store.append(scores("perfect01", 8, identical, profile="full", tier="retrain"), root=root)
    index = build_site(tmp_path / "site", root, tmp_path / "none")
    html = index.read_text()
    assert "∞" in html and not re.search(r"\b-?inf(inity)?\b", html, re.IGNORECASE)
    model = (index.parent / "model-drsan_32s_x2.html").read_text()
    assert "∞" in model
    build_site(tmp_path / "site", root, tmp_path / "none")  # and again: nothing is broken for good


def test_bad_package_versions_name_the_part_file(capsys, tmp_path):
    root = tmp_path / "store"
    fixture_store(root)
    part = store.append(
        [result("bad01", 9, metric="psnr_y", value=30.0, package_versions="{torch: 2")], root=root
    )
    code, err = run_cli(capsys, "report", "--results", str(root), "--out", str(tmp_path / "site"))
    assert code == 2 and str(part) in err and "bad01" in err and "package_versions" in err
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize("manifest", ["{not json", json.dumps({"comparisons": [{"dataset": "Set5"}]}),
                                      json.dumps({"comparisons": [{"dataset": "Set5", "image": "baby",
                                                  "box": [0, 0, 8, 8], "crops": [{"label": "HR",
                                                  "file": "../../etc/passwd"}]}]})])  # fmt: skip
def test_a_damaged_crops_manifest_names_its_file(capsys, tmp_path, manifest):
    root = tmp_path / "store"
    fixture_store(root)
    artifacts = tmp_path / "artifacts"
    (artifacts / "ckpt01").mkdir(parents=True)
    (artifacts / "ckpt01" / "crops.json").write_text(manifest)
    with pytest.raises(ValueError) as exc:
        build_site(tmp_path / "site", root, artifacts)
    assert str(artifacts / "ckpt01" / "crops.json") in str(exc.value)


def test_a_damaged_run_json_names_its_file_when_publishing(capsys, tmp_path, monkeypatch):
    root = tmp_path / "store"
    fixture_store(root)
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "run.json").write_text("{truncated")
    monkeypatch.setenv("REPROSR_RESULTS", str(root))
    monkeypatch.setattr(store, "COMMITTED_ROOT", tmp_path / "committed")
    code, err = run_cli(capsys, "publish", "ckpt01", "--runs", str(tmp_path / "runs"))
    assert code == 2 and str(tmp_path / "runs" / "x" / "run.json") in err
    assert not (tmp_path / "committed").exists()  # nothing written before every input was checked


def test_recipes_differing_in_unsafe_characters_get_their_own_pages(tmp_path):
    root = tmp_path / "store"
    fixture_store(root)
    for i, name in enumerate(("a<b", "a>b", "a/b", "..")):
        store.append(scores(f"odd{i}", 10 + i, {"baby": {"psnr_y": 30.0 + i}}, recipe=name), root=root)
    site = build_site(tmp_path / "site", root, tmp_path / "none").parent
    pages = {name: site / f"model-{page_key(name)}.html" for name in ("a<b", "a>b", "a/b", "..")}
    assert len(set(pages.values())) == 4
    for name, page in pages.items():
        assert page.parent == site and page.is_file()
        assert f"<h1>{name.replace('<', '&lt;').replace('>', '&gt;')}</h1>" in page.read_text()
