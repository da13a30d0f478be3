"""The results store: two append-only Parquet tables, ``results`` and ``verdicts`` (docs/design.md).

Layout: ``<root>/<table>/part-<UTC timestamp>-<uuid>.parquet``, one part file per :func:`append`, each
written to a temporary file in the same directory and renamed into place (``os.replace``), so readers
never see a partial part and concurrent writers never overwrite each other.

Two stores: runs append to the user's local store (:func:`default_root`: ``$REPROSR_RESULTS``, else
``reprosr/results`` under the user cache directory); the committed store (:data:`COMMITTED_ROOT`,
``results/runs`` of the repository) changes only through ``reprosr publish RUN_ID`` and is what the
leaderboard site is built from.

Row conventions: strings are "" when absent (None is stored as ""), floats NaN when absent (None is
stored as NaN); ``schema_version`` is filled in by :func:`append`. Every other column is required.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from harness.errors import UserError
from harness.files import atomic_file, clean_once
from harness.paths import REPO, repo_file
from harness.schema import Confidence, Inference, Precision, Profile, ReferenceKind, RunState, Status, Tier

SCHEMA_VERSION = 3
COMMITTED_ROOT = repo_file("results/runs")
_S, _I32, _I64, _F64, _B = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()

SCHEMAS: dict[str, pa.Schema] = {
    "results": pa.schema([
        ("schema_version", _I32), ("run_id", _S), ("timestamp", _S), ("profile", _S), ("tier", _S),
        ("recipe", _S), ("recipe_hash", _S), ("paper", _S), ("model", _S), ("variant", _S), ("form", _S),
        ("scale", _I32), ("dataset", _S), ("image", _S), ("metric", _S), ("value", _F64), ("unit", _S),
        ("convention", _S), ("color", _S), ("shave", _I32), ("inference", _S), ("tile", _I32),
        ("tile_overlap", _I32), ("self_ensemble", _B), ("precision", _S), ("runtime_protocol", _S),
        ("degradation", _S), ("training_data", _S), ("run_state", _S), ("checkpoint", _S),
        ("checkpoint_hash", _S), ("seed", _I32),
        ("git_commit", _S), ("package_versions", _S), ("device", _S), ("dataset_checksum", _S),
        ("step", _I64),
    ]),
    "verdicts": pa.schema([
        ("schema_version", _I32), ("run_id", _S), ("timestamp", _S), ("profile", _S), ("tier", _S),
        ("recipe", _S), ("paper", _S), ("model", _S), ("variant", _S), ("form", _S), ("scale", _I32),
        ("dataset", _S), ("metric", _S), ("measured", _F64), ("reference", _F64), ("reference_source", _S),
        ("reference_kind", _S), ("reference_confidence", _S), ("delta", _F64), ("tolerance", _F64),
        ("n_runs", _I32), ("std", _F64), ("ci_low", _F64), ("ci_high", _F64), ("status", _S), ("reason", _S),
    ]),
}  # fmt: skip

ALLOWED: dict[str, tuple[str, ...]] = {
    "profile": tuple(Profile),
    "tier": tuple(Tier),
    "inference": ("", *Inference),  # "" for rows without an inference (static counts, losses)
    "precision": ("", *Precision),
    "run_state": ("", *RunState),  # "" for rows of no training run (static, checkpoint)
    "reference_kind": ("", *ReferenceKind),  # "" when there is no reference
    "reference_confidence": ("", *Confidence),
    "status": tuple(Status),
}

# Older parts stay readable: v1's renamed columns, and the defaults of the columns v2 and v3 added.
_V1_RENAMED = {"published": "reference", "published_source": "reference_source"}
_ADDED_DEFAULTS = {"checkpoint_hash": "",
    "form": "", "tile": 0, "tile_overlap": 0, "self_ensemble": False, "precision": "", "runtime_protocol": "",
    "training_data": "", "run_state": "", "reference_kind": "", "reference_confidence": "", "n_runs": 0,
    "std": math.nan, "ci_low": math.nan, "ci_high": math.nan,
}  # fmt: skip
_INT_RANGE = {_I32: (-(2**31), 2**31 - 1), _I64: (-(2**63), 2**63 - 1)}
# A run id names a folder (results/artifacts/<run_id>/): letters, digits, '.', '_', '-', no leading dot.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def default_root() -> Path:
    """The local store runs append to: ``$REPROSR_RESULTS`` if set, else ``reprosr/results`` under
    ``$XDG_CACHE_HOME`` (default ``~/.cache``)."""
    env = os.environ.get("REPROSR_RESULTS")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "reprosr" / "results"


def check_run_id(run_id: str) -> str:
    """``run_id``, or a UserError: a run id is 1–64 letters, digits, '.', '_' or '-', starting with a letter
    or digit, without '..' (it names a folder: no path separators)."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise UserError(
            f"invalid run id {run_id!r}: a run id is 1-64 letters, digits, '.', '_' or '-' (no path "
            "separators, no '..'), as `reprosr reproduce` and `reprosr eval` print it"
        )
    return run_id


def _schema(table: str) -> pa.Schema:
    if table not in SCHEMAS:
        raise ValueError(f"unknown table {table!r}; the store has tables {sorted(SCHEMAS)}")
    return SCHEMAS[table]


def _cell(table: str, i: int, name: str, kind: pa.DataType, value):
    where = f"{table} row {i}, column {name!r}"
    if kind == _S:
        value = "" if value is None else value
        if not isinstance(value, str):
            raise TypeError(f"{where}: expected str, got {type(value).__name__} {value!r}")
        if name in ALLOWED and value not in ALLOWED[name]:
            raise ValueError(f"{where}: {value!r} is not one of {ALLOWED[name]}")
        if name == "run_id":
            try:
                check_run_id(value)
            except UserError as exc:
                raise UserError(f"{where}: {exc}") from None
        if name == "timestamp":
            try:
                offset = datetime.fromisoformat(value).utcoffset()
            except ValueError:
                offset = None
            if offset is None or offset.total_seconds() != 0:
                raise ValueError(f"{where}: {value!r} is not ISO-8601 UTC; use provenance()['timestamp']")
        return value
    if kind == _B:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected a bool, got {type(value).__name__} {value!r}")
        return value
    if kind == _F64:
        value = math.nan if value is None else value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where}: expected a float, got {type(value).__name__} {value!r}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: expected an int, got {type(value).__name__} {value!r}")
    low, high = _INT_RANGE[kind]
    if not low <= value <= high:
        raise ValueError(f"{where}: {value} does not fit {kind}")
    return value


def validate(rows: list[dict], table: str = "results") -> pa.Table:
    """Check ``rows`` against the table's schema and return them as an Arrow table.

    Raises KeyError naming missing or unknown columns, TypeError/ValueError naming the bad cell.
    """
    schema = _schema(table)
    names = set(schema.names) - {"schema_version"}
    columns: dict[str, list] = {name: [] for name in schema.names}
    for i, row in enumerate(rows):
        version = row.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(f"{table} row {i}: schema_version {version}, this store writes {SCHEMA_VERSION}")
        missing, unknown = names - row.keys(), row.keys() - set(schema.names)
        if missing or unknown:
            raise KeyError(
                f"{table} row {i}: missing columns {sorted(missing)}, unknown columns {sorted(unknown)}; "
                f"the {table} table has exactly {schema.names}"
            )
        columns["schema_version"].append(SCHEMA_VERSION)
        for field in schema:
            if field.name != "schema_version":
                columns[field.name].append(_cell(table, i, field.name, field.type, row[field.name]))
    return pa.table(columns, schema=schema)


def append(rows: list[dict], table: str = "results", root: Path | None = None) -> Path | None:
    """Validate ``rows`` and write them as one new part file of ``table``; its path (None if no rows)."""
    data = validate(rows, table)
    if not rows:
        return None
    folder = Path(root or default_root()) / table
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = folder / f"part-{stamp}-{uuid.uuid4().hex}.parquet"
    clean_once(folder)  # temp parts of killed writers
    temp = folder / f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(data, temp)
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    return final


def _upgrade(data: pa.Table, table: str, part: Path) -> pa.Table:
    """A part file as this schema version: v1 parts get v2's renamed columns, older parts the defaults of the
    columns added since."""
    schema = _schema(table)
    if data.schema.equals(schema):
        return data
    has_version = "schema_version" in data.schema.names and data.num_rows
    version = data.column("schema_version")[0].as_py() if has_version else None
    if version not in (1, 2):
        raise ValueError(
            f"{part} has neither the {table} schema version {SCHEMA_VERSION} nor an older one this code "
            "reads (1, 2); move it out of the store or migrate it"
        )
    data = data.rename_columns([_V1_RENAMED.get(n, n) for n in data.schema.names])
    columns = {}
    for field in schema:
        if field.name in data.schema.names:
            columns[field.name] = data.column(field.name).cast(field.type)
        elif field.name in _ADDED_DEFAULTS:
            columns[field.name] = pa.array([_ADDED_DEFAULTS[field.name]] * data.num_rows, field.type)
        else:
            raise ValueError(f"{part}: version-{version} part lacks column {field.name!r}")
    if table == "verdicts" and version == 1:
        columns = _v1_verdict_identity(columns)
    return pa.table(columns, schema=schema)


# Version 1 wrote a verdict's identity as one label ("params [train] vs official code", "params (M) vs
# paper", "macs (G, hr720p) vs official code", "psnr_y vs paper"); version 2 has metric, form and
# reference_kind columns and compares parameter counts as counts, not millions.
_V1_LABEL = re.compile(
    r"(?P<metric>\w+)(?: \[(?P<form>\w+)\])?(?: \((?P<unit>[MG])(?:, (?P<convention>\w+))?\))?"
    r" vs (?P<kind>paper|official code)"
)


def _v1_verdict_identity(columns: dict[str, pa.Array]) -> dict[str, pa.Array]:
    data = {name: column.to_pylist() for name, column in columns.items()}
    for i, label in enumerate(data["metric"]):
        match = _V1_LABEL.fullmatch(label)
        if match is None:
            continue
        metric, unit, convention = match["metric"], match["unit"], match["convention"]
        if unit == "G":
            metric = f"macs_{convention}" if convention else "macs"
        data["metric"][i], data["form"][i] = metric, match["form"] or ""
        if math.isnan(data["reference"][i]):  # no reference: no kind, as version 2 writes it
            continue
        data["reference_kind"][i] = match["kind"]
        if match["kind"] == ReferenceKind.OFFICIAL_CODE:
            data["reference_confidence"][i] = Confidence.HIGH.value
        if unit == "M":
            for name in ("measured", "reference", "delta", "tolerance"):
                data[name][i] *= 1e6
    return {name: pa.array(values, columns[name].type) for name, values in data.items()}


def read(table: str = "results", root: Path | None = None) -> pd.DataFrame:
    """All rows of ``table``, parts in name (≈ time) order, version-1 parts upgraded (``schema_version``
    keeps each row's own version); if none, an empty frame with the columns."""
    schema = _schema(table)
    parts = sorted((Path(root or default_root()) / table).glob("part-*.parquet"))
    tables = [_upgrade(pq.read_table(part), table, part) for part in parts]
    return pa.concat_tables(tables).to_pandas() if tables else schema.empty_table().to_pandas()


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _device() -> str:
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()}"
    return f"cpu: {platform.processor() or platform.machine()}"


def provenance() -> dict[str, str]:
    """The results-table provenance columns: ``git_commit`` ("unknown" outside git), ``package_versions``
    (JSON of torch, triton, numpy, fvcore, reprosr), ``device`` and ``timestamp`` (ISO-8601 UTC)."""
    versions = {p: _version(p) for p in ("torch", "triton", "numpy", "fvcore", "reprosr")}
    return {
        "git_commit": _git_commit(),
        "package_versions": json.dumps(versions, sort_keys=True),
        "device": _device(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def check_writable(root: Path | None = None) -> Path:
    """The store ``root`` (default :func:`default_root`), created if needed; a UserError before any work when
    it cannot be written (a read-only folder would otherwise fail after the whole evaluation)."""
    root = Path(root or default_root())
    try:
        root.mkdir(parents=True, exist_ok=True)
        with atomic_file(root / ".write-check") as f:
            f.write(b"")
        (root / ".write-check").unlink()
    except OSError as exc:
        raise UserError(
            f"the results store {root} cannot be written ({exc.strerror or exc}); set REPROSR_RESULTS to a "
            "writable folder, or pass --no-store"
        ) from None
    return root


def keep_config(run_id: str, text: str, root: Path | None = None) -> Path:
    """Keep the evaluation config a run was made from as ``<root>/configs/<run_id>.toml``."""
    folder = Path(root or default_root()) / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.toml"
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))
    return path
