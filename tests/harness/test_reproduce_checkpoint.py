"""`reprosr reproduce RECIPE --checkpoint official`: the zoo release is fetched, verified, converted and
evaluated on the recipe's benchmark sets; when it cannot be reached every cell says "not run" and why."""

from __future__ import annotations

import math
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import released, store
from harness.data import write_image
from harness.released import PinnedFile
from harness.reproduce import reproduce

TF_FIXTURES = Path(__file__).resolve().parents[1] / "architectures" / "data" / "drsan_tf_fixtures.tar.xz"


@pytest.fixture
def results(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    monkeypatch.setenv("REPROSR_DATA", str(tmp_path / "cache"))
    return tmp_path / "store"


def _offline(monkeypatch):
    def download(url, dest, sha256=None):
        raise OSError(f"downloading {url} failed ([Errno -2] Name or service not known)")

    monkeypatch.setattr("harness.downloads.download", download)


def test_offline_official_checkpoint_is_not_run_with_the_reason(results, monkeypatch, tmp_path):
    _offline(monkeypatch)
    outcome = reproduce(
        "drsan_32s_x2", checkpoint="official", data_root=tmp_path / "d", out_dir=tmp_path / "r"
    )
    cells = [v for v in outcome.verdicts if v.tier == "checkpoint"]
    assert {v.dataset for v in cells} == {"Set5", "Set14", "B100", "Urban100", "Manga109"}
    assert {v.status for v in cells} == {"not run"}
    assert all("drsan_32s_x2_official could not be fetched here" in v.reason for v in cells)
    assert all("--checkpoint official" in v.reason for v in cells)
    set5 = next(v for v in cells if v.dataset == "Set5" and v.metric.startswith("psnr_y"))
    assert set5.reference.value == pytest.approx(37.99)  # the published cell it would check
    stored = store.read("verdicts")
    assert (stored[stored.tier == "checkpoint"].status == "not run").all()


def test_official_without_a_release_says_so(results, tmp_path):
    outcome = reproduce("hspan_x2", checkpoint="official", data_root=tmp_path / "d", out_dir=tmp_path / "r")
    cells = [v for v in outcome.verdicts if v.tier == "checkpoint"]
    assert cells and all(v.status == "not run" and "no official checkpoint" in v.reason for v in cells)


def test_manual_release_says_where_to_put_the_file(results, tmp_path):
    outcome = reproduce("hspan_x4", checkpoint="official", data_root=tmp_path / "d", out_dir=tmp_path / "r")
    cells = [v for v in outcome.verdicts if v.tier == "checkpoint"]
    assert cells and all(v.status == "not run" and "pan.baidu.com" in v.reason for v in cells)
    assert all(str(released.cached_path("hspan_x4_official")) in v.reason for v in cells)


def test_official_tf_release_is_fetched_converted_and_evaluated(results, monkeypatch, tmp_path):
    """The DRSAN 32s ×2 entry, re-pinned to a checkpoint TensorFlow wrote with the official graph, is served
    locally: fetched, verified, converted and evaluated on the recipe's sets (here a tiny Set5)."""
    with tarfile.open(TF_FIXTURES) as tar:
        tar.extractall(tmp_path / "tf", filter="data")
    folder = tmp_path / "tf" / "drsan32s_x2"
    names = ("checkpoint", "drsan32s_x2.index", "drsan32s_x2.data-00000-of-00001")
    files = tuple(
        PinnedFile(
            n, (f"https://example.invalid/{n}",), git_blob=released.git_blob_id((folder / n).read_bytes())
        )
        for n in names
    )
    entry = replace(released.RELEASED["drsan_32s_x2_official"], files=files)
    monkeypatch.setitem(released.RELEASED, entry.name, entry)

    def download(url, dest, sha256=None):
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copyfile(folder / url.rsplit("/", 1)[-1], dest))

    monkeypatch.setattr("harness.downloads.download", download)
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(
            tmp_path / "d" / "Set5" / "HR" / f"{i}.png", torch.from_numpy(rng.random((3, 32, 28))).float()
        )
    outcome = reproduce(
        "drsan_32s_x2", checkpoint="official", data_root=tmp_path / "d", out_dir=tmp_path / "r"
    )
    set5 = [v for v in outcome.verdicts if v.tier == "checkpoint" and v.dataset == "Set5"]
    assert {v.status for v in set5} <= {"pass", "fail"} and all(math.isfinite(v.measured) for v in set5)
    assert released.cached_path(entry.name).is_file()  # converted once into the cache
    rows = store.read("results")
    assert set(rows[rows.tier == "checkpoint"].checkpoint) == {entry.name}
    others = [v for v in outcome.verdicts if v.tier == "checkpoint" and v.dataset == "Urban100"]
    assert {v.status for v in others} == {"not run"}  # not in this data root
