"""`reprosr reproduce RECIPE --checkpoint official`: the zoo release is fetched, verified, converted and
evaluated on the recipe's benchmark sets; when it cannot be reached the command says so in a few lines (where
to put a file fetched by other means, the --checkpoint PATH alternative) and stores nothing."""

from __future__ import annotations

import json
import math
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import released, store
from harness.cli import main
from harness.data import write_image
from harness.errors import UserError
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


def _nothing_stored(results: Path) -> bool:
    return not any(results.glob("*/part-*.parquet"))


def test_offline_official_checkpoint_is_a_short_error_and_stores_nothing(results, monkeypatch, tmp_path):
    _offline(monkeypatch)
    with pytest.raises(UserError) as info:
        reproduce("drsan_32s_x2", checkpoint="official", data_root=tmp_path / "d", out_dir=tmp_path / "r")
    message = str(info.value)
    assert message.startswith("could not fetch drsan_32s_x2_official")
    assert str(released.cached_path("drsan_32s_x2_official").parent) in message  # where a copy goes
    assert "DRSAN32sx2.index" in message and "--checkpoint PATH" in message
    assert "resume" not in message  # no partial download exists
    assert len(message) < 600 and _nothing_stored(results)


def test_offline_official_checkpoint_exits_2_on_the_command_line(results, monkeypatch, tmp_path, capsys):
    _offline(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(
            ["reproduce", "drsan_32s_x2", "--checkpoint", "official", "--out", str(tmp_path / "r"), "--json"]
        )
    assert exit_.value.code == 2
    assert json.loads(capsys.readouterr().out)["error"].startswith("could not fetch")
    assert _nothing_stored(results)


def test_a_partial_download_is_the_only_case_that_advises_resuming(results, monkeypatch, tmp_path):
    _offline(monkeypatch)
    folder = released.cached_path("drsan_32s_x2_official").parent
    folder.mkdir(parents=True)
    (folder / "DRSAN32sx2.data-00000-of-00001.part").write_bytes(b"half")
    with pytest.raises(UserError, match="run the command again to resume"):
        reproduce("drsan_32s_x2", checkpoint="official", data_root=tmp_path / "d", out_dir=tmp_path / "r")


def test_official_without_a_release_says_so(results, tmp_path):
    with pytest.raises(UserError, match="no official checkpoint of hspan"):
        reproduce("hspan_x2", checkpoint="official", data_root=tmp_path / "d", out_dir=tmp_path / "r")
    assert _nothing_stored(results)


def test_manual_release_says_where_to_put_the_file(results, tmp_path):
    with pytest.raises(UserError) as info:
        reproduce("hspan_x4", checkpoint="official", data_root=tmp_path / "d", out_dir=tmp_path / "r")
    assert "pan.baidu.com" in str(info.value)
    assert str(released.cached_path("hspan_x4_official")) in str(info.value)
    assert _nothing_stored(results)


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
    assert {v.status for v in others} == {"not run"}  # a published value exists, the set is not here
    manga = [v for v in outcome.verdicts if v.tier == "checkpoint" and v.dataset == "Manga109"]
    assert {v.status for v in manga} == {"no published value"}  # nothing published: never "not run"
    assert not [v for v in outcome.verdicts if v.tier == "retrain"]  # nothing was trained
