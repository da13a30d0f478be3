"""Pinned training recipes: one TOML file per paper × scale × variant under ``harness/recipes/``.

A recipe is data, read into typed sections (:class:`RecipeId`, :class:`DataSection`, :class:`Optim`,
:class:`Schedule`, :class:`Loss`, :class:`TrainSection`, :class:`EvalSection`, :class:`Smoke`); every
field is read by the training or evaluation code. Every field carries its provenance in the ``[sources]``
table, keyed by its dotted path (``"optim.lr"``): an official config file and key, the training graph,
the paper, or ``"reconstructed — not published in the available sources"``. A recipe whose fields come from
third parties also rates each source in a ``[confidence]`` table keyed the same way (a
:class:`~harness.schema.Confidence`: ``high`` = the authors' own code, config or training graph, or a value
the harness itself defines; ``medium`` = a third party recording the authors' setting; ``low`` =
reconstructed, or a deviation forced by missing data); when present it rates every field.
:func:`load` validates the file (no unknown, missing or mistyped field; a source for each field and none
for a field that does not exist; a complete, valid ``[confidence]`` when given) and checks it against the
model registry (``architectures.MODELS``): the paper, the variant and
scale, the form and the test-time procedure must be the registry's. ``Recipe.hash`` is the sha256 of the
canonical JSON of the parsed content, so it is stable across whitespace, comments and key order.

Conventions: ``data.hr_patch`` is the HR patch side (the LR patch is ``hr_patch // scale``);
``data.batch_per_gpu × data.gpus`` is the global batch; ``schedule.milestones`` and ``schedule.total`` are
in ``schedule.unit`` (``"iteration"`` or ``"epoch"``, an epoch being one pass over the enlarged dataset);
``train.ema_decay = 0`` and ``train.grad_clip = 0`` mean none; ``recipe.variant = ""`` means the model has
no variants; ``data.lr_source = "disk"`` requires the dataset's LR files (MATLAB bicubic), ``"degrade"``
makes them here; ``eval.val_set`` is the set that ``train.keep = "best"`` selects on, by
``eval.select_metric`` (a :mod:`harness.metrics` convention: the metric the official trainer selects by).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import architectures
from harness.errors import UnknownName, UserError
from harness.schema import Confidence

RECIPE_DIR = Path(__file__).with_name("recipes")
RECONSTRUCTED = "reconstructed — not published in the available sources"


@dataclass(frozen=True)
class RecipeId:
    name: str
    paper: str
    model: str
    variant: str
    scale: int
    form: Literal["train", "deploy"]


@dataclass(frozen=True)
class DataSection:
    train: str
    train_images: list[int]
    lr_source: Literal["disk", "degrade"]
    hr_patch: int
    batch_per_gpu: int
    gpus: int
    hflip: bool
    rot: bool
    enlarge: int


@dataclass(frozen=True)
class Optim:
    type: Literal["Adam", "AdamTF1"]  # AdamTF1: TensorFlow 1's Adam (training/optimizers.py)
    lr: float
    betas: list[float]
    eps: float
    weight_decay: float


@dataclass(frozen=True)
class Schedule:
    type: Literal["MultiStepLR"]
    unit: Literal["iteration", "epoch"]
    milestones: list[int]
    gamma: float
    total: int


@dataclass(frozen=True)
class Loss:
    type: Literal["L1"]
    reduction: Literal["mean"]


@dataclass(frozen=True)
class TrainSection:
    seed: int
    ema_decay: float
    grad_clip: float
    precision: Literal["fp32", "bf16"]
    channels_last: bool
    checkpoint_every: int
    val_every: int
    keep: Literal["last", "best"]


@dataclass(frozen=True)
class EvalSection:
    inference: Literal["whole", "chop"]
    val_set: str
    select_metric: Literal["psnr_y", "psnr_edsr"]
    benchmarks: list[str]


@dataclass(frozen=True)
class Smoke:
    hr_patch: int
    batch: int
    iters: int


SECTIONS: dict[str, type] = {
    "recipe": RecipeId,
    "data": DataSection,
    "optim": Optim,
    "schedule": Schedule,
    "loss": Loss,
    "train": TrainSection,
    "eval": EvalSection,
    "smoke": Smoke,
}
# section → field → annotated type (derived from the section classes; the one schema)
SCHEMA: dict[str, dict[str, Any]] = {s: typing.get_type_hints(cls) for s, cls in SECTIONS.items()}


class RecipeError(UserError):
    """A recipe file that does not match the schema; the message names the file and the field."""


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: ``data`` holds the parsed sections as plain values (what the hash covers and the
    report lists), ``sources`` the per-field provenance; the typed sections are attributes."""

    path: Path
    data: dict[str, dict[str, Any]] = field(repr=False)
    sources: dict[str, str] = field(repr=False)
    confidence: dict[str, Confidence] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for section, cls in SECTIONS.items():
            object.__setattr__(self, f"_{section}", cls(**self.data[section]))

    # typed sections
    @property
    def id(self) -> RecipeId:
        return self._recipe  # type: ignore[attr-defined]

    @property
    def dataset(self) -> DataSection:
        return self._data  # type: ignore[attr-defined]

    @property
    def optim(self) -> Optim:
        return self._optim  # type: ignore[attr-defined]

    @property
    def schedule(self) -> Schedule:
        return self._schedule  # type: ignore[attr-defined]

    @property
    def loss(self) -> Loss:
        return self._loss  # type: ignore[attr-defined]

    @property
    def train(self) -> TrainSection:
        return self._train  # type: ignore[attr-defined]

    @property
    def eval(self) -> EvalSection:
        return self._eval  # type: ignore[attr-defined]

    @property
    def smoke(self) -> Smoke:
        return self._smoke  # type: ignore[attr-defined]

    # identity shortcuts
    @property
    def name(self) -> str:
        return self.id.name

    @property
    def paper(self) -> str:
        return self.id.paper

    @property
    def model(self) -> str:
        return self.id.model

    @property
    def variant(self) -> str | None:
        return self.id.variant or None

    @property
    def scale(self) -> int:
        return self.id.scale

    @property
    def form(self) -> str:
        return self.id.form

    @property
    def global_batch(self) -> int:
        return self.dataset.batch_per_gpu * self.dataset.gpus

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the parsed file (sections, sources and confidence)."""
        content = {**self.data, "sources": self.sources}
        if self.confidence:
            content["confidence"] = {k: str(v) for k, v in self.confidence.items()}
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def source(self, dotted: str) -> str:
        return self.sources[dotted]

    def rating(self, dotted: str) -> Confidence | None:
        """How far ``dotted``'s source is trusted (``[confidence]``), or None when the recipe rates none."""
        return self.confidence.get(dotted)


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
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    if origin is Literal:
        return isinstance(value, str)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _coerce(value: Any, expected: Any) -> Any:
    if typing.get_origin(expected) is list:
        return [_coerce(v, typing.get_args(expected)[0]) for v in value]
    return float(value) if expected is float else value


def validate(raw: dict[str, Any], path: Path) -> Recipe:
    """Check parsed TOML against the sections and the model registry; :class:`RecipeError` names the file
    and the field."""
    where = str(path)
    unknown = sorted(set(raw) - set(SCHEMA) - {"sources", "confidence"})
    if unknown:
        raise RecipeError(
            f"{where}: unknown section(s) {unknown}; allowed: {sorted(SCHEMA)}, [sources] and [confidence]"
        )
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
            choices = typing.get_args(expected) if typing.get_origin(expected) is Literal else None
            if choices and value not in choices:
                raise RecipeError(f"{where}: field {dotted} = {value!r}; allowed: {choices}")
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
    confidence = _confidence(raw.get("confidence"), fields_all, where)
    if data["recipe"]["name"] != path.stem:
        raise RecipeError(f"{where}: recipe.name is {data['recipe']['name']!r} but the file is {path.name}")
    _check_consistency(data, where)
    _check_ranges(data, where)
    _check_registry(data, where)
    return Recipe(path, data, dict(sources), confidence)


def _confidence(table: Any, fields_all: set[str], where: str) -> dict[str, Confidence]:
    """The ``[confidence]`` table as :class:`Confidence` values: absent, or one valid rating per field."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: [confidence] must be a table of field = rating")
    missing, stray = sorted(fields_all - set(table)), sorted(set(table) - fields_all)
    if missing:
        raise RecipeError(f"{where}: [confidence] rates no field(s) {missing}; rate every field or none")
    if stray:
        raise RecipeError(f"{where}: [confidence] names field(s) that do not exist: {stray}")
    allowed = [str(c) for c in Confidence]
    for dotted, rating in table.items():
        if rating not in allowed:
            raise RecipeError(f"{where}: [confidence] {dotted} = {rating!r}; allowed: {allowed}")
    return {dotted: Confidence(rating) for dotted, rating in table.items()}


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
    if data["optim"]["type"] == "AdamTF1" and data["optim"]["weight_decay"]:
        raise RecipeError(f"{where}: optim.weight_decay must be 0 for optim.type AdamTF1 (TF1 has none)")
    if len(data["data"]["train_images"]) != 2:
        raise RecipeError(f"{where}: data.train_images is [first, last], got {data['data']['train_images']}")


_POSITIVE: tuple[Callable[[float], bool], str] = (lambda v: v > 0, "> 0")
_AT_LEAST_1: tuple[Callable[[float], bool], str] = (lambda v: v >= 1, ">= 1")
_NON_NEGATIVE: tuple[Callable[[float], bool], str] = (lambda v: v >= 0, ">= 0")
_FRACTION: tuple[Callable[[float], bool], str] = (lambda v: 0 <= v < 1, "in [0, 1)")
# field → (test, allowed range in words) for every numeric field (each item of a list field).
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "recipe.scale": _AT_LEAST_1,
    "data.hr_patch": _AT_LEAST_1,
    "data.batch_per_gpu": _AT_LEAST_1,
    "data.gpus": _AT_LEAST_1,
    "data.enlarge": _AT_LEAST_1,
    "data.train_images": _AT_LEAST_1,
    "optim.lr": _POSITIVE,
    "optim.betas": _FRACTION,
    "optim.eps": _POSITIVE,
    "optim.weight_decay": _NON_NEGATIVE,
    "schedule.milestones": _AT_LEAST_1,
    "schedule.gamma": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "schedule.total": _AT_LEAST_1,
    "train.seed": _NON_NEGATIVE,
    "train.ema_decay": _FRACTION,  # 0: no EMA
    "train.grad_clip": _NON_NEGATIVE,  # 0: no clipping
    "train.checkpoint_every": _AT_LEAST_1,
    "train.val_every": _AT_LEAST_1,
    "smoke.hr_patch": _AT_LEAST_1,
    "smoke.batch": _AT_LEAST_1,
    "smoke.iters": _AT_LEAST_1,
}


def _check_ranges(data: dict[str, dict[str, Any]], where: str) -> None:
    """Every numeric field within :data:`RANGES` (NaN is never)."""
    for dotted, (ok, allowed) in RANGES.items():
        section, name = dotted.split(".")
        value = data[section][name]
        if not all(ok(v) for v in (value if isinstance(value, list) else [value])):
            raise RecipeError(f"{where}: field {dotted} = {value!r} is out of range: it must be {allowed}")


def _check_registry(data: dict[str, dict[str, Any]], where: str) -> None:
    """The model registry owns paper, variants × scales, forms and the test-time procedure."""
    ident = data["recipe"]
    try:
        spec = architectures.spec(ident["model"])
    except KeyError as exc:
        raise RecipeError(f"{where}: recipe.model: {exc.args[0]}") from None
    variant = ident["variant"] or None
    expected = {
        "recipe.paper": (ident["paper"], spec.paper),
        "eval.inference": (data["eval"]["inference"], spec.test_time),
    }
    for dotted, (got, want) in expected.items():
        if got != want:
            raise RecipeError(
                f"{where}: {dotted} = {got!r} but architectures.MODELS[{spec.name!r}] says {want!r}"
            )
    if variant not in spec.scales:
        raise RecipeError(f"{where}: recipe.variant = {ident['variant']!r} is not a {spec.name} variant")
    if ident["scale"] not in spec.scales[variant]:
        raise RecipeError(
            f"{where}: recipe.scale = {ident['scale']}: {spec.name} {ident['variant']} exists at "
            f"{spec.scales[variant]}"
        )
    if ident["form"] not in spec.forms:
        raise RecipeError(f"{where}: recipe.form = {ident['form']!r}; {spec.name} has forms {spec.forms}")


def load(name_or_path: str | Path) -> Recipe:
    """Load a recipe by registry name (``"span_light_x2"``) or by path to a ``.toml`` file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        if str(name_or_path) not in RECIPES:
            raise UnknownName(f"unknown recipe {name_or_path!r}; known recipes: {', '.join(RECIPES)}")
        path = RECIPES[str(name_or_path)]
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: not valid TOML ({err})") from None
    return validate(raw, path)
