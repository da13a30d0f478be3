"""Outside reference numbers as typed :class:`~harness.verdicts.Reference` values.

Two kinds of tables:

- ``results/published/<paper>.csv``: what papers and challenge reports publish, long form, one value per
  row: the columns of the team's curated ``shared/published/*.csv`` (``paper, model, variant, scale,
  dataset, metric, value, unit, convention, source, confidence``) plus ``kind`` (:class:`ReferenceKind`:
  paper, challenge report) and ``color`` (``y``/``rgb`` for PSNR/SSIM rows, "" for counts), so that a
  PSNR's colour space is a column, not a phrase in ``convention``. ``value`` keeps the printed digits
  (they fix the rounding tolerance). An empty curated cell has no row: :func:`lookup` returns None and the
  verdict says "no published value" instead of inventing one.
- ``results/official/official_code.csv``: numbers measured by running the official code (parameter counts,
  fvcore MACs, outputs of released checkpoints), kind "official code", confidence high.

Conventions: ``variant`` is "" for models without variants and ``dataset`` is "" for model-level metrics
(params, multi_adds, flops, runtime_ms); lookups treat None and "" alike for both. Extra tables (a paper
added outside the package, see ``docs/adding-a-paper.md``) join through :func:`add_dir`.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import pandas as pd

from harness.errors import UserError
from harness.paths import OFFICIAL_CSV, PUBLISHED_DIR
from harness.schema import Confidence, ReferenceKind
from harness.verdicts import Reference

COLUMNS = (
    "paper", "model", "variant", "scale", "dataset", "metric", "value", "unit", "convention", "source",
    "confidence", "kind", "color",
)  # fmt: skip
CURATED_COLUMNS = COLUMNS[:11]
OFFICIAL_COLUMNS = ("model", "variant", "scale", "form", "dataset", "metric", "value", "unit", "convention",
                    "source")  # fmt: skip
# A measured metric id → the published (metric, color) it is compared with.
MEASURED = {"psnr_y": ("psnr", "y"), "ssim_y": ("ssim", "y"), "psnr_rgb": ("psnr", "rgb")}
_RANK = {Confidence.HIGH: 0, Confidence.MEDIUM: 1, Confidence.LOW: 2}
_EXTRA_DIRS: list[Path] = []


def add_dir(path: Path) -> None:
    """Read the ``*.csv`` tables in ``path`` too, beside ``results/published`` (idempotent)."""
    path = Path(path).resolve()
    if path not in _EXTRA_DIRS:
        _EXTRA_DIRS.append(path)
        _table.cache_clear()


def load(root: Path | None = None) -> pd.DataFrame:
    """All published rows of every ``<paper>.csv`` under ``root`` (default: ``results/published`` and the
    directories of :func:`add_dir`). Columns as :data:`COLUMNS`; ``scale`` int, ``value`` float (the printed
    text is :func:`references`' ``Reference.text``), every other column str ("" when empty)."""
    return _table(*_roots(root)).astype({"value": "float64"})


def _roots(root: Path | None) -> tuple[Path, ...]:
    return (Path(root).resolve(),) if root is not None else (PUBLISHED_DIR, *_EXTRA_DIRS)


@cache
def _table(*roots: Path) -> pd.DataFrame:
    paths = [p for root in roots for p in sorted(root.glob("*.csv"))]
    if not paths:
        raise FileNotFoundError(f"no published tables (*.csv) in {', '.join(map(str, roots))}")
    frames = []
    for path in paths:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if tuple(frame.columns) != COLUMNS:
            raise UserError(f"{path}: columns {list(frame.columns)}, expected {list(COLUMNS)}")
        _check(frame, path)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True).astype({"scale": "int64"})
    twice = table[table.duplicated(["model", "variant", "scale", "dataset", "metric", "color", "source"])]
    if not twice.empty:
        raise UserError(f"published rows given twice with the same source: {twice.iloc[0].to_dict()}")
    return table


def _check_numbers(frame: pd.DataFrame, path: Path) -> None:
    """Every ``value`` a finite number and every ``scale`` a positive integer; a UserError naming the file and
    the row (its line in the file, the header being line 1)."""
    for i, (scale, value) in enumerate(zip(frame["scale"], frame["value"], strict=True)):
        where = f"{path}, line {i + 2}"
        if not scale.isdigit() or int(scale) < 1:
            raise UserError(f"{where}: scale {scale!r} is not a positive integer")
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"{where}: value {value!r} is not a number") from None
        if not math.isfinite(number):
            raise UserError(f"{where}: value {value!r} is not a finite number; give the published digits")


def _check(frame: pd.DataFrame, path: Path) -> None:
    if (frame["value"] == "").any():
        raise UserError(f"{path}: rows with an empty value; drop them (an absent value has no row)")
    _check_numbers(frame, path)
    for column, allowed in (("kind", tuple(ReferenceKind)), ("confidence", tuple(Confidence))):
        bad = set(frame[column]) - set(allowed)
        if bad:
            raise UserError(f"{path}: {column} {sorted(bad)} not one of {list(allowed)}")
    quality = frame["metric"].isin(["psnr", "ssim"])
    if not frame.loc[quality, "color"].isin(["y", "rgb"]).all() or (frame.loc[~quality, "color"] != "").any():
        raise UserError(f"{path}: color must be 'y' or 'rgb' on psnr/ssim rows and empty elsewhere")


def _reference(row, kind: str, confidence: str) -> Reference:
    return Reference(float(row["value"]), row["source"], ReferenceKind(kind), Confidence(confidence),
                     row["unit"], row["convention"], row["value"])  # fmt: skip


def references(
    model: str, variant: str | None, scale: int, dataset: str | None, metric: str, root: Path | None = None
) -> list[Reference]:
    """Every published value of ``metric`` for ``model``/``variant`` at ``scale`` on ``dataset``, the most
    confident first (ties in file order). ``metric`` is a published name (``psnr``, ``multi_adds``) or a
    measured id of :data:`MEASURED` (``psnr_y`` selects the Y-channel ``psnr`` rows)."""
    table = _table(*_roots(root))
    name, color = MEASURED.get(metric, (metric, None))
    hit = table[
        (table["model"] == model)
        & (table["variant"] == (variant or ""))
        & (table["scale"] == scale)
        & (table["dataset"] == (dataset or ""))
        & (table["metric"] == name)
        & ((table["color"] == color) if color is not None else True)
    ]
    refs = [_reference(row, row["kind"], row["confidence"]) for _, row in hit.iterrows()]
    return sorted(refs, key=lambda r: _RANK[r.confidence])


def lookup(
    model: str, variant: str | None, scale: int, dataset: str | None, metric: str, root: Path | None = None
) -> Reference | None:
    """The most confident of :func:`references`, or None if unpublished."""
    refs = references(model, variant, scale, dataset, metric, root)
    return refs[0] if refs else None


@cache
def official_table(path: Path = OFFICIAL_CSV) -> pd.DataFrame:
    """The official code's own numbers (``results/official/official_code.csv``), columns
    :data:`OFFICIAL_COLUMNS`, every one str but ``scale``."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(table.columns) != OFFICIAL_COLUMNS:
        raise UserError(f"{path}: columns {list(table.columns)}, expected {list(OFFICIAL_COLUMNS)}")
    _check_numbers(table, path)
    return table.astype({"scale": "int64"})


def official(model: str, variant: str | None, scale: int, form: str, dataset: str | None, metric: str):
    """The official code's ``metric`` of the model in ``form`` (a :class:`Reference` of kind "official
    code", confidence high), or None."""
    table = official_table()
    hit = table[
        (table.model == model)
        & (table.variant == (variant or ""))
        & (table.scale == scale)
        & (table.form == form)
        & (table.dataset == (dataset or ""))
        & (table.metric == metric)
    ]
    if len(hit) > 1:
        raise UserError(
            f"{len(hit)} official-code rows for {model} {variant} x{scale} {form} {dataset} {metric}"
        )
    if hit.empty:
        return None
    return _reference(hit.iloc[0], ReferenceKind.OFFICIAL_CODE, Confidence.HIGH)
