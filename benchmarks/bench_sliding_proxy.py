"""Benchmark sliding proxy attention against the official SPAN operator (the attention of `SPAB.forward`).

    python benchmarks/bench_sliding_proxy.py --official DIR          # CUDA: Triton vs official
    python benchmarks/bench_sliding_proxy.py --cpu --official DIR    # CPU: CPU path vs official vs floor

DIR is a checkout of github.com/zononhzy/SPAN (or set $SPAN_OFFICIAL); its `basicsr/archs/span_arch.py` is
loaded from there (never copied into this repository) with the two basicsr helpers it imports stubbed
(ARCH_REGISTRY, trunc_normal_/to_2tuple: registration and initialisation, not the operator). The official
side runs the real `SPAB.forward` with its norms, projections, HFT attention and FFN replaced by identities
(the FFN by zeros), so it computes the block's qkv → windowed attention → fold, including the
relative-position-bias gather and two additions of zeros; our side runs the same gather and
`sliding_proxy_attention` on `qkv.view(B, 3, heads, d, H, W).unbind(1)`, as SPAN-light does.

Every row prints the Triton work model (`kernels.sliding_proxy.work`: executed vs useful FLOPs and bytes
from the launch grid and tile shapes) beside the time. CUDA: CUDA events, warm-up, median of --repeats,
peak extra memory from the allocator. CPU: one thread; ours, the official operator and the
contiguous-primitive floor (`floor_steps`) interleaved in every round (`stats.rounds`), min, median and the
per-round ratios printed with the load average; peak memory is the rise of the peak RSS of a fresh process
over one call.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import stats  # this script's folder is on sys.path
import torch
from cuda_timing import roofline, time_cuda
from torch import nn

from kernels import sliding_proxy, sliding_proxy_cpu
from kernels.sliding_proxy import TILES, Geometry, launch_tiles, sliding_proxy_attention, work

WS, OVERLAP, HEADS, D = 12, 3, 6, 10
# SPAN-light's training patch (64×64 LR reflect-padded to 66×66) and one hr720p LR image, reflect-padded
# so (size − 3) is a multiple of 9: ×4 (180×320 → 183×327) and ×2 (360×640 → 363×642).
# The CPU run defaults to a batch of 2 training patches: the per-patch shape is SPAN-light's, the batch
# is cut so a loaded 1-thread run ends in minutes (time and memory scale linearly with the batch).
SHAPES = {
    "train B16 66x66": (16, 66, 66),
    "train B2 66x66": (2, 66, 66),
    "infer x4 183x327": (1, 183, 327),
    "infer x2 363x642": (1, 363, 642),
}
CUDA_SHAPES = ["train B16 66x66", "infer x4 183x327", "infer x2 363x642"]
FLOOR_GOAL, MEMORY_GOAL = 1.3, 0.25  # CPU path: time ≤ 1.3× the floor, peak memory ≤ ¼ of the official


def load_official(root: Path) -> types.ModuleType:
    """The official span_arch module from a SPAN checkout, with the basicsr helpers it imports stubbed."""
    path = root / "basicsr" / "archs" / "span_arch.py"
    if not path.is_file():
        raise SystemExit(f"--official {root}: no basicsr/archs/span_arch.py there (clone zononhzy/SPAN)")
    registry = types.SimpleNamespace(register=lambda *a, **k: lambda obj: obj)
    stubs = {
        "basicsr": types.ModuleType("basicsr"),
        "basicsr.utils": types.ModuleType("basicsr.utils"),
        "basicsr.utils.registry": types.SimpleNamespace(ARCH_REGISTRY=registry),
        "basicsr.archs": types.ModuleType("basicsr.archs"),
        "basicsr.archs.arch_util": types.SimpleNamespace(
            to_2tuple=lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x),
            trunc_normal_=nn.init.trunc_normal_,
        ),
    }
    for name, module in stubs.items():
        sys.modules.setdefault(name, module)
    spec = importlib.util.spec_from_file_location("span_official", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Given(nn.Module):
    """Stands in for SPAB.qkv: returns the prepared qkv tensor."""

    def __init__(self):
        super().__init__()
        self.qkv: torch.Tensor | None = None

    def forward(self, x):
        return self.qkv


class _Zeros(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def official_block(official: types.ModuleType, h: int, w: int, device: str) -> nn.Module:
    """The official SPAB reduced to its attention (see the module docstring)."""
    block = official.SPAB(HEADS * D, (h, w), HEADS, window_size=WS, overlap_size=OVERLAP).to(device)
    block.norm1 = block.proj_out = block.hft_attention = block.norm2 = nn.Identity()
    block.qkv = _Given()
    block.conv_ffn = _Zeros()
    return block


def ours(qkv, temperature, table, index):
    b, _, h, w = qkv.shape
    q, k, v = qkv.view(b, 3, HEADS, D, h, w).unbind(1)
    bias = table[index.view(-1)].view(WS * WS, WS * WS, HEADS).permute(2, 0, 1)
    out = sliding_proxy_attention(
        q, k, v, temperature=temperature.view(-1), rel_bias=bias, window_size=WS, overlap=OVERLAP
    )
    return out.reshape(b, HEADS * D, h, w)


def make_case(official, shape: str, device: str, dtype: torch.dtype):
    """{path: forward()} for one shape, both sides on the same inputs and parameters."""
    b, h, w = SHAPES[shape]
    g = torch.Generator(device=device).manual_seed(0)
    qkv = torch.randn(b, 3 * HEADS * D, h, w, device=device, generator=g, dtype=dtype).requires_grad_()
    steps = {}
    block = official_block(official, h, w, device).to(dtype) if official else None
    if block is not None:
        block.qkv.qkv = qkv
        zeros = torch.zeros(b, HEADS * D, h, w, device=device, dtype=dtype)
        steps["official"] = lambda: block(zeros)
        table = block.relative_position_bias_table.detach().clone().requires_grad_()
        temperature = block.temperature.detach().clone().requires_grad_()
        index = block.relative_position_index
    else:
        table = (0.02 * torch.randn((2 * WS - 1) ** 2, HEADS, device=device, dtype=dtype)).requires_grad_()
        temperature = torch.ones(HEADS, 1, 1, device=device, dtype=dtype, requires_grad=True)
        coords = torch.stack(torch.meshgrid(torch.arange(WS), torch.arange(WS), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + WS - 1
        index = (rel[..., 0] * (2 * WS - 1) + rel[..., 1]).to(device)
    steps["ours"] = lambda: ours(qkv, temperature, table, index)
    return steps


def _step(fn, backward: bool) -> None:
    if backward:
        fn().sum().backward()
    else:
        with torch.no_grad():
            fn()


def work_text(shape: str, backward: bool, element_size: int, tiles=None) -> str:
    """The Triton work model of one call: with `tiles` (the launched ones) or the worst autotune choice."""
    geometry = Geometry(SHAPES[shape][0], HEADS, D, *SHAPES[shape][1:], WS, OVERLAP)
    models = [work(geometry, t, element_size, backward) for t in ([tiles] if tiles else TILES)]
    m = max(models, key=lambda x: x.flop_ratio)
    which = f"tiles {tiles.bq}x{tiles.bk}" if tiles else f"worst of {len(TILES)} autotune tilings"
    return (
        f"work ({which}): {m.executed_flops / 1e9:.2f}/{m.useful_flops / 1e9:.2f} GFLOP executed/useful "
        f"({m.flop_ratio:.2f}x), {m.executed_bytes / 2**20:.0f}/{m.useful_bytes / 2**20:.0f} MiB "
        f"({m.byte_ratio:.1f}x)"
    )


def run_cuda(official, warmup: int, repeats: int, dtype: torch.dtype) -> None:
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  dtype {dtype}")
    print(f"{stats.environment()}; CUDA times: median of --repeats after --warmup, sides one after another")
    unit = {torch.float32: "tf32" if torch.get_float32_matmul_precision() != "highest" else "fp32"}.get(
        dtype, "bf16"
    )
    e = torch.finfo(dtype).bits // 8
    for shape in CUDA_SHAPES:
        for backward in (False, True):
            mode = "fwd+bwd" if backward else "fwd"
            results = {}
            for name, fn in make_case(official, shape, "cuda", dtype).items():
                try:
                    results[name] = time_cuda(lambda f=fn, bw=backward: _step(f, bw), warmup, repeats)
                except torch.cuda.OutOfMemoryError:
                    results[name] = (float("nan"), float("nan"))
                torch.cuda.empty_cache()
            base = results.get("official")
            for name, (ms, mem) in results.items():
                ratio = (
                    f"{base[0] / ms:6.2f}x time {mem / base[1]:6.3f}x memory" if base else "official: not run"
                )
                line = f"{shape:18} {mode:8} {name:9} {ms:9.3f} ms {mem:9.1f} MiB  {ratio}"
                if name == "ours":
                    tiles = launch_tiles(sliding_proxy._sliding_proxy_fwd)
                    m = work(
                        Geometry(SHAPES[shape][0], HEADS, D, *SHAPES[shape][1:], WS, OVERLAP),
                        tiles,
                        e,
                        backward,
                    )
                    rate = roofline(ms, m.useful_flops, m.useful_bytes, unit)
                    line += f"  {work_text(shape, backward, e, tiles)}  {rate}"
                print(line)


def cpu_peak_mib(path: str, shape: str, backward: bool, official_dir: str | None) -> float:
    """Rise of the peak RSS over one call, measured in a fresh process."""
    cmd = [sys.executable, __file__, "--peak", path, shape, "bwd" if backward else "fwd"]
    cmd += ["--official", official_dir] if official_dir else []
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    return float(out.stdout.strip().splitlines()[-1])


def floor_steps(shape: str, backward: bool) -> dict[str, Callable[[], None]]:
    """The contiguous-primitive floor: q·kᵀ → exp → P·v (and, with backward, dP = dO·vᵀ, dS = dP ⊙ P, dq,
    dk, dv: four products, P kept from the forward, nothing recomputed) over every window of the shape, on
    contiguous window batches built beforehand (untimed), chunk by chunk as the CPU path runs. No bias,
    no max, no window copies, no fold. "plain": the natural layouts (pixels × channels) and `exp`, as the
    issue measured it; "tuned": the layouts and `exp2` the CPU path uses (channels × pixels, keys along
    rows), the strictest floor."""
    b, h, w = SHAPES[shape]
    g = torch.Generator().manual_seed(1)
    qw, kw, vw, gw = (
        sliding_proxy_cpu.windows(torch.randn(b, HEADS, D, h, w, generator=g), WS, WS - OVERLAP).flatten(0, 1)
        for _ in range(4)
    )
    area, n = WS * WS, qw.shape[0]
    step = max(1, sliding_proxy_cpu.CHUNK_BYTES // (area * area * 4))
    chunks = [slice(c, c + step) for c in range(0, n, step)]
    plain = [x.transpose(1, 2).contiguous() for x in (qw, kw, vw, gw)]
    buf = torch.empty(min(step, n), area, area)

    def run_plain() -> None:
        q, k, v, go = plain
        kept = []
        for c in chunks:
            e = torch.bmm(q[c], k[c].transpose(1, 2), out=buf[: len(q[c])] if not backward else None).exp_()
            torch.bmm(e, v[c])
            kept.append(e)
        if backward:
            for c, e in zip(chunks, kept, strict=True):
                ds = torch.bmm(go[c], v[c].transpose(1, 2)).mul_(e)
                torch.bmm(ds, k[c]), torch.bmm(ds.transpose(1, 2), q[c]), torch.bmm(e.transpose(1, 2), go[c])

    def run_tuned() -> None:
        kept = []
        for c in chunks:
            e = torch.bmm(
                kw[c].transpose(1, 2), qw[c], out=buf[: len(qw[c])] if not backward else None
            ).exp2_()
            torch.bmm(vw[c], e)
            kept.append(e)
        if backward:
            for c, e in zip(chunks, kept, strict=True):
                ds = torch.bmm(vw[c].transpose(1, 2), gw[c]).mul_(e)
                (
                    torch.bmm(kw[c], ds),
                    torch.bmm(qw[c], ds.transpose(1, 2)),
                    torch.bmm(gw[c], e.transpose(1, 2)),
                )

    return {"floor plain": run_plain, "floor tuned": run_tuned}


def _range(r: list[float]) -> str:
    return f"{min(r):.2f}–{max(r):.2f}×, median {statistics.median(r):.2f}×"


def run_cpu(official, official_dir: str | None, shapes: list[str], warmup: int, repeats: int) -> None:
    torch.set_num_threads(1)
    print(f"CPU path (no Triton), float32; {stats.environment()}")
    for shape in shapes:
        steps = make_case(official, shape, "cpu", torch.float32)
        if official:
            with torch.no_grad():
                diff = (steps["ours"]() - steps["official"]()).abs().max().item()
            print(f"{shape}: max |ours − official| = {diff:.2e}")
        for backward in (False, True):
            mode = "fwd+bwd" if backward else "fwd"
            calls = {n: (lambda f=f, bw=backward: _step(f, bw)) for n, f in steps.items()}
            calls.update(floor_steps(shape, backward))
            times = stats.rounds(calls, repeats, warmup)
            print(f"{shape} {mode}: {repeats} interleaved rounds after {warmup} warm-up")
            print(stats.summary(times, "official" if official else "ours"))
            for floor in ("floor plain", "floor tuned"):
                r = stats.ratios(times, floor, "ours")  # floor time / ours: invert to ours / floor
                over = [1 / x for x in r]
                verdict = "met" if statistics.median(over) <= FLOOR_GOAL else "not met"
                print(f"  ours / {floor} per round {_range(over)} (goal ≤ {FLOOR_GOAL}×: {verdict})")
            mem = {n: cpu_peak_mib(n, shape, backward, official_dir) for n in steps}
            line = f"  peak memory (fresh process): ours {mem['ours']:.1f} MiB"
            if "official" in mem:
                share = mem["ours"] / max(mem["official"], 1e-9)
                verdict = "met" if share <= MEMORY_GOAL else "not met"
                line += f", official {mem['official']:.1f} MiB, ours/official {share:.3f}"
                line += f" (goal ≤ {MEMORY_GOAL}: {verdict})"
            else:
                line += ", official: not run (pass --official DIR)"
            print(line)
            print(f"  triton {work_text(shape, backward, 4)}")
    print(f"end: {stats.environment()}")


def _peak_rss_kib() -> int:
    # VmHWM belongs to this process's address space; getrusage's maxrss would carry the parent's peak
    # over fork and exec.
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def peak_child(path: str, shape: str, mode: str, official) -> None:
    torch.set_num_threads(1)
    fn = make_case(official, shape, "cpu", torch.float32)[path]
    before = _peak_rss_kib()
    _step(fn, mode == "bwd")
    print((_peak_rss_kib() - before) / 1024)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--official", default=os.environ.get("SPAN_OFFICIAL"), help="zononhzy/SPAN checkout")
    parser.add_argument("--warmup", type=int, help="untimed calls (rounds on the CPU); default 5 CUDA, 1 CPU")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cpu", action="store_true", help="time the CPU reference path (no CUDA needed)")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="CUDA input dtype")
    parser.add_argument("--tf32", action="store_true", help="fp32 dots in TF32")
    parser.add_argument(
        "--cpu-shapes", nargs="+", choices=list(SHAPES), default=["train B2 66x66"], help="shapes for --cpu"
    )
    parser.add_argument("--peak", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tf32:
        torch.set_float32_matmul_precision("high")
    official = load_official(Path(args.official)) if args.official else None
    if args.peak:
        peak_child(*args.peak, official)
        return 0
    if official is None:
        print(
            "official operator: not run (pass --official DIR, a zononhzy/SPAN checkout, or set SPAN_OFFICIAL)"
        )
    if args.cpu:
        run_cpu(
            official, args.official, args.cpu_shapes, 1 if args.warmup is None else args.warmup, args.repeats
        )
    elif torch.cuda.is_available():
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
        run_cuda(official, 5 if args.warmup is None else args.warmup, args.repeats, dtype)
    else:
        print("CUDA timings: not run here: no GPU in this session (pass --cpu for the CPU reference path)")
        for shape in CUDA_SHAPES:
            for backward in (False, True):
                print(
                    f"{shape:18} {'fwd+bwd' if backward else 'fwd':8} triton {work_text(shape, backward, 4)}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
