"""Benchmark HSPAN soft-threshold attention: Triton vs our reference vs the official-style top-k.

    python benchmarks/bench_soft_threshold.py          # CUDA: all paths, both shapes
    python benchmarks/bench_soft_threshold.py --cpu    # no GPU: small CPU reference vs official-style only

CUDA timings: CUDA events around each call after warm-up, median of --repeats; peak memory =
max_memory_allocated above the inputs. Shapes: HSPAN training (B=16, 48x48 LR patch: N=M=2304, D=96,
Dv=192) and one whole Urban100 x2 LR image (512x384: N=M=196608, one pass).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from cuda_timing import attention_work, roofline, time_cuda  # this script's folder is on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels.soft_threshold import macs as attention_macs  # noqa: E402
from kernels.soft_threshold import reference_backward, reference_forward, soft_threshold_attention  # noqa: E402
from tests.kernels.official_style import official_style_attention  # noqa: E402

SHAPES = {"train B16 N2304": (16, 2304, 96, 192), "Urban100 x2 512x384": (1, 196608, 96, 192)}


class _Reference(torch.autograd.Function):
    """The row-blocked PyTorch reference on any device (the product op sends CUDA tensors to Triton)."""

    @staticmethod
    def forward(ctx, q, k, v):
        out, tau, _ = reference_forward(q, k, v)
        ctx.save_for_backward(q, k, v, tau)
        return out

    @staticmethod
    def backward(ctx, dout):
        return reference_backward(*ctx.saved_tensors, dout)


PATHS = {
    "triton": soft_threshold_attention,
    "reference": _Reference.apply,
    "official-style": official_style_attention,
}


def inputs(b: int, n: int, d: int, dv: int, device: str, grad: bool) -> list[torch.Tensor]:
    """q, k with HSPAN-like score spread (std ~30), v ~ N(0, 1)."""
    g = torch.Generator(device=device).manual_seed(0)
    scale = (30.0 / d**0.5) ** 0.5
    q = torch.randn(b, n, d, device=device, generator=g) * scale
    k = torch.randn(b, n, d, device=device, generator=g) * scale
    v = torch.randn(b, n, dv, device=device, generator=g)
    return [t.requires_grad_(grad) for t in (q, k, v)]


def step(fn, args: list[torch.Tensor], backward: bool) -> None:
    out = fn(*args)
    if backward:
        out.backward(torch.ones_like(out))


def official_fits(b: int, n: int) -> str | None:
    """None if the official-style N x N scores fit on the device, else why not."""
    need = 3 * b * n * n * 4  # scores, shifted scores, output of the threshold: fp32 each
    free = torch.cuda.mem_get_info()[0]
    return (
        None
        if need < free
        else f"not run: needs >= {need / 2**30:.0f} GiB for N x N scores, {free / 2**30:.0f} free"
    )


def run_cuda(warmup: int, repeats: int) -> None:
    for shape_name, (b, n, d, dv) in SHAPES.items():
        one_pass = n > 10_000
        for backward in (False, True):
            mode = "fwd+bwd" if backward else "fwd"
            timed = {}
            for path, fn in PATHS.items():
                reason = official_fits(b, n) if path == "official-style" else None
                if reason:
                    print(f"{shape_name:22s} {mode:8s} {path:15s} {reason}")
                    continue
                args = inputs(b, n, d, dv, "cuda", backward)
                ms, mib = time_cuda(
                    partial(step, fn, args, backward),
                    0 if one_pass else warmup,
                    1 if one_pass else repeats,
                )
                timed[path] = ms
                out_like = torch.empty(b, n, dv, device="meta")
                work = attention_work(attention_macs(b, n, n, d, dv), [*args, out_like], backward)
                rate = roofline(ms, *work)
                print(f"{shape_name:22s} {mode:8s} {path:15s} {ms:10.2f} ms {mib:10.1f} MiB  {rate}")
                del args
                torch.cuda.empty_cache()
            if "triton" in timed and "official-style" in timed:
                speedup = timed["official-style"] / timed["triton"]
                print(f"{shape_name:22s} {mode:8s} speed-up vs official-style: {speedup:.1f}x")


def run_cpu(repeats: int) -> None:
    b, n, d, dv = 1, 1024, 96, 192
    for backward in (False, True):
        for path in ("reference", "official-style"):
            args = inputs(b, n, d, dv, "cpu", backward)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                step(PATHS[path], args, backward)
                times.append((time.perf_counter() - t0) * 1e3)
            mode = "fwd+bwd" if backward else "fwd"
            print(f"CPU B1 N1024 {mode:8s} {path:15s} {statistics.median(times):10.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpu", action="store_true", help="also time a small CPU shape (reference paths)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.cpu:
        run_cpu(args.repeats)
    if not torch.cuda.is_available():
        print("GPU figures (triton, reference, official-style; both shapes): not run: no CUDA device")
        return 0
    run_cuda(args.warmup, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
