"""Learning check: one recipe per family trained briefly on real images by ReproSR's trainer and by the
family's official training code side by side, both judged on Set5.

Each family's recipe keeps its model, optimiser, learning rate, schedule, EMA decay and loss; the batch,
the HR patch and the iteration count are reduced (:data:`FAMILIES`) so that the whole check fits about 30
minutes of a 2-core CPU. Training data: the HR/LR pairs of a benchmark set (``--train-set``, default
Set14, the MATLAB-bicubic LR from disk) — a disclosed stand-in for DIV2K; both sides read the same PNGs.
Evaluation: PSNR-Y of the raw weights (at these lengths an EMA is still mostly the initial network) on
``--eval-set`` (default Set5), every side's weights loaded into ReproSR's port and scored by
``harness.metrics`` with the recipe's inference mode.

Official side (a checkout outside this repository per family, run by ``--python``, an interpreter that
can import it; the drivers in ``benchmarks/official_trainers/`` import nothing from ReproSR):

- SPAN-light: zononhzy/SPAN's ``basicsr/train.py`` (a BasicSR fork) with a generated option file;
- SPAN-ESR: BasicSR's ``basicsr/train.py`` with hongyuanyu/SPAN's ``span_arch.py`` copied into its
  ``basicsr/archs`` (hongyuanyu/SPAN ships no other BasicSR file), same way;
- HSPAN: laoyangui/HSPAN's EDSR-PyTorch option parser, DIV2K loader, Model, Loss and ``Trainer.train()``
  (``official_trainers/edsr_hspan.py``);
- DRSAN: the released TensorFlow 1 training graph of saturnian77/DRSAN (``official_trainers/tf1_drsan.py``;
  the repository publishes no data pipeline, so that driver cuts the patches).

The two sides of a seed train at the same time, one thread each, so that the machine's load hits both
alike. A family without a checkout is reported "not run" on its official side, with the flag to pass.
``official_trainers/setup_env.sh DIR`` makes the checkouts, the interpreter and the torchvision stand-in
in a folder outside the repository and prints the full command.

Verdict per family: it **learns** when every seed's raw weights score at least ``LEARN_DB`` above the
same seed's initial network (a trainer that does not update, or diverges, fails); whether it also beats
bicubic is printed (at these lengths only the fastest family does). It **keeps up** when its mean is not
below the official mean by more than the seed-to-seed spread (the largest max − min over the seeds of
either side). A family that does not learn or trails fails, and the exit status is then 1.

Run: python benchmarks/learning_check.py --python PY --span-light-official DIR --span-esr-official DIR
     --hspan-official DIR --drsan-official DIR [--families ...] [--seeds 0,1] [--iters N] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import architectures  # noqa: E402
from architectures.detect import read_weights  # noqa: E402
from harness.data import benchmark_pairs, write_image  # noqa: E402
from harness.degrade import imresize_matlab  # noqa: E402
from harness.evaluate import TestTime, evaluate  # noqa: E402
from harness.metrics import psnr_y  # noqa: E402
from harness.recipes import load  # noqa: E402
from harness.training.loop import fit  # noqa: E402
from harness.training.patches import PatchStream  # noqa: E402
from harness.training.plan import make_plan  # noqa: E402

DRIVERS = Path(__file__).resolve().parent / "official_trainers"
LEARN_DB = 1.0  # least gain over the initial network, per seed, that counts as learning


@dataclasses.dataclass(frozen=True)
class Family:
    recipe: str
    official: str  # what the official side runs
    iters: int  # reduced run: iterations, global batch, HR patch side
    batch: int
    hr_patch: int


# sized for ~30 min on 2 cores in all (one thread per side, two seeds); the cheapest recipe of each family
FAMILIES = {
    "span_light": Family("span_light_x4", "zononhzy/SPAN: its basicsr/train.py", 280, 4, 64),
    "span_esr": Family("span_esr_ch28_x4", "BasicSR's train.py + hongyuanyu/SPAN's arch", 1400, 4, 64),
    "hspan": Family("hspan_x4", "laoyangui/HSPAN: EDSR-PyTorch's Trainer (edsr_hspan.py)", 42, 4, 48),
    "drsan": Family("drsan_32s_x2", "saturnian77/DRSAN: the TF1 training graph (tf1_drsan.py)", 700, 4, 64),
}  # fmt: skip
# laoyangui/HSPAN src/demo.sh's model flags (the registry's defaults)
HSPAN_MODEL_FLAGS = [
    "--model",
    "HSPAN",
    "--rgb_range",
    "1",
    "--n_resgroups",
    "10",
    "--n_resblocks",
    "4",
    "--n_feats",
    "192",
    "--reduction",
    "2",
    "--topk",
    "128",
    "--res_scale",
    "0.1",
]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def training_folder(root: Path, data_root: Path, name: str, scale: int) -> list[tuple]:
    """Write the training set's pairs (HR cropped to ×scale of the LR) as PNGs under ``root`` — as
    ``HR/``, ``LR/`` and EDSR-PyTorch's DIV2K layout — and return them: every side reads these pixels."""
    pairs = benchmark_pairs(name, scale, root=data_root)
    div2k = root / "DIV2K"
    for i, p in enumerate(pairs, 1):
        write_image(root / "HR" / f"{p.name}.png", p.hr)
        write_image(root / "LR" / f"{p.name}.png", p.lr)
        write_image(div2k / "DIV2K_train_HR" / f"{i:04d}.png", p.hr)
        write_image(div2k / "DIV2K_train_LR_bicubic" / f"X{scale}" / f"{i:04d}x{scale}.png", p.lr)
    return [(p.hr, p.lr) for p in pairs]


def bicubic_psnr(pairs, scale: int) -> float:
    return statistics.fmean(psnr_y(imresize_matlab(p.lr, scale), p.hr, scale) for p in pairs)


def score(model, recipe, pairs) -> float:
    test_time = TestTime(recipe.eval.inference)
    return evaluate(model, pairs, recipe.scale, test_time=test_time, conventions=("psnr_y",)).mean["psnr_y"]


def build(recipe):
    return architectures.build(recipe.model, recipe.scale, recipe.variant, form=recipe.form)


def ours(recipe, family: Family, train_pairs, seed: int, out: Path):
    """Train ReproSR's side (one thread) and return (initial model, trained model)."""
    plan = make_plan(recipe, "full", len(train_pairs), max_iters=family.iters, seed=seed)
    per_epoch = len(train_pairs) * plan.sampling.enlarge // family.batch
    sampling = dataclasses.replace(plan.sampling, global_batch=family.batch, hr_patch=family.hr_patch,
                                   iters_per_epoch=per_epoch)  # fmt: skip
    plan = dataclasses.replace(plan, sampling=sampling, checkpoint_every=family.iters, val_every=10**9,
                               validate_raw=False)  # fmt: skip
    torch.manual_seed(seed)
    model = build(recipe)
    initial = build(recipe)
    initial.load_state_dict(model.state_dict())
    fit(model, PatchStream(train_pairs, sampling), [], plan, out, recipe_name=recipe.name,
        recipe_hash=recipe.hash, device=torch.device("cpu"), resume=False, workers=0)  # fmt: skip
    return initial, model


def official_network(python: str, recipe, checkout: Path) -> dict:
    """BasicSR's ``network_g``: SPAN-light's from the checkout's own training option file (read by the
    official interpreter, which has PyYAML), SPAN-ESR's from the recipe (hongyuanyu/SPAN ships none)."""
    if recipe.model == "span_esr":
        width = int(recipe.variant.removeprefix("ch"))
        return {"type": "SPAN", "num_in_ch": 3, "num_out_ch": 3, "feature_channels": width,
                "upscale": recipe.scale}  # fmt: skip
    option = checkout / "options" / "SPAN" / f"train_SPAN_SRx{recipe.scale}_scratch.yml"
    read = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))['network_g']))"
    return json.loads(subprocess.run([python, "-c", read, str(option)], capture_output=True, text=True,
                                     check=True).stdout)  # fmt: skip


def basicsr_options(recipe, family: Family, network: dict, data: Path, seed: int, name: str) -> str:
    """A BasicSR option file (YAML is a superset of JSON) for the reduced recipe."""
    r = recipe
    opt = {
        "name": name, "model_type": "SRModel", "scale": r.scale, "num_gpu": 0, "manual_seed": seed,
        "datasets": {"train": {
            "name": "train", "type": "PairedImageDataset", "dataroot_gt": str(data / "HR"),
            "dataroot_lq": str(data / "LR"), "filename_tmpl": "{}", "io_backend": {"type": "disk"},
            "gt_size": family.hr_patch, "use_hflip": r.dataset.hflip, "use_rot": r.dataset.rot,
            "num_worker_per_gpu": 0, "batch_size_per_gpu": family.batch,
            "dataset_enlarge_ratio": r.dataset.enlarge, "prefetch_mode": None}},
        "network_g": network,
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {"ema_decay": r.train.ema_decay,
                  "optim_g": {"type": "Adam", "lr": r.optim.lr, "weight_decay": r.optim.weight_decay,
                              "betas": list(r.optim.betas)},
                  "scheduler": {"type": "MultiStepLR", "milestones": list(r.schedule.milestones),
                                "gamma": r.schedule.gamma},
                  "total_iter": family.iters, "warmup_iter": -1,
                  "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": r.loss.reduction}},
        "logger": {"print_freq": max(1, family.iters // 4), "save_checkpoint_freq": family.iters,
                   "use_tb_logger": False, "wandb": {"project": None, "resume_id": None}},
        "dist_params": {"backend": "gloo", "port": 29500},
    }  # fmt: skip
    return json.dumps(opt, indent=1)


def official_command(
    python: str, name: str, recipe, family: Family, checkout: Path, data: Path, seed: int, out: Path
):
    """(argv, working folder, weights path) of the official side's run for one seed."""
    if name in ("span_light", "span_esr"):
        run = f"learning_check_{name}_seed{seed}_{os.getpid()}"
        opt = out / f"{run}.yml"
        network = official_network(python, recipe, checkout)
        opt.write_text(basicsr_options(recipe, family, network, data, seed, run))
        weights = checkout / "experiments" / run / "models" / f"net_g_{family.iters}.pth"
        return ["basicsr/train.py", "-opt", str(opt)], checkout, weights
    if name == "hspan":
        weights = out / f"official-seed{seed}.pt"
        r = recipe
        flags = [*HSPAN_MODEL_FLAGS, "--scale", str(r.scale), "--patch_size", str(family.hr_patch),
                 "--lr", str(r.optim.lr), "--decay", "-".join(map(str, r.schedule.milestones)),
                 "--gamma", str(r.schedule.gamma), "--gclip", str(r.train.grad_clip)]  # fmt: skip
        argv = [str(DRIVERS / "edsr_hspan.py"), "--official", str(checkout), "--data", str(data),
                "--out", str(weights), "--seed", str(seed), "--iters", str(family.iters),
                "--batch", str(family.batch), "--", *flags]  # fmt: skip
        return argv, out, weights
    weights = out / f"official-seed{seed}" / "model"
    argv = [str(DRIVERS / "tf1_drsan.py"), "--official", str(checkout), "--variant", recipe.variant,
            "--scale", str(recipe.scale), "--data", str(data), "--iters", str(family.iters),
            "--batch", str(family.batch), "--patch", str(family.hr_patch // recipe.scale),
            "--seed", str(seed), "--out", str(weights)]  # fmt: skip
    return argv, out, weights


def start_official(args, name: str, recipe, family: Family, checkout: Path, data: Path, seed: int, out: Path):
    argv, cwd, weights = official_command(args.python, name, recipe, family, checkout, data, seed, out)
    path = os.pathsep.join(p for p in (str(checkout), args.official_pythonpath) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_USE_LEGACY_KERAS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}  # fmt: skip
    log = out / f"official-seed{seed}.log"
    handle = open(log, "w")  # noqa: SIM115 (closed in finish_official)
    process = subprocess.Popen([args.python, *argv], cwd=cwd, env=env, stdout=handle,
                               stderr=subprocess.STDOUT)  # fmt: skip
    return process, handle, log, weights


def finish_official(started, recipe):
    process, handle, log, weights = started
    code = process.wait()
    handle.close()
    if code != 0:
        tail = log.read_text()[-1500:]
        raise RuntimeError(f"the official trainer failed (exit {code}; log: {log}):\n{tail}")
    model = build(recipe)
    # BasicSR saves the EMA beside the raw weights: the raw ones ("params") are compared
    key = "params" if recipe.model.startswith("span") else None
    model.load_state_dict(read_weights(weights, key).state_dict)
    return model


def spread(values: list[float]) -> float:
    return max(values) - min(values) if len(values) > 1 else float("nan")


def verdict(initial: list[float], mine: list[float], theirs: list[float], reason: str) -> tuple[bool, str]:
    """(failed, text) for one family from per-seed PSNR-Y: initial networks, ours, official."""
    gains = [m - i for m, i in zip(mine, initial, strict=True)]
    learns = min(gains) >= LEARN_DB
    text = "learns" if learns else f"FAIL: does not learn (gain {min(gains):+.2f} dB < {LEARN_DB} dB)"
    failed = not learns
    if len(theirs) > 1 and len(mine) > 1:
        width = max(spread(mine), spread(theirs))
        gap = statistics.fmean(mine) - statistics.fmean(theirs)
        if gap > width:  # not a failure, but beyond seed noise: worth a look (data pipelines differ)
            text += f"; keeps up (mean {gap:+.2f} dB vs official: ahead by more than the spread {width:.2f})"
        elif gap >= -width:
            text += f"; keeps up (mean {gap:+.2f} dB vs official, spread {width:.2f})"
        else:
            failed = True
            text = f"FAIL: trails the official mean by {-gap:.2f} dB > spread {width:.2f}; " + text
    else:
        text += f"; official: {reason or 'one seed gives no spread: pass --seeds 0,1'}"
    return failed, text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--iters", type=int, default=None, help="override every family's iteration count")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--train-set", default="Set14")
    p.add_argument("--eval-set", default="Set5")
    p.add_argument("--data-root", type=Path, default=os.environ.get("REPROSR_TEST_DATASETS"))
    p.add_argument("--out", type=Path, default=Path("runs/learning-check"))
    p.add_argument("--python", default=sys.executable, help="interpreter for the official trainers")
    for name in FAMILIES:
        p.add_argument(f"--{name.replace('_', '-')}-official", type=Path, default=None,
                       help=f"checkout of {FAMILIES[name].official.split()[0]}")  # fmt: skip
    p.add_argument("--official-pythonpath", default="", help="extra PYTHONPATH of the official runs")
    args = p.parse_args()
    if args.data_root is None:
        p.error("--data-root (or $REPROSR_TEST_DATASETS) must hold the training and evaluation sets")
    torch.set_num_threads(1)  # the official side runs beside it on the other core
    seeds = [int(s) for s in args.seeds.split(",")]
    started_all, failed, summary = time.perf_counter(), False, {}
    print(f"learning check: seeds {seeds}; training data {args.train_set} HR/LR (a stand-in for DIV2K), "
          f"evaluated on {args.eval_set} (PSNR-Y, raw weights); CPU, one thread per side; "
          f"load average {load_average()}")  # fmt: skip
    print("\n| family | recipe (iterations × batch, HR patch) | initial | bicubic | ReproSR per seed | "
          "official per seed | verdict |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for name in args.families.split(","):
        family = FAMILIES[name]
        if args.iters:
            family = dataclasses.replace(family, iters=args.iters)
        recipe = load(family.recipe)
        out = (args.out / name).resolve()
        out.mkdir(parents=True, exist_ok=True)
        train_pairs = training_folder(out / "data", args.data_root, args.train_set, recipe.scale)
        eval_pairs = benchmark_pairs(args.eval_set, recipe.scale, root=args.data_root)
        bicubic = bicubic_psnr(eval_pairs, recipe.scale)
        checkout = getattr(args, f"{name}_official")
        reason = "" if checkout else f"not run: no checkout given (--{name.replace('_', '-')}-official)"
        initial, mine, theirs = [], [], []
        start = time.perf_counter()
        for seed in seeds:
            started = None
            if checkout:
                started = start_official(args, name, recipe, family, checkout, out / "data", seed, out)
            first, trained = ours(recipe, family, train_pairs, seed, out / f"ours-seed{seed}")
            # scored two at a time (torch runs each call on its own thread): the machine stays full
            with ThreadPoolExecutor(2) as pool:
                scores = [pool.submit(score, model, recipe, eval_pairs) for model in (first, trained)]
                if started:
                    scores.append(pool.submit(score, finish_official(started, recipe), recipe, eval_pairs))
                values = [job.result() for job in scores]
            initial.append(values[0])
            mine.append(values[1])
            theirs.extend(values[2:])
            print(f"<!-- {name} seed {seed}: initial {initial[-1]:.2f}, ReproSR {mine[-1]:.2f}"
                  f"{f', official {theirs[-1]:.2f}' if theirs else ''} dB -->", flush=True)  # fmt: skip
        bad, text = verdict(initial, mine, theirs, reason)
        beats = "beats bicubic" if statistics.fmean(mine) > bicubic else "below bicubic"
        failed |= bad
        fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs) or "—"  # noqa: E731
        print(f"| {name} | {recipe.name} ({family.iters} × {family.batch}, {family.hr_patch}) | "
              f"{fmt(initial)} | {bicubic:.2f} | {fmt(mine)} | {fmt(theirs)} | {text}; {beats} |",
              flush=True)  # fmt: skip
        took = time.perf_counter() - start
        print(f"<!-- {name}: {took:.0f} s, load average {load_average()} -->", flush=True)
        summary[name] = {"recipe": recipe.name, **dataclasses.asdict(family), "bicubic": bicubic,
                         "initial": initial, "reprosr": mine, "official": theirs, "verdict": text,
                         "seconds": took}  # fmt: skip
    total = time.perf_counter() - started_all
    print(f"\ntotal {total / 60:.1f} min; load average {load_average()}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
