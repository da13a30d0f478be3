"""The pinned zoo: every public official weight file of the papers, where it comes from, its pins.

The entries are data: one TOML file per paper, ``harness/releases/<paper>.toml`` in the package and
``releases/*.toml`` in a paper folder (:func:`add_dir`, called by ``harness.papers.add_paper``). Each
``[[release]]`` names the ``architectures.build`` arguments it loads into, its ``[[release.files]]`` (URLs,
mirrors in order; sha256 where one is published or measured, else the upstream git blob id of
``git ls-tree -r -l``, verified by recomputing ``sha1(b"blob <len>\\0" + bytes)``), its source and licence,
and, where known, the ``content_hash`` of its tensors (``architectures.content_hash``: names, dtypes,
shapes and bytes, whatever the file format) with ``[[release.known_files]]``: every other file hash known
to hold those tensors (a mirror's copy, a re-save). The same tensors published in two places are one
entry; a name given to the second is an ``alias``. :func:`lookup` is the one way to find an entry.

Files are fetched on demand into ``<data cache>/checkpoints/<name>/`` and verified before use. A
TensorFlow release is converted once into a PyTorch state_dict beside them (``<name>.pth``), tied to its
sources: ``<name>.pth.source.json`` records the sources' sha256 and the conversion's content hash, and a
conversion that no longer matches them (or the zoo's content hash) is made again. A file only on cloud
drives (HSPAN) is a manual entry: the user downloads it, ReproSR checks that it loads strictly and
records its sha256 (``<file>.sha256``), refusing a later different file.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import torch

import architectures
from architectures import tf_checkpoint
from architectures.detect import read_weights
from harness import data, downloads, published
from harness.files import atomic_file
from harness.progress import stage
from harness.release_data import ReleaseDataError, parse_file

RELEASE_DIR = Path(__file__).with_name("releases")


class Format(StrEnum):
    """How a release stores its weights."""

    PYTORCH = "pytorch"  # one torch.save file (a state_dict, possibly wrapped)
    TENSORFLOW = "tensorflow"  # a TF1 checkpoint folder (checkpoint, .index, .data-*, .meta)


class ManualDownloadRequired(FileNotFoundError):
    """A released file that ReproSR cannot download; the message says where to get it and where to put it."""


@dataclass(frozen=True)
class PinnedFile:
    """One file of a release: its download URLs (mirrors, in order), pins, and whether loading needs it."""

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    git_blob: str | None = None
    size: int | None = None
    required: bool = True  # a TF .meta graph is listed for completeness but not needed to load the weights

    def check(self, path: Path) -> str:
        """Verify ``path`` against every pin; returns its sha256, raises ValueError naming both hashes."""
        content = path.read_bytes()
        problems = []
        if self.size is not None and len(content) != self.size:
            problems.append(f"size {len(content)} bytes, expected {self.size}")
        digest = hashlib.sha256(content).hexdigest()
        if self.sha256 is not None and digest != self.sha256:
            problems.append(f"sha256 {digest}, expected {self.sha256}")
        if self.git_blob is not None and (blob := git_blob_id(content)) != self.git_blob:
            problems.append(f"git blob id {blob}, expected {self.git_blob}")
        if problems:
            raise ValueError(
                f"{path} is not the released {self.name}: {'; '.join(problems)}; delete it and fetch again"
            )
        return digest

    @property
    def is_weights(self) -> bool:
        """Whether the file holds the tensors (not a TF index, graph or ``checkpoint`` pointer)."""
        return self.required and self.name != "checkpoint" and not self.name.endswith(".index")

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "urls": list(self.urls),
            "sha256": self.sha256,
            "git_blob": self.git_blob,
            "size": self.size,
            "required": self.required,
        }


@dataclass(frozen=True)
class KnownFile:
    """Another file known to hold an entry's tensors: where it is published and its hash(es)."""

    where: str
    sha256: str | None = None
    git_blob: str | None = None

    def as_dict(self) -> dict:
        return {"where": self.where, "sha256": self.sha256, "git_blob": self.git_blob}


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """One released checkpoint: what it builds, its files, where it comes from, its licence."""

    name: str
    paper: str
    model: str
    variant: str | None
    scale: int
    form: str
    layout: Format
    files: tuple[PinnedFile, ...]
    source: str
    licence: str | None
    manual: str = ""  # how to obtain it by hand, for files with no direct URL
    aliases: tuple[str, ...] = field(default=())
    content_hash: str | None = None  # of its tensors; None until measured on the downloaded file
    known_files: tuple[KnownFile, ...] = field(default=())
    defined_in: str = ""  # the data file of the entry

    @property
    def filename(self) -> str:
        return self.files[0].name

    def digests(self) -> set[str]:
        """Every hash that names this entry's tensors: its weight files' pins, the known files' hashes and
        the content hash."""
        pins = [(f.sha256, f.git_blob) for f in self.files if f.is_weights]
        pins += [(k.sha256, k.git_blob) for k in self.known_files]
        return {h for pair in pins for h in pair if h} | ({self.content_hash} if self.content_hash else set())

    def verifies(self) -> list[dict]:
        """The published rows this checkpoint can check: every value of its model/variant/scale."""
        table = published.load()
        rows = table[
            (table["model"] == self.model)
            & (table["variant"] == (self.variant or ""))
            & (table["scale"] == self.scale)
        ]
        return [
            {"dataset": r.dataset, "metric": r.metric, "value": r.value, "unit": r.unit, "source": r.source}
            for r in rows.itertuples()
        ]

    def as_dict(self, cache_dir: str | Path | None = None) -> dict:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "paper": self.paper,
            "model": self.model,
            "variant": self.variant or "",
            "scale": self.scale,
            "form": self.form,
            "layout": str(self.layout),
            "files": [f.as_dict() for f in self.files],
            "source": self.source,
            "licence": self.licence,
            "manual": self.manual,
            "cached": cached_path(self.name, cache_dir).exists(),
            "verifies": self.verifies(),
            "content_hash": self.content_hash or recorded_content_hash(self.name, cache_dir),
            "known_files": [k.as_dict() for k in self.known_files],
        }


def git_blob_id(content: bytes) -> str:
    """Git's object id of a file's bytes: sha1 of ``b"blob <len>\0" + content``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


# ------------------------------------------------------------------------------------ the zoo as data

RELEASED: dict[str, ReleasedCheckpoint] = {}


def add_file(path: Path) -> list[ReleasedCheckpoint]:
    """Register the entries of one release data file; errors name the file, the entry and the field. A
    name, alias or file hash that another entry already has is an error (the same tensors are one entry)."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ReleaseDataError(f"{path}: not valid TOML ({exc})") from None
    entries = [_entry(fields, path) for fields in parse_file(raw, path)]
    for entry in entries:
        if RELEASED.get(entry.name, entry) == entry:
            continue
        raise ReleaseDataError(
            f"{path}: release {entry.name!r} is already defined in {RELEASED[entry.name].defined_in}"
        )
    for entry in entries:
        _check_unique(entry, path)
        RELEASED[entry.name] = entry
    return entries


def add_dir(folder: Path) -> None:
    """Register every ``*.toml`` release data file in ``folder`` (idempotent)."""
    for path in sorted(Path(folder).glob("*.toml")):
        add_file(path)


def _entry(fields: dict, path: Path) -> ReleasedCheckpoint:
    return ReleasedCheckpoint(
        **fields | {
            "variant": fields["variant"] or None,
            "layout": Format(fields["layout"]),
            "files": tuple(PinnedFile(**f | {"urls": tuple(f["urls"])}) for f in fields["files"]),
            "aliases": tuple(fields["aliases"]),
            "known_files": tuple(KnownFile(**k) for k in fields["known_files"]),
            "defined_in": str(path),
        }
    )  # fmt: skip


def _check_unique(entry: ReleasedCheckpoint, path: Path) -> None:
    for other in RELEASED.values():
        if other.name == entry.name:
            continue
        names = ({other.name, *other.aliases} & {entry.name, *entry.aliases}) or (
            other.digests() & entry.digests()
        )
        if names:
            raise ReleaseDataError(
                f"{path}: release {entry.name!r} shares {sorted(names)} with {other.name!r} "
                f"({other.defined_in}): the same tensors are one entry (list another file as known_files, "
                "another name as aliases)"
            )


def lookup(
    name: str | None = None,
    *,
    model: str | None = None,
    variant: str | None = None,
    scale: int | None = None,
    digest: str | None = None,
) -> ReleasedCheckpoint | None:
    """The zoo entry that matches every criterion given, or None: ``name`` (its name or an alias),
    ``model``/``variant``/``scale`` (``variant`` None or "" for models without variants), ``digest`` (a
    file's sha256 or git blob id, or a content hash)."""
    for entry in RELEASED.values():
        if name is not None and name not in (entry.name, *entry.aliases):
            continue
        if model is not None and (entry.model, entry.variant or None, entry.scale) != (
            model,
            variant or None,
            scale,
        ):
            continue
        if digest is not None and digest not in entry.digests():
            continue
        return entry
    return None


def released(name: str) -> ReleasedCheckpoint:
    """:func:`lookup` by name or alias; a KeyError lists the known names."""
    entry = lookup(name)
    if entry is None:
        raise KeyError(f"unknown released checkpoint {name!r}; known: {', '.join(sorted(RELEASED))}")
    return entry


def identify(path: str | Path) -> ReleasedCheckpoint | None:
    """The zoo entry whose tensors are in the file (or TF checkpoint folder) at ``path``, whatever it is
    called: by the weight file's sha256 or git blob id (a TF bundle's first shard), else by the content
    hash of its tensors (a re-saved or wrapped copy); None if it is no release or cannot be read."""
    path = Path(path)
    weights = path
    if tf_checkpoint.is_tf_checkpoint(path):
        try:
            weights = tf_checkpoint.read_index(tf_checkpoint.find_prefix(path)).shard_path(0)
        except (OSError, ValueError):
            return None
    if not weights.is_file():
        return None
    content = weights.read_bytes()
    for digest in (hashlib.sha256(content).hexdigest(), git_blob_id(content)):
        if (entry := lookup(digest=digest)) is not None:
            return entry
    try:
        return lookup(digest=tensors_hash(path))
    except (architectures.CheckpointError, OSError):
        return None


def tensors_hash(path: str | Path) -> str:
    """The content hash of the tensors in a checkpoint file or TF bundle (default wrapper entry)."""
    return architectures.content_hash(read_weights(path).state_dict)


def label(checkpoint: str) -> str:
    """How a checkpoint is recorded: a release's zoo name (also when a file is one, whatever its name), else
    the file's name — never a path of this machine."""
    entry = lookup(checkpoint)
    if entry is not None:
        return entry.name
    known = identify(checkpoint)
    return known.name if known else Path(checkpoint).name


def resolve(checkpoint: str | Path) -> Path:
    """A checkpoint argument as a path: a released checkpoint's name (or alias) is fetched (or reused),
    anything else is taken as a path."""
    entry = lookup(str(checkpoint))
    return fetch_released(entry.name) if entry is not None else Path(checkpoint)


def zoo(cache_dir: str | Path | None = None) -> list[dict]:
    """Every entry as a dict (``reprosr checkpoints --json``)."""
    return [c.as_dict(cache_dir) for c in RELEASED.values()]


# ---------------------------------------------------------------------------------- fetch and verify


def _folder(name: str, cache_dir: str | Path | None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else data.cache_dir() / "checkpoints"
    return root / released(name).name


def cached_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`fetch_released` leaves ``name`` ready to load: the downloaded file (PyTorch) or the
    converted ``<name>.pth`` (TensorFlow), in ``cache_dir``, else ``<data cache>/checkpoints/<name>/``."""
    entry, folder = released(name), _folder(name, cache_dir)
    return folder / (f"{entry.name}.pth" if entry.layout is Format.TENSORFLOW else entry.filename)


def recorded_content_hash(name: str, cache_dir: str | Path | None = None) -> str | None:
    """The content hash measured when ``name`` was fetched here (``<file>.content_hash``), if it was."""
    record = cached_path(name, cache_dir).with_name(cached_path(name, cache_dir).name + ".content_hash")
    text = record.read_text().strip() if record.is_file() else ""
    return text if len(text) == 64 else None


def _download(pinned: PinnedFile, dest: Path) -> Path:
    """Fetch ``pinned`` to ``dest`` from its first reachable URL and verify it; raises OSError if none is."""
    if dest.exists():
        try:
            pinned.check(dest)
            return dest
        except ValueError:
            dest.unlink()  # a damaged or stale copy is fetched again
    errors = []
    for url in pinned.urls:
        try:
            path = downloads.download(url, dest, pinned.sha256)
        except OSError as exc:
            errors.append(str(exc))
            continue
        try:
            pinned.check(path)
        except ValueError:
            path.unlink()
            raise
        return path
    raise OSError(f"{pinned.name} could not be downloaded: {' | '.join(errors)}")


def fetch_released(name: str, cache_dir: str | Path | None = None) -> Path:
    """Download (or reuse) release ``name``, verified against its pins; a TF release is converted to a
    state_dict tied to its sources. Returns the path to load. Raises OSError when offline,
    ManualDownloadRequired for a file that must be downloaded by hand, ValueError when a file does not
    match its pins or its tensors not the zoo's content hash."""
    entry, folder = released(name), _folder(name, cache_dir)
    target = cached_path(name, cache_dir)
    if not entry.files[0].urls:
        return _manual(entry, target)
    if entry.layout is Format.PYTORCH:
        path = _download(entry.files[0], target)
        if recorded_content_hash(name, cache_dir) is None:  # the pins keep a recorded hash true
            try:
                digest = tensors_hash(path)
            except architectures.CheckpointError:
                return path  # loading it says what is wrong; there are no tensors to record
            _record_content(entry, path, digest)
        return path
    stage(f"fetching {entry.name} ({sum(f.required for f in entry.files)} files)")
    sources = {p.name: _download(p, folder / p.name) for p in entry.files if p.required}
    _convert_tf(entry, folder, target, {n: downloads.sha256_file(p) for n, p in sources.items()})
    return target


def _convert_tf(entry: ReleasedCheckpoint, folder: Path, target: Path, sources: dict[str, str]) -> None:
    """Convert the verified TF sources in ``folder`` to ``target`` unless a conversion of exactly these
    sources (and tensors) is there; the record ``<target>.source.json`` ties the two."""
    record = target.with_name(target.name + ".source.json")
    if target.is_file() and record.is_file():
        try:
            known = json.loads(record.read_text())
            if known == {"sources": sources, "content_hash": tensors_hash(target)}:
                _record_content(entry, target, known["content_hash"])
                return
        except (ValueError, architectures.CheckpointError):
            pass  # an unreadable record or conversion is made again
    model = architectures.build(entry.model, entry.scale, entry.variant, form=entry.form)
    architectures.load_checkpoint(model, folder)  # crc-checked, strict
    state_dict = model.state_dict()
    digest = architectures.content_hash(state_dict)
    _record_content(entry, target, digest, check_only=True)
    with atomic_file(target) as f:
        torch.save(state_dict, f)
    with atomic_file(record) as f:
        f.write(json.dumps({"sources": sources, "content_hash": digest}, indent=1).encode())
    _record_content(entry, target, digest)


def _record_content(entry: ReleasedCheckpoint, path: Path, digest: str, check_only: bool = False) -> None:
    """Refuse tensors whose content hash is not the zoo's; else record it beside ``path`` (once)."""
    if entry.content_hash is not None and digest != entry.content_hash:
        raise ValueError(
            f"{path} holds tensors of content hash {digest}, but {entry.name} has {entry.content_hash} "
            f"({entry.defined_in}): delete {path.parent} and fetch again"
        )
    record = path.with_name(path.name + ".content_hash")
    if not check_only and (not record.is_file() or record.read_text().strip() != digest):
        with atomic_file(record) as f:
            f.write(f"{digest}\n".encode())


def _manual(entry: ReleasedCheckpoint, path: Path) -> Path:
    """A manual entry's file at ``path``: loaded strictly once, its sha256 recorded and then enforced."""
    if not path.is_file():
        raise ManualDownloadRequired(entry.manual.format(path=path))
    record = path.with_name(path.name + ".sha256")
    digest = downloads.sha256_file(path)
    if record.exists():
        recorded = (record.read_text(errors="replace").split() or [""])[0]
        if len(recorded) != 64:
            raise ValueError(
                f"{record} is empty or not a sha256 record: delete it to check {path} and record it again"
            )
        if recorded != digest:
            raise ValueError(
                f"{path} has sha256 {digest} but {recorded} was recorded when it was first checked: put the "
                f"original file back, or delete {record} to accept this one"
            )
        return path
    architectures.load_checkpoint(
        architectures.build(entry.model, entry.scale, entry.variant, form=entry.form), path
    )
    with atomic_file(record) as f:
        f.write(f"{digest}  {path.name}\n".encode())
    return path


add_dir(RELEASE_DIR)
