"""The GPU check, ready for whenever a CUDA GPU is available (about 8 minutes on one GPU):

1. a short full-profile training of one recipe per family (SPAN-light, SPAN-ESR, HSPAN, DRSAN): the recipe's
   own patch, batch, optimiser and precision, capped at ``--iters`` iterations (so stored nowhere and
   truncated by construction), on ``--images`` DIV2K-sized images — DIV2K_train's first images when the
   data root holds them with their LR, else synthesised 2040×1356 textures with MATLAB-bicubic LR
   (disclosed in the summary); validation on Set5 if present, else the embedded photos (disclosed);
2. the kernel numerics on CUDA: ``pytest tests/kernels`` (Triton compiled, not interpreted);
3. the kernel benchmarks (``bench_soft_threshold.py``, ``bench_sliding_proxy.py``) and the training loop
   against BasicSR's (``bench_train.py``; "not run" without ``$REPROSR_BASICSR``).

Writes ``<out>/gpu_check.md`` (and ``.json``): per recipe iterations/s, final loss, validation PSNR-Y, peak
memory; the test and benchmark outputs. Exits 1 if any stage failed, 2 at once without CUDA.

Run: ``nox -s gpu-check`` or ``python benchmarks/gpu_check.py [--out DIR] [--iters N] [--data-root DIR]``.
``--cpu-rehearsal`` runs stage 1 on the CPU with tiny sizes (to check the script, not the GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from harness import data  # noqa: E402
from harness.degrade import bicubic_downsample  # noqa: E402
from harness.recipes import load  # noqa: E402
from harness.training.loop import train  # noqa: E402

FAMILIES = ("span_light_x4", "span_esr_ch48_x4", "hspan_x2", "drsan_32s_x2")
DIV2K_SIZE = (1356, 2040)


def training_images(root: Path | None, scratch: Path, n: int, scales: set[int], size) -> tuple[Path, str]:
    """A data root holding ``DIV2K_train`` with ≥ ``n`` images and LR at ``scales``, and how it was made."""
    if root is not None and all(
        len(list((root / "DIV2K_train" / sub).glob("*.png"))) >= n
        for sub in ["HR", *(f"LR_bicubic/X{s}" for s in scales)]
    ):
        return root, f"DIV2K_train images 1-{n} from {root}"
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        low = torch.rand(3, size[0] // 16, size[1] // 16, generator=g)
        hr = torch.nn.functional.interpolate(low[None], size=size, mode="bicubic", align_corners=False)[0]
        hr = (hr + 0.05 * torch.randn(3, *size, generator=g)).clamp(0, 1)
        data.write_image(scratch / "DIV2K_train" / "HR" / f"{i + 1:04d}.png", hr)
        for s in scales:
            data.write_image(
                scratch / "DIV2K_train" / "LR_bicubic" / f"X{s}" / f"{i + 1:04d}.png",
                bicubic_downsample(hr, s)[1],
            )
    if root is not None and (root / "Set5" / "HR").is_dir():
        os.symlink(root / "Set5", scratch / "Set5")
    elif size[0] < 256:  # CPU rehearsal: a tiny stand-in validation set keeps it minutes long
        for i in range(2):
            hr = torch.rand(3, 96, 96, generator=g)
            data.write_image(scratch / "Set5" / "HR" / f"{i}.png", hr)
            for s in scales:
                data.write_image(
                    scratch / "Set5" / "LR_bicubic" / f"X{s}" / f"{i}.png", bicubic_downsample(hr, s)[1]
                )
    return scratch, f"{n} synthesised {size[1]}×{size[0]} textures with MATLAB-bicubic LR (DIV2K absent)"


def recipe_on(name: str, n: int, scratch: Path, rehearsal: bool) -> Path:
    """A copy of recipe ``name`` that trains on images 1-``n`` (the only field changed; rehearsal: tiny)."""
    text = (
        load(name)
        .path.read_text(encoding="utf-8")
        .replace("train_images = [1, 800]", f"train_images = [1, {n}]")
    )
    if rehearsal:
        r = load(name)
        text = text.replace(f"batch_per_gpu = {r.dataset.batch_per_gpu}", "batch_per_gpu = 1")
        text = text.replace(f"gpus = {r.dataset.gpus}", "gpus = 1")
        text = text.replace(f"hr_patch = {r.dataset.hr_patch}\n", f"hr_patch = {32 * r.scale}\n", 1)
    path = scratch / "recipes" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def train_family(name: str, args, root: Path, scratch: Path, device: str) -> dict:
    recipe = recipe_on(name, args.images, scratch, args.cpu_rehearsal)
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    summary = train(
        recipe, out_dir=scratch / "runs" / name, profile="full", max_iters=args.iters, data_root=root,
        device=device, allow_substitutes=True, resume=False, workers=args.workers,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return {
        "recipe": name,
        "iterations": summary.iterations,
        "seconds": round(seconds, 1),
        "it_per_s (incl. setup and validation)": round(summary.iterations / seconds, 2),
        "global_batch": summary.plan.global_batch,
        "hr_patch": summary.plan.sampling.hr_patch,
        "precision": summary.plan.precision,
        "final_loss": summary.final_loss,
        "val_psnr_y": summary.final_psnr_y,
        "peak_memory_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device != "cpu" else None,
        "training_data": summary.training_data,
        "substitutes": summary.substitutes,
    }


def run(cmd: list[str], timeout: int, env: dict | None = None) -> dict:
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
        rc, out = done.returncode, (done.stdout + done.stderr)[-4000:]
    except subprocess.TimeoutExpired as exc:
        rc, out = 124, f"timed out after {timeout} s\n{(exc.stdout or b'')[-2000:]!r}"
    return {"command": " ".join(cmd), "rc": rc, "seconds": round(time.perf_counter() - start, 1), "tail": out}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "gpu-check")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--cpu-rehearsal", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available() and not args.cpu_rehearsal:
        print("error: gpu-check needs a CUDA GPU and torch.cuda.is_available() is False here; run it on a "
              "machine with one (the CPU suite is `nox -s tests`)", file=sys.stderr)  # fmt: skip
        return 2
    device = "cpu" if args.cpu_rehearsal else "cuda:0"
    if args.cpu_rehearsal:
        args.iters, args.images, args.workers = min(args.iters, 2), min(args.images, 2), 0
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": torch.cuda.get_device_name() if device != "cpu" else "cpu (rehearsal)"}
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        size = (136, 204) if args.cpu_rehearsal else DIV2K_SIZE
        scales = {load(n).scale for n in FAMILIES}
        root, how = training_images(args.data_root, scratch, args.images, scales, size)
        report["training_images"] = how
        report["training"] = []
        for name in FAMILIES:
            print(f"gpu-check: training {name} …", file=sys.stderr, flush=True)
            try:
                report["training"].append(train_family(name, args, root, scratch, device))
            except Exception as exc:  # noqa: BLE001 — every family is tried; the failure is reported
                failed = True
                report["training"].append({"recipe": name, "error": f"{type(exc).__name__}: {exc}"})
    if not args.cpu_rehearsal:
        report["kernel_tests"] = run([sys.executable, "-m", "pytest", "-q", "-x", "tests/kernels"], 300)
        report["kernel_benchmarks"] = [
            run([sys.executable, f"benchmarks/{b}", "--repeats", "10"], 120)
            for b in ("bench_soft_threshold.py", "bench_sliding_proxy.py")
        ]
        failed |= report["kernel_tests"]["rc"] != 0 or any(b["rc"] for b in report["kernel_benchmarks"])
        # the training loop against BasicSR's (needs a BasicSR checkout: $REPROSR_BASICSR; else "not run")
        report["kernel_benchmarks"].append(
            run(
                [sys.executable, "benchmarks/bench_train.py", "--recipe", "span_light_x4", "--rounds", "3"],
                150,
            )
        )
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 1 if failed else 0


def markdown(report: dict) -> str:
    lines = [f"# GPU check on {report['device']}", "", f"Training images: {report['training_images']}.", ""]
    first = next((r for r in report["training"] if "error" not in r), {"recipe": "", "error": ""})
    keys = [k for k in first if k not in ("training_data", "substitutes")]
    lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in report["training"]:
        cells = [str(row.get(k, "")) for k in keys] if "error" not in row else [row["recipe"], row["error"]]
        lines.append("| " + " | ".join(cells) + " |")
    subs = sorted({s for row in report["training"] for s in row.get("substitutes", [])})
    lines += ["", *(f"- substitute: {s}" for s in subs)]
    for key in ("kernel_tests",):
        if key in report:
            r = report[key]
            lines += [
                "",
                f"## {key} (rc {r['rc']}, {r['seconds']} s)",
                "",
                "```",
                r["command"],
                r["tail"],
                "```",
            ]
    for r in report.get("kernel_benchmarks", []):
        lines += ["", f"## {r['command']} (rc {r['rc']}, {r['seconds']} s)", "", "```", r["tail"], "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
