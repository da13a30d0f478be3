"""Benchmark HSPAN soft-threshold attention: Triton vs our reference vs the official HSPA operator.

    python benchmarks/bench_soft_threshold.py --official DIR          # CUDA: every path, both shapes
    python benchmarks/bench_soft_threshold.py --official DIR --dtype bf16   # CUDA, tensor-core inputs
    python benchmarks/bench_soft_threshold.py --cpu --official DIR    # CPU: reference vs official, 1 thread

DIR is a checkout of github.com/laoyangui/HSPAN (kept outside this repository; or set HSPAN_OFFICIAL). The
official operator (`SoftThresholdingOperationFun` and its helpers) is loaded verbatim from
DIR/src/model/attention.py and applied as HSPA does: `ST(q @ k^T) @ v`, top-k 128. Without DIR its rows say
"not run". Paths are timed interleaved, medians of --repeats. CUDA: CUDA events after warm-up; peak memory =
max_memory_allocated above the inputs. Shapes: HSPAN training (B=16, 48x48 LR patch: N=M=2304, D=96,
Dv=192; the CPU run uses one batch item) and one whole Urban100 x2 LR image (512x384: N=M=196608).

Every Triton row prints the work model beside the time: FLOPs and bytes executed by the launch grid and tile
shapes (each visited tile costs its full padded dot products and loads) against the useful ones, with tile
visits from a PyTorch replay of the kernels' schedule (sweep, Michelot passes over the live-tile lists,
output pass, backward over the same lists), so it can be checked without a GPU.
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from cuda_timing import attention_work, roofline, time_cuda  # this script's folder is on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels import soft_threshold as st_mod  # noqa: E402
from kernels.soft_threshold import macs as attention_macs  # noqa: E402
from kernels.soft_threshold import reference_backward, reference_forward, soft_threshold_attention  # noqa: E402

SHAPES = {"train B16 N2304": (16, 2304, 96, 192), "Urban100 x2 512x384": (1, 196608, 96, 192)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
OFFICIAL_NAMES = ("SoftThresholdingOperationFun", "tau_support", "ix_like_fun", "roll_fun")


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


def load_official(root: Path | None):
    """HSPA's attention `ST(q @ k^T) @ v` from the official source, or None if `root` is not given.

    Only the operator's definitions are executed: attention.py also imports torchvision, matplotlib and a
    `model.utils.tools` that the official repository does not contain, none of which the operator uses.
    """
    if root is None:
        return None
    path = root / "src" / "model" / "attention.py"
    if not path.is_file():
        raise SystemExit(
            f"--official {root}: no src/model/attention.py there; pass a laoyangui/HSPAN checkout"
        )
    tree = ast.parse(path.read_text())
    defs = [
        n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name in OFFICIAL_NAMES
    ]
    missing = set(OFFICIAL_NAMES) - {n.name for n in defs}
    if missing:
        raise SystemExit(f"{path}: no definition of {', '.join(sorted(missing))}")
    namespace = {"torch": torch, "Function": torch.autograd.Function}
    exec(compile(ast.Module(body=defs, type_ignores=[]), str(path), "exec"), namespace)
    op = namespace["SoftThresholdingOperationFun"]
    return lambda q, k, v: op.apply(q @ k.transpose(1, 2), 2, 128) @ v


def inputs(
    b: int, n: int, d: int, dv: int, device: str, grad: bool, dtype: torch.dtype = torch.float32
) -> list[torch.Tensor]:
    """q, k with HSPAN-like score spread (std ~30), v ~ N(0, 1), in `dtype`."""
    g = torch.Generator(device=device).manual_seed(0)
    scale = (30.0 / d**0.5) ** 0.5
    q = torch.randn(b, n, d, device=device, generator=g) * scale
    k = torch.randn(b, n, d, device=device, generator=g) * scale
    v = torch.randn(b, n, dv, device=device, generator=g)
    return [t.to(dtype).requires_grad_(grad) for t in (q, k, v)]


def step(fn, args: list[torch.Tensor], backward: bool) -> None:
    out = fn(*args)
    if backward:
        out.backward(torch.ones_like(out))


def tile_schedule(q: torch.Tensor, k: torch.Tensor, bm: int, bn: int) -> dict:
    """Replays the forward kernel's schedule in PyTorch: per query block, the key tiles it visits.

    Returns tile-visit counts: `sweep` (every tile once), `michelot` (live tiles summed over the passes,
    main and fallback launches), `live` (tiles of the final lists: the output pass and the backward).
    """
    b, n, _ = q.shape
    m = k.shape[1]
    nqb, nkb = -(-n // bm), -(-m // bn)
    s = (q.double() @ k.double().transpose(1, 2)).float()
    pad = torch.full((b, nqb * bm, nkb * bn), float("-inf"))
    pad[:, :n, :m] = s
    tiles = pad.view(b, nqb, bm, nkb, bn)
    tile_max = tiles.amax((2, 4))  # (b, nqb, nkb), over the block's rows (rows past N are -inf here)
    row_max = pad.amax(-1)  # (b, nqb*bm)
    # The sweep's lower bound: count and sum over {s > running max - 1}, tile by tile.
    run = torch.full_like(row_max, float("-inf"))
    count, total = torch.zeros_like(row_max), torch.zeros_like(row_max)
    for kb in range(nkb):
        blk = pad[:, :, kb * bn : (kb + 1) * bn]
        new = torch.maximum(run, blk.amax(-1))
        total -= count * torch.where(count > 0, new - run, 0.0)
        u = blk - new[..., None]
        on = u > -1
        count += on.sum(-1)
        total += torch.where(on, u, 0.0).sum(-1)
        run = new
    valid = torch.arange(nqb * bm) < n
    x = torch.where(valid, torch.clamp((total - 1) / count.clamp(min=1), min=-1.0), 0.0)
    count = torch.where(valid, m + 1.0, 1.0)
    u = pad - row_max[..., None]

    def live(x):
        thr = torch.where(valid, row_max + x, float("inf")).view(b, nqb, bm).amin(-1)
        return tile_max > thr[..., None]

    alive = live(x)
    michelot = 0
    active = torch.ones(b, nqb, dtype=torch.bool)
    while active.any():
        michelot += int((alive & active[..., None]).sum())
        on = u > x[..., None]
        new_count = on.sum(-1).float()
        new_x = (torch.where(on, u, 0.0).sum(-1) - 1) / new_count.clamp(min=1)
        u_min = torch.where(on, u, 0.0).amin(-1)
        shrunk = (new_count < count) & valid & active.repeat_interleave(bm, -1)
        x = torch.where(shrunk, new_x, x)
        count = torch.where(shrunk, new_count, count)
        active = (shrunk & (u_min <= new_x)).view(b, nqb, bm).any(-1)
        alive = alive & live(x)
    return {"blocks": b * nqb, "sweep": b * nqb * nkb, "michelot": michelot, "live": int(alive.sum())}


def work_model(q, k, v, bm: int, bn: int, backward: bool) -> str:
    """Executed vs useful FLOPs and bytes of the Triton kernels at tile shapes bm x bn (see the docstring)."""
    b, n, d = q.shape
    m, dv = k.shape[1], v.shape[2]
    pads = st_mod._pads(d, dv)
    dp = pads["D_LO"] + pads["D_HI"] * pads["SPLIT_D"]
    dvp = pads["DV_LO"] + pads["DV_HI"] * pads["SPLIT_DV"]
    es = q.element_size()
    t = tile_schedule(q.detach(), k.detach(), bm, bn)
    qk, pv = 2 * bm * bn * dp, 2 * bm * bn * dvp  # one tile's score dot, one value-sized dot
    k_tile, v_tile = bn * dp * es, bn * dvp * es
    flops = (t["sweep"] + t["michelot"]) * qk + t["live"] * (qk + pv * (2 if backward else 1))
    nbytes = (t["sweep"] + t["michelot"]) * k_tile + t["live"] * (k_tile + v_tile)
    nbytes += t["blocks"] * bm * (dp + dvp) * es  # each program's queries in, outputs out
    if backward:
        # dq: per live tile QK, dO V^T, dS K; dk/dv: per live pair QK, dO V^T, dS^T Q, P^T dO.
        flops += t["live"] * (2 * qk + 2 * pv + qk + pv)
        nbytes += t["live"] * (2 * (k_tile + v_tile) + bm * (dp + dvp) * es)
    useful_flops, useful_bytes = attention_work(attention_macs(b, n, m, d, dv), [q, k, v, v[:, :n]], backward)
    return (
        f"work {bm}x{bn}: {flops / 1e9:.1f}/{useful_flops / 1e9:.1f} GFLOP executed/useful "
        f"({flops / useful_flops:.2f}x), {nbytes / 2**20:.0f}/{useful_bytes / 2**20:.0f} MiB "
        f"({nbytes / useful_bytes:.2f}x); live tiles {t['live']}/{t['sweep']}, "
        f"Michelot tile visits {t['michelot']}"
    )


def official_fits(b: int, n: int) -> str | None:
    """None if the official N x N scores fit on the device, else why not."""
    need = 3 * b * n * n * 4  # scores, shifted scores, output of the threshold: fp32 each
    free = torch.cuda.mem_get_info()[0]
    return (
        None
        if need < free
        else f"not run: needs >= {need / 2**30:.0f} GiB for N x N scores, {free / 2**30:.0f} free"
    )


def run_cuda(paths: dict, warmup: int, repeats: int, dtype: torch.dtype) -> None:
    for shape_name, (b, n, d, dv) in SHAPES.items():
        one_pass = n > 10_000
        for backward in (False, True):
            mode = "fwd+bwd" if backward else "fwd"
            timed = {}
            for path, fn in paths.items():
                reason = official_fits(b, n) if path == "official" and fn else None
                reason = reason or (None if fn else "not run: no --official DIR (laoyangui/HSPAN checkout)")
                if reason:
                    print(f"{shape_name:22s} {mode:8s} {path:10s} {reason}")
                    continue
                args = inputs(b, n, d, dv, "cuda", backward, dtype)
                ms, mib = time_cuda(
                    partial(step, fn, args, backward),
                    0 if one_pass else warmup,
                    1 if one_pass else repeats,
                )
                timed[path] = ms
                out_like = torch.empty(b, n, dv, device="meta")
                rate = roofline(
                    ms, *attention_work(attention_macs(b, n, n, d, dv), [*args, out_like], backward)
                )
                work = ""
                if path == "triton" and not one_pass:
                    best = st_mod._fwd_tuned.best_config.kwargs
                    cpu = [t.detach().cpu() for t in args]
                    work = "  " + work_model(*cpu, best["BLOCK_M"], best["BLOCK_N"], backward)
                print(f"{shape_name:22s} {mode:8s} {path:10s} {ms:10.2f} ms {mib:10.1f} MiB  {rate}{work}")
                del args
                torch.cuda.empty_cache()
            if "triton" in timed and "official" in timed:
                speedup = timed["official"] / timed["triton"]
                print(f"{shape_name:22s} {mode:8s} speed-up vs official: {speedup:.1f}x")


def run_cpu(paths: dict, repeats: int) -> None:
    """HSPAN's real per-item shape on one thread, reference vs official interleaved, plus the work model."""
    torch.set_num_threads(1)
    b, n, d, dv = 1, 2304, 96, 192
    for backward in (False, True):
        mode = "fwd+bwd" if backward else "fwd"
        names = [p for p in ("reference", "official") if paths[p]]
        times = {p: [] for p in names}
        for _ in range(repeats):
            for path in names:
                args = inputs(b, n, d, dv, "cpu", backward)
                t0 = time.perf_counter()
                step(paths[path], args, backward)
                times[path].append((time.perf_counter() - t0) * 1e3)
        for path in ("reference", "official"):
            if path not in times:
                print(
                    f"CPU B1 N{n} {mode:8s} {path:10s} not run: no --official DIR (laoyangui/HSPAN checkout)"
                )
                continue
            ms = statistics.median(times[path])
            print(f"CPU B1 N{n} {mode:8s} {path:10s} {ms:10.1f} ms (median of {repeats})")
        if len(times) == 2:
            ratio = statistics.median(times["official"]) / statistics.median(times["reference"])
            print(f"CPU B1 N{n} {mode:8s} reference speed-up vs official: {ratio:.2f}x")
        args = inputs(b, n, d, dv, "cpu", False)
        for bm, bn in ((64, 64), (64, 32), (128, 64)):
            print(f"CPU B1 N{n} {mode:8s} triton     not run: no GPU; {work_model(*args, bm, bn, backward)}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpu", action="store_true", help="time the CPU paths (one thread) instead of CUDA")
    parser.add_argument(
        "--official",
        type=Path,
        default=os.environ.get("HSPAN_OFFICIAL"),
        help="laoyangui/HSPAN checkout (default: $HSPAN_OFFICIAL); its rows say 'not run' without it",
    )
    parser.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default="fp32",
        help="CUDA runs: input dtype (bf16/fp16 take tensor cores; the roofline stays the fp32 one)",
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    paths = {
        "triton": soft_threshold_attention,
        "reference": _Reference.apply,
        "official": load_official(args.official),
    }
    if args.cpu:
        run_cpu(paths, args.repeats)
        return 0
    if not torch.cuda.is_available():
        print("GPU figures (triton, reference, official; both shapes): not run: no CUDA device (try --cpu)")
        return 0
    run_cuda(paths, args.warmup, args.repeats, DTYPES[args.dtype])
    return 0


if __name__ == "__main__":
    sys.exit(main())
