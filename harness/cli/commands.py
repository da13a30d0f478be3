"""The commands: each builds its typed request from the parsed arguments, runs it and prints the outcome.
Each imports what it runs inside its function: the models, kernels and Triton take seconds to import, which
`reprosr --help`, `data list` or `metrics` should not pay."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.cli.output import UsageError, emit, table
from harness.launch import launch


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
    emit(
        args,
        {"models": models},
        lambda p: table(
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
    from harness.degrade import bicubic_levels

    lr = bicubic_levels(read_image(args.hr), args.scale)
    write_image(args.out, lr)
    payload = {
        "hr": str(args.hr),
        "out": str(args.out),
        "scale": args.scale,
        "hr_size": [n * args.scale for n in lr.shape[-2:]],  # the HR cropped to a multiple of the scale
        "lr_size": list(lr.shape[-2:]),
    }
    emit(args, payload, lambda p: f"wrote {p['out']} ({p['lr_size'][1]}×{p['lr_size'][0]}) from {p['hr']}")


def cmd_metrics(args: argparse.Namespace) -> None:
    from harness import metrics
    from harness.data import crop_to_scale, read_image
    from harness.measures import MEASURES, QUALITY

    sr, hr = read_image(args.sr), read_image(args.hr)
    hr = crop_to_scale(hr, args.scale)  # the convention: HR cropped to a multiple of the scale
    if sr.shape != hr.shape:
        raise UsageError(
            f"SR {args.sr} is {tuple(sr.shape[-2:])} but HR {args.hr} cropped to a multiple of {args.scale} "
            f"is {tuple(hr.shape[-2:])} (H, W): is the SR of another scale or image?"
        )
    payload = {
        **{k: float(v) for k, v in metrics.scores(sr, hr, args.scale, QUALITY).items()},
        "scale": args.scale,
        "convention": "BasicSR/MATLAB: Y of rgb2ycbcr, shave=scale, uint8-rounded, SSIM gauss 11x11",
        "conventions": {c: MEASURES[c].convention for c in QUALITY},
    }
    emit(
        args,
        payload,
        lambda p: (
            f"PSNR-Y {p['psnr_y']:.4f} dB  SSIM-Y {p['ssim_y']:.4f}  PSNR-RGB {p['psnr_rgb']:.4f} dB  "
            f"(x{p['scale']})"
        ),
    )


def cmd_complexity(args: argparse.Namespace) -> None:
    import architectures
    from harness.complexity import complexity, mac_report
    from harness.tiles import SELF_ENSEMBLE_FORWARDS

    model = architectures.build(args.model, args.scale, args.variant, form=args.form)
    c = complexity(model, args.scale, convention=args.convention)
    report = mac_report(model, c.input_size)  # every counter, so that none is trusted blindly
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
        "counters": {k: forwards * v / 1e9 for k, v in report.totals.items()},
        "disagreement": report.disagreement,
    }
    emit(
        args,
        payload,
        lambda p: (
            f"{p['model']} {p['variant'] or ''} x{p['scale']} ({p['form']}): params {p['params']:,} "
            f"(trainable {p['params_trainable']:,}), MACs {p['macs']:.2f} G [{p['convention']}, LR "
            f"{p['input_size'][-2]}×{p['input_size'][-1]}"
            f"{', ×8 self-ensemble' if p['self_ensemble'] else ''}]\n"
            + "counters (G): "
            + ", ".join(f"{k} {v:.3f}" for k, v in p["counters"].items())
            + "".join(f"\n  disagreement: {d}" for d in p["disagreement"])
        ),
    )


def _eval_text(p: dict) -> str:
    rows = p["per_image"]
    knobs = p["inference"] + (f" {p['tile']}/{p['tile_overlap']}" if p["tile"] else "")
    knobs += ", self-ensemble ×8" if p["self_ensemble"] else ""
    return "\n".join(
        [
            table(
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
        return table(rows, ["name", "model", "form", "pins", "state", "verifies"])

    emit(args, {"checkpoints": released.zoo()}, text)


def eval_request(args: argparse.Namespace):
    """`reprosr eval`'s arguments (and its --config file) as one checked :class:`EvalRequest`."""
    from harness.eval_request import EvalRequest

    checkpoint, model = args.checkpoint, None
    if args.target is not None:
        if args.checkpoint is None:
            checkpoint = args.target  # `reprosr eval FILE`: the model comes from the file's tensors
        else:
            model = args.target
    given = {
        "checkpoint": checkpoint, "model": model, "variant": args.variant, "scale": args.scale,
        "form": args.form, "param_key": args.param_key, "data_root": args.data_root,
        "inference": args.inference, "tile": args.tile, "tile_overlap": args.tile_overlap,
        "self_ensemble": args.self_ensemble, "precision": args.precision, "device": args.device,
        "runtime_warmup": args.runtime_warmup, "runtime_repeats": args.runtime_repeats,
        "save_sr": args.save_sr, "store": False if args.no_store else None, "tile_mode": args.tile_mode,
        "ntire_report": args.ntire_report, "hr_dir": args.hr_dir, "lr_dir": args.lr_dir,
        "filename_tmpl": args.filename_tmpl,
        "datasets": None if args.dataset is None else (args.dataset,),
    }  # fmt: skip
    if args.config is not None:
        return EvalRequest.from_toml(args.config, **given)
    missing = [flag for flag, key in (("a checkpoint (FILE or --checkpoint)", "checkpoint"),
                                      ("--dataset", "datasets")) if given[key] is None]  # fmt: skip
    if missing:
        raise UsageError(f"eval needs {' and '.join(missing)}, or --config FILE.toml")
    request = EvalRequest(**{k: v for k, v in given.items() if v is not None})
    request.check()
    return request


def cmd_eval(args: argparse.Namespace) -> None:
    request = eval_request(args)  # checked before torch is imported
    from harness.eval_job import run_eval

    payload = run_eval(request)
    emit(args, payload, _eval_report)


def cmd_upscale(args: argparse.Namespace) -> None:
    from harness.eval_job import upscale

    payload = upscale(
        args.checkpoint, args.lr_dir, args.out, param_key=args.param_key, device=args.device, tile=args.tile,
        tile_overlap=args.tile_overlap, precision=args.precision,
    )  # fmt: skip
    emit(args, payload, lambda p: f"wrote {len(p['written'])} images ×{p['scale']} to {args.out}")


def _eval_report(p: dict) -> str:
    body = "\n\n".join(_eval_text(r) for r in p["results"]) if "results" in p else _eval_text(p)
    first = p["results"][0] if "results" in p else p
    if not first["stored"]:
        return f"{body}\n\nrun {first['run_id']}: not stored (--no-store)"
    return (
        f"{body}\n\nrun {first['run_id']}: rows appended to {first['stored']}; "
        f"`reprosr publish {first['run_id']}` makes it public"
    )


def cmd_data(args: argparse.Namespace) -> None:
    from harness import data

    if args.action == "list":
        rows = data.list_datasets(args.data_root)
        emit(args, {"datasets": rows}, lambda p: table(p["datasets"], ["name", "status", "path"]))
        return
    if not args.name:
        raise UsageError(
            f"`reprosr data {args.action}` needs a dataset name: reprosr data {args.action} NAME "
            "(`reprosr data list` shows the names)"
        )
    if args.action == "fetch":
        path = data.fetch(args.name, args.data_root)
        emit(args, {"name": args.name, "path": str(path)}, lambda p: f"{p['name']} ready at {p['path']}")
    else:
        report = data.verify(args.name, args.data_root)
        emit(args, report.as_dict(), lambda p: str(report))
        if not report.ok:
            raise SystemExit(1)


def cmd_verify(args: argparse.Namespace) -> None:
    from harness.verify import format_verdicts, verify_recipe

    verdicts = verify_recipe(args.recipe, checkpoint=args.checkpoint, data_root=args.data_root)
    emit(
        args,
        {"recipe": args.recipe, "verdicts": [v.as_dict() for v in verdicts]},
        lambda p: format_verdicts(verdicts),
    )


def cmd_reproduce(args: argparse.Namespace) -> None:
    from harness.reproduce import reproduce
    from harness.verify import format_verdicts

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        if args.checkpoint:
            raise UsageError("--nproc trains in several processes; with --checkpoint nothing is trained")
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
    emit(args, outcome.as_dict(), lambda p: outcome.summary() + "\n\n" + format_verdicts(outcome.verdicts))


def cmd_report(args: argparse.Namespace) -> None:
    from harness import store
    from harness.paths import REPO
    from harness.report import build_site

    results = args.results
    if args.local:
        if results is not None:
            raise UsageError("--local and --results name two stores; give one")
        if Path(args.out).resolve() == (REPO / "reports").resolve():
            raise UsageError(
                "--local builds a private preview: give it its own --out, not the committed reports/"
            )
        results = store.default_root()
    index = build_site(Path(args.out), results_root=results)
    emit(args, {"index": str(index)}, lambda p: f"wrote {p['index']}")


def cmd_publish(args: argparse.Namespace) -> None:
    from harness.publish import publish

    done = publish(args.run_ids, source=args.source, runs_dir=args.runs, data_root=args.data_root)
    emit(
        args,
        {"published": [p.as_dict() for p in done]},
        lambda p: "\n".join(
            f"{r['run_id']}: {r['results']} result and {r['verdicts']} verdict rows added, {r['crops']} crops"
            + (f" ({r['note']})" if r["note"] else "")
            for r in p["published"]
        ),
    )
