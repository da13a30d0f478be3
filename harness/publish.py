"""``reprosr publish RUN_ID…``: copy runs from the local results store into the committed one.

The committed store (``results/runs``) is what the leaderboard site is built from; it changes only here. For
each run this copies its rows of both tables (results and verdicts, unchanged, timestamps included) and
the small artifacts the site shows: HR / bicubic / SR crops of the first images of each evaluated set, made
from the run directory's SR outputs (``runs/<name>/run.json``, ``sr/<dataset>/*.png``), written to
``results/artifacts/<run_id>/`` with their manifest (:mod:`harness.report.assets`). Per-image scores are
rows of the store already.

All or nothing, idempotent, safe under concurrency: every run is checked before anything is written (run
ids, rows, that the run measured something, that its SR images are the ones it scored), the whole
read-check-append holds an exclusive lock (``<committed store>/.publish.lock``), and each run's publish
manifest ``<committed store>/published/<run_id>.json`` is written last. A run with a manifest is published
and adds nothing; a publish cut short (killed, out of disk) is completed by the next one: each table gets
the run's rows only if it has none of them yet (a part file is written whole or not at all).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from harness import data, store
from harness.errors import UserError
from harness.files import atomic_file, inside, locked
from harness.paths import repo_file
from harness.report.assets import MANIFEST
from harness.reproduce import RUNS
from harness.schema import Tier
from harness.sr_outputs import MANIFEST as SR_MANIFEST

CROP = 96  # HR pixels per side of a visual-comparison crop
CROPS_PER_SET = 2
LOCK = ".publish.lock"
PUBLISHED = "published"  # <committed store>/published/<run_id>.json: written last, one per published run
TABLES = ("results", "verdicts")


@dataclass(frozen=True)
class Published:
    run_id: str
    results: int  # rows added to the committed store (0: already there)
    verdicts: int
    crops: int
    note: str

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _rows(df: pd.DataFrame) -> list[dict]:
    """Rows read from a store as rows :func:`harness.store.append` takes (v1 rows arrive upgraded)."""
    return [{k: v for k, v in r.items() if k != "schema_version"} for r in df.to_dict("records")]


def _native(rows: list[dict]) -> list[dict]:
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()} for r in rows]


def find_run_dir(runs_dir: Path, run_id: str) -> Path | None:
    """The run directory under ``runs_dir`` whose ``run.json`` names ``run_id``."""
    for path in sorted(Path(runs_dir).glob("*/run.json")):
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("run_id") == run_id:
                return path.parent
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not JSON ({exc})") from None
    return None


def _to_pil(img) -> Image.Image:
    array = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def detail_box(hr: Image.Image, side: int) -> tuple[int, int, int, int]:
    """The ``side``² window (on a half-window grid) with the most HR gradient energy: where SR differs."""
    gray = np.asarray(hr.convert("L"), np.float64)
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.abs(np.diff(gray, axis=1))
    energy[1:, :] += np.abs(np.diff(gray, axis=0))
    step = max(side // 2, 1)
    h, w = gray.shape
    tops, lefts = range(0, h - side + 1, step), range(0, w - side + 1, step)
    windows = [(energy[t : t + side, x : x + side].sum(), -t, -x) for t in tops for x in lefts]
    _, top, left = max(windows)
    return -left, -top, -left + side, -top + side


def _write_json(path: Path, payload: dict) -> None:
    with atomic_file(path) as f:
        f.write((json.dumps(payload, indent=1, sort_keys=True) + "\n").encode())


def sr_files(run_dir: Path, run_id: str) -> dict[str, list[Path]]:
    """The SR outputs of ``run_id`` that crops are made from (the first :data:`CROPS_PER_SET` of each
    dataset; relative SR folders are relative to the run directory), checked against the run's SR manifest
    (``manifest.json`` beside the dataset folders, as ``--save-sr`` writes it): the manifest must name the
    run and every file must have the pixel hash it records. Raises a UserError otherwise (a reused
    ``--out`` folder holds another run's images, or the files changed since)."""
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    out = {}
    for dataset, folder in sorted(run.get("sr_dirs", {}).items()):
        folder = Path(folder) if Path(folder).is_absolute() else run_dir / folder
        files = sorted(folder.glob("*.png"))[:CROPS_PER_SET]
        if not files:
            continue
        manifest_path = folder.parent / SR_MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            named = manifest["datasets"][dataset].get("run_id")
            hashes = {k: v["sha256_pixels"] for k, v in manifest["images"].items()}
        except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(
                f"cannot check the SR images of run {run_id} in {folder}: {manifest_path} is missing or "
                f"not an SR manifest ({type(exc).__name__}: {exc}); publish it with --runs pointing to no "
                "run folder to skip its crops"
            ) from None
        if named != run_id:
            raise UserError(
                f"the SR images in {folder} are run {named}'s, not run {run_id}'s ({manifest_path}): the "
                "--out folder was reused; publish without its crops (--runs pointing elsewhere) or rerun it"
            )
        for file in files:
            with Image.open(file) as img:
                digest = hashlib.sha256(np.asarray(img.convert("RGB")).tobytes()).hexdigest()
            if hashes.get(f"{dataset}/{file.name}") != digest:
                raise UserError(
                    f"{file} is not the SR image run {run_id} scored (its pixel hash differs from "
                    f"{manifest_path}): the --out folder was reused or the file changed; publish without its "
                    "crops (--runs pointing elsewhere) or rerun it"
                )
        out[dataset] = files
    return out


def make_crops(
    run_dir: Path, run_id: str, scale: int, data_root: Path | None, target: Path, sr: dict[str, list[Path]]
) -> list[str]:
    """Write the crops of the checked SR files ``sr`` (:func:`sr_files`) and their manifest into ``target``
    (atomically, file by file); the notes of what was skipped."""
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    root = data_root or (Path(run["data_root"]) if run.get("data_root") else None)
    comparisons, notes = [], []
    target.mkdir(parents=True, exist_ok=True)
    for dataset, folder in sorted(run.get("sr_dirs", {}).items()):
        if dataset not in sr:
            notes.append(f"no SR outputs of {dataset} in {folder}")
            continue
        try:
            pairs = (
                data.embedded_pairs(scale)
                if dataset == "embedded"
                else data.benchmark_pairs(dataset, scale, root)
            )
        except (FileNotFoundError, ValueError) as exc:
            notes.append(f"{dataset} HR images not found ({exc})")
            continue
        by_name = {p.name: p for p in pairs}
        for sr_file in [f for f in sr[dataset] if f.stem in by_name]:
            pair = by_name[sr_file.stem]
            hr = _to_pil(pair.hr)
            with Image.open(sr_file) as img:
                image_sr = img.convert("RGB")
            if image_sr.size != hr.size:
                notes.append(f"{sr_file} is {image_sr.size}, HR is {hr.size}")
                continue
            bicubic = _to_pil(pair.lr).resize(hr.size, Image.Resampling.BICUBIC)
            box = detail_box(hr, min(CROP, *hr.size))
            crops = []
            for kind, label, image in (
                ("HR", "HR (ground truth)", hr),
                ("bicubic", "bicubic (PIL upsampling of the LR)", bicubic),
                ("SR", f"SR ({run.get('recipe', '')}, {run.get('profile', '')})", image_sr),
            ):
                name = f"{dataset}-{sr_file.stem}-{kind}.png"
                with atomic_file(target / name) as f:
                    image.crop(box).save(f, format="PNG")
                crops.append({"label": label, "file": name})
            comparisons.append({"dataset": dataset, "image": sr_file.stem, "box": list(box), "crops": crops})
    _write_json(
        target / MANIFEST, {"run_id": run_id, "recipe": run.get("recipe", ""), "comparisons": comparisons}
    )
    return notes


@dataclass
class _Plan:
    run_id: str
    rows: dict[str, list[dict]]  # table → rows the committed store still lacks
    run_dir: Path | None
    scales: set[int]
    sr: dict[str, list[Path]]


def _check_links(artifacts: Path, run_id: str) -> None:
    """Refuse an artifact folder (or a file in it) that is a symbolic link: publish writes through none."""
    folder = inside(artifacts, artifacts / run_id)
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            inside(artifacts, entry)


def _measured_something(results: pd.DataFrame) -> bool:
    """Whether a run has a finite measurement beyond the static tier's counts."""
    measured = results[results.tier != Tier.STATIC]
    return any(math.isfinite(v) for v in measured.value)


def _plan(run_id: str, src: dict, tgt: dict, source: Path, target: Path, runs_dir: Path) -> _Plan:
    """What publishing ``run_id`` still has to write; a UserError (nothing written) when it must not."""
    rows = {t: src[t][src[t].run_id == run_id] for t in TABLES}
    there = {t: bool((tgt[t].run_id == run_id).any()) for t in TABLES}
    if not any(there.values()) and all(rows[t].empty for t in TABLES):
        raise UserError(
            f"run {run_id!r} is in neither the local store ({source}) nor the committed store "
            f"({target}); `reprosr reproduce` and `reprosr eval` print the run id"
        )
    results = tgt["results"][tgt["results"].run_id == run_id] if there["results"] else rows["results"]
    if results.empty:
        raise UserError(f"run {run_id!r} has verdicts but no results rows in {source}; nothing to publish")
    if not _measured_something(results):
        raise UserError(
            f"run {run_id!r} measured nothing beyond the static counts (no checkpoint or training "
            "measurement: e.g. its checkpoint could not be fetched); rerun it where it can measure, then "
            "publish that run"
        )
    add = {t: [] if there[t] else _native(_rows(rows[t])) for t in TABLES}
    for t, r in add.items():
        store.validate(r, t)
    run_dir = find_run_dir(runs_dir, run_id)
    scales = {int(s) for s in results.scale}
    sr = sr_files(run_dir, run_id) if run_dir is not None and len(scales) == 1 else {}
    return _Plan(run_id, add, run_dir, scales, sr)


def publish(
    run_ids: list[str],
    source: Path | None = None,
    target: Path | None = None,
    artifacts: Path | None = None,
    runs_dir: Path | None = None,
    data_root: Path | None = None,
) -> list[Published]:
    """Publish ``run_ids`` from the store ``source`` (default: the local store) into ``target`` (default: the
    committed store) and their crops into ``artifacts`` (default ``results/artifacts``). Every run is checked
    before anything is written (module docstring): a bad or unknown run id raises and publishes nothing."""
    source = Path(source) if source is not None else store.default_root()
    target = Path(target) if target is not None else store.COMMITTED_ROOT
    artifacts = Path(artifacts) if artifacts is not None else repo_file("results/artifacts")
    runs_dir = Path(runs_dir) if runs_dir is not None else RUNS
    run_ids = [store.check_run_id(r) for r in dict.fromkeys(run_ids)]
    for run_id in run_ids:
        _check_links(artifacts, run_id)
    src = {t: store.read(t, source) for t in TABLES}
    if not target.is_dir():  # a refused publish must not create the store: check before creating it
        _plan_all(run_ids, src, {t: store.read(t, target) for t in TABLES}, source, target, runs_dir)
    target.mkdir(parents=True, exist_ok=True)
    with locked(target / LOCK):
        tgt = {t: store.read(t, target) for t in TABLES}
        plans = _plan_all(run_ids, src, tgt, source, target, runs_dir)
        return [_apply(p, target, artifacts, data_root) if isinstance(p, _Plan) else p for p in plans]


def _plan_all(
    run_ids: list[str], src: dict, tgt: dict, source: Path, target: Path, runs_dir: Path
) -> list[_Plan | Published]:
    """A :class:`_Plan` per run not yet published, a :class:`Published` (nothing added) per run that is."""
    out = []
    for run_id in run_ids:
        if (target / PUBLISHED / f"{run_id}.json").is_file():
            out.append(Published(run_id, 0, 0, 0, f"already published ({target / PUBLISHED / run_id}.json)"))
        else:
            out.append(_plan(run_id, src, tgt, source, target, runs_dir))
    return out


def _apply(plan: _Plan, target: Path, artifacts: Path, data_root: Path | None) -> Published:
    """Write one checked run: the rows each table lacks, its crops, then its publish manifest (last)."""
    for t, rows in plan.rows.items():
        store.append(rows, t, target)
    crops, note = 0, ""
    if plan.run_dir is None:
        note = f"no run directory with run.json for {plan.run_id}: published without new crops"
    elif len(plan.scales) != 1:
        note = f"run {plan.run_id} has rows of scales {sorted(plan.scales)}: no crops made"
    else:
        folder = artifacts / plan.run_id
        notes = make_crops(plan.run_dir, plan.run_id, next(iter(plan.scales)), data_root, folder, plan.sr)
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        crops = sum(len(c["crops"]) for c in manifest["comparisons"])
        note = "; ".join(notes)
    counts = {t: len(rows) for t, rows in plan.rows.items()}
    (target / PUBLISHED).mkdir(exist_ok=True)
    _write_json(target / PUBLISHED / f"{plan.run_id}.json", {"run_id": plan.run_id, "crops": crops})
    return Published(plan.run_id, counts["results"], counts["verdicts"], crops, note)
