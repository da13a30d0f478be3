"""`reprosr` command line. Every command takes `--json` and then prints exactly one JSON object on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import progress


def _emit(args: argparse.Namespace, payload: dict, text: Callable[[dict], str]) -> None:
    print(json.dumps(payload, indent=None, default=str) if args.json else text(payload))


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

    sr, hr = read_image(args.sr), read_image(args.hr)
    if sr.shape != hr.shape:
        raise SystemExit(f"error: SR is {tuple(sr.shape)} but HR is {tuple(hr.shape)}")
    payload = {
        "psnr_y": float(metrics.psnr_y(sr, hr, args.scale)),
        "ssim_y": float(metrics.ssim_y(sr, hr, args.scale)),
        "scale": args.scale,
        "convention": "BasicSR/MATLAB: Y of rgb2ycbcr, shave=scale, uint8-rounded, SSIM gauss 11x11",
    }
    _emit(args, payload, lambda p: f"PSNR-Y {p['psnr_y']:.4f} dB  SSIM-Y {p['ssim_y']:.4f}  (x{p['scale']})")


def cmd_complexity(args: argparse.Namespace) -> None:
    import architectures
    from harness.complexity import complexity

    model = architectures.build(args.model, args.scale, args.variant, form=args.form)
    c = complexity(model, args.scale, convention=args.convention)
    payload = {
        "model": args.model,
        "variant": args.variant or architectures.spec(args.model).default_variant,
        "scale": args.scale,
        "form": args.form,
        "params": c.params,
        "params_trainable": c.params_trainable,
        "buffers": c.buffers,
        "macs": c.macs / 1e9,
        "macs_unit": "G",
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
            f"{p['input_size'][-2]}×{p['input_size'][-1]}]"
        ),
    )


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
        store=not args.no_store,
    )
    _emit(
        args,
        payload,
        lambda p: "\n".join(
            [
                _table(p["per_image"], ["image", "psnr_y", "ssim_y"]),
                f"{p['dataset']} x{p['scale']} mean: PSNR-Y {p['psnr_y']:.4f} dB  SSIM-Y {p['ssim_y']:.4f} "
                f"({p['inference']} inference, {len(p['per_image'])} images)",
            ]
        ),
    )


def cmd_data(args: argparse.Namespace) -> None:
    from harness import data

    if args.action == "list":
        rows = data.list_datasets(args.data_root)
        _emit(args, {"datasets": rows}, lambda p: _table(p["datasets"], ["name", "status", "path"]))
        return
    if not args.name:
        raise SystemExit(f"error: `reprosr data {args.action}` needs a dataset name")
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

    outcome = reproduce(
        args.recipe,
        profile=args.profile,
        checkpoint=args.checkpoint,
        data_root=args.data_root,
        out_dir=args.out,
        max_iters=args.max_iters,
    )
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
    p = argparse.ArgumentParser(prog="reprosr", description=__doc__)
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
    sp.add_argument("--scale", type=int, required=True)
    sp.add_argument("--out", type=Path, required=True)

    sp = add("metrics", cmd_metrics, "PSNR/SSIM on the Y channel in the BasicSR/MATLAB convention")
    sp.add_argument("sr", type=Path)
    sp.add_argument("hr", type=Path)
    sp.add_argument("--scale", type=int, required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("model")
        sp.add_argument("--scale", type=int, required=True)
        sp.add_argument("--variant", default=None)
        sp.add_argument("--form", default="train", choices=("train", "deploy"))

    sp = add("complexity", cmd_complexity, "parameters and MACs of a model under a named convention")
    model_args(sp)
    sp.add_argument("--convention", default="hr720p", choices=("hr720p", "ntire256"))

    sp = add("eval", cmd_eval, "evaluate a checkpoint on a benchmark set (paper's test-time procedure)")
    model_args(sp)
    sp.add_argument("--checkpoint", required=True, help="a .pth path, or a released checkpoint's name")
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--data-root", type=Path, default=None)
    sp.add_argument(
        "--inference",
        choices=("whole", "chop"),
        default=None,
        help="default: the paper's own test-time procedure",
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
    sp.add_argument("--checkpoint", default=None, help="evaluate this checkpoint instead of training")
    sp.add_argument("--data-root", type=Path, default=None)
    sp.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<recipe>-<profile>)")
    sp.add_argument("--max-iters", type=int, default=None)

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
    args = parser().parse_args(argv)
    progress.set_quiet(args.quiet)
    try:
        args.fn(args)
    except (OSError, ValueError, KeyError, FloatingPointError) as exc:  # OSError: files, downloads
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if args.json:
            print(json.dumps({"error": str(msg)}))
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main(sys.argv[1:])
