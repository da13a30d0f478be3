"""Published numbers of the seed papers, read from ``results/published/<paper>.csv``.

The tables are long form, one value per row, with the columns of the team's curated
``shared/published/published.csv``: ``paper, model, variant, scale, dataset, metric, value, unit,
convention, source, confidence``. Only values the papers actually publish are stored: a cell left empty
in the curated file (e.g. DRSAN on Manga109) has no row, so :func:`lookup` returns None for it and a
verdict says "no published value" instead of inventing one.

Conventions: ``variant`` is "" for models without variants and ``dataset`` is "" for model-level metrics
(params, multi_adds, flops, runtime_ms); :func:`lookup` treats None and "" alike for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from harness.paths import repo_file

PUBLISHED_DIR = repo_file("results/published")
COLUMNS = (
    "paper", "model", "variant", "scale", "dataset", "metric", "value", "unit", "convention", "source",
    "confidence",
)  # fmt: skip


@dataclass(frozen=True)
class PublishedRow:
    """One published value: ``value`` in ``unit`` (e.g. 85.5 "G"), measured under ``convention``."""

    value: float
    unit: str
    convention: str
    source: str
    confidence: str


def load(root: Path | None = None) -> pd.DataFrame:
    """All published rows of every ``<paper>.csv`` under ``root`` (default ``results/published``).

    Columns as :data:`COLUMNS`; ``scale`` int, ``value`` float, every other column str ("" when empty).
    """
    return _read_tables(PUBLISHED_DIR if root is None else Path(root).resolve()).copy()


@lru_cache(maxsize=4)
def _read_tables(root: Path) -> pd.DataFrame:
    paths = sorted(root.glob("*.csv"))
    if not paths:
        raise FileNotFoundError(f"no published tables (*.csv) in {root}; the repo ships results/published/")
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths]
    for path, frame in zip(paths, frames, strict=True):
        if tuple(frame.columns) != COLUMNS:
            raise ValueError(f"{path}: columns {list(frame.columns)}, expected {list(COLUMNS)}")
        if (frame["value"] == "").any():
            raise ValueError(f"{path}: rows with an empty value; drop them (an absent value has no row)")
    table = pd.concat(frames, ignore_index=True)
    return table.astype({"scale": "int64", "value": "float64"})


def lookup(
    model: str, variant: str | None, scale: int, dataset: str | None, metric: str, root: Path | None = None
) -> PublishedRow | None:
    """The published ``metric`` of ``model``/``variant`` at ``scale`` on ``dataset``, or None if unpublished.

    ``dataset`` None/"" selects model-level metrics; ``variant`` None/"" selects rows without a variant.
    Raises if the tables hold more than one matching row (a curation error).
    """
    table = _read_tables(PUBLISHED_DIR if root is None else Path(root).resolve())
    hit = table[
        (table["model"] == model)
        & (table["variant"] == (variant or ""))
        & (table["scale"] == scale)
        & (table["dataset"] == (dataset or ""))
        & (table["metric"] == metric)
    ]
    if len(hit) > 1:
        raise ValueError(f"{len(hit)} published rows for {model} {variant} x{scale} {dataset} {metric}")
    if hit.empty:
        return None
    row = hit.iloc[0]
    return PublishedRow(float(row["value"]), row["unit"], row["convention"], row["source"], row["confidence"])
