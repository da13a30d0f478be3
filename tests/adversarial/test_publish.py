"""Issue 19 (publish is all or nothing and idempotent under concurrency) and issue 24's run-id and link
cases for publish: twice, concurrently, killed between its parts, crops from another run's SR images, runs
that measured nothing, run ids that name paths, a linked crops.json. Processes are real (forked)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness import cli, publish, store
from harness.files import locked
from tests.harness.test_store import result_row, verdict_row

FORK = mp.get_context("fork")


def _source(root: Path, run_id: str = "r1", measured: bool = True) -> Path:
    """A local store with one run: a static count, an embedded-set PSNR (NaN when not measured), verdicts."""
    store.append(
        [
            result_row(run_id=run_id, metric="params", value=1000.0, dataset="", color="", inference=""),
            result_row(
                run_id=run_id,
                tier="retrain",
                dataset="embedded",
                value=30.0 if measured else float("nan"),
            ),
        ],
        root=root,
    )
    store.append(
        [verdict_row(run_id=run_id), verdict_row(run_id=run_id, metric="macs_hr720p")], "verdicts", root
    )
    return root


def _paths(tmp_path: Path) -> dict:
    return {
        "source": _source(tmp_path / "local"),
        "target": tmp_path / "committed",
        "artifacts": tmp_path / "artifacts",
        "runs_dir": tmp_path / "runs",
    }


def _counts(target: Path, run_id: str = "r1") -> tuple[int, int]:
    return tuple(int((store.read(t, target).run_id == run_id).sum()) for t in ("results", "verdicts"))


def test_publishing_twice_adds_nothing_the_second_time_and_says_so(tmp_path, capsys, monkeypatch):
    paths = _paths(tmp_path)
    first = publish.publish(["r1"], **paths)
    assert (first[0].results, first[0].verdicts) == (2, 2)
    monkeypatch.setattr(store, "COMMITTED_ROOT", paths["target"])
    monkeypatch.setattr(publish.store, "COMMITTED_ROOT", paths["target"])
    monkeypatch.setattr(publish, "repo_file", lambda _: paths["artifacts"])
    cli.main(["publish", "r1", "--source", str(paths["source"]), "--runs", str(paths["runs_dir"]), "--json"])
    again = json.loads(capsys.readouterr().out)["published"][0]
    assert (again["results"], again["verdicts"]) == (0, 0) and "already published" in again["note"]
    assert _counts(paths["target"]) == (2, 2)


def _publish_in_child(paths: dict, ready: Path) -> None:
    ready.touch()
    publish.publish(["r1"], **paths)


def test_two_concurrent_publishes_add_the_rows_once(tmp_path):
    paths = _paths(tmp_path)
    paths["target"].mkdir()
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    with locked(paths["target"] / publish.LOCK):  # both start while the store is held, then race for it
        children = [FORK.Process(target=_publish_in_child, args=(paths, r)) for r in ready]
        for child in children:
            child.start()
        while not all(r.exists() for r in ready):
            os.sched_yield()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert _counts(paths["target"]) == (2, 2)


def _publish_killed_at_the_verdicts(paths: dict) -> None:
    append = store.append

    def append_then_die(rows, table="results", root=None):
        if table == "verdicts":
            os.kill(os.getpid(), signal.SIGKILL)  # killed between the results part and the verdicts part
        return append(rows, table, root)

    store.append = append_then_die
    publish.publish(["r1"], **paths)


def test_a_publish_killed_between_its_parts_is_completed_by_the_next(tmp_path):
    paths = _paths(tmp_path)
    child = FORK.Process(target=_publish_killed_at_the_verdicts, args=(paths,))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert _counts(paths["target"]) == (2, 0) and not (paths["target"] / publish.PUBLISHED).exists()
    done = publish.publish(["r1"], **paths)
    assert (done[0].results, done[0].verdicts) == (0, 2)
    assert _counts(paths["target"]) == (2, 2)
    assert (paths["target"] / publish.PUBLISHED / "r1.json").is_file()


def test_a_run_that_measured_nothing_is_refused(tmp_path):
    source = _source(tmp_path / "local", "empty1", measured=False)
    with pytest.raises(ValueError, match="measured nothing"):
        publish.publish(["empty1"], source, tmp_path / "committed", tmp_path / "a", tmp_path / "runs")
    assert not (tmp_path / "committed").exists()


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "..", ".hidden", ""])
def test_run_ids_naming_paths_are_refused_by_publish_and_the_store(tmp_path, run_id):
    with pytest.raises(ValueError, match="invalid run id"):
        publish.publish([run_id], tmp_path / "local", tmp_path / "committed", tmp_path / "a", tmp_path)
    with pytest.raises(ValueError, match="invalid run id"):
        store.validate([result_row(run_id=run_id)])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _run_dir(tmp_path: Path, run_id: str, manifest_run: str) -> tuple[Path, Path]:
    """A run folder whose SR image of the embedded set 'astronaut' is recorded in its SR manifest."""
    sr = tmp_path / "runs" / "x" / "sr" / "embedded"
    sr.mkdir(parents=True)
    pixels = np.full((16, 16, 3), 100, np.uint8)
    Image.fromarray(pixels).save(sr / "astronaut.png")
    digest = hashlib.sha256(pixels.tobytes()).hexdigest()
    manifest = {"datasets": {"embedded": {"run_id": manifest_run}},
                "images": {"embedded/astronaut.png": {"sha256_pixels": digest}}}  # fmt: skip
    (sr.parent / "manifest.json").write_text(json.dumps(manifest))
    run = {"run_id": run_id, "recipe": "drsan_32s_x2", "sr_dirs": {"embedded": "sr/embedded"}}
    (sr.parent.parent / "run.json").write_text(json.dumps(run))
    return sr / "astronaut.png", tmp_path / "runs"


def test_sr_images_another_run_overwrote_are_refused_for_crops(tmp_path):
    paths = _paths(tmp_path)
    png, _ = _run_dir(tmp_path, "r1", "r1")
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(png)  # a later run wrote into the same --out
    with pytest.raises(ValueError, match="not the SR image run r1 scored"):
        publish.publish(["r1"], **paths)
    assert not paths["target"].exists() and not paths["artifacts"].exists()


def test_an_sr_manifest_of_another_run_is_refused_for_crops(tmp_path):
    paths = _paths(tmp_path)
    _run_dir(tmp_path, "r1", "r2")
    with pytest.raises(ValueError, match="are run r2's, not run r1's"):
        publish.publish(["r1"], **paths)


def test_relative_sr_folders_are_read_from_the_run_folder_not_the_working_directory(tmp_path, monkeypatch):
    paths = _paths(tmp_path)
    _run_dir(tmp_path, "r1", "r1")
    monkeypatch.chdir(tmp_path / "local")
    run_dir = publish.find_run_dir(paths["runs_dir"], "r1")
    assert [f.name for f in publish.sr_files(run_dir, "r1")["embedded"]] == ["astronaut.png"]


def test_a_linked_crops_manifest_is_refused_and_its_target_untouched(tmp_path):
    paths = _paths(tmp_path)
    outside = tmp_path / "outside.json"
    outside.write_text("precious")
    (paths["artifacts"] / "r1").mkdir(parents=True)
    (paths["artifacts"] / "r1" / "crops.json").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link.*not followed"):
        publish.publish(["r1"], **paths)
    assert outside.read_text() == "precious" and not paths["target"].exists()


def test_a_linked_artifact_folder_is_refused(tmp_path):
    paths = _paths(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    paths["artifacts"].mkdir()
    (paths["artifacts"] / "r1").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="symbolic link"):
        publish.publish(["r1"], **paths)
    assert list((tmp_path / "elsewhere").iterdir()) == []
