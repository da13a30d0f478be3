"""The schema of the release data files (``harness/releases/*.toml``, ``<paper folder>/releases/*.toml``).

:func:`parse_file` checks a parsed file — no unknown, missing or mistyped field, hashes of the right
form, every downloadable file pinned, a manual entry saying where to put the file — and the model
registry (model, paper, form, variant at scale), and returns plain field dicts for
``harness.released``. Errors name the file, the entry and the field.
"""

from __future__ import annotations

import re
from typing import Any

import architectures
from harness.errors import UserError


class ReleaseDataError(UserError, ValueError):
    """A release data file that does not match the schema; the message names file, entry and field."""


_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_BLOB = re.compile(r"[0-9a-f]{40}")

# table → field → (type, default); a default of ... marks a required field
RELEASE: dict[str, tuple[type, Any]] = {
    "name": (str, ...),
    "aliases": (list, []),
    "paper": (str, ...),
    "model": (str, ...),
    "variant": (str, ...),
    "scale": (int, ...),
    "form": (str, ...),
    "layout": (str, ...),
    "source": (str, ...),
    "licence": (str, None),
    "manual": (str, ""),
    "content_hash": (str, None),
    "files": (list, ...),
    "known_files": (list, []),
}
FILE: dict[str, tuple[type, Any]] = {
    "name": (str, ...),
    "urls": (list, ...),
    "sha256": (str, None),
    "git_blob": (str, None),
    "size": (int, None),
    "required": (bool, True),
}
KNOWN_FILE: dict[str, tuple[type, Any]] = {
    "where": (str, ...),
    "sha256": (str, None),
    "git_blob": (str, None),
}
LAYOUTS = ("pytorch", "tensorflow")


def parse_file(raw: dict[str, Any], path: object) -> list[dict[str, Any]]:
    """The ``[[release]]`` tables of a parsed data file as checked field dicts."""
    extra = sorted(set(raw) - {"release"})
    if extra or not isinstance(raw.get("release"), list) or not raw["release"]:
        raise ReleaseDataError(f"{path}: expected [[release]] tables only, found {extra or 'none'}")
    entries = []
    for i, table in enumerate(raw["release"]):
        where = f"{path}: release {table.get('name', f'#{i + 1}')!r}"
        entry = _fields(table, RELEASE, where)
        entry["files"] = [
            _file(f, f"{where} files[{j}]") for j, f in enumerate(_tables(entry, "files", where))
        ]
        entry["known_files"] = [
            _known(k, f"{where} known_files[{j}]") for j, k in enumerate(_tables(entry, "known_files", where))
        ]
        _check_entry(entry, where)
        entries.append(entry)
    return entries


def _fields(table: Any, schema: dict[str, tuple[type, Any]], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ReleaseDataError(f"{where}: expected a table, got {table!r}")
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise ReleaseDataError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(schema)}")
    out = {}
    for key, (kind, default) in schema.items():
        if key not in table:
            if default is ...:
                raise ReleaseDataError(f"{where}: missing field {key}")
            out[key] = default
            continue
        value = table[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ReleaseDataError(f"{where}: field {key} = {value!r} is not a {kind.__name__}")
        out[key] = value
    return out


def _tables(entry: dict[str, Any], key: str, where: str) -> list[Any]:
    if key == "files" and not entry[key]:
        raise ReleaseDataError(f"{where}: field files is empty (every release has at least one file)")
    return entry[key]


def _file(table: Any, where: str) -> dict[str, Any]:
    f = _fields(table, FILE, where)
    if not all(isinstance(u, str) and u.startswith("https://") for u in f["urls"]):
        raise ReleaseDataError(f"{where}: field urls must be https:// URLs, got {f['urls']}")
    if f["urls"] and f["sha256"] is None and f["git_blob"] is None:
        raise ReleaseDataError(f"{where}: a downloadable file needs a sha256 or git_blob pin")
    if f["size"] is not None and f["size"] < 0:
        raise ReleaseDataError(f"{where}: field size = {f['size']} is negative")
    _check_hashes(f, where)
    return f


def _known(table: Any, where: str) -> dict[str, Any]:
    k = _fields(table, KNOWN_FILE, where)
    if k["sha256"] is None and k["git_blob"] is None:
        raise ReleaseDataError(f"{where}: a known file needs its sha256 or git_blob")
    _check_hashes(k, where)
    return k


def _check_hashes(fields: dict[str, Any], where: str) -> None:
    for key, pattern in (("sha256", _SHA256), ("git_blob", _GIT_BLOB), ("content_hash", _SHA256)):
        value = fields.get(key)
        if value is not None and not pattern.fullmatch(value):
            raise ReleaseDataError(
                f"{where}: field {key} = {value!r} is not {pattern.pattern[-3:-1]} lower-case hex digits"
            )


def _check_entry(entry: dict[str, Any], where: str) -> None:
    """Aliases, layout, hashes, the manual text, and the model registry."""
    if not all(isinstance(a, str) and a for a in entry["aliases"]):
        raise ReleaseDataError(f"{where}: field aliases must be non-empty strings, got {entry['aliases']}")
    if entry["layout"] not in LAYOUTS:
        raise ReleaseDataError(f"{where}: field layout = {entry['layout']!r}; allowed: {LAYOUTS}")
    _check_hashes(entry, where)
    manual = not any(f["urls"] for f in entry["files"])
    if manual and "{path}" not in entry["manual"]:
        raise ReleaseDataError(
            f"{where}: no file has a URL, so field manual must say where to get it and put it ({{path}})"
        )
    try:
        spec = architectures.spec(entry["model"])
    except KeyError as exc:
        raise ReleaseDataError(f"{where}: field model: {exc.args[0]}") from None
    variant = entry["variant"] or None
    problems = []
    if entry["paper"] != spec.paper:
        problems.append(f"paper = {entry['paper']!r} but {spec.name} belongs to {spec.paper!r}")
    if entry["form"] not in spec.forms:
        problems.append(f"form = {entry['form']!r}; {spec.name} has forms {spec.forms}")
    if variant not in spec.scales and not spec.open_variants:
        problems.append(f"variant = {entry['variant']!r}; {spec.name} has {[v for v in spec.variants if v]}")
    scales = spec.scales.get(variant, spec.scales[spec.default_variant])
    if entry["scale"] not in scales:
        problems.append(f"scale = {entry['scale']}; {spec.name} {entry['variant']} exists at {scales}")
    if problems:
        raise ReleaseDataError(f"{where}: field {'; field '.join(problems)}")
