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
import importlib
import math
import os
import subprocess
import sys
import types
from functools import partial
from pathlib import Path

import stats  # this script's folder is on sys.path
import torch
from cuda_timing import attention_work, roofline, time_cuda

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels import soft_threshold as st_mod  # noqa: E402
from kernels.soft_threshold import macs as attention_macs  # noqa: E402
from kernels.soft_threshold import reference_backward, reference_forward, soft_threshold_attention  # noqa: E402

SPREAD = (0.003, 30.0)  # per-query score std range of `inputs`
CPU_SIZES = (1024, 2304, 4096)  # tokens of a 32², 48² (the training patch) and 64² LR image
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
    """q, k, v whose score rows spread like a trained model's: per query, the score std is log-uniform in
    SPREAD (a few sharp rows with 1-5 keys in the support, many broad ones with hundreds, past the
    official top-k of 128, so its widening path runs); v ~ N(0, 1), in `dtype`."""
    g = torch.Generator(device=device).manual_seed(0)
    lo, hi = (math.log10(x) for x in SPREAD)
    spread = torch.logspace(lo, hi, n, device=device)[torch.randperm(n, generator=g, device=device)]
    q = torch.randn(b, n, d, device=device, generator=g) * (spread / d**0.5)[None, :, None]
    k = torch.randn(b, n, d, device=device, generator=g)
    v = torch.randn(b, n, dv, device=device, generator=g)
    return [t.to(dtype).requires_grad_(grad) for t in (q, k, v)]


def support_text(q: torch.Tensor, k: torch.Tensor) -> str:
    """Sparsemax support sizes of the scores q·kᵀ: quantiles and the share of rows past top-k 128."""
    sizes = torch.cat([st_mod.reference_forward(q[i : i + 1], k[i : i + 1], k[i : i + 1, :, :1])[2].flatten()
                       for i in range(min(len(q), 2))]).double()  # fmt: skip
    marks = torch.quantile(sizes, torch.tensor([0.0, 0.25, 0.5, 0.75, 0.9, 1.0], dtype=torch.float64))
    wide = (sizes > 128).double().mean().item()
    return (
        "support sizes (keys per row) min/25%/50%/75%/90%/max "
        + "/".join(str(int(x)) for x in marks)
        + f"; rows past top-k 128 (official widening path): {wide:.1%}"
    )


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
    print(f"{stats.environment()}; CUDA times: median of --repeats after --warmup, paths one after another")
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


def _peak_rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def peak_child(path: str, n: int, mode: str, official_dir: Path | None) -> None:
    """Print the rise of this fresh process's peak RSS (MiB) over one call of `path` at N tokens."""
    torch.set_num_threads(1)
    fn = soft_threshold_attention if path == "ours" else load_official(official_dir)
    args = inputs(1, n, 96, 192, "cpu", mode == "bwd")
    before = _peak_rss_kib()
    step(fn, args, mode == "bwd")
    print((_peak_rss_kib() - before) / 1024)


def cpu_peak_mib(path: str, n: int, backward: bool, official_dir: Path | None) -> float:
    cmd = [sys.executable, __file__, "--peak", path, str(n), "bwd" if backward else "fwd"]
    cmd += ["--official", str(official_dir)] if official_dir else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def run_cpu(official, official_dir: Path | None, sizes: list[int], warmup: int, repeats: int) -> None:
    """One batch item at N tokens (D = 96, Dv = 192), one thread: the CPU path (`soft_threshold_attention`
    on CPU tensors) and the official op interleaved (`stats.rounds`), agreement, peak memory, support
    sizes; then whole-image HSPAN ×4 at 32² LR against the official model; then the Triton work model."""
    torch.set_num_threads(1)
    print(f"CPU, float32; {stats.environment()}")
    d, dv = 96, 192
    for n in sizes:
        q, k, v = inputs(1, n, d, dv, "cpu", False)
        print(f"N={n}: {support_text(q, k)}")
        if official is None:
            print(f"N={n}: official: not run (pass --official DIR, a laoyangui/HSPAN checkout)")
        else:
            with torch.no_grad():
                diff = (soft_threshold_attention(q, k, v) - official(q, k, v)).abs().max().item()
            print(f"N={n}: max |ours − official| forward = {diff:.2e}")
        for backward in (False, True):
            mode = "fwd+bwd" if backward else "fwd"
            args = inputs(1, n, d, dv, "cpu", backward)
            sides = {"official": official, "ours": soft_threshold_attention} if official else {}
            sides = sides or {"ours": soft_threshold_attention}
            calls = {name: partial(step, fn, args, backward) for name, fn in sides.items()}
            with torch.set_grad_enabled(backward):
                times = stats.rounds(calls, repeats, warmup)
            print(f"N={n} {mode}: {repeats} interleaved rounds after {warmup} warm-up")
            print(stats.summary(times, "official" if official else "ours"))
            mem = {name: cpu_peak_mib(name, n, backward, official_dir) for name in sides}
            print("  peak memory (fresh process): " + ", ".join(f"{k} {x:.1f} MiB" for k, x in mem.items()))
    if official is not None:
        run_model(official_dir, warmup, repeats)
    args = inputs(1, 2304, d, dv, "cpu", False)
    for backward in (False, True):
        for bm, bn in ((64, 64), (64, 32), (128, 64)):
            mode = "fwd+bwd" if backward else "fwd"
            print(f"N=2304 {mode:8s} triton not run: no GPU; {work_model(*args, bm, bn, backward)}")
    print(f"end: {stats.environment()}")


def load_official_model(root: Path) -> type[torch.nn.Module]:
    """The official HSPAN class from DIR/src/model (hspan.py, attention.py, common.py, run as they are),
    with the imports the model does not use stubbed: matplotlib, PIL, torchvision and the
    `model.utils.tools` the repository does not contain; the `model` package's __init__ is not run."""
    src = root / "src" / "model"
    unused = ["matplotlib", "matplotlib.pyplot", "PIL", "PIL.Image", "torchvision", "torchvision.transforms",
              "torchvision.utils", "model.utils", "model.utils.tools"]  # fmt: skip
    for name in unused:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision"].utils = sys.modules["torchvision.utils"]
    for attr in ("extract_image_patches", "reduce_mean", "reduce_sum", "same_padding"):
        setattr(sys.modules["model.utils.tools"], attr, None)
    package = types.ModuleType("model")
    package.__path__ = [str(src)]
    sys.modules["model"] = package
    return importlib.import_module("model.hspan").HSPAN


def run_model(official_dir: Path, warmup: int, repeats: int, lr: int = 32, scale: int = 4) -> None:
    """Whole-image HSPAN ×scale (demo.sh's hyper-parameters, random weights shared by both) at lr² LR:
    ours (`architectures.hspan`, the CPU path of the op) against the official model, forward, no grad."""
    from architectures.hspan import build_hspan

    ours = build_hspan(scale).eval()
    hp = dict(n_resgroups=10, n_resblocks=4, n_feats=192, topk=128, reduction=2, res_scale=0.1)
    official = load_official_model(official_dir)(
        types.SimpleNamespace(scale=[scale], rgb_range=1, n_colors=3, **hp)
    )
    torch.nn.Module.load_state_dict(official.eval(), ours.state_dict(), strict=True)
    x = torch.rand(1, 3, lr, lr, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(x) - official(x)).abs().max().item()
        times = stats.rounds({"official": lambda: official(x), "ours": lambda: ours(x)}, repeats, warmup)
    print(
        f"HSPAN x{scale} whole image {lr}x{lr} LR (N={lr * lr}), forward: max |ours − official| = {diff:.2e}"
    )
    print(stats.summary(times, "official"))


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
    parser.add_argument("--cpu-sizes", type=int, nargs="+", default=list(CPU_SIZES), help="N for --cpu")
    parser.add_argument("--peak", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak:
        path, n, mode = args.peak
        peak_child(path, int(n), mode, args.official)
        return 0
    paths = {
        "triton": soft_threshold_attention,
        "reference": _Reference.apply,
        "official": load_official(args.official),
    }
    if args.cpu:
        run_cpu(paths["official"], args.official, args.cpu_sizes, args.warmup, args.repeats)
        return 0
    if not torch.cuda.is_available():
        print("GPU figures (triton, reference, official; both shapes): not run: no CUDA device (try --cpu)")
        return 0
    run_cuda(paths, args.warmup, args.repeats, DTYPES[args.dtype])
    return 0


if __name__ == "__main__":
    sys.exit(main())
