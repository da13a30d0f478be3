"""The repo's published tables: equal to the curated shared file, and looked up without inventing values."""

from __future__ import annotations

import pandas as pd
import pytest

from harness import published
from tests.conftest import REPO

SHARED_TABLE = REPO.parent / "shared" / "published" / "published.csv"


def test_tables_equal_the_curated_file_without_its_empty_values():
    if not SHARED_TABLE.is_file():
        pytest.skip(f"not run: the curated table {SHARED_TABLE} is absent")
    shared = pd.read_csv(SHARED_TABLE, dtype=str, keep_default_na=False)
    shared = shared[shared["value"] != ""].astype({"scale": "int64", "value": "float64"})
    ours = published.load()
    key = list(published.COLUMNS)
    pd.testing.assert_frame_equal(
        ours.sort_values(key).reset_index(drop=True), shared[key].sort_values(key).reset_index(drop=True)
    )


def test_one_file_per_paper():
    table = published.load()
    for paper, rows in table.groupby("paper"):
        assert (published.PUBLISHED_DIR / f"{paper}.csv").is_file()
        assert pd.read_csv(published.PUBLISHED_DIR / f"{paper}.csv").shape[0] == len(rows)


def test_lookup_returns_the_row_with_its_source():
    table = published.load()
    row = table[(table["metric"] == "multi_adds")].iloc[0]
    hit = published.lookup(row["model"], row["variant"], int(row["scale"]), None, "multi_adds")
    assert hit == published.PublishedRow(
        row["value"], row["unit"], row["convention"], row["source"], row["confidence"]
    )


def test_variant_and_dataset_none_equal_empty():
    table = published.load()
    row = table[(table["variant"] == "") & (table["dataset"] == "")].iloc[0]
    args = (row["model"], int(row["scale"]))
    assert published.lookup(args[0], None, args[1], None, row["metric"]) == published.lookup(
        args[0], "", args[1], "", row["metric"]
    )
    assert published.lookup(args[0], None, args[1], None, row["metric"]).value == row["value"]


def test_unpublished_value_is_none():
    # The curated table leaves DRSAN's Manga109 cells empty: absent, never a number.
    assert published.lookup("drsan", "32s", 2, "Manga109", "psnr") is None
    assert published.lookup("drsan", "32s", 2, "Set5", "no_such_metric") is None


def test_empty_value_in_a_table_is_rejected(tmp_path):
    (tmp_path / "p.csv").write_text(",".join(published.COLUMNS) + "\np,m,,2,Set5,psnr,,dB,c,s,high\n")
    with pytest.raises(ValueError, match="empty value"):
        published.load(tmp_path)


def test_missing_tables_say_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="no published tables"):
        published.load(tmp_path)
