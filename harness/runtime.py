"""Where and how a model runs at test time: the device, the numeric precision, and the timing protocol.

Precision, as the field sets it (EDSR-PyTorch ``--precision half``, NTIRE ESR teams' ``model.half()``):
- ``fp32``: float32 weights and inputs; on CUDA, TF32 tensor cores are switched off for matmuls and
  convolutions while the model runs (PyTorch allows them for cuDNN convolutions by default).
- ``tf32``: float32 weights and inputs with TF32 allowed for matmuls and convolutions (CUDA only).
- ``fp16`` / ``bf16``: a copy of the model cast to half / bfloat16 and the input cast likewise (no
  autocast); the output is cast back to float32 before it is quantised and scored.

Runtime protocol (NTIRE-like, stricter): before timing, the whole test-time procedure runs once on a
small crop of the set's first image (loads kernels, grows the allocator); then per image ``warmup``
untimed runs and ``repeats`` timed runs, the output of the last one scored. GPU: CUDA events around the
run with synchronisation; CPU: ``time.perf_counter``. Per image the median and inter-quartile range of the
repeats, and on CUDA the peak allocated memory (weights included). Defaults: CUDA 3 warm-up and 10 timed
runs; CPU 0 and 1, so that scoring a set costs no extra runs (``--runtime-warmup/--runtime-repeats``).
Runtimes are labelled with the device model and compared only between equal labels.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from harness.errors import UserError
from harness.measures import MEASURES
from harness.schema import Precision

CAST = {Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:i``; a CUDA device that does not
    exist is a ValueError saying so."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:<index>") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"device {spec!r} requested but CUDA is not available here (torch {torch.__version__}, "
                f"CUDA build {torch.version.cuda or 'none'}): use --device cpu or auto"
            )
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise UserError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA devices exist"
            )
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise UserError(f"unsupported device {spec!r}: use auto, cpu, cuda or cuda:<index>")
    return device


_DEVICE: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar("reprosr_device", default=None)


@contextlib.contextmanager
def on_device(device: str | torch.device) -> Iterator[torch.device]:
    """Evaluations inside the block that name no device run on ``device`` (resolved), e.g. those that
    ``reproduce`` reaches through the verification tiers."""
    token = _DEVICE.set(resolve_device(device))
    try:
        yield _DEVICE.get()
    finally:
        _DEVICE.reset(token)


def current_device() -> torch.device | None:
    """The device of the innermost :func:`on_device` block, or None outside any."""
    return _DEVICE.get()


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_label(device: torch.device) -> str:
    """The device model a runtime was measured on: ``cuda: NVIDIA H200`` or ``cpu: AMD EPYC (1 thread)``."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    threads = torch.get_num_threads()
    return f"cpu: {_cpu_model()} ({threads} thread{'s' if threads != 1 else ''})"


def check_precision(precision: Precision, device: torch.device) -> None:
    if precision is Precision.TF32 and device.type != "cuda":
        raise UserError("precision tf32 is a CUDA tensor-core mode: use fp32 (or bf16) on the CPU")


def cast_model(model: nn.Module, precision: Precision) -> nn.Module:
    """The model to run at ``precision``: itself for fp32/tf32, a cast copy for fp16/bf16."""
    return copy.deepcopy(model).to(CAST[precision]) if precision in CAST else model


def cast_input(x: Tensor, precision: Precision) -> Tensor:
    return x.to(CAST.get(precision, torch.float32))


@contextlib.contextmanager
def matmul_precision(precision: Precision, device: torch.device) -> Iterator[None]:
    """TF32 on for ``tf32``, off otherwise, on CUDA while the block runs; restored afterwards."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    allow = precision is Precision.TF32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@dataclass(frozen=True)
class RuntimeProtocol:
    """Untimed warm-up runs and timed repeats per image."""

    warmup: int
    repeats: int

    def __post_init__(self):
        if self.warmup < 0 or self.repeats < 1:
            raise UserError(f"runtime protocol needs warmup >= 0 and repeats >= 1, got {self}")

    @classmethod
    def default(cls, device: torch.device) -> RuntimeProtocol:
        return cls(3, 10) if device.type == "cuda" else cls(0, 1)

    def describe(self, device: torch.device) -> dict:
        """The protocol as stored with every runtime (JSON object)."""
        return {
            **asdict(self),
            "timer": "cuda events, synchronised" if device.type == "cuda" else "perf_counter",
            "statistic": "median over repeats (IQR alongside)",
            "scope": MEASURES["runtime_ms"].convention,
        }

    def as_json(self, device: torch.device) -> str:
        return json.dumps(self.describe(device), sort_keys=True)


@dataclass(frozen=True)
class Timing:
    median_ms: float
    iqr_ms: float
    peak_memory_mb: float  # NaN on the CPU


def measure(
    run: Callable[[], Tensor], protocol: RuntimeProtocol, device: torch.device
) -> tuple[Tensor, Timing]:
    """Run ``run`` under ``protocol``; the last timed run's output and the timing."""
    cuda = device.type == "cuda"
    if cuda:
        with torch.cuda.device(device):  # events and peak memory of that device, not the current one
            return _measure(run, protocol, device, cuda)
    return _measure(run, protocol, device, cuda)


def _measure(
    run: Callable[[], Tensor], protocol: RuntimeProtocol, device: torch.device, cuda: bool
) -> tuple[Tensor, Timing]:
    for _ in range(protocol.warmup):
        run()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(protocol.repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = run()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            out = run()
            times.append((time.perf_counter() - begin) * 1e3)
    quartiles = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else float("nan")
    return out, Timing(statistics.median(times), quartiles[2] - quartiles[0], peak)
