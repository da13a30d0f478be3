"""Issue 24 for the report: no symbolic link under `results/artifacts/<run>/` is followed into the site, and
the `.building-*` folder of a report killed mid-render does not stay for good."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.report import build_site
from tests.harness.test_report import fixture_store


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _artifacts(tmp_path: Path, crop: str = "Set5-baby-HR.png") -> Path:
    """Published crops of run ckpt01 (of the fixture store) naming one crop file."""
    folder = tmp_path / "artifacts" / "ckpt01"
    folder.mkdir(parents=True)
    comparison = {"dataset": "Set5", "image": "baby", "box": [0, 0, 4, 4],
                  "crops": [{"label": "HR", "file": crop}]}  # fmt: skip
    (folder / "crops.json").write_text(json.dumps({"run_id": "ckpt01", "comparisons": [comparison]}))
    return folder


def test_a_linked_crop_is_refused_and_its_target_never_copied(tmp_path):
    fixture_store(tmp_path / "store")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the artifacts folder")
    folder = _artifacts(tmp_path)
    (folder / "Set5-baby-HR.png").symlink_to(secret)
    with pytest.raises(ValueError, match=r"Set5-baby-HR\.png: it is a symbolic link .*not followed"):
        build_site(tmp_path / "site", tmp_path / "store", tmp_path / "artifacts")
    site_files = [p for p in tmp_path.rglob("*") if p.is_file() and "site" in p.parts]
    assert not any(p.read_bytes() == secret.read_bytes() for p in site_files)


@pytest.mark.parametrize("linked", ["crops.json", "run folder"])
def test_a_linked_manifest_or_run_folder_is_refused(tmp_path, linked):
    fixture_store(tmp_path / "store")
    real = _artifacts(tmp_path / "real")
    (real / "Set5-baby-HR.png").write_bytes(b"png")
    if linked == "crops.json":
        folder = tmp_path / "artifacts" / "ckpt01"
        folder.mkdir(parents=True)
        (folder / "crops.json").symlink_to(real / "crops.json")
    else:
        (tmp_path / "artifacts").mkdir()
        (tmp_path / "artifacts" / "ckpt01").symlink_to(real)
    with pytest.raises(ValueError, match="symbolic link"):
        build_site(tmp_path / "site", tmp_path / "store", tmp_path / "artifacts")


def test_building_folders_of_killed_reports_are_removed_by_the_next_build(tmp_path):
    fixture_store(tmp_path / "store")
    dead = _dead_pid()
    for name in (f".site.building-{dead}-k1ll3d", f".site.old-{dead}-k1ll3d"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.html").write_text("half a site")
    build_site(tmp_path / "site", tmp_path / "store", tmp_path / "none")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site", "store"]
