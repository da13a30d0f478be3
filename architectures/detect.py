"""Which registered model, variant, scale and form a checkpoint holds, from its tensors alone.

A checkpoint is identified by its layout: the exact set of state_dict keys and their shapes (dtypes and
values do not matter). Every registered model is built on the meta device (no memory, no initialisation)
at every variant × scale × form the registry knows — the scales of all its variants, so an unpublished
combination is still named — and a checkpoint matches a candidate when the layouts are equal. A model
with open variants (SPAN-ESR's ``ch<N>``) names the variant for each width the file shows through its
``variant_for_width(n)`` hook; a width is the output channels of a conv on the RGB input. TF1 bundles are
converted by the ``from_tf_variables`` hook of the registered models that have one (DRSAN). Compared
with spandrel (which reads hyper-parameters from a few keys and refuses the deploy-form SPAN releases),
the whole layout must match, both SPAN-ESR forms are known, and a file that matches nothing says so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from architectures import tf_checkpoint
from architectures.errors import CheckpointError
from architectures.reading import content_hash, listing, read_checkpoint, unwrap
from architectures.registry import MODELS, ModelSpec

Layout = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class Identity:
    """A registered model at one variant, scale and form: what :func:`architectures.build` takes."""

    model: str
    variant: str | None
    scale: int
    form: str

    def __str__(self) -> str:
        return " ".join(p for p in (self.model, self.variant, f"x{self.scale}", self.form) if p)

    @property
    def flags(self) -> str:
        """The command-line options that build it (``--variant ch28 --scale 4 --form deploy``)."""
        variant = f"--variant {self.variant} " if self.variant else ""
        return f"{variant}--scale {self.scale} --form {self.form}"

    @property
    def published(self) -> bool:
        """Whether the registry publishes this variant at this scale."""
        spec = MODELS[self.model]
        scales = spec.scales.get(
            self.variant, spec.scales[spec.default_variant] if spec.open_variants else ()
        )
        return self.scale in scales


@dataclass(frozen=True)
class Detected(Identity):
    """A detected checkpoint: its identity, the wrapper entry its weights came from (None: a plain
    state_dict or a TF bundle) and the content hash of those tensors (:func:`reading.content_hash`)."""

    param_key: str | None = None
    content_hash: str = ""

    @property
    def identity(self) -> Identity:
        return Identity(self.model, self.variant, self.scale, self.form)


@dataclass(frozen=True)
class Weights:
    """The tensors of a checkpoint as a state_dict, the wrapper entry they came from, and the source."""

    state_dict: dict[str, Tensor]
    param_key: str | None
    origin: str


def detect(path_or_state: str | Path | Mapping, param_key: str | None = None) -> Detected:
    """Identify a checkpoint file, TF1 bundle (folder, prefix or ``.index``) or (wrapped) state_dict.

    ``param_key`` picks a wrapper entry (``params``/``params_ema``; default as :func:`reading.unwrap`).
    Raises :class:`CheckpointError` for a file that matches no registered model (or several), and for
    unreadable files; ``FileNotFoundError`` for a missing one.
    """
    weights = read_weights(path_or_state, param_key)
    return detect_weights(weights)


def detect_weights(weights: Weights) -> Detected:
    """:func:`detect` on weights already read."""
    found = matches(weights.state_dict)
    if not found:
        raise CheckpointError(f"{weights.origin} {no_match(weights.state_dict)}")
    if len(found) > 1:
        raise CheckpointError(
            f"{weights.origin} fits several registered models ({', '.join(map(str, found))}): build the one "
            "you mean explicitly"
        )
    ident = found[0]
    return Detected(
        ident.model,
        ident.variant,
        ident.scale,
        ident.form,
        weights.param_key,
        content_hash(weights.state_dict),
    )


def read_weights(path_or_state: str | Path | Mapping, param_key: str | None = None) -> Weights:
    """A checkpoint's state_dict: a mapping is unwrapped, a TF1 bundle converted by the registered TF
    mapping that accepts it, any other path read with ``torch.load(weights_only=True)`` and unwrapped."""
    if isinstance(path_or_state, Mapping):
        origin = "state_dict argument"
        found = unwrap(path_or_state, origin, param_key)
    elif tf_checkpoint.is_tf_checkpoint(path_or_state):
        if param_key is not None:
            raise CheckpointError(f"{path_or_state} is a TF checkpoint: it has no --param-key entries")
        return Weights(from_tf_bundle(Path(path_or_state)), None, str(path_or_state))
    else:
        origin = str(path_or_state)
        found = unwrap(read_checkpoint(Path(path_or_state)), origin, param_key)
    return Weights(found.state_dict, found.param_key, origin)


def from_tf_bundle(path: Path) -> dict[str, Tensor]:
    """The state_dict of a TF1 bundle, converted by the first registered candidate whose
    ``from_tf_variables`` accepts its variables; CheckpointError when none does."""
    try:
        arrays = tf_checkpoint.read_variables(path)
    except tf_checkpoint.TFCheckpointError as exc:
        raise CheckpointError(str(exc)) from exc
    refusals = []
    for spec in MODELS.values():
        if not hasattr(_default_model(spec), "from_tf_variables"):
            continue
        refusal = f"{spec.name}: no variant or scale fits"
        for ident in _candidates(spec, set()):
            model = _meta_model(spec.builder, ident)
            if model is None:
                continue
            try:
                return model.from_tf_variables(arrays)
            except CheckpointError as exc:
                refusal = f"{spec.name}: {exc}"
        refusals.append(refusal)
    raise CheckpointError(
        f"TF checkpoint {path} matches no registered architecture "
        f"({'; '.join(refusals) or 'no registered model reads TF checkpoints'})"
    )


def matches(state_dict: Mapping[str, Tensor]) -> list[Identity]:
    """Every registered identity whose layout equals the state_dict's (normally one, or none)."""
    layout = layout_of(state_dict)
    widths = input_widths(layout)
    return [
        ident
        for spec in list(MODELS.values())
        if _shares_keys(spec, layout)
        for ident in _candidates(spec, widths)
        if _layout(spec.builder, ident) == layout
    ]


def no_match(state_dict: Mapping[str, Tensor]) -> str:
    """Why a state_dict matches no registered model, with the nearest registered layout if one shares
    at least half of its keys (described, never offered as a remedy: it is another architecture)."""
    layout = layout_of(state_dict)
    registered = ", ".join(sorted(MODELS))
    best: tuple[int, Identity, list[str]] | None = None
    for spec in list(MODELS.values()):
        if not _shares_keys(spec, layout):
            continue
        for ident in _candidates(spec, input_widths(layout)):
            theirs = _layout(spec.builder, ident)
            if theirs is None or len(layout.keys() & theirs.keys()) * 2 < len(layout):
                continue
            diff = layout_difference(layout, theirs)
            if best is None or diff[0] < best[0]:
                best = (diff[0], ident, diff[1])
    text = f"matches no registered architecture (registered models: {registered})"
    if best is None:
        return f"{text}; its keys {listing(sorted(layout))}"
    return f"{text}; the nearest registered layout, {best[1]}, differs: {'; '.join(best[2])}"


def layout_of(state_dict: Mapping[str, Tensor]) -> Layout:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def layout_difference(found: Layout, expected: Layout) -> tuple[int, list[str]]:
    """(number of differences, their description) between a file's layout and a model's."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} {found[k]} vs {expected[k]}" for k in expected if k in found and found[k] != expected[k]]
    parts = [
        f"{label} {listing(names)}"
        for label, names in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        )
        if names
    ]
    return len(missing) + len(unexpected) + len(shapes), parts


def input_widths(layout: Layout) -> set[int]:
    """Output channels of every conv on an RGB input (weight (C, 3, k, k), C ≠ 3) in the layout."""
    return {s[0] for s in layout.values() if len(s) == 4 and s[1] == 3 and s[0] != 3}


def _candidates(spec: ModelSpec, widths: set[int]) -> list[Identity]:
    variants: list[str | None] = list(spec.variants)
    namer = getattr(_default_model(spec), "variant_for_width", None)
    if spec.open_variants and namer is not None:
        variants += [v for v in sorted({namer(w) for w in widths}) if v not in variants]
    scales = sorted({s for scales in spec.scales.values() for s in scales})
    return [Identity(spec.name, v, s, f) for v in variants for s in scales for f in spec.forms]


def _shares_keys(spec: ModelSpec, layout: Layout) -> bool:
    """Whether the layout has a key of the spec's default variant in some form: a cheap test that spares
    building every variant × scale of models that have nothing in common with the file."""
    variant = spec.default_variant
    defaults = [Identity(spec.name, variant, spec.scales[variant][0], form) for form in spec.forms]
    return any(not layout.keys().isdisjoint(_layout(spec.builder, d) or {}) for d in defaults)


def _default_model(spec: ModelSpec) -> nn.Module | None:
    variant = spec.default_variant
    return _meta_model(spec.builder, Identity(spec.name, variant, spec.scales[variant][0], spec.forms[0]))


def _layout(builder: Callable[..., nn.Module], ident: Identity) -> Layout | None:
    model = _meta_model(builder, ident)
    return None if model is None else layout_of(model.state_dict())


@functools.lru_cache(maxsize=512)
def _meta_model(builder: Callable[..., nn.Module], ident: Identity) -> nn.Module | None:
    """The model built without weights (meta device), or on the CPU when its constructor reads tensor
    values; None when the builder refuses the combination. The global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        try:
            with torch.device("meta"):
                return builder(scale=ident.scale, variant=ident.variant, form=ident.form)
        except NotImplementedError:  # e.g. ``torch.linspace(...).tolist()`` in a constructor
            pass
        except (ValueError, TypeError, KeyError):
            return None
        try:
            return builder(scale=ident.scale, variant=ident.variant, form=ident.form)
        except (ValueError, TypeError, KeyError):
            return None
