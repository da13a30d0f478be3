"""Round 3 (issue 24), datasets: no stale or mismatched input scored, nothing written outside the data root.

- one pair rule for every layout: a ×8 LR named `x4` and an LR two rows short are refused in each layout;
- generated LR is tied to the HR content and the degradation it came from: changed HR (12.40 dB instead
  of 24.00 before) or changed degradation regenerates it, a removed HR takes its LR with it, a marker of
  the older (empty) format regenerates everything;
- `reprosr data fetch` over generated LR removes the generated files and the marker, so official files are
  verified (a tampered file is caught) and no longer count as generated (training's substitute check);
- a set name with `/` or `..` is refused; LR generation and fetching refuse a link leading out of the data
  root; reading follows links (documented: BasicSR recommends linking sets into the data root).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
import torch

from harness import data, degrade
from harness.data import fetching, lr_cache, read_image, write_image
from harness.degrade import bicubic_downsample
from harness.errors import UserError

# ------------------------------------------------------------------------------- one rule, all layouts


def _image(h: int, w: int, seed: int) -> torch.Tensor:
    """A smooth image (bicubic LR of it is far from the LR of another seed's image)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    phase = torch.tensor([0.0, 2.0, 4.0])[:, None, None] + seed
    return 0.5 + 0.4 * torch.sin(6 * x[None] + 4 * y[None] + phase)


_LAYOUT_FILES = {  # layout → (HR path, LR path) under the data root, for stem "a" of set "S" at ×4
    "registry": ("S/HR/a.png", "S/LR_bicubic/X4/a.png"),
    "edsr": ("benchmark/S/HR/a.png", "benchmark/S/LR_bicubic/X4/ax4.png"),
    "basicsr": ("S/GTmod12/a.png", "S/LRbicx4/a.png"),
    "ntire": ("S_HR/a.png", "S_LR/ax4.png"),
}


@pytest.mark.parametrize("layout", list(_LAYOUT_FILES))
def test_an_x8_lr_named_x4_is_refused_in_every_layout(tmp_path, layout):
    hr_rel, lr_rel = _LAYOUT_FILES[layout]
    hr = _image(96, 64, 0)
    write_image(tmp_path / hr_rel, hr)
    write_image(tmp_path / lr_rel, bicubic_downsample(hr, 8)[1])  # 12×8 where ×4 needs 24×16
    assert data.locate("S", 4, tmp_path).layout == layout
    with pytest.raises(
        ValueError, match=r"is 8×12 but HR .* is 64×96 .*×4 LR is 16×24; it looks like a ×8 LR"
    ):
        data.benchmark_pairs("S", 4, tmp_path)


@pytest.mark.parametrize("layout", list(_LAYOUT_FILES))
def test_an_lr_two_rows_short_is_refused_in_every_layout(tmp_path, layout):
    hr_rel, lr_rel = _LAYOUT_FILES[layout]
    hr = _image(96, 64, 0)
    write_image(tmp_path / hr_rel, hr)
    write_image(tmp_path / lr_rel, bicubic_downsample(hr, 4)[1][:, :-2])  # HR would be cropped silently
    with pytest.raises(UserError, match=rf"LR .*{Path(lr_rel).name} is 16×22 but HR .*a.png is 64×96"):
        data.benchmark_pairs("S", 4, tmp_path, layout=layout)


# ------------------------------------------------------------------------------ generated LR and its HR


def _hr_only(root: Path, n: int = 3) -> list[Path]:
    files = [root / "Gen" / "HR" / f"{i}.png" for i in range(n)]
    for i, f in enumerate(files):
        write_image(f, _image(24, 36, i))
    return files


def _fresh_lr(hr_file: Path, scale: int) -> torch.Tensor:
    lr = bicubic_downsample(read_image(hr_file), scale)[1]
    return lr.clamp(0, 1).mul(255).round().div(255)


def test_generated_lr_is_made_again_when_its_hr_changes(tmp_path):
    hr_files = _hr_only(tmp_path)
    lr_dir = tmp_path / "Gen" / "LR_bicubic" / "X2"
    data.benchmark_pairs("Gen", 2, tmp_path)
    kept = (lr_dir / "1.png").stat().st_mtime_ns
    write_image(hr_files[0], _image(24, 36, 7))  # new content, same size and name
    pairs = data.benchmark_pairs("Gen", 2, tmp_path)
    assert torch.equal(pairs[0].lr, _fresh_lr(hr_files[0], 2))  # the stale LR was scored before
    assert (lr_dir / "1.png").stat().st_mtime_ns == kept  # unchanged HR: its LR is not made again
    assert all(torch.equal(p.lr, _fresh_lr(f, 2)) for p, f in zip(pairs, hr_files, strict=True))


def test_generated_lr_is_made_again_when_the_degradation_changes(tmp_path, monkeypatch):
    hr_files = _hr_only(tmp_path, n=2)
    data.benchmark_pairs("Gen", 2, tmp_path)
    real = degrade.bicubic_levels

    def brighter(hr: torch.Tensor, scale: int) -> torch.Tensor:
        return real(hr, scale).clamp(max=252) + 3

    monkeypatch.setattr(degrade, "bicubic_levels", brighter)
    pairs = data.benchmark_pairs("Gen", 2, tmp_path)
    for p, f in zip(pairs, hr_files, strict=True):
        assert torch.equal(p.lr, brighter(read_image(f), 2).float().div(255))


def test_a_current_generated_folder_is_read_without_lock_or_write(tmp_path, monkeypatch):
    _hr_only(tmp_path, n=2)
    data.benchmark_pairs("Gen", 2, tmp_path)
    marker = tmp_path / "Gen" / "LR_bicubic" / "X2" / data.GENERATED_MARKER
    stamp = marker.stat().st_mtime_ns

    def no_lock(path):
        raise AssertionError(f"locked {path}")

    monkeypatch.setattr(lr_cache, "locked", no_lock)  # a read-only disk could not take it
    assert len(data.benchmark_pairs("Gen", 2, tmp_path)) == 2
    assert marker.stat().st_mtime_ns == stamp


def test_a_removed_hr_takes_its_generated_lr_with_it(tmp_path):
    hr_files = _hr_only(tmp_path)
    data.benchmark_pairs("Gen", 2, tmp_path)
    hr_files[1].unlink()
    assert [p.name for p in data.benchmark_pairs("Gen", 2, tmp_path)] == ["0", "2"]
    assert sorted(p.name for p in (tmp_path / "Gen" / "LR_bicubic" / "X2").glob("*.png")) == [
        "0.png",
        "2.png",
    ]


def test_an_older_empty_marker_is_regenerated(tmp_path):
    hr_files = _hr_only(tmp_path, n=2)
    lr_dir = tmp_path / "Gen" / "LR_bicubic" / "X2"
    for f in hr_files:  # what an older version left: LR of other HR content, an empty marker
        write_image(lr_dir / f.name, _image(12, 18, 9))
    (lr_dir / data.GENERATED_MARKER).touch()
    pairs = data.benchmark_pairs("Gen", 2, tmp_path)
    assert all(torch.equal(p.lr, _fresh_lr(f, 2)) for p, f in zip(pairs, hr_files, strict=True))
    assert '"hr"' in (lr_dir / data.GENERATED_MARKER).read_text()


# ------------------------------------------------------------------------- fetch over generated LR


def _mini(server, monkeypatch, tmp_path: Path, tamper: str = "") -> dict[str, bytes]:
    """A 'Mini' set (2 images, LR ×2) served as EDSR's benchmark.tar, with a manifest of the true files;
    `tamper` names a file (relative path) served with one byte changed."""
    files: dict[str, bytes] = {}
    for i, stem in enumerate(("a", "b")):
        hr = _image(16, 20, i)
        write_image(tmp_path / "t.png", hr)
        files[f"HR/{stem}.png"] = (tmp_path / "t.png").read_bytes()
        write_image(tmp_path / "t.png", bicubic_downsample(hr, 2)[1])
        files[f"LR_bicubic/X2/{stem}.png"] = (tmp_path / "t.png").read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for rel, body in files.items():
            body = body[:-1] + bytes([body[-1] ^ 1]) if rel == tamper else body
            info = tarfile.TarInfo(
                "benchmark/Mini/" + rel.replace(".png", "x2.png" if "X2" in rel else ".png")
            )
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    server.files["/benchmark.tar"] = buf.getvalue()
    manifests = tmp_path / "manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "Mini.sha256").write_text(
        "".join(f"{hashlib.sha256(b).hexdigest()}  {r}\n" for r, b in files.items())
    )
    url = server.url("/benchmark.tar")
    archives = (
        data.Archive(url, "benchmark/Mini/HR", "HR"),
        data.Archive(url, "benchmark/Mini/LR_bicubic/X2", "LR_bicubic/X2"),
    )
    monkeypatch.setitem(data.DATASETS, "Mini", data.DatasetSpec("Mini", archives, 2, (2,), "Mini.sha256"))
    monkeypatch.setattr(fetching, "MANIFESTS", manifests)
    return files


def _generated_mini(root: Path, files: dict[str, bytes]) -> Path:
    for rel, body in files.items():
        if rel.startswith("HR/"):
            (root / "Mini" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "Mini" / rel).write_bytes(body)
    data.benchmark_pairs("Mini", 2, root)
    lr_dir = root / "Mini" / "LR_bicubic" / "X2"
    assert data.is_generated(lr_dir)
    return lr_dir


def test_fetch_over_generated_lr_removes_the_marker_and_verifies_the_official_files(
    server, monkeypatch, tmp_path
):
    files = _mini(server, monkeypatch, tmp_path)
    lr_dir = _generated_mini(tmp_path / "root", files)
    assert any("generated here" in n for n in data.verify("Mini", tmp_path / "root").notes)
    data.fetch("Mini", tmp_path / "root")
    assert not data.is_generated(lr_dir)  # training's substitute check reads this marker
    report = data.verify("Mini", tmp_path / "root")
    assert report.ok and report.checked == 4 and not report.notes
    body = (lr_dir / "a.png").read_bytes()
    (lr_dir / "a.png").write_bytes(body[:-1] + bytes([body[-1] ^ 1]))  # tampered after the fetch
    report = data.verify("Mini", tmp_path / "root")
    assert report.status == "mismatch" and report.problems[0].startswith("LR_bicubic/X2/a.png: sha256")


def test_a_tampered_official_lr_fetched_over_generated_lr_is_caught(server, monkeypatch, tmp_path):
    files = _mini(server, monkeypatch, tmp_path, tamper="LR_bicubic/X2/b.png")
    lr_dir = _generated_mini(tmp_path / "root", files)
    with pytest.raises(UserError, match="LR_bicubic/X2/b.png: sha256"):
        data.fetch("Mini", tmp_path / "root")
    assert not data.is_generated(lr_dir)
    report = data.verify("Mini", tmp_path / "root")  # and later: checked, never skipped as generated
    assert report.status == "mismatch" and report.problems[0].startswith("LR_bicubic/X2/b.png: sha256")


# ------------------------------------------------------------------------------- names, links, roots


@pytest.mark.parametrize("name", ["../Set5", "Set5/..", "a/b", "..", ".", ""])
def test_a_set_name_that_would_leave_the_data_root_is_refused(datasets_root, name):
    with pytest.raises(UserError, match="not a folder name: a set is read inside the data root"):
        data.benchmark_pairs(name, 4, datasets_root / "Set5")


def test_lr_generation_never_writes_through_a_link_out_of_the_data_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    _hr_only(root, n=1)
    os.symlink(outside, root / "Gen" / "LR_bicubic")
    with pytest.raises(
        ValueError, match=r"refusing to generate LR in .*outside the data root .*through a link"
    ):
        data.benchmark_pairs("Gen", 2, root)
    assert list(outside.iterdir()) == []
    linked_set = tmp_path / "root2"
    linked_set.mkdir()
    os.symlink(root / "Gen", linked_set / "Gen")  # the whole set linked in: its LR would land outside
    with pytest.raises(UserError, match="outside the data root"):
        data.benchmark_pairs("Gen", 2, linked_set)
    assert not (root / "Gen" / "LR_bicubic" / "X2").exists()


def test_reading_follows_links_and_generation_inside_the_root_still_works(tmp_path):
    hr_files = _hr_only(tmp_path / "elsewhere", n=2)
    root = tmp_path / "root"
    (root / "Gen").mkdir(parents=True)
    os.symlink(hr_files[0].parent, root / "Gen" / "HR")  # HR linked in from another disk: read as it is
    pairs = data.benchmark_pairs("Gen", 2, root)
    assert [p.name for p in pairs] == ["0", "1"] and (root / "Gen" / "LR_bicubic" / "X2" / "0.png").is_file()
    assert not (tmp_path / "elsewhere" / "Gen" / "LR_bicubic").exists()


def test_fetch_never_places_files_through_a_link_out_of_the_data_root(server, monkeypatch, tmp_path):
    _mini(server, monkeypatch, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root").mkdir()
    os.symlink(outside, tmp_path / "root" / "Mini")
    with pytest.raises(UserError, match="refusing to place Mini in .*outside the data root"):
        data.fetch("Mini", tmp_path / "root")
    assert list(outside.iterdir()) == []
