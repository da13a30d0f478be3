"""``reprosr publish RUN_ID…``: copy runs from the local results store into the committed one.

The committed store (``results/runs``) is what the leaderboard site is built from; it changes only here. For
each run this copies its rows of both tables (results and verdicts, unchanged, timestamps included) and
the small artifacts the site shows: HR / bicubic / SR crops of the first images of each evaluated set, made
from the run directory's SR outputs (``runs/<name>/run.json``, ``sr/<dataset>/*.png``), written to
``results/artifacts/<run_id>/`` with their manifest (:mod:`harness.report.assets`). Per-image scores are
rows of the store already. Publishing a run twice adds no rows; its crops are remade when its run directory
exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from harness import data, store
from harness.paths import repo_file
from harness.report.assets import MANIFEST
from harness.reproduce import RUNS

CROP = 96  # HR pixels per side of a visual-comparison crop
CROPS_PER_SET = 2


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
            raise ValueError(f"{path}: not JSON ({exc})") from None
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


def make_crops(run_dir: Path, run_id: str, scale: int, data_root: Path | None, target: Path) -> list[str]:
    """Write the crops of ``run_dir`` and their manifest into ``target``; the notes of what was skipped."""
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    root = data_root or (Path(run["data_root"]) if run.get("data_root") else None)
    comparisons, notes = [], []
    target.mkdir(parents=True, exist_ok=True)
    for dataset, folder in sorted(run.get("sr_dirs", {}).items()):
        sr_files = sorted(Path(folder).glob("*.png"))
        if not sr_files:
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
        for sr_file in [f for f in sr_files if f.stem in by_name][:CROPS_PER_SET]:
            pair = by_name[sr_file.stem]
            hr = _to_pil(pair.hr)
            sr = Image.open(sr_file).convert("RGB")
            if sr.size != hr.size:
                notes.append(f"{sr_file} is {sr.size}, HR is {hr.size}")
                continue
            bicubic = _to_pil(pair.lr).resize(hr.size, Image.Resampling.BICUBIC)
            box = detail_box(hr, min(CROP, *hr.size))
            crops = []
            for kind, label, image in (
                ("HR", "HR (ground truth)", hr),
                ("bicubic", "bicubic (PIL upsampling of the LR)", bicubic),
                ("SR", f"SR ({run.get('recipe', '')}, {run.get('profile', '')})", sr),
            ):
                name = f"{dataset}-{sr_file.stem}-{kind}.png"
                image.crop(box).save(target / name)
                crops.append({"label": label, "file": name})
            comparisons.append({"dataset": dataset, "image": sr_file.stem, "box": list(box), "crops": crops})
    manifest = {"run_id": run_id, "recipe": run.get("recipe", ""), "comparisons": comparisons}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return notes


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
    before anything is written: an unknown run id raises and publishes nothing."""
    source = Path(source) if source is not None else store.default_root()
    target = Path(target) if target is not None else store.COMMITTED_ROOT
    artifacts = Path(artifacts) if artifacts is not None else repo_file("results/artifacts")
    runs_dir = Path(runs_dir) if runs_dir is not None else RUNS
    tables = ("results", "verdicts")
    src = {t: store.read(t, source) for t in tables}
    tgt = {t: store.read(t, target) for t in tables}
    plan = []
    for run_id in dict.fromkeys(run_ids):
        rows = {t: src[t][src[t].run_id == run_id] for t in tables}
        published = any((tgt[t].run_id == run_id).any() for t in tables)
        if not published and all(rows[t].empty for t in tables):
            raise ValueError(
                f"run {run_id!r} is in neither the local store ({source}) nor the committed store "
                f"({target}); `reprosr reproduce` and `reprosr eval` print the run id"
            )
        if not published and rows["results"].empty:
            raise ValueError(
                f"run {run_id!r} has verdicts but no results rows in {source}; nothing to publish"
            )
        rows = {} if published else {t: _native(_rows(rows[t])) for t in tables}
        for t, r in rows.items():
            store.validate(r, t)
        plan.append((run_id, rows, find_run_dir(runs_dir, run_id)))
    out = []
    for run_id, rows, run_dir in plan:  # every run checked above: now write
        for t, r in rows.items():
            store.append(r, t, target)
        scales = set(src["results"][src["results"].run_id == run_id].scale) or set(
            tgt["results"][tgt["results"].run_id == run_id].scale
        )
        crops, note = 0, ""
        if run_dir is None:
            note = (
                f"no run directory with run.json for {run_id} under {runs_dir}: published without new crops"
            )
        elif len(scales) != 1:
            note = f"run {run_id} has rows of scales {sorted(scales)}: no crops made"
        else:
            notes = make_crops(run_dir, run_id, int(scales.pop()), data_root, artifacts / run_id)
            manifest = json.loads((artifacts / run_id / MANIFEST).read_text(encoding="utf-8"))
            crops = sum(len(c["crops"]) for c in manifest["comparisons"])
            note = "; ".join(notes)
        out.append(
            Published(run_id, len(rows.get("results", [])), len(rows.get("verdicts", [])), crops, note)
        )
    return out
