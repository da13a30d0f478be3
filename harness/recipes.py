"""Pinned training recipes: one TOML file per paper × scale × variant under ``harness/recipes/``.

A recipe is data. Every field carries its provenance in the ``[sources]`` table, keyed by the field's
dotted path (``"optim.lr"``): an official config file and key, the training graph, the paper, or
``"reconstructed — not published in the available sources"``. :func:`load` validates the file against
:data:`SCHEMA` (no unknown, missing or mistyped field; a source for each field and no source for a field
that does not exist). ``Recipe.hash`` is the sha256 of the canonical JSON of the parsed content, so it is
stable across whitespace, comments and key order.

Conventions: ``data.hr_patch`` is the HR patch side (the LR patch is ``hr_patch // scale``);
``data.batch_per_gpu × data.gpus`` is the global batch; ``schedule.milestones`` and ``schedule.total`` are
in ``schedule.unit`` (``"iteration"`` or ``"epoch"``, an epoch being one pass over the enlarged dataset);
``train.ema_decay = 0`` and ``train.grad_clip = 0`` mean none; ``recipe.variant = ""`` means the model has
no variants.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.schema import TEST_TIME

RECIPE_DIR = Path(__file__).with_name("recipes")
RECONSTRUCTED = "reconstructed — not published in the available sources"

# section → field → allowed type(s); lists are checked element-wise by the element type given.
SCHEMA: dict[str, dict[str, Any]] = {
    "recipe": {"name": str, "paper": str, "model": str, "variant": str, "scale": int, "form": str},
    "data": {
        "train": str,
        "train_images": [int],
        "lr_source": str,
        "checksums": str,
        "hr_patch": int,
        "batch_per_gpu": int,
        "gpus": int,
        "hflip": bool,
        "rot": bool,
        "enlarge": int,
    },
    "optim": {"type": str, "lr": float, "betas": [float], "eps": float, "weight_decay": float},
    "schedule": {"type": str, "unit": str, "milestones": [int], "gamma": float, "total": int},
    "loss": {"type": str, "reduction": str},
    "train": {
        "seed": int,
        "ema_decay": float,
        "grad_clip": float,
        "precision": str,
        "checkpoint_every": int,
        "val_every": int,
        "keep": str,
    },
    "eval": {
        "inference": str,
        "val_set": str,
        "benchmarks": [str],
        "metrics": [str],
        "crop_border": int,
        "checksums": str,
    },
    "smoke": {"hr_patch": int, "batch": int, "iters": int},
}

CHOICES: dict[str, tuple] = {
    "recipe.form": ("train", "deploy"),
    "data.lr_source": ("disk", "degrade"),
    "optim.type": ("Adam",),
    "schedule.type": ("MultiStepLR",),
    "schedule.unit": ("iteration", "epoch"),
    "loss.type": ("L1",),
    "loss.reduction": ("mean",),
    "train.precision": ("fp32", "bf16"),
    "train.keep": ("last", "best"),
    "eval.inference": tuple(TEST_TIME),
}


class RecipeError(ValueError):
    """A recipe file that does not match :data:`SCHEMA`; the message names the file and the field."""


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: ``data`` holds the parsed sections, ``sources`` the per-field provenance."""

    path: Path
    data: dict[str, dict[str, Any]] = field(repr=False)
    sources: dict[str, str] = field(repr=False)

    @property
    def name(self) -> str:
        return self.data["recipe"]["name"]

    @property
    def paper(self) -> str:
        return self.data["recipe"]["paper"]

    @property
    def model(self) -> str:
        return self.data["recipe"]["model"]

    @property
    def variant(self) -> str | None:
        return self.data["recipe"]["variant"] or None

    @property
    def scale(self) -> int:
        return self.data["recipe"]["scale"]

    @property
    def form(self) -> str:
        return self.data["recipe"]["form"]

    @property
    def global_batch(self) -> int:
        return self.data["data"]["batch_per_gpu"] * self.data["data"]["gpus"]

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the parsed file (sections and sources)."""
        canonical = json.dumps({**self.data, "sources": self.sources}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def __getitem__(self, dotted: str) -> Any:
        """``recipe["optim.lr"]`` — a field by its dotted path."""
        section, key = dotted.split(".", 1)
        return self.data[section][key]

    def source(self, dotted: str) -> str:
        return self.sources[dotted]


def _discover_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p.resolve() for p in sorted(folder.glob("*.toml"))}


def _discover() -> dict[str, Path]:
    return _discover_in(RECIPE_DIR)


RECIPES: dict[str, Path] = _discover()


def add_dir(path: Path) -> None:
    """Register the ``*.toml`` recipes in ``path`` too (a paper kept outside the package); a name that is
    already registered from another file is an error."""
    for name, file in _discover_in(Path(path)).items():
        if RECIPES.get(name, file) != file:
            raise RecipeError(f"{file}: recipe {name!r} is already registered from {RECIPES[name]}")
        RECIPES[name] = file


def _type_ok(value: Any, expected: Any) -> bool:
    if isinstance(expected, list):
        return isinstance(value, list) and all(_type_ok(v, expected[0]) for v in value)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _coerce(value: Any, expected: Any) -> Any:
    if isinstance(expected, list):
        return [_coerce(v, expected[0]) for v in value]
    return float(value) if expected is float else value


def validate(raw: dict[str, Any], path: Path) -> Recipe:
    """Check parsed TOML against :data:`SCHEMA`; :class:`RecipeError` names the file and the field."""
    where = str(path)
    unknown = sorted(set(raw) - set(SCHEMA) - {"sources"})
    if unknown:
        raise RecipeError(f"{where}: unknown section(s) {unknown}; allowed: {sorted(SCHEMA)} and [sources]")
    data: dict[str, dict[str, Any]] = {}
    for section, fields in SCHEMA.items():
        table = raw.get(section)
        if not isinstance(table, dict):
            raise RecipeError(f"{where}: missing section [{section}] (fields {sorted(fields)})")
        extra = sorted(set(table) - set(fields))
        if extra:
            raise RecipeError(f"{where}: unknown field(s) {[f'{section}.{k}' for k in extra]}")
        data[section] = {}
        for key, expected in fields.items():
            dotted = f"{section}.{key}"
            if key not in table:
                raise RecipeError(f"{where}: missing field {dotted}")
            value = table[key]
            if not _type_ok(value, expected):
                raise RecipeError(f"{where}: field {dotted} = {value!r} is not of type {expected}")
            if dotted in CHOICES and value not in CHOICES[dotted]:
                raise RecipeError(f"{where}: field {dotted} = {value!r}; allowed: {CHOICES[dotted]}")
            data[section][key] = _coerce(value, expected)
    sources = raw.get("sources", {})
    fields_all = {f"{s}.{k}" for s, fs in SCHEMA.items() for k in fs}
    missing = sorted(fields_all - set(sources))
    if missing:
        raise RecipeError(f"{where}: no provenance in [sources] for {missing}")
    stray = sorted(set(sources) - fields_all)
    if stray:
        raise RecipeError(f"{where}: [sources] names field(s) that do not exist: {stray}")
    empty = sorted(k for k, v in sources.items() if not isinstance(v, str) or not v.strip())
    if empty:
        raise RecipeError(f"{where}: [sources] entries must be non-empty strings: {empty}")
    if data["recipe"]["name"] != path.stem:
        raise RecipeError(f"{where}: recipe.name is {data['recipe']['name']!r} but the file is {path.name}")
    _check_consistency(data, where)
    return Recipe(path, data, dict(sources))


def _check_consistency(data: dict[str, dict[str, Any]], where: str) -> None:
    scale = data["recipe"]["scale"]
    for section in ("data", "smoke"):
        if data[section]["hr_patch"] % scale:
            raise RecipeError(
                f"{where}: {section}.hr_patch {data[section]['hr_patch']} is not a multiple of ×{scale}"
            )
    milestones = data["schedule"]["milestones"]
    if milestones != sorted(milestones):
        raise RecipeError(f"{where}: schedule.milestones must be increasing, got {milestones}")
    if len(data["optim"]["betas"]) != 2:
        raise RecipeError(f"{where}: optim.betas needs two values, got {data['optim']['betas']}")
    if len(data["data"]["train_images"]) != 2:
        raise RecipeError(f"{where}: data.train_images is [first, last], got {data['data']['train_images']}")


def load(name_or_path: str | Path) -> Recipe:
    """Load a recipe by registry name (``"span_light_x2"``) or by path to a ``.toml`` file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        if str(name_or_path) not in RECIPES:
            raise KeyError(f"unknown recipe {name_or_path!r}; known recipes: {', '.join(RECIPES)}")
        path = RECIPES[str(name_or_path)]
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: not valid TOML ({err})") from None
    return validate(raw, path)
