"""Timing shared by the kernel benchmarks: CUDA-event median time and peak extra memory of a call, and the
achieved rate against the device roofline (CPU rounds: `stats.py`)."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch


def time_cuda(call: Callable[[], object], warmup: int, repeats: int) -> tuple[float, float]:
    """Median milliseconds of ``call()`` and peak extra MiB on the current CUDA device."""
    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), (torch.cuda.max_memory_allocated() - base) / 2**20


# Dense peaks from NVIDIA's datasheets, TFLOP/s: fp32 on CUDA cores, TF32 and bf16/fp16 on tensor cores;
# and HBM TB/s.
PEAKS = {
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "hbm": 2.0},
    "H100": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "hbm": 3.35},
    "H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "hbm": 4.8},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "hbm": 2.0},
}


def attention_work(macs_forward: int, tensors_forward: list, backward: bool) -> tuple[float, float]:
    """(useful FLOPs, minimum HBM bytes) of one call: 2 FLOPs per MAC of the two forward matmuls; with
    backward, 7 matmul-equivalents in all (scores recomputed, then dP, dV, dQ, dK); bytes = reading the
    inputs and writing the output once (and, with backward, reading them and dO again and writing the
    input gradients)."""
    flops = 2 * macs_forward * (3.5 if backward else 1.0)
    io = sum(t.numel() * t.element_size() for t in tensors_forward)
    return flops, io * (3 if backward else 1)


def roofline(ms: float, flops: float, nbytes: float, unit: str = "fp32") -> str:
    """Achieved FLOP rate and bandwidth, and their fraction of the current device's `unit` peak ("fp32"
    CUDA cores, "tf32" or "bf16" tensor cores) and of HBM bandwidth, when the device is on file."""
    name = torch.cuda.get_device_name()
    tflops, tbs = flops / ms / 1e9, nbytes / ms / 1e9
    peak = next((p for key, p in PEAKS.items() if key in name), None)
    if peak is None:
        return f"{tflops:.1f} TFLOP/s, {tbs:.2f} TB/s (no peak on file for {name})"
    return (
        f"{tflops:.1f} TFLOP/s ({tflops / peak[unit]:.0%} of {unit} peak), "
        f"{tbs:.2f} TB/s ({tbs / peak['hbm']:.0%} of HBM)"
    )
