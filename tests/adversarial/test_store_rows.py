"""Store rows under fuzzing: any value in any column is either stored and read back as given, or refused
with an error naming the row and column, before anything is written (a bad row never half-stores)."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import store

PROVENANCE = store.provenance()
ROW = {
    **PROVENANCE, "run_id": "r1", "profile": "smoke", "tier": "static", "recipe": "drsan_x2",
    "recipe_hash": "abc", "paper": "drsan", "model": "drsan", "variant": "32s", "scale": 2,
    "dataset": "Set5", "image": "", "metric": "psnr_y", "value": 37.5, "unit": "dB",
    "convention": "Y, shave=scale", "color": "y", "shave": 2, "inference": "whole",
    "degradation": "matlab_bicubic", "checkpoint": "", "checkpoint_hash": "", "seed": 0,
    "dataset_checksum": "", "step": -1,
    "form": "train", "tile": 0, "tile_overlap": 0, "self_ensemble": False, "precision": "fp32",
    "runtime_protocol": "", "training_data": "", "run_state": "",
}  # fmt: skip

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["smoke", "static", "whole", "fp32", "complete", "2026-01-01T00:00:00+00:00"]),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(column=st.sampled_from(sorted(ROW)), value=VALUES)
def test_a_fuzzed_cell_is_stored_exactly_or_refused_naming_it(tmp_path_factory, column, value):
    root = tmp_path_factory.mktemp("store")
    row = {**ROW, column: value}
    try:
        store.validate([row])
    except (TypeError, ValueError, KeyError) as exc:
        assert f"column {column!r}" in str(exc)
        with pytest.raises(type(exc)):
            store.append([ROW, row], root=root)
        assert store.read(root=root).empty
        return
    store.append([row], root=root)
    got = store.read(root=root).iloc[0][column]
    kind = store.SCHEMAS["results"].field(column).type
    if kind == "double":
        expected = math.nan if value is None else float(value)
        assert got == expected or (math.isnan(got) and math.isnan(expected))
    else:
        assert got == ("" if value is None else value)


def test_temp_parts_of_killed_writers_are_removed_by_the_next_append(tmp_path):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    folder = tmp_path / "results"
    folder.mkdir()
    stale = folder / f".part-20260101T000000000000Z-{'0' * 32}.parquet.{pid}-0123abcd.tmp"
    stale.write_bytes(b"torn parquet")
    store.append([ROW], root=tmp_path)
    assert not stale.exists() and len(store.read(root=tmp_path)) == 1
