"""Cases 4 and 6: LR generation is atomic and safe when two processes race on a fresh dataset, a
generation cut short is completed, and an LR folder with other names is an error, never mixed."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import data
from harness.degrade import bicubic_downsample


def _dataset(root: Path, n: int = 12, size: int = 48) -> list[Path]:
    rng = np.random.default_rng(3)
    files = []
    for i in range(n):
        img = torch.from_numpy(rng.integers(0, 256, (3, size, size + 12), dtype=np.uint8)).float() / 255
        files.append(root / "Race" / "HR" / f"{i:03d}.png")
        data.write_image(files[-1], img)
    return files


def _pairs_in_child(root: str, wait_for_first_file: bool, results) -> None:
    torch.set_num_threads(1)
    lr_dir = Path(root) / "Race" / "LR_bicubic" / "X2"
    deadline = time.monotonic() + 60
    # the second process starts once the first has written some LR: the moment the old code failed
    while wait_for_first_file and not any(lr_dir.glob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.0005)
    try:
        pairs = data.benchmark_pairs("Race", 2, root)
        results.put(("ok", [p.lr.sum().item() for p in pairs]))
    except BaseException as exc:  # reported to the parent, which fails the test with it
        results.put(("error", repr(exc)))


def test_two_processes_racing_on_a_fresh_dataset_both_succeed(tmp_path):
    hr_files = _dataset(tmp_path, n=40)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_pairs_in_child, args=(str(tmp_path), w, results)) for w in (True, False)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [o[0] for o in outcomes] == ["ok", "ok"], outcomes
    assert outcomes[0][1] == outcomes[1][1]
    lr_dir = tmp_path / "Race" / "LR_bicubic" / "X2"
    assert sorted(p.name for p in lr_dir.iterdir() if not p.name.startswith(".")) == [
        f.name for f in hr_files
    ]
    assert not [p for p in lr_dir.iterdir() if p.name.endswith(".tmp")]
    for f in hr_files:
        expected = bicubic_downsample(data.read_image(f), 2)[1]
        assert torch.equal(data.read_image(lr_dir / f.name), (expected.clamp(0, 1) * 255).round() / 255)


def test_a_generation_cut_short_is_completed_by_the_next_run(tmp_path):
    hr_files = _dataset(tmp_path, n=4)
    lr_dir = tmp_path / "Race" / "LR_bicubic" / "X2"
    lr_dir.mkdir(parents=True)
    (lr_dir / data.GENERATED_MARKER).touch()  # what a killed generation leaves: the marker, some files
    data.write_image(lr_dir / hr_files[0].name, bicubic_downsample(data.read_image(hr_files[0]), 2)[1])
    assert len(data.benchmark_pairs("Race", 2, tmp_path)) == 4
    assert len(list(lr_dir.glob("*.png"))) == 4


def test_an_lr_folder_with_other_names_is_an_error_and_is_left_alone(tmp_path):
    hr_files = _dataset(tmp_path, n=3)
    lr_dir = tmp_path / "Race" / "LR_bicubic" / "X2"
    for f in hr_files:  # named like no layout's LR (neither 000.png nor EDSR's 000x2.png)
        lr = bicubic_downsample(data.read_image(f), 2)[1]
        data.write_image(lr_dir / f"lr_{f.stem}.png", lr)
    before = sorted(p.name for p in lr_dir.iterdir())
    with pytest.raises(
        FileNotFoundError, match=r"3 of 3 HR images have no LR .*3 LR images have no HR \(lr_000"
    ):
        data.benchmark_pairs("Race", 2, tmp_path)
    assert sorted(p.name for p in lr_dir.iterdir()) == before
    assert not (lr_dir / data.GENERATED_MARKER).exists()


def test_mirror_named_lr_in_the_registry_folders_is_read_as_the_edsr_layout(tmp_path):
    hr_files = _dataset(tmp_path, n=3)
    lr_dir = tmp_path / "Race" / "LR_bicubic" / "X2"
    for f in hr_files:  # the mirrors' naming, <name>x2.png: EDSR's layout, read as it lies
        data.write_image(lr_dir / f"{f.stem}x2.png", bicubic_downsample(data.read_image(f), 2)[1])
    before = sorted(p.name for p in lr_dir.iterdir())
    assert data.locate("Race", 2, tmp_path).layout == "edsr"
    assert [p.name for p in data.benchmark_pairs("Race", 2, tmp_path)] == ["000", "001", "002"]
    assert sorted(p.name for p in lr_dir.iterdir()) == before
    with pytest.raises(FileNotFoundError, match="3 of 3 HR images have no LR"):  # asked for by name
        data.benchmark_pairs("Race", 2, tmp_path, layout="registry")
    assert sorted(p.name for p in lr_dir.iterdir()) == before


def test_an_incomplete_official_lr_folder_is_still_refused(tmp_path):
    hr_files = _dataset(tmp_path, n=3)
    lr_dir = tmp_path / "Race" / "LR_bicubic" / "X2"
    data.write_image(lr_dir / hr_files[0].name, bicubic_downsample(data.read_image(hr_files[0]), 2)[1])
    with pytest.raises(FileNotFoundError, match=r"2 of 3 HR images have no LR \(001.png, 002.png\)"):
        data.benchmark_pairs("Race", 2, tmp_path)
    assert not (lr_dir / data.GENERATED_MARKER).exists()
