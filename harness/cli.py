"""`reprosr` command line. Every command takes `--json` and then prints exactly one JSON object on stdout.

Bad input (arguments, files, checkpoints, datasets) ends with `error: <message>` on stderr and exit
status 2, and under `--json` also with `{"error": <message>}` on stdout; never with a traceback. JSON is
strict: a non-finite number (the PSNR of identical images is +inf) is written as null and its key path
is listed in `"non_finite"` with the value as text ("inf", "-inf" or "nan").

Each command imports what it runs inside its function: the models, kernels and Triton take seconds to import,
which `reprosr --help`, `data list` or `metrics` should not pay.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import progress
from harness.errors import UserError
from harness.launch import launch, report_worker_error
from harness.schema import TEST_TIME, Precision


class UsageError(Exception):
    """Arguments that parse but make no sense together (exit 2, like argparse's own errors)."""


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


def dumps(payload: dict) -> str:
    """Strict JSON (no NaN/Infinity): non-finite numbers become null, listed under "non_finite"."""
    non_finite: dict[str, str] = {}

    def clean(value, where: str):
        if isinstance(value, float) and not math.isfinite(value):
            non_finite[where] = str(value)
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    cleaned = clean(payload, "")
    if non_finite:
        cleaned["non_finite"] = non_finite
    return json.dumps(cleaned, indent=None, default=str, allow_nan=False)


def _emit(args: argparse.Namespace, payload: dict, text: Callable[[dict], str]) -> None:
    print(dumps(payload) if args.json else text(payload))


def _table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def cmd_models(args: argparse.Namespace) -> None:
    import architectures

    models = [
        {
            "name": s.name,
            "paper": s.paper,
            "variants": {str(v) if v else "": list(sc) for v, sc in s.scales.items()},
            "default_variant": s.default_variant,
            "forms": list(s.forms),
            "test_time": s.test_time,
        }
        for s in architectures.MODELS.values()
    ]
    _emit(
        args,
        {"models": models},
        lambda p: _table(
            [
                {
                    "model": m["name"],
                    "variants × scales": "; ".join(
                        f"{v or '-'}: {','.join(f'x{s}' for s in sc)}" for v, sc in m["variants"].items()
                    ),
                    "forms": ",".join(m["forms"]),
                    "test time": m["test_time"],
                }
                for m in p["models"]
            ],
            ["model", "variants × scales", "forms", "test time"],
        ),
    )


def cmd_degrade(args: argparse.Namespace) -> None:
    from harness.data import read_image, write_image
    from harness.degrade import bicubic_downsample

    hr, lr = bicubic_downsample(read_image(args.hr), args.scale)
    write_image(args.out, lr)
    payload = {
        "hr": str(args.hr),
        "out": str(args.out),
        "scale": args.scale,
        "hr_size": list(hr.shape[-2:]),
        "lr_size": list(lr.shape[-2:]),
    }
    _emit(args, payload, lambda p: f"wrote {p['out']} ({p['lr_size'][1]}×{p['lr_size'][0]}) from {p['hr']}")


def cmd_metrics(args: argparse.Namespace) -> None:
    from harness import metrics
    from harness.data import read_image
    from harness.evaluate import ALL_CONVENTIONS, CONVENTION_TEXT

    sr, hr = read_image(args.sr), read_image(args.hr)
    if sr.shape != hr.shape:
        raise ValueError(
            f"SR {args.sr} is {tuple(sr.shape[-2:])} but HR {args.hr} is {tuple(hr.shape[-2:])} (H, W): "
            "pass images of the same size (crop HR to a multiple of the scale)"
        )
    payload = {
        **{k: float(v) for k, v in metrics.scores(sr, hr, args.scale, ALL_CONVENTIONS).items()},
        "scale": args.scale,
        "convention": "BasicSR/MATLAB: Y of rgb2ycbcr, shave=scale, uint8-rounded, SSIM gauss 11x11",
        "conventions": {c: CONVENTION_TEXT[c] for c in ALL_CONVENTIONS},
    }
    _emit(
        args,
        payload,
        lambda p: (
            f"PSNR-Y {p['psnr_y']:.4f} dB  SSIM-Y {p['ssim_y']:.4f}  PSNR-RGB {p['psnr_rgb']:.4f} dB  "
            f"(x{p['scale']})"
        ),
    )


def cmd_complexity(args: argparse.Namespace) -> None:
    import architectures
    from harness.complexity import complexity
    from harness.tiles import SELF_ENSEMBLE_FORWARDS

    model = architectures.build(args.model, args.scale, args.variant, form=args.form)
    c = complexity(model, args.scale, convention=args.convention)
    forwards = SELF_ENSEMBLE_FORWARDS if args.self_ensemble else 1
    payload = {
        "model": args.model,
        "variant": args.variant or architectures.spec(args.model).default_variant,
        "scale": args.scale,
        "form": args.form,
        "params": c.params,
        "params_trainable": c.params_trainable,
        "buffers": c.buffers,
        "macs": forwards * c.macs / 1e9,
        "macs_unit": "G",
        "self_ensemble": args.self_ensemble,
        "convention": c.convention,
        "input_size": list(c.input_size),
        "uncounted_ops": list(c.uncounted),
    }
    _emit(
        args,
        payload,
        lambda p: (
            f"{p['model']} {p['variant'] or ''} x{p['scale']} ({p['form']}): params {p['params']:,} "
            f"(trainable {p['params_trainable']:,}), MACs {p['macs']:.2f} G [{p['convention']}, LR "
            f"{p['input_size'][-2]}×{p['input_size'][-1]}"
            f"{', ×8 self-ensemble' if p['self_ensemble'] else ''}]"
        ),
    )


def _eval_text(p: dict) -> str:
    rows = p["per_image"]
    knobs = p["inference"] + (f" {p['tile']}/{p['tile_overlap']}" if p["tile"] else "")
    knobs += ", self-ensemble ×8" if p["self_ensemble"] else ""
    return "\n".join(
        [
            _table(
                [{k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()} for r in rows],
                ["image", "psnr_y", "ssim_y", "psnr_rgb", "runtime_ms"],
            ),
            f"{p['dataset']} x{p['scale']} mean: PSNR-Y {p['psnr_y']:.4f} dB  SSIM-Y {p['ssim_y']:.4f}  "
            f"PSNR-RGB {p['psnr_rgb']:.4f} dB ({knobs} inference, {p['precision']}, {p['device']}, "
            f"median {p['runtime_ms']:.1f} ms/image, {len(p['per_image'])} images)",
        ]
    )


def cmd_checkpoints(args: argparse.Namespace) -> None:
    from harness import released

    def text(payload: dict) -> str:
        rows = [
            {
                "name": c["name"],
                "model": f"{c['model']} {c['variant']} x{c['scale']}".replace("  ", " "),
                "form": f"{c['form']} ({c['layout']})",
                "pins": ", ".join(
                    sorted(
                        {
                            "sha256" if f["sha256"] else "git blob" if f["git_blob"] else "none"
                            for f in c["files"]
                        }
                    )
                ),
                "state": "cached" if c["cached"] else "manual download" if c["manual"] else "not downloaded",
                "verifies": f"{sum(1 for r in c['verifies'] if r['dataset'])} published cells",
            }
            for c in payload["checkpoints"]
        ]
        return _table(rows, ["name", "model", "form", "pins", "state", "verifies"])

    _emit(args, {"checkpoints": released.zoo()}, text)


def cmd_eval(args: argparse.Namespace) -> None:
    from harness.evaluate import evaluate_checkpoint

    payload = evaluate_checkpoint(
        args.model,
        args.scale,
        variant=args.variant,
        form=args.form,
        checkpoint=args.checkpoint,
        dataset=args.dataset,
        data_root=args.data_root,
        inference=args.inference,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        self_ensemble=args.self_ensemble,
        precision=args.precision,
        device=args.device,
        runtime_warmup=args.runtime_warmup,
        runtime_repeats=args.runtime_repeats,
        save_sr_dir=args.save_sr,
        store=not args.no_store,
    )
    _emit(
        args,
        payload,
        lambda p: "\n\n".join(_eval_text(r) for r in p["results"]) if "results" in p else _eval_text(p),
    )


def cmd_data(args: argparse.Namespace) -> None:
    from harness import data

    if args.action == "list":
        rows = data.list_datasets(args.data_root)
        _emit(args, {"datasets": rows}, lambda p: _table(p["datasets"], ["name", "status", "path"]))
        return
    if not args.name:
        raise UsageError(
            f"`reprosr data {args.action}` needs a dataset name: reprosr data {args.action} NAME "
            "(`reprosr data list` shows the names)"
        )
    if args.action == "fetch":
        path = data.fetch(args.name, args.data_root)
        _emit(args, {"name": args.name, "path": str(path)}, lambda p: f"{p['name']} ready at {p['path']}")
    else:
        report = data.verify(args.name, args.data_root)
        _emit(args, report.as_dict(), lambda p: str(report))
        if not report.ok:
            raise SystemExit(1)


def cmd_verify(args: argparse.Namespace) -> None:
    from harness.verify import format_verdicts, verify_recipe

    verdicts = verify_recipe(args.recipe, checkpoint=args.checkpoint, data_root=args.data_root)
    _emit(
        args,
        {"recipe": args.recipe, "verdicts": [v.as_dict() for v in verdicts]},
        lambda p: format_verdicts(verdicts),
    )


def cmd_reproduce(args: argparse.Namespace) -> None:
    from harness.reproduce import reproduce
    from harness.verify import format_verdicts

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        if args.checkpoint:
            raise ValueError("--nproc trains in several processes; with --checkpoint nothing is trained")
        launch(args.nproc, args.argv)
        return
    outcome = reproduce(
        args.recipe,
        profile=args.profile,
        checkpoint=args.checkpoint,
        data_root=args.data_root,
        out_dir=args.out,
        max_iters=args.max_iters,
        device=args.device,
        seeds=args.seeds,
        allow_substitutes=args.allow_substitutes,
        workers=args.workers,
    )
    if outcome is None:  # a rank other than 0 under torchrun: rank 0 reports
        return
    _emit(args, outcome.as_dict(), lambda p: outcome.summary() + "\n\n" + format_verdicts(outcome.verdicts))


def cmd_report(args: argparse.Namespace) -> None:
    from harness import store
    from harness.paths import REPO
    from harness.report import build_site

    results = args.results
    if args.local:
        if results is not None:
            raise ValueError("--local and --results name two stores; give one")
        if Path(args.out).resolve() == (REPO / "reports").resolve():
            raise ValueError(
                "--local builds a private preview: give it its own --out, not the committed reports/"
            )
        results = store.default_root()
    index = build_site(Path(args.out), results_root=results)
    _emit(args, {"index": str(index)}, lambda p: f"wrote {p['index']}")


def cmd_publish(args: argparse.Namespace) -> None:
    from harness.publish import publish

    done = publish(args.run_ids, source=args.source, runs_dir=args.runs, data_root=args.data_root)
    _emit(
        args,
        {"published": [p.as_dict() for p in done]},
        lambda p: "\n".join(
            f"{r['run_id']}: {r['results']} result and {r['verdicts']} verdict rows added, {r['crops']} crops"
            + (f" ({r['note']})" if r["note"] else "")
            for r in p["published"]
        ),
    )


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="reprosr", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        sp.add_argument("--quiet", action="store_true", help="no progress output on stderr")
        sp.set_defaults(fn=fn)
        return sp

    add("models", cmd_models, "registered models with their variants and scales")

    sp = add("degrade", cmd_degrade, "MATLAB-exact bicubic downsampling (HR cropped to a multiple of S)")
    sp.add_argument("hr", type=Path)
    sp.add_argument("--scale", type=positive_int, required=True)
    sp.add_argument("--out", type=Path, required=True)

    sp = add("metrics", cmd_metrics, "PSNR/SSIM-Y (BasicSR/MATLAB), NTIRE RGB PSNR, EDSR PSNR of an SR image")
    sp.add_argument("sr", type=Path)
    sp.add_argument("hr", type=Path)
    sp.add_argument("--scale", type=positive_int, required=True)

    def device_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:<index>"
        )

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("model")
        sp.add_argument("--scale", type=positive_int, required=True)
        sp.add_argument("--variant", default=None)
        sp.add_argument("--form", default="train", choices=("train", "deploy"))

    sp = add("complexity", cmd_complexity, "parameters and MACs of a model under a named convention")
    model_args(sp)
    sp.add_argument("--convention", default="hr720p", choices=("hr720p", "ntire256"))
    sp.add_argument(
        "--self-ensemble", action="store_true", help="MACs of the ×8 self-ensemble (8 forwards per image)"
    )

    add("checkpoints", cmd_checkpoints, "the pinned zoo of official checkpoints: sources, pins, licences")

    sp = add("eval", cmd_eval, "evaluate a checkpoint on benchmark sets (paper's test-time procedure)")
    model_args(sp)
    sp.add_argument(
        "--checkpoint",
        required=True,
        help="a .pth path, a TF checkpoint (folder, prefix or .index), or a released checkpoint's name",
    )
    sp.add_argument(
        "--dataset",
        required=True,
        help="a set (Set5), several (Set5,Set14), or 'paper' (the sets of the paper's tables); NTIRE "
        "layout <root>/<name>_HR + <name>_LR/<image>x<s>.png also read (e.g. DIV2K_LSDIR_valid)",
    )
    sp.add_argument("--data-root", type=Path, default=None)
    sp.add_argument(
        "--inference",
        choices=TEST_TIME,
        default=None,
        help="default: the paper's own test-time procedure (HSPAN: chop)",
    )
    sp.add_argument(
        "--tile",
        type=int,
        default=0,
        metavar="N",
        help="tiled inference for any model: N×N LR tiles (BasicSR/HAT tile_process; overlap cropped)",
    )
    sp.add_argument(
        "--tile-overlap", type=int, default=0, metavar="M", help="LR pixels of context around each tile"
    )
    sp.add_argument(
        "--self-ensemble", action="store_true", help="EDSR/RCAN ×8 flip/rotate self-ensemble (8 forwards)"
    )
    sp.add_argument(
        "--precision",
        choices=[str(p) for p in Precision],
        default="fp32",
        help="fp32 (TF32 off), tf32 (CUDA), fp16/bf16 (model and input cast)",
    )
    device_arg(sp)
    sp.add_argument(
        "--runtime-warmup", type=int, default=None, help="untimed runs per image (default: CUDA 3, CPU 0)"
    )
    sp.add_argument(
        "--runtime-repeats", type=int, default=None, help="timed runs per image (default: CUDA 10, CPU 1)"
    )
    sp.add_argument(
        "--save-sr",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the scored SR images as DIR/<dataset>/<image>.png with DIR/manifest.json",
    )
    sp.add_argument("--no-store", action="store_true", help="do not append the result to the results store")

    sp = add("data", cmd_data, "dataset registry: list, fetch (with checksums), verify")
    sp.add_argument("action", choices=("list", "fetch", "verify"))
    sp.add_argument("name", nargs="?")
    sp.add_argument("--data-root", type=Path, default=None)

    sp = add("verify", cmd_verify, "verdict table of a recipe: static, checkpoint and retrain tiers")
    sp.add_argument("recipe")
    sp.add_argument("--checkpoint", default=None)
    sp.add_argument("--data-root", type=Path, default=None)

    sp = add("reproduce", cmd_reproduce, "run a recipe end to end and print its verdict table")
    sp.add_argument("recipe")
    sp.add_argument("--profile", choices=("smoke", "full"), default="smoke")
    sp.add_argument(
        "--checkpoint",
        default=None,
        help='evaluate this checkpoint instead of training: a path, a zoo name, or "official"',
    )
    sp.add_argument("--data-root", type=Path, default=None)
    sp.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<recipe>-<profile>)")
    sp.add_argument(
        "--max-iters",
        type=positive_int,
        default=None,
        help="stop early: the run is stored as truncated, not judged",
    )
    device_arg(sp)
    sp.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="train N runs, seeds train.seed … train.seed+N-1 (≥3 judged)",
    )
    sp.add_argument(
        "--nproc", type=positive_int, default=1, help="processes (GPUs) on this node: launches torchrun (DDP)"
    )
    sp.add_argument(
        "--workers", type=int, default=None, help="data loader processes per rank (0: in-process)"
    )
    sp.add_argument(
        "--allow-substitutes",
        action="store_true",
        help="allow disclosed substitutes for missing data (generated LR, embedded validation images)",
    )

    sp = add("report", cmd_report, "render the static leaderboard site from the committed results store")
    sp.add_argument("--out", default="reports")
    sp.add_argument(
        "--results", type=Path, default=None, help="results store root (default: the committed results/runs)"
    )
    sp.add_argument(
        "--local", action="store_true", help="preview the local store ($REPROSR_RESULTS) into its own --out"
    )

    sp = add("publish", cmd_publish, "copy runs (rows and crops) from the local store into the committed one")
    sp.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    sp.add_argument(
        "--source", type=Path, default=None, help="store to publish from (default: the local store)"
    )
    sp.add_argument("--runs", type=Path, default=None, help="run directories with SR outputs (default runs/)")
    sp.add_argument("--data-root", type=Path, default=None, help="benchmark images for the crops")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _run(argv)
    except BrokenPipeError:
        # The reader went away (`reprosr models --json | head`): stop quietly, as a Unix filter does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None


def _run(argv: list[str]) -> None:
    json_requested = "--json" in argv
    try:
        args = parser().parse_args(argv)
        args.argv = argv
        progress.set_quiet(args.quiet)
        if os.environ.get("REPROSR_PAPERS"):
            from harness.papers import add_papers_from_env  # here: it imports every model (slow start)

            add_papers_from_env()
        args.fn(args)
    except (
        UsageError,
        UserError,
        OSError,
        ValueError,
        KeyError,
        FloatingPointError,
    ) as exc:  # OSError: files, downloads
        if isinstance(exc, BrokenPipeError):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if report_worker_error(str(msg)):  # a torchrun worker: the launcher reports the one error
            raise SystemExit(2) from None
        if json_requested:
            print(dumps({"error": str(msg)}))
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main(sys.argv[1:])
