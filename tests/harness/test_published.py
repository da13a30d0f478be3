"""The repo's published tables: equal to the curated shared file, and looked up without inventing values."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from harness import published
from harness.schema import Confidence, ReferenceKind
from tests.conftest import REPO


def curated_dir() -> Path | None:
    """The team's curated tables: ``../shared/published`` beside the checkout (or beside the datasets of
    ``$REPROSR_TEST_DATASETS``)."""
    env = os.environ.get("REPROSR_TEST_DATASETS")
    candidates = [REPO.parent / "shared", *([Path(env).parent] if env else []), REPO.parents[1] / "shared"]
    return next((p / "published" for p in candidates if (p / "published" / "published.csv").is_file()), None)


def test_tables_hold_every_curated_row_with_its_source_and_nothing_else():
    folder = curated_dir()
    if folder is None:
        pytest.skip("not run: the curated tables ../shared/published/*.csv are absent")
    files = [folder / name for name in ("published.csv", "additions-2026-11.csv", "additions-2026-12.csv")]
    assert all(f.is_file() for f in files)
    curated = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in files], ignore_index=True)
    curated = curated[curated["value"] != ""]
    ours = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False)
                      for p in sorted(published.PUBLISHED_DIR.glob("*.csv"))], ignore_index=True)  # fmt: skip
    key = list(published.CURATED_COLUMNS)
    pd.testing.assert_frame_equal(
        ours[key].sort_values(key).reset_index(drop=True),
        curated[key].sort_values(key).reset_index(drop=True),
    )


def test_every_row_has_a_kind_and_psnr_rows_a_colour():
    table = published.load()
    assert set(table.kind) <= set(ReferenceKind) and set(table.confidence) <= set(Confidence)
    ntire = table[table.source.str.startswith("NTIRE")]
    assert set(ntire.kind) == {ReferenceKind.CHALLENGE_REPORT}
    assert set(table[table.dataset.str.startswith("DIV2K_LSDIR")].query("metric == 'psnr'").color) == {"rgb"}


def test_several_sources_of_one_cell_most_confident_first():
    refs = published.references("span_esr", "ch28", 4, "DIV2K_LSDIR_valid", "psnr_rgb")
    assert [r.confidence for r in refs] == [Confidence.HIGH, Confidence.MEDIUM]
    assert {r.value for r in refs} == {26.94}
    assert published.lookup("span_esr", "ch28", 4, "DIV2K_LSDIR_valid", "psnr_rgb") == refs[0]
    assert published.references("span_esr", "ch28", 4, "DIV2K_LSDIR_valid", "psnr_y") == []


def test_traiNNer_redux_rows_are_quoted_paper_values_of_medium_confidence():
    """additions-2026-12.csv: SPAN-ESR ch48/ch52 Urban100 ×2/×4 as traiNNer-redux records them (commit
    pinned); where the paper's own ch52 ×4 cell is quoted elsewhere, the two sources agree."""
    table = published.load()
    rows = table[
        table.source.str.startswith("traiNNer-redux (github.com/the-database/traiNNer-redux @68629319")
    ]
    assert len(rows) == 8 and set(rows.variant) == {"ch48", "ch52"} and set(rows.scale) == {2, 4}
    assert set(rows.kind) == {ReferenceKind.PAPER} and set(rows.confidence) == {Confidence.MEDIUM}
    assert set(rows.color) == {"y"} and set(rows.dataset) == {"Urban100"}
    refs = published.references("span_esr", "ch52", 4, "Urban100", "psnr_y")
    assert len(refs) == 2 and {r.value for r in refs} == {26.18}
    assert published.lookup("span_esr", "ch48", 2, "Urban100", "ssim_y").text == "0.9288"


def test_one_file_per_paper():
    table = published.load()
    for paper, rows in table.groupby("paper"):
        assert (published.PUBLISHED_DIR / f"{paper}.csv").is_file()
        assert pd.read_csv(published.PUBLISHED_DIR / f"{paper}.csv").shape[0] == len(rows)


def test_lookup_returns_the_row_with_its_source():
    table = published.load()
    row = table[(table["metric"] == "multi_adds")].iloc[0]
    hit = published.lookup(row["model"], row["variant"], int(row["scale"]), None, "multi_adds")
    assert (hit.value, hit.unit, hit.convention, hit.source, hit.confidence, hit.kind) == (
        row["value"], row["unit"], row["convention"], row["source"], row["confidence"], row["kind"]
    )  # fmt: skip


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
    (tmp_path / "p.csv").write_text(",".join(published.COLUMNS) + "\np,m,,2,Set5,psnr,,dB,c,s,high,paper,y\n")
    with pytest.raises(ValueError, match="empty value"):
        published.load(tmp_path)


def test_unknown_kind_and_missing_colour_are_rejected(tmp_path):
    head = ",".join(published.COLUMNS)
    (tmp_path / "p.csv").write_text(head + "\np,m,,2,Set5,psnr,30,dB,c,s,high,blog,y\n")
    with pytest.raises(ValueError, match="kind"):
        published.load(tmp_path)
    (tmp_path / "p.csv").write_text(head + "\np,m,,2,Set5,psnr,30,dB,c,s,high,paper,\n")
    with pytest.raises(ValueError, match="color"):
        published.load(tmp_path)


def test_missing_tables_say_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="no published tables"):
        published.load(tmp_path)
