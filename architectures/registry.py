"""The one registry of super-resolution architectures.

Each paper module decorates one builder per model name with :func:`register`; ``architectures/__init__``
imports the paper modules explicitly (no auto-discovery), so the registry is complete on import. A paper
kept outside the package registers the same way once its module is imported (:func:`load_module`).

The registry holds what belongs to the paper rather than to a run: its variants and scales, its forms, its
test-time procedure and how it counts MACs (:class:`Counting`), which ``harness.complexity`` and the
verdicts read from here.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from torch import nn

from architectures.errors import BuildError, UnknownModel


@dataclass(frozen=True)
class Counting:
    """How a paper counts MACs: the op rule (``fvcore`` or ``multi_adds``, ``harness.complexity.OPS``) and
    the input-size convention of its published Multi-Adds/FLOPs (``hr720p`` or ``ntire256``)."""

    ops: str = "fvcore"
    convention: str = "hr720p"


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of one model: its variants, the scales each variant exists at, its forms."""

    name: str
    paper: str
    builder: Callable[..., nn.Module]
    scales: dict[str | None, tuple[int, ...]]
    default_variant: str | None = None
    forms: tuple[str, ...] = ("train",)
    test_time: str = "whole"  # a harness.schema.Inference value (architectures do not import harness)
    open_variants: bool = False
    notes: str = ""
    counting: Counting = field(default_factory=Counting)

    @property
    def variants(self) -> tuple[str | None, ...]:
        return tuple(self.scales)

    @property
    def eval_form(self) -> str:
        """The form a checkpoint is evaluated and counted in: ``deploy`` for re-parameterisable models
        (it loads both checkpoint forms), else ``train``."""
        return "deploy" if "deploy" in self.forms else "train"


MODELS: dict[str, ModelSpec] = {}


def register(
    name: str,
    *,
    paper: str,
    scales: dict[str | None, tuple[int, ...]],
    default_variant: str | None = None,
    forms: tuple[str, ...] = ("train",),
    test_time: str = "whole",
    open_variants: bool = False,
    notes: str = "",
    counting: Counting | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder(scale, variant, form, **overrides) -> nn.Module`` under ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = ModelSpec(
            name, paper, builder, scales, default_variant, forms, test_time, open_variants, notes,
            counting or Counting(),
        )  # fmt: skip
        return builder

    return wrap


def spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModel(
            f"unknown model {name!r}; registered models: {', '.join(sorted(MODELS))}"
        ) from None


def spec_of(model: nn.Module) -> ModelSpec | None:
    """The spec ``model`` was built from by :func:`build`, or None for a module built otherwise."""
    return MODELS.get(getattr(model, "registry_name", None))


def build(name: str, scale: int, variant: str | None = None, form: str = "train", **overrides) -> nn.Module:
    """Build a registered model.

    ``variant`` defaults to the model's default variant; ``form`` is ``train`` or (for re-parameterisable
    models) ``deploy``; ``overrides`` are the official constructor's hyper-parameters (e.g. ``n_feats``).
    A scale or variant the paper does not publish is an error unless overrides are given. The model
    remembers its registry name (``model.registry_name``, see :func:`spec_of`).
    """
    s = spec(name)
    variant = s.default_variant if variant is None else variant
    if form not in s.forms:
        raise BuildError(f"{name} has forms {s.forms}, not {form!r}")
    if variant not in s.scales and not s.open_variants:
        raise BuildError(f"{name} has variants {[v for v in s.variants if v]}, not {variant!r}")
    if not overrides:
        published = s.scales.get(variant, s.scales[s.default_variant])
        if scale not in published:
            raise BuildError(f"{name} variant {variant} is published at scales {published}, not x{scale}")
    model = s.builder(scale=scale, variant=variant, form=form, **overrides)
    model.registry_name = name
    return model


def load_module(path: Path) -> ModuleType:
    """Import a model file kept outside the package (its ``@register`` builders join the registry); a file
    already imported is not imported again."""
    path = Path(path).resolve()
    name = f"reprosr_extra_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import a model file from {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
