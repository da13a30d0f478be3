"""Load checkpoints into the registry's models, strictly, with errors that say what the file is.

Files are read by :mod:`architectures.reading` (PyTorch files and their wrappers, ``param_key``) and
:mod:`architectures.tf_checkpoint` (TF1 bundles, for models with ``from_tf_variables(arrays) -> sd``,
i.e. DRSAN). A model may define ``adapt_state_dict(sd) -> sd`` to map an official layout onto its own
(re-parameterised forms). When a file does not fit, :mod:`architectures.detect` says what it is: another
model, another variant, scale or form of this one, or no registered architecture at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from architectures import detect, tf_checkpoint
from architectures.errors import CheckpointError
from architectures.reading import content_hash, read_checkpoint, unwrap
from architectures.registry import MODELS, build, spec

__all__ = ["CheckpointError", "content_hash", "load_checkpoint", "load_detected"]

logger = logging.getLogger(__name__)


def load_checkpoint(
    model: nn.Module, path_or_state_dict: str | Path | Mapping, param_key: str | None = None
) -> nn.Module:
    """Load a checkpoint file (read with ``weights_only=True`` onto the CPU), TF1 bundle or (wrapped)
    state_dict into ``model``; ``param_key`` picks a wrapper entry (default: :func:`reading.unwrap`).

    Strict: every key and shape must match after unwrapping and the model's ``adapt_state_dict``.
    Returns ``model``. Raises :class:`CheckpointError` (or ``FileNotFoundError``) saying what the file is.
    """
    if isinstance(path_or_state_dict, Mapping):
        raw, origin = path_or_state_dict, "state_dict argument"
    elif tf_checkpoint.is_tf_checkpoint(path_or_state_dict):
        if param_key is not None:
            raise CheckpointError(f"{path_or_state_dict} is a TF checkpoint: it has no --param-key entries")
        raw, origin = read_tf_checkpoint(model, Path(path_or_state_dict)), str(path_or_state_dict)
    else:
        raw, origin = read_checkpoint(Path(path_or_state_dict)), str(path_or_state_dict)
    found = unwrap(raw, origin, param_key)
    try:
        state_dict = found.state_dict
        if hasattr(model, "adapt_state_dict"):
            state_dict = model.adapt_state_dict(state_dict)
        check_fits(model, state_dict, origin)
    except CheckpointError as exc:
        raise mismatch(model, found.state_dict, origin, exc) from None
    model.load_state_dict(state_dict, strict=True)
    logger.info("loaded %s (%s) into %s", origin, found.entry, type(model).__name__)
    return model


def load_detected(
    path_or_state: str | Path | Mapping, param_key: str | None = None, form: str | None = None
) -> tuple[nn.Module, detect.Detected]:
    """Detect what a checkpoint is, build that model and load it: ``(model, detected)``.

    ``form`` defaults to the registry's ``eval_form`` (deploy for re-parameterisable models, which load
    either checkpoint form). A variant the registry does not publish at the detected scale is refused.
    """
    weights = detect.read_weights(path_or_state, param_key)
    found = detect.detect_weights(weights)
    if not found.published:
        scales = spec(found.model).scales.get(found.variant, ())
        raise CheckpointError(
            f"{weights.origin} is a {found} checkpoint, but {found.model} {found.variant or ''} is published "
            f"at scales {scales} only; ReproSR builds published variants and scales"
        )
    model = build(found.model, found.scale, found.variant, form=form or spec(found.model).eval_form)
    return load_checkpoint(model, weights.state_dict), found


def read_tf_checkpoint(model: nn.Module, path: Path) -> dict[str, Tensor]:
    """The TF checkpoint at ``path`` as ``model``'s state_dict (its ``from_tf_variables`` mapping)."""
    if not hasattr(model, "from_tf_variables"):
        try:
            what = f"it is a {detect.detect(path)} checkpoint"
        except CheckpointError as exc:
            what = str(exc)
        raise CheckpointError(
            f"{path} is a TensorFlow checkpoint, but {type(model).__name__} has no mapping from TF variables "
            f"(of the ported models only DRSAN was released in TensorFlow): {what}"
        )
    try:
        arrays = tf_checkpoint.read_variables(path)
    except tf_checkpoint.TFCheckpointError as exc:
        raise CheckpointError(str(exc)) from exc
    try:
        return model.from_tf_variables(arrays)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def check_fits(model: nn.Module, state_dict: Mapping[str, Tensor], origin: str) -> None:
    """Raise CheckpointError listing the keys and shapes that differ between checkpoint and model."""
    count, parts = detect.layout_difference(
        detect.layout_of(state_dict), detect.layout_of(model.state_dict())
    )
    if count:
        raise CheckpointError(f"{origin} does not fit {type(model).__name__}: {'; '.join(parts)}")


def mismatch(
    model: nn.Module, state_dict: Mapping[str, Tensor], origin: str, cause: CheckpointError
) -> CheckpointError:
    """The error for a checkpoint that does not fit ``model``, saying what the file is when detection
    knows: another registered model (no variant hint: build that model), another variant, scale or form
    of this one (the options to pass), or no registered architecture. Otherwise ``cause``."""
    own = detect.matches(model.state_dict())
    theirs = detect.matches(state_dict)
    if len(own) != 1:
        return cause
    own_id = own[0]
    if not theirs:
        _, parts = detect.layout_difference(
            detect.layout_of(state_dict), detect.layout_of(model.state_dict())
        )
        return CheckpointError(
            f"{origin} matches no registered architecture (registered models: {', '.join(sorted(MODELS))}), "
            f"so it is not a {own_id} checkpoint either; against {own_id}: {'; '.join(parts)}"
        )
    if len(theirs) > 1:
        return cause
    found = theirs[0]
    if found.model != own_id.model:
        return CheckpointError(
            f"{origin}: this file is a {found} checkpoint, not {own_id.model}: build {found.model} "
            f"{found.flags} for it"
        )
    # A deploy-form model loads train-form checkpoints (re-parameterised on loading): no --form for those.
    form_fits = found.form == own_id.form or (own_id.form, found.form) == ("deploy", "train")
    options = [
        f"--{name} {value}"
        for name, value, differs in (
            ("variant", found.variant, found.variant != own_id.variant),
            ("scale", found.scale, found.scale != own_id.scale),
            ("form", found.form, not form_fits),
        )
        if differs
    ]
    if not options or options == [f"--form {found.form}"]:
        return cause  # the model's adapt_state_dict explains its own forms
    return CheckpointError(
        f"{origin}: this file is a {found} checkpoint but the model is {own_id}: pass {' '.join(options)}"
    )
