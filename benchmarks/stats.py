"""Interleaved timing shared by the benchmarks: every side runs once per round, in turn, so load from other
jobs falls on all sides alike; a summary gives per side the min and median and, per round, the ratio to a
baseline side (its range and median), which is what resolves a speed-up claim on a shared machine.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def rounds(fns: dict[str, Callable[[], None]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, one call per function per round, interleaved in the order of
    ``fns``, after ``warmup`` untimed interleaved rounds (``time.perf_counter``, wall time)."""
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds must be ≥ 1 and warmup ≥ 0, got rounds={rounds}, warmup={warmup}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def ratios(times: dict[str, list[float]], baseline: str, side: str) -> list[float]:
    """Per-round speed-up of ``side`` over ``baseline``: baseline time / side time, round by round."""
    return [b / s for b, s in zip(times[baseline], times[side], strict=True)]


def summary(times: dict[str, list[float]], baseline: str) -> str:
    """One line per side: min and median time, and (for sides other than ``baseline``) the per-round
    speed-up over ``baseline`` (baseline time / side time) as min–max range and median."""
    if baseline not in times:
        raise ValueError(f"baseline {baseline!r} is not one of the timed sides {sorted(times)}")
    lines = []
    for name, ts in times.items():
        line = f"{name}: min {_ms(min(ts))}, median {_ms(statistics.median(ts))} over {len(ts)} rounds"
        if name != baseline:
            r = ratios(times, baseline, name)
            line += (
                f"; speed-up over {baseline} per round {min(r):.2f}–{max(r):.2f}×, "
                f"median {statistics.median(r):.2f}×"
            )
        lines.append(line)
    return "\n".join(lines)


def environment() -> str:
    """The devices (the CPU, and the GPU when there is one), torch's intra-op thread count and the
    1/5/15-minute load averages, on one line."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"cpu {platform.machine()} ({os.cpu_count()} CPUs), cuda {gpu}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); load average (1/5/15 min) {load}"
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"
