"""Faithful PyTorch ports of SPAN-light, SPAN-ESR, HSPAN and DRSAN.

Contract of every model: input (B, 3, h, w) RGB in [0, 1]; output (B, 3, s·h, s·w) in the [0, 1] range
(not clipped); ``model.scale`` is the upscaling factor.
"""

from architectures import drsan, hspan, span_esr, span_light  # noqa: F401  (registers the models)
from architectures.checkpoint import CheckpointError, content_hash, load_checkpoint, load_detected
from architectures.detect import Detected
from architectures.registry import MODELS, ModelSpec, build, register, spec

__all__ = [
    "MODELS",
    "CheckpointError",
    "Detected",
    "ModelSpec",
    "build",
    "content_hash",
    "load_checkpoint",
    "load_detected",
    "register",
    "spec",
]
