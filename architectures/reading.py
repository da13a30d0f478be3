"""Checkpoint files → state dicts: safe reading, wrappers, ``module.`` prefixes, and a format-free identity.

Recognised layouts (after spandrel's ``canonicalize_state_dict``, chaiNNer-org/spandrel
``libs/spandrel/spandrel/__helpers/canonicalize.py``): a plain state_dict (EDSR-PyTorch, the NTIRE
releases), BasicSR's ``{"params": sd, "params_ema": sd}``, and ``state_dict`` / ``model_state_dict`` /
``model`` / ``net`` wrappers, each with or without DataParallel's ``module.`` prefix.

Which weights of a BasicSR file: ``param_key`` names the entry; by default ``params_ema`` when present,
else ``params``. BasicSR's own loader defaults to ``params`` (``basicsr/models/sr_model.py``:
``param_key_g`` of the test options, default ``'params'``), but the released test options set it to
``params_ema`` (zononhzy/SPAN ``options/SPAN/test_SPAN_SRx4.yml``: ``param_key_g: params_ema``) and
spandrel unwraps ``params_ema`` before ``params``: the EMA weights are what a release is evaluated with.
"""

from __future__ import annotations

import hashlib
import json
import pickletools
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from architectures.errors import CheckpointError

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net")
MAX_LISTED = 8
CONTENT_HASH_VERSION = b"reprosr content hash v1\n"


@dataclass(frozen=True)
class Unwrapped:
    """A state_dict found in a checkpoint: its tensors (``module.`` stripped) and the wrapper entry it came
    from (None for a plain state_dict)."""

    state_dict: dict[str, Tensor]
    param_key: str | None
    entry: str  # where the weights were found, for people


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


def unwrap(raw: object, origin: str, param_key: str | None = None) -> Unwrapped:
    """Find the state_dict inside a checkpoint: entry ``param_key`` if given, else the plain state_dict or
    the first of :data:`WRAPPER_KEYS` present (``params_ema`` before ``params``)."""
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{origin} holds a {type(raw).__name__}, not a state_dict")
    if param_key is not None:
        if _is_state_dict(raw):
            raise CheckpointError(
                f"{origin} is a plain state_dict with no {param_key!r} entry: drop --param-key {param_key}"
            )
        if not _is_state_dict(raw.get(param_key)):
            held = [k for k in WRAPPER_KEYS if _is_state_dict(raw.get(k))]
            raise CheckpointError(
                f"{origin} has no state_dict under {param_key!r}; it holds {held or 'no known entry'} "
                f"(top-level keys {listing([str(k) for k in raw])}): pass one of those to --param-key"
            )
        key: str | None = param_key
    elif _is_state_dict(raw):
        key = None
    else:
        key = next((k for k in WRAPPER_KEYS if _is_state_dict(raw.get(k))), None)
        if key is None:
            raise CheckpointError(
                f"no state_dict found in {origin}: top-level keys {listing([str(k) for k in raw])}; expected "
                f"a state_dict or one of {WRAPPER_KEYS}"
            )
    state_dict = dict(raw if key is None else raw[key])
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    entry = "plain state_dict" if key is None else f"entry {key!r}"
    if key == "params_ema" and param_key is None and "params" in raw:
        entry += " (EMA weights, preferred over 'params'; --param-key params loads those)"
    return Unwrapped(state_dict, key, entry)


def content_hash(state_dict: Mapping[str, Tensor]) -> str:
    """sha256 (hex) of a state_dict's tensors, independent of the file format that held them.

    Covers, for each tensor in sorted name order, its name, dtype, shape and raw bytes (C order, this
    machine's little-endian layout); nothing else (no wrapper, pickle framing, file name or
    ``module.`` prefix, which :func:`unwrap` strips). The same tensors saved with or without a wrapper,
    or converted from a TF bundle, hash alike; a changed value, dtype, shape or name does not.
    """
    digest = hashlib.sha256(CONTENT_HASH_VERSION)
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, Tensor):
            raise CheckpointError(f"{name!r} is a {type(tensor).__name__}, not a tensor")
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        raw = flat.view(torch.uint8) if flat.numel() else flat.new_empty(0, dtype=torch.uint8)
        header = [name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape), raw.numel()]
        digest.update(json.dumps(header).encode() + b"\n")
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def listing(names: list[str]) -> str:
    """``(n): a, b, … and k more`` — at most MAX_LISTED names."""
    shown = ", ".join(names[:MAX_LISTED])
    more = f" … and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return f"({len(names)}): {shown}{more}"
