"""Which backend an attention operator runs: the rule both operators share."""

from __future__ import annotations

import os

import torch
import triton
from torch import Tensor


def use_triton(x: Tensor, kernel: object, op: str) -> bool:
    """CUDA → Triton; CPU → Triton only under TRITON_INTERPRET=1; float64 → always the PyTorch reference
    (the precision the reference exists for). ``kernel`` is one of the op's ``@triton.jit`` kernels."""
    if x.dtype == torch.float64 or not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    # triton.jit (triton.language's own helpers too) picks the interpreter when triton is imported, so
    # setting the variable later cannot give one.
    if not x.is_cuda and isinstance(kernel, triton.runtime.JITFunction):
        raise RuntimeError(
            f"{op}: TRITON_INTERPRET=1 was set after triton was imported, so the Triton kernels cannot run "
            "on CPU tensors; set it before Python starts (TRITON_INTERPRET=1 pytest ...)"
        )
    return True


def device_checks() -> bool:
    """Whether the Triton path checks values (NaN/Inf inputs, overflow) on the device: each check is a
    device→host synchronisation, so only in a debug mode — PyTorch's anomaly mode
    (``torch.autograd.set_detect_anomaly(True)``) or ``REPROSR_KERNEL_CHECKS=1``. The reference (CPU) path
    always checks."""
    return torch.is_anomaly_enabled() or os.environ.get("REPROSR_KERNEL_CHECKS") == "1"
