"""CUDA timing shared by the kernel benchmarks: CUDA-event median time and peak extra memory of a call."""

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
