"""Load official checkpoints into the registry's models, strictly, with errors that say what to pass.

Recognised layouts: TensorFlow 1 checkpoints (a released folder, a prefix, or its ``.index``/``.data-*``
file; read by :mod:`architectures.tf_checkpoint`) for models with ``from_tf_variables(arrays) -> sd``
(DRSAN); BasicSR (``{"params_ema": sd, "params": sd}``, EMA weights preferred), a plain
state_dict (EDSR-PyTorch, the NTIRE 2024 release), ``{"state_dict": sd}`` / ``{"model": sd}`` wrappers, and
``module.`` prefixes from DataParallel. A model may define ``adapt_state_dict(sd) -> sd`` to map an
official layout onto its own (extra keys, re-parameterised forms) and ``variant_for_width(n) -> str`` to
name the variant in width-mismatch errors.
"""

from __future__ import annotations

import logging
import math
import pickletools
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from architectures import tf_checkpoint

logger = logging.getLogger(__name__)

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
MAX_LISTED = 8


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says what to do."""


def load_checkpoint(model: nn.Module, path_or_state_dict: str | Path | Mapping) -> nn.Module:
    """Load a checkpoint file (read with ``weights_only=True`` onto the CPU) or a state_dict into ``model``.

    Strict: every key and shape must match after unwrapping and the model's ``adapt_state_dict``.
    Returns ``model``. Raises :class:`CheckpointError` (or ``FileNotFoundError``) with a remedy.
    """
    if isinstance(path_or_state_dict, Mapping):
        raw, origin = path_or_state_dict, "state_dict argument"
    elif tf_checkpoint.is_tf_checkpoint(path_or_state_dict):
        raw, origin = read_tf_checkpoint(model, Path(path_or_state_dict)), str(path_or_state_dict)
    else:
        raw, origin = read_checkpoint(Path(path_or_state_dict)), str(path_or_state_dict)
    state_dict, entry = unwrap(raw, origin)
    if hasattr(model, "adapt_state_dict"):
        state_dict = model.adapt_state_dict(state_dict)
    check_fits(model, state_dict, origin)
    model.load_state_dict(state_dict, strict=True)
    logger.info("loaded %s (%s) into %s", origin, entry, type(model).__name__)
    return model


def read_tf_checkpoint(model: nn.Module, path: Path) -> dict[str, Tensor]:
    """The TF checkpoint at ``path`` as ``model``'s state_dict (its ``from_tf_variables`` mapping)."""
    if not hasattr(model, "from_tf_variables"):
        raise CheckpointError(
            f"{path} is a TensorFlow checkpoint, but {type(model).__name__} has no mapping from TF variables "
            "(of the ported models only DRSAN was released in TensorFlow)"
        )
    try:
        arrays = tf_checkpoint.read_variables(path)
    except tf_checkpoint.TFCheckpointError as exc:
        raise CheckpointError(str(exc)) from exc
    try:
        return model.from_tf_variables(arrays)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def read_checkpoint(path: Path) -> object:
    """``torch.load`` on the CPU with ``weights_only=True``; unreadable files raise CheckpointError.

    Three kinds of failure are told apart: a file that is no PyTorch checkpoint at all (neither the zip
    archive ``torch.save`` writes nor a pickle), a pickle that needs code to run to be loaded (classes or
    functions besides tensors: refused for safety, never loaded), and a damaged file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise CheckpointError(
            f"not a PyTorch checkpoint: {path} is neither a torch.save zip archive nor a pickle (it starts "
            f"with {head!r}); pass the .pth/.pt file of the weights"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged pickle fails in many ways (IndexError, KeyError, EOFError, …)
        code = _code_references(path)
        if code:
            raise CheckpointError(
                f"{path} is a pickle that needs Python code to run to be loaded (it references "
                f"{', '.join(code[:MAX_LISTED])}); it was refused for safety, as this harness loads only "
                "tensors. Use a checkpoint that holds only tensors (a state_dict saved with "
                "torch.save(model.state_dict(), path))"
            ) from exc
        raise _corrupt(path, exc) from exc


def _code_references(path: Path) -> list[str]:
    """The ``module.name`` globals a checkpoint's pickle refers to, other than PyTorch's own and the
    OrderedDict of state_dicts (which the weights-only loader accepts); [] if unreadable."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(name) if name else b""
        else:
            data = path.read_bytes()
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        return []
    found, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(arg)
            elif opcode.name == "GLOBAL":
                found.append(arg.replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except (ValueError, EOFError):
        pass  # a damaged pickle: what was read so far still counts
    safe = ("torch.", "collections.OrderedDict", "_codecs.encode")
    return list(dict.fromkeys(g for g in found if not g.startswith(safe)))


def _corrupt(path: Path, exc: Exception) -> CheckpointError:
    # torch's weights_only wording advises weights_only=False, wrong for a damaged file: keep the cause only.
    text = str(exc).split("WeightsUnpickler error:")[-1]
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip()
        and "weights_only" not in line
        and "Weights only load failed" not in line
        and not line.strip().startswith("Check the documentation")
    ]
    detail = lines[0][:200] if lines else type(exc).__name__
    return CheckpointError(
        f"{path} is damaged: it is not a readable PyTorch checkpoint ({detail}); download or copy it again"
    )


def unwrap(raw: object, origin: str) -> tuple[dict[str, Tensor], str]:
    """Find the state_dict inside a checkpoint; returns it (``module.`` stripped) and where it was found."""
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{origin} holds a {type(raw).__name__}, not a state_dict")
    entry = "plain state_dict"
    if not _is_state_dict(raw):
        key = next((k for k in WRAPPER_KEYS if k in raw and _is_state_dict(raw[k])), None)
        if key is None:
            raise CheckpointError(
                f"no state_dict found in {origin}: top-level keys {_listing(list(raw))}; expected a "
                f"state_dict or one of {WRAPPER_KEYS}"
            )
        entry = f"entry {key!r}"
        if key == "params_ema" and "params" in raw:
            entry += " (EMA weights, preferred over 'params')"
        raw = raw[key]
    state_dict = dict(raw)
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    return state_dict, entry


def check_fits(model: nn.Module, state_dict: Mapping[str, Tensor], origin: str) -> None:
    """Raise CheckpointError naming the scale, width or keys that differ between checkpoint and model."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [k for k in expected if k in state_dict and expected[k].shape != state_dict[k].shape]
    if not (missing or unexpected or mismatched):
        return
    hints = []
    width, model_width = feature_width(state_dict), feature_width(expected)
    if width is not None and model_width is not None and width != model_width:
        namer = getattr(model, "variant_for_width", None)
        remedy = f"pass --variant {namer(width)}" if namer else f"build the variant with {width} channels"
        hints.append(
            f"checkpoint has {width} feature channels but the model was built with {model_width}: {remedy}"
        )
    scale, model_scale = pixel_shuffle_scale(state_dict), getattr(model, "scale", None)
    if scale is not None and model_scale is not None and scale != model_scale:
        hints.append(f"checkpoint is for ×{scale} but the model is ×{model_scale}: pass --scale {scale}")
    if not hints:
        shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched]
        details = [
            f"{label} {_listing(names)}"
            for label, names in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", shapes),
            )
            if names
        ]
        hints.append(
            f"{origin} does not fit {type(model).__name__}: {'; '.join(details)} "
            "(checkpoint for another model, variant or form?)"
        )
    raise CheckpointError("; ".join(hints))


def feature_width(state_dict: Mapping[str, Tensor]) -> int | None:
    """Output channels of the first conv on the RGB input (weight (C, 3, k, k), C ≠ 3), if any."""
    for tensor in state_dict.values():
        if tensor.ndim == 4 and tensor.shape[1] == 3 and tensor.shape[0] != 3:
            return int(tensor.shape[0])
    return None


def pixel_shuffle_scale(state_dict: Mapping[str, Tensor]) -> int | None:
    """Scale s of a final conv producing 3·s² channels for a pixel shuffle (s ≥ 2), if there is one."""
    convs = [t for t in state_dict.values() if t.ndim == 4]
    if not convs or convs[-1].shape[0] % 3:
        return None
    s = math.isqrt(convs[-1].shape[0] // 3)
    return s if s >= 2 and 3 * s * s == convs[-1].shape[0] else None


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    more = f" … and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return f"({len(names)}): {shown}{more}"
