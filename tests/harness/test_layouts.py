"""Dataset layouts: the same Set5 in the registry, EDSR, BasicSR, NTIRE and free layouts gives identical
pairs; one pair rule for all; LR folders without ground truth; the crop to the scale."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from harness import data
from harness.data import Pair, crop_to_scale, folder_pairs, read_image, write_image
from harness.errors import UserError

SCALE = 4
SET5 = ("baby", "bird", "butterfly", "head", "woman")


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def _layouts(shared: Path, root: Path) -> dict[str, tuple[str, Path]]:
    """Set5 ×4 laid out four ways under `root` (symlinks to the shared files, renamed as each layout names
    them) plus free folders; returns layout → (set name, data root)."""
    hr, lr = shared / "Set5" / "HR", shared / "Set5" / "LR_bicubic" / f"X{SCALE}"
    for stem in SET5:
        _link(hr / f"{stem}.png", root / "edsr" / "benchmark" / "Set5" / "HR" / f"{stem}.png")
        _link(
            lr / f"{stem}.png", root / "edsr" / "benchmark" / "Set5" / "LR_bicubic" / "X4" / f"{stem}x4.png"
        )
        _link(hr / f"{stem}.png", root / "basicsr" / "Set5" / "GTmod12" / f"{stem}.png")
        _link(lr / f"{stem}.png", root / "basicsr" / "Set5" / "LRbicx4" / f"{stem}.png")
        _link(hr / f"{stem}.png", root / "ntire" / "Set5_HR" / f"{stem}.png")
        _link(lr / f"{stem}.png", root / "ntire" / "Set5_LR" / f"{stem}x4.png")
        _link(hr / f"{stem}.png", root / "free" / "gt" / f"{stem}.png")
        _link(lr / f"{stem}.png", root / "free" / "lq" / f"{stem}_x4.png")
    return {
        "registry": ("Set5", shared),
        "edsr": ("Set5", root / "edsr"),
        "basicsr": ("Set5", root / "basicsr"),
        "ntire": ("Set5", root / "ntire"),
    }


def _same(a: list[Pair], b: list[Pair]) -> bool:
    return [p.name for p in a] == [p.name for p in b] and all(
        torch.equal(x.hr, y.hr) and torch.equal(x.lr, y.lr) for x, y in zip(a, b, strict=True)
    )


def test_set5_x4_pairs_are_identical_in_every_layout(datasets_root, tmp_path):
    layouts = _layouts(datasets_root, tmp_path)
    reference = data.benchmark_pairs("Set5", SCALE, datasets_root)
    assert [p.name for p in reference] == list(SET5)
    assert reference[-1].hr.shape == (3, 344, 228) and reference[-1].lr.shape == (3, 86, 57)
    for layout, (name, root) in layouts.items():
        assert data.locate(name, SCALE, root).layout == layout  # detected
        assert _same(data.benchmark_pairs(name, SCALE, root), reference), layout
        assert _same(data.benchmark_pairs(name, SCALE, root, layout=layout), reference), layout  # chosen
    free = folder_pairs(tmp_path / "free" / "gt", tmp_path / "free" / "lq", SCALE, filename_tmpl="{}_x4")
    assert _same(free, reference)
    assert not list(tmp_path.rglob(data.GENERATED_MARKER))  # nothing generated: every LR was read


def test_checksums_follow_the_files_of_each_layout(datasets_root, tmp_path, monkeypatch):
    _layouts(datasets_root, tmp_path)
    free = data.free_folders(tmp_path / "free" / "gt", tmp_path / "free" / "lq", SCALE, "{}_x4").checksum()
    monkeypatch.chdir(tmp_path)  # relative folders: the same files, the same checksum
    assert data.free_folders(Path("free/gt"), Path("free/lq"), SCALE, "{}_x4").checksum() == free
    ntire = data.locate("Set5", SCALE, tmp_path / "ntire")
    assert ntire.checksum() == data.dataset_checksum("Set5", tmp_path / "ntire")
    edsr = data.locate("Set5", SCALE, tmp_path / "edsr").checksum()
    (tmp_path / "edsr" / "benchmark" / "Set5" / "LR_bicubic" / "X4" / "babyx4.png").unlink()
    write_image(
        tmp_path / "edsr" / "benchmark" / "Set5" / "LR_bicubic" / "X4" / "babyx4.png",
        torch.zeros(3, 128, 128),
    )
    assert data.locate("Set5", SCALE, tmp_path / "edsr").checksum() != edsr


def test_an_explicit_layout_is_looked_for_only_where_it_lies(datasets_root, tmp_path):
    _layouts(datasets_root, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no HR images in .*Set5/GTmod\*"):
        data.benchmark_pairs("Set5", SCALE, tmp_path / "ntire", layout="basicsr")
    with pytest.raises(
        ValueError, match="unknown dataset layout 'mmsr'; known: registry, edsr, basicsr, ntire"
    ):
        data.benchmark_pairs("Set5", SCALE, tmp_path / "ntire", layout="mmsr")


def test_one_pair_rule_names_missing_and_extra_files(tmp_path):
    for i in range(3):
        write_image(tmp_path / "hr" / f"im{i}.png", torch.rand(3, 8, 8))
    for stem in ("im0", "im2", "stray"):
        write_image(tmp_path / "lr" / f"{stem}x2.png", torch.rand(3, 4, 4))
    with pytest.raises(FileNotFoundError) as info:
        folder_pairs(tmp_path / "hr", tmp_path / "lr", 2, "{}x2")
    message = str(info.value)
    assert "1 of 3 HR images have no LR (im1.png → im1x2.png)" in message
    assert "1 LR images have no HR (strayx2.png)" in message
    (tmp_path / "lr" / "strayx2.png").rename(tmp_path / "lr" / "im1x2.png")
    assert [p.name for p in folder_pairs(tmp_path / "hr", tmp_path / "lr", 2, "{}x2")] == [
        "im0",
        "im1",
        "im2",
    ]


def test_the_pair_rule_crops_hr_to_the_scale_and_refuses_any_other_size(tmp_path):
    write_image(tmp_path / "hr" / "a.png", torch.rand(3, 14, 11))
    write_image(tmp_path / "lr" / "a.png", torch.rand(3, 3, 2))  # 14×11 cropped to 12×8 at ×4
    (pair,) = folder_pairs(tmp_path / "hr", tmp_path / "lr", 4)
    assert pair.hr.shape == (3, 12, 8) and torch.equal(
        pair.hr, read_image(tmp_path / "hr" / "a.png")[:, :12, :8]
    )
    write_image(tmp_path / "lr" / "a.png", torch.rand(3, 2, 2))  # a row short
    with pytest.raises(
        ValueError,
        match=r"LR .*a.png is 2×2 but HR .*a.png is 11×14 \(cropped .*: 8×12\), whose ×4 LR is 2×3",
    ):
        folder_pairs(tmp_path / "hr", tmp_path / "lr", 4)


@pytest.mark.parametrize("template", ["", "x4", "{name}x4", "{}{}", "{", "../{}", "sub/{}x4"])
def test_a_template_without_one_placeholder_is_refused(tmp_path, template):
    write_image(tmp_path / "hr" / "a.png", torch.rand(3, 4, 4))
    with pytest.raises(UserError, match="must hold one"):
        folder_pairs(tmp_path / "hr", tmp_path / "lr", 4, template)


def test_lr_images_reads_every_image_and_skips_other_files(tmp_path):
    write_image(tmp_path / "b.png", torch.rand(3, 5, 6))
    write_image(tmp_path / "a.png", torch.rand(3, 7, 4))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    images = data.lr_images(tmp_path)
    assert [(i.name, i.path.name, tuple(i.lr.shape)) for i in images] == [
        ("a", "a.png", (3, 7, 4)),
        ("b", "b.png", (3, 5, 6)),
    ]


def test_lr_images_refuses_corrupt_empty_missing_and_clashing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images in .*empty"):
        data.lr_images(tmp_path / "empty")
    with pytest.raises(NotADirectoryError, match="absent"):
        data.lr_images(tmp_path / "absent")
    write_image(tmp_path / "set" / "a.png", torch.rand(3, 4, 4))
    (tmp_path / "set" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(data.ImageReadError, match="b.png"):
        data.lr_images(tmp_path / "set")
    (tmp_path / "set" / "b.png").unlink()
    write_image(tmp_path / "set" / "a.jpg", torch.rand(3, 4, 4))
    with pytest.raises(UserError, match="a.jpg and a.png .*share a name"):
        data.lr_images(tmp_path / "set")


def test_crop_to_scale():
    img = torch.arange(3 * 7 * 10, dtype=torch.float32).view(3, 7, 10)
    assert torch.equal(crop_to_scale(img, 3), img[:, :6, :9])
    assert torch.equal(crop_to_scale(img[None], 2), img[None, :, :6, :10])
    assert torch.equal(crop_to_scale(img, 1), img)
