"""The argument parser of `reprosr` (argparse only: parsing and argument checks import no torch)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from harness.cli import commands
from harness.cli.output import UsageError
from harness.schema import TEST_TIME, Precision


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's hook: raise instead of exiting here
        self.print_usage(sys.stderr)
        raise UsageError(message)


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("reprosr")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="reprosr", description="Reproducibility harness for attention-based super-resolution.")
    p.add_argument("--version", action="version", version=f"reprosr {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable, help: str, example: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, epilog=f"example: {example}")
        sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        sp.add_argument("--quiet", action="store_true", help="no progress output on stderr")
        sp.set_defaults(fn=fn)
        return sp

    def scale_arg(sp: argparse.ArgumentParser, required: bool, what: str = "upscaling factor") -> None:
        sp.add_argument("--scale", type=positive_int, required=required, metavar="S", help=f"{what}, e.g. 4")

    def data_root_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--data-root", type=Path, default=None, metavar="DIR",
            help="folder holding the benchmark sets (registry, EDSR, BasicSR or NTIRE layout), e.g. "
            "../shared/datasets; default: the data cache",
        )  # fmt: skip

    def device_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:<index>"
        )

    def model_args(sp: argparse.ArgumentParser, required: bool = True) -> None:
        sp.add_argument("model", nargs=None if required else "?", help="registered model, e.g. span_esr")
        scale_arg(sp, required)
        sp.add_argument(
            "--variant", default=None,
            help="published variant, e.g. ch28 (span_esr) or 32s (drsan); default: the model's default",
        )  # fmt: skip
        sp.add_argument(
            "--form", default="train", choices=("train", "deploy"),
            help="train form (default), or deploy (re-parameterised, SPAN-ESR)",
        )  # fmt: skip

    add("models", commands.cmd_models, "registered models with their variants and scales", "reprosr models")

    sp = add(
        "degrade", commands.cmd_degrade, "MATLAB-exact bicubic downsampling (HR cropped to a multiple of S)",
        "reprosr degrade hr.png --scale 4 --out lr.png",
    )  # fmt: skip
    sp.add_argument("hr", type=Path, help="HR image (PNG)")
    scale_arg(sp, True, "downscaling factor")
    sp.add_argument("--out", type=Path, required=True, help="where to write the LR image (PNG)")

    sp = add(
        "metrics", commands.cmd_metrics,
        "PSNR/SSIM-Y (BasicSR/MATLAB), NTIRE RGB PSNR, EDSR PSNR of an SR image",
        "reprosr metrics sr.png hr.png --scale 4",
    )  # fmt: skip
    sp.add_argument("sr", type=Path, help="super-resolved image")
    sp.add_argument(
        "hr", type=Path, help="ground truth (cropped to a multiple of the scale, as the sets are)"
    )
    scale_arg(sp, True, "scale: the border shaved before scoring")

    sp = add(
        "complexity", commands.cmd_complexity, "parameters and MACs of a model under a named convention",
        "reprosr complexity span_esr --variant ch28 --scale 4 --form deploy --convention ntire256",
    )  # fmt: skip
    model_args(sp)
    sp.add_argument(
        "--convention", default="hr720p", choices=("hr720p", "ntire256"),
        help="input size: hr720p (LR of a 1280x720 HR) or ntire256 (a 256x256 LR)",
    )  # fmt: skip
    sp.add_argument(
        "--self-ensemble", action="store_true", help="MACs of the ×8 self-ensemble (8 forwards per image)"
    )

    add(
        "checkpoints", commands.cmd_checkpoints,
        "the pinned zoo of official checkpoints: sources, pins, licences",
        "reprosr checkpoints --json",
    )  # fmt: skip

    sp = add(
        "eval", commands.cmd_eval,
        "evaluate a checkpoint on benchmark sets (paper's test-time procedure); model, variant, scale and "
        "form are detected from the file's tensors unless given",
        "reprosr eval ntire2024_team38_span_ch28_x4.pth --dataset Set5 --data-root ../shared/datasets",
    )  # fmt: skip
    sp.add_argument(
        "target", nargs="?", default=None,
        help="a checkpoint file (its architecture detected), or a registered model name with --checkpoint",
    )  # fmt: skip
    scale_arg(sp, False, "upscaling factor (default: detected)")
    sp.add_argument("--variant", default=None, help="published variant, e.g. ch28 (default: detected)")
    sp.add_argument(
        "--form", default=None, choices=("train", "deploy"), help="checkpoint form (default: detected)"
    )
    sp.add_argument(
        "--checkpoint", default=None,
        help="a .pth path, a TF checkpoint (folder, prefix or .index), or a released checkpoint's name",
    )  # fmt: skip
    sp.add_argument(
        "--param-key", default=None, choices=("params", "params_ema"),
        help="which weights of a BasicSR file to load (default: params_ema when present, else params)",
    )  # fmt: skip
    sp.add_argument(
        "--config", type=Path, default=None, metavar="FILE.toml",
        help="the whole evaluation as a TOML file (keys: checkpoint, datasets, model, scale, data_root, "
        "tile, ...); options given here win; the file is kept with the run",
    )  # fmt: skip
    sp.add_argument(
        "--dataset", default=None,
        help="a set (Set5), several (Set5,Set14), or 'paper' (the sets of the paper's tables)",
    )  # fmt: skip
    data_root_arg(sp)
    sp.add_argument(
        "--hr-dir", type=Path, default=None, metavar="DIR",
        help="free folders instead of a named set: the HR images (with --lr-dir; --dataset names the set)",
    )  # fmt: skip
    sp.add_argument("--lr-dir", type=Path, default=None, metavar="DIR", help="the LR images of --hr-dir")
    sp.add_argument(
        "--filename-tmpl", default=None, metavar="TMPL",
        help="LR file name from the HR file's stem, as BasicSR's filename_tmpl, e.g. '{}x4' (default '{}')",
    )  # fmt: skip
    sp.add_argument(
        "--inference", choices=TEST_TIME, default=None,
        help="default: the paper's own test-time procedure (HSPAN: chop)",
    )  # fmt: skip
    sp.add_argument(
        "--tile", type=int, default=None, metavar="N",
        help="tiled inference for any model: N×N LR tiles, e.g. 128",
    )  # fmt: skip
    sp.add_argument(
        "--tile-overlap", type=int, default=None, metavar="M",
        help="LR pixels of context around each tile, e.g. 16 (default: the model's measured receptive field)",
    )  # fmt: skip
    sp.add_argument(
        "--tile-mode", choices=("crop", "average"), default=None,
        help="crop each tile's overlap (BasicSR tile_process; the default) or average overlapping tiles "
        "(NTIRE test_demo.py)",
    )  # fmt: skip
    sp.add_argument(
        "--ntire-report", type=Path, default=None, metavar="FILE",
        help="also write NTIRE's results.txt table (params, FLOPs, #activations, #conv, memory), e.g. "
        "results.txt",
    )  # fmt: skip
    sp.add_argument(
        "--self-ensemble", action="store_true", default=None,
        help="EDSR/RCAN ×8 flip/rotate self-ensemble (8 forwards)",
    )  # fmt: skip
    sp.add_argument(
        "--precision", choices=[str(p) for p in Precision], default=None,
        help="fp32 (TF32 off; the default), tf32 (CUDA), fp16/bf16 (model and input cast)",
    )  # fmt: skip
    device_arg(sp)
    sp.add_argument(
        "--runtime-warmup", type=int, default=None, help="untimed runs per image (default: CUDA 3, CPU 0)"
    )
    sp.add_argument(
        "--runtime-repeats", type=int, default=None, help="timed runs per image (default: CUDA 10, CPU 1)"
    )
    sp.add_argument(
        "--save-sr", type=Path, default=None, metavar="DIR",
        help="keep the scored SR images as DIR/<dataset>/<image>.png with DIR/manifest.json",
    )  # fmt: skip
    sp.add_argument("--no-store", action="store_true", help="do not append the result to the results store")

    sp = add(
        "upscale", commands.cmd_upscale,
        "super-resolve a folder of LR images without ground truth (model detected from the checkpoint)",
        "reprosr upscale ntire2024_team38_span_ch28_x4.pth my_lr_photos --out sr_photos",
    )  # fmt: skip
    sp.add_argument("checkpoint", help="a checkpoint file or a released checkpoint's name")
    sp.add_argument("lr_dir", type=Path, help="folder of LR images (PNG, JPEG, …)")
    sp.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the SR PNGs go")
    sp.add_argument(
        "--param-key", default=None, choices=("params", "params_ema"), help="weights of a BasicSR file to use"
    )
    sp.add_argument(
        "--tile", type=int, default=0, metavar="N", help="tiled inference: N×N LR tiles, e.g. 256"
    )
    sp.add_argument(
        "--tile-overlap", type=int, default=None, metavar="M", help="default: the measured receptive field"
    )
    sp.add_argument(
        "--precision",
        choices=[str(p) for p in Precision],
        default="fp32",
        help="fp32 (default), tf32, fp16, bf16",
    )
    device_arg(sp)

    sp = add(
        "data", commands.cmd_data, "dataset registry: list, fetch (with checksums), verify",
        "reprosr data fetch Set5",
    )  # fmt: skip
    sp.add_argument("action", choices=("list", "fetch", "verify"), help="what to do")
    sp.add_argument("name", nargs="?", help="dataset name, e.g. Set5 (`reprosr data list` shows them)")
    data_root_arg(sp)

    sp = add(
        "verify", commands.cmd_verify, "verdict table of a recipe: static, checkpoint and retrain tiers",
        "reprosr verify drsan_32s_x2",
    )  # fmt: skip
    sp.add_argument("recipe", help="recipe name, e.g. hspan_x4 (`nox -l` lists them)")
    sp.add_argument(
        "--checkpoint", default=None, help='a path, a zoo name, or "official" (the recipe\'s release)'
    )
    data_root_arg(sp)

    sp = add(
        "reproduce", commands.cmd_reproduce, "run a recipe end to end and print its verdict table",
        "reprosr reproduce span_esr_ch28_x4 --checkpoint official --data-root ../shared/datasets",
    )  # fmt: skip
    sp.add_argument("recipe", help="recipe name, e.g. hspan_x4 (`nox -l` lists them)")
    sp.add_argument(
        "--profile", choices=("smoke", "full"), default="smoke",
        help="smoke: a few CPU iterations on embedded images; full: the pinned recipe (GPU, DIV2K)",
    )  # fmt: skip
    sp.add_argument(
        "--checkpoint", default=None,
        help='evaluate this checkpoint instead of training: a path, a zoo name, or "official"',
    )  # fmt: skip
    data_root_arg(sp)
    sp.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="run directory (default: runs/<recipe>-<profile>)",
    )
    sp.add_argument(
        "--max-iters", type=positive_int, default=None, metavar="N",
        help="stop early: the run is stored as truncated, not judged",
    )  # fmt: skip
    device_arg(sp)
    sp.add_argument(
        "--seeds", type=positive_int, default=1, metavar="N",
        help="train N runs, seeds train.seed … train.seed+N-1 (≥3 judged)",
    )  # fmt: skip
    sp.add_argument(
        "--nproc", type=positive_int, default=1, metavar="N",
        help="processes (GPUs) on this node: launches torchrun (DDP)",
    )  # fmt: skip
    sp.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="data loader processes per rank (0: in-process)",
    )
    sp.add_argument(
        "--allow-substitutes", action="store_true",
        help="allow disclosed substitutes for missing data (generated LR, embedded validation images)",
    )  # fmt: skip

    sp = add(
        "report", commands.cmd_report, "render the static leaderboard site from the committed results store",
        "reprosr report --out reports",
    )  # fmt: skip
    sp.add_argument("--out", default="reports", metavar="DIR", help="site folder (default: reports)")
    sp.add_argument(
        "--results", type=Path, default=None, metavar="DIR",
        help="results store root (default: the committed results/runs)",
    )  # fmt: skip
    sp.add_argument(
        "--local", action="store_true", help="preview the local store ($REPROSR_RESULTS) into its own --out"
    )

    sp = add(
        "publish", commands.cmd_publish,
        "copy runs (rows and crops) from the local store into the committed one",
        "reprosr publish 1a2b3c4d5e6f",
    )  # fmt: skip
    sp.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="run ids printed by eval or reproduce")
    sp.add_argument(
        "--source", type=Path, default=None, metavar="DIR",
        help="store to publish from (default: the local store)",
    )  # fmt: skip
    sp.add_argument(
        "--runs",
        type=Path,
        default=None,
        metavar="DIR",
        help="run directories with SR outputs (default runs/)",
    )
    data_root_arg(sp)
    return p
