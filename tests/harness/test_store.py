"""Results store: schema validation, atomic append-only parts, concurrent writers, provenance."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
from pathlib import Path

import pandas as pd
import pytest

from harness import store

PROVENANCE = store.provenance()


def result_row(**changes) -> dict:
    row = {
        **PROVENANCE, "run_id": "r1", "profile": "smoke", "tier": "static", "recipe": "drsan_x2",
        "recipe_hash": "abc", "paper": "drsan", "model": "drsan", "variant": "32s", "scale": 2,
        "dataset": "Set5", "image": "", "metric": "psnr_y", "value": 37.5, "unit": "dB",
        "convention": "Y, shave=scale", "color": "y", "shave": 2, "inference": "whole",
        "degradation": "matlab_bicubic", "checkpoint": "", "checkpoint_hash": "", "seed": 0,
    "dataset_checksum": "", "step": -1,
        "form": "train", "tile": 0, "tile_overlap": 0, "self_ensemble": False, "precision": "fp32",
        "runtime_protocol": "", "training_data": "", "run_state": "",
    }  # fmt: skip
    return {**row, **changes}


def verdict_row(**changes) -> dict:
    row = {
        "run_id": "r1", "timestamp": PROVENANCE["timestamp"], "profile": "smoke", "tier": "static",
        "recipe": "", "paper": "drsan", "model": "drsan", "variant": "32s", "scale": 2, "dataset": "",
        "metric": "params", "measured": 368427.0, "reference": None, "reference_source": "", "delta": None,
        "tolerance": 0.0, "form": "", "reference_kind": "", "reference_confidence": "", "n_runs": 0,
        "std": None, "ci_low": None, "ci_high": None, "status": "no published value", "reason": "",
    }  # fmt: skip
    return {**row, **changes}


def test_read_of_an_empty_store_has_the_schema_columns(tmp_path):
    for table, schema in store.SCHEMAS.items():
        frame = store.read(table, root=tmp_path)
        assert frame.empty and list(frame.columns) == schema.names


def test_append_then_read_round_trips_with_types(tmp_path):
    store.append([result_row(), result_row(image="baby", value=36.0, variant=None)], root=tmp_path)
    store.append([verdict_row()], table="verdicts", root=tmp_path)
    results = store.read(root=tmp_path)
    assert len(results) == 2 and (results["schema_version"] == store.SCHEMA_VERSION).all()
    assert results["value"].tolist() == [37.5, 36.0]
    assert results["variant"].tolist() == ["32s", ""]
    assert str(results["scale"].dtype) == "int32" and str(results["step"].dtype) == "int64"
    verdicts = store.read("verdicts", root=tmp_path)
    assert math.isnan(verdicts.loc[0, "reference"]) and verdicts.loc[0, "measured"] == 368427.0


def test_each_append_is_a_new_part_and_no_temp_file_remains(tmp_path):
    paths = [store.append([result_row(value=float(i))], root=tmp_path) for i in range(3)]
    assert len(set(paths)) == 3
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(p.name for p in paths)
    assert all(p.name.startswith("part-") and p.suffix == ".parquet" for p in paths)
    assert sorted(store.read(root=tmp_path)["value"]) == [0.0, 1.0, 2.0]


def test_root_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path))
    store.append([result_row()])
    assert len(store.read(root=tmp_path)) == 1 and len(store.read()) == 1


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"scale": "2"}, TypeError, "column 'scale': expected an int"),
        ({"scale": 2.0}, TypeError, "column 'scale'"),
        ({"seed": True}, TypeError, "column 'seed'"),
        ({"seed": 2**31}, ValueError, "does not fit"),
        ({"value": "37.5"}, TypeError, "column 'value': expected a float"),
        ({"model": 3}, TypeError, "column 'model': expected str"),
        ({"profile": "quick"}, ValueError, "not one of"),
        ({"inference": "tiles"}, ValueError, "not one of"),
        ({"timestamp": "2024-05-01T10:00:00"}, ValueError, "ISO-8601 UTC"),
        ({"timestamp": "yesterday"}, ValueError, "ISO-8601 UTC"),
        ({"schema_version": 0}, ValueError, "schema_version"),
        ({"colour": "y"}, KeyError, "unknown columns \\['colour'\\]"),
    ],
)
def test_bad_rows_are_rejected_with_the_cell_named(tmp_path, changes, error, match):
    with pytest.raises(error, match=match):
        store.append([result_row(), result_row(**changes)], root=tmp_path)
    assert store.read(root=tmp_path).empty


def test_missing_column_is_named(tmp_path):
    row = result_row()
    del row["dataset_checksum"]
    with pytest.raises(KeyError, match="missing columns \\['dataset_checksum'\\]"):
        store.append([row], root=tmp_path)


def test_verdict_status_is_checked(tmp_path):
    with pytest.raises(ValueError, match="not one of"):
        store.append([verdict_row(status="ok")], table="verdicts", root=tmp_path)
    with pytest.raises(ValueError, match="unknown table"):
        store.append([verdict_row()], table="verdict", root=tmp_path)


def test_a_part_with_another_schema_is_refused_on_read(tmp_path):
    (tmp_path / "results").mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "results" / "part-0-old.parquet")
    with pytest.raises(ValueError, match="migrate"):
        store.read(root=tmp_path)


V1_STORE = Path(__file__).parent / "data" / "store_v1"  # parts the version-1 code wrote (git history)


def test_version_1_parts_are_read_as_the_current_version(tmp_path):
    """Parts version 1 wrote read with the renamed columns and the defaults of the columns added since."""
    v1 = sorted((V1_STORE / "verdicts").glob("part-*.parquet"))
    (tmp_path / "verdicts").mkdir()
    (tmp_path / "verdicts" / v1[0].name).write_bytes(v1[0].read_bytes())
    frame = store.read("verdicts", root=tmp_path)
    assert list(frame.columns) == store.SCHEMAS["verdicts"].names and len(frame) > 0
    assert (frame["schema_version"] == 1).all()
    assert set(frame["reference_kind"]) <= set(store.ALLOWED["reference_kind"])
    original = pd.read_parquet(v1[0])
    assert frame["reference_source"].tolist() == original["published_source"].tolist()
    # v1's labels become metric, form and reference kind; millions become counts.
    for label, row in zip(original["metric"], frame.itertuples(), strict=True):
        if label == "params [train] vs official code":
            assert (row.metric, row.form, row.reference_kind, row.reference_confidence) == (
                "params", "train", "official code", "high"
            )  # fmt: skip
        elif label == "params (M) vs paper":
            assert (row.metric, row.reference_kind) == ("params", "paper") and row.measured > 1e5
        elif label == "psnr_y vs paper":
            assert row.metric == "psnr_y" and row.reference_kind in ("paper", "")
    assert {"params [train] vs official code", "params (M) vs paper"} <= set(original["metric"])


def _writer(root: str, worker: int, barrier, n_appends: int) -> None:
    barrier.wait()
    for i in range(n_appends):
        store.append([result_row(run_id=f"w{worker}", step=i, image=f"{j}") for j in range(3)], root=root)


def test_concurrent_writers_lose_no_rows(tmp_path):
    workers, n_appends = 4, 5
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, barrier, n_appends)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    frame = store.read(root=tmp_path)
    assert len(frame) == workers * n_appends * 3
    assert frame.groupby("run_id").size().to_dict() == {f"w{w}": n_appends * 3 for w in range(workers)}
    assert len(list((tmp_path / "results").glob("part-*.parquet"))) == workers * n_appends


def test_provenance_is_complete_and_json():
    prov = PROVENANCE
    assert set(prov) == {"git_commit", "package_versions", "device", "timestamp"}
    versions = json.loads(prov["package_versions"])
    assert set(versions) == {"torch", "triton", "numpy", "fvcore", "reprosr"}
    assert all(versions.values()) and prov["device"] and prov["git_commit"]
    store.validate([result_row()])
