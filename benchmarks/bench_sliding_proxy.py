"""Benchmark sliding proxy attention: Triton vs our reference vs the official-style unfold/fold.

    python benchmarks/bench_sliding_proxy.py            # CUDA: all three paths, both shapes
    python benchmarks/bench_sliding_proxy.py --cpu      # no GPU: tiny CPU reference vs official-style only

CUDA timings: CUDA events, warm-up, median of --repeats; peak memory = max_memory_allocated above the
inputs. Shapes: SPAN-light training (B=16, 66×66 after padding, 6 heads × d=10, w=12, overlap 3) and
inference (one 640×360 LR image reflect-padded to 642×363).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial

import torch
from cuda_timing import attention_work, roofline, time_cuda  # this script's folder is on sys.path

from kernels.sliding_proxy import macs as attention_macs
from kernels.sliding_proxy import (
    sliding_proxy_attention,
    sliding_proxy_attention_official_style,
    sliding_proxy_attention_reference,
)

WS, OVERLAP, HEADS, D = 12, 3, 6, 10
SHAPES = {"train B16 66x66": (16, 66, 66), "infer 642x363": (1, 363, 642)}
PATHS = {
    "triton": sliding_proxy_attention,
    "reference": sliding_proxy_attention_reference,
    "official-style": sliding_proxy_attention_official_style,
}


def inputs(b: int, h: int, w: int, device: str, grad: bool) -> list[torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(0)
    q, k, v = (
        torch.randn(b, HEADS, D, h, w, device=device, generator=g, requires_grad=grad) for _ in range(3)
    )
    t = torch.ones(HEADS, device=device, requires_grad=grad)
    rb = (0.02 * torch.randn(HEADS, WS**2, WS**2, device=device, generator=g)).requires_grad_(grad)
    return [q, k, v, t, rb]


def step(fn, args: list[torch.Tensor], backward: bool) -> None:
    q, k, v, t, rb = args
    out = fn(q, k, v, temperature=t, rel_bias=rb, window_size=WS, overlap=OVERLAP)
    if backward:
        out.backward(torch.ones_like(out))


def run_cuda(warmup: int, repeats: int) -> None:
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(f"{'shape':18} {'pass':8} {'path':15} {'ms':>9} {'peak MiB':>9} {'speedup':>8} {'mem ratio':>9}")
    for shape, (b, h, w) in SHAPES.items():
        for backward in (False, True):
            results = {}
            for name, fn in PATHS.items():
                args = inputs(b, h, w, "cuda", backward)
                try:
                    results[name] = time_cuda(partial(step, fn, args, backward), warmup, repeats)
                except torch.cuda.OutOfMemoryError:
                    results[name] = (float("nan"), float("nan"))
                del args
                torch.cuda.empty_cache()
            base_ms, base_mem = results["official-style"]
            tensors = inputs(b, h, w, "meta", False)
            work = attention_work(
                attention_macs(b, HEADS, D, h, w, WS, OVERLAP), [*tensors[:3], tensors[0]], backward
            )
            for name, (ms, mem) in results.items():
                print(
                    f"{shape:18} {'fwd+bwd' if backward else 'fwd':8} {name:15} {ms:9.3f} {mem:9.1f} "
                    f"{base_ms / ms:8.2f} {mem / base_mem:9.3f}  {roofline(ms, *work)}"
                )


def run_cpu(repeats: int) -> None:
    """Tiny CPU comparison (no Triton): reference vs official-style, wall time and result agreement."""
    b, h, w = 2, 39, 39
    print(f"CPU only (no CUDA device): reference vs official-style, B={b} {h}x{w}, {HEADS} heads, d={D}")
    for backward in (False, True):
        for name in ("reference", "official-style"):
            args = inputs(b, h, w, "cpu", backward)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                step(PATHS[name], args, backward)
                times.append((time.perf_counter() - start) * 1e3)
            print(
                f"{'fwd+bwd' if backward else 'fwd':8} {name:15} {statistics.median(times):9.2f} ms (median)"
            )
    args = inputs(b, h, w, "cpu", False)
    kw = dict(temperature=args[3], rel_bias=args[4], window_size=WS, overlap=OVERLAP)
    diff = sliding_proxy_attention_reference(*args[:3], **kw) - sliding_proxy_attention_official_style(
        *args[:3], **kw
    )
    print(f"max |reference − official-style| = {diff.abs().max().item():.2e}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cpu", action="store_true", help="without CUDA, run the tiny CPU comparison")
    args = parser.parse_args()
    if torch.cuda.is_available():
        run_cuda(args.warmup, args.repeats)
    elif args.cpu:
        run_cpu(min(args.repeats, 5))
    else:
        print("not run: no CUDA device (pass --cpu for a tiny CPU reference vs official-style comparison)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
