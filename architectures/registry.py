"""The one registry of super-resolution architectures.

Each paper module decorates one builder per model name with :func:`register`; ``architectures/__init__``
imports the paper modules explicitly (no auto-discovery), so the registry is complete on import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of one model: its variants, the scales each variant exists at, its forms."""

    name: str
    paper: str
    builder: Callable[..., nn.Module]
    scales: dict[str | None, tuple[int, ...]]
    default_variant: str | None = None
    forms: tuple[str, ...] = ("train",)
    test_time: str = "whole"
    open_variants: bool = False
    notes: str = ""

    @property
    def variants(self) -> tuple[str | None, ...]:
        return tuple(self.scales)


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
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder(scale, variant, form, **overrides) -> nn.Module`` under ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = ModelSpec(
            name, paper, builder, scales, default_variant, forms, test_time, open_variants, notes
        )
        return builder

    return wrap


def spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(MODELS))}") from None


def build(name: str, scale: int, variant: str | None = None, form: str = "train", **overrides) -> nn.Module:
    """Build a registered model.

    ``variant`` defaults to the model's default variant; ``form`` is ``train`` or (for re-parameterisable
    models) ``deploy``; ``overrides`` are the official constructor's hyper-parameters (e.g. ``n_feats``).
    A scale or variant the paper does not publish is an error unless overrides are given.
    """
    s = spec(name)
    variant = s.default_variant if variant is None else variant
    if form not in s.forms:
        raise ValueError(f"{name} has forms {s.forms}, not {form!r}")
    if variant not in s.scales and not s.open_variants:
        raise ValueError(f"{name} has variants {[v for v in s.variants if v]}, not {variant!r}")
    if not overrides:
        published = s.scales.get(variant, s.scales[s.default_variant])
        if scale not in published:
            raise ValueError(f"{name} variant {variant} is published at scales {published}, not x{scale}")
    return s.builder(scale=scale, variant=variant, form=form, **overrides)
