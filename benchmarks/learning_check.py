"""Learning check: one recipe per family trained briefly on real images, judged on Set5 against bicubic and
against the official trainer run side by side on the same images, same batch, patch and iterations.

Each family's recipe keeps its model, optimiser, learning rate, EMA decay and loss; the batch, the HR patch
and the iteration count are reduced so that the whole check fits a 2-core CPU. Training data: the HR/LR
pairs of a benchmark set (``--train-set``, default Set14, MATLAB-bicubic LR from disk) — a disclosed
stand-in for DIV2K; evaluation: PSNR-Y of the raw weights (at a few hundred iterations the EMA is still
mostly the initial network) on ``--eval-set`` (default Set5), both sides scored by ``harness.metrics``.

Official side: the official training code runs in a subprocess from a checkout outside this repository
(``--python`` names an interpreter that can import it; BasicSR's ``basicsr/train.py`` with a generated
option file, the repository's own architecture): SPAN-light with zononhzy/SPAN (``--span-light-official``),
SPAN-ESR with BasicSR plus hongyuanyu/SPAN's ``span_arch.py`` copied into its ``basicsr/archs``
(``--span-esr-official``). HSPAN (EDSR-PyTorch) and DRSAN (TensorFlow 1) have no official side here: they
are reported "not run" with the reason.

Verdict per family: it learns when the mean PSNR-Y over seeds beats bicubic; it keeps up when its mean is
not below the official mean by more than the seed-to-seed spread (the largest max − min over seeds of
either side). A family that does not learn or trails fails; the exit status is 1 if any family fails.

Run: python benchmarks/learning_check.py [--families span_light,span_esr,hspan,drsan] [--iters N]
     [--seeds 0,1] [--batch B] [--hr-patch P] [--data-root DIR] [--out DIR] [--python PY]
     [--span-light-official DIR] [--span-esr-official DIR] [--official-pythonpath P] [--threads T]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import architectures  # noqa: E402
from harness.data import benchmark_pairs, write_image  # noqa: E402
from harness.degrade import imresize_matlab  # noqa: E402
from harness.evaluate import TestTime, evaluate  # noqa: E402
from harness.metrics import psnr_y  # noqa: E402
from harness.recipes import load  # noqa: E402
from harness.training.loop import fit  # noqa: E402
from harness.training.patches import PatchStream  # noqa: E402
from harness.training.plan import make_plan  # noqa: E402

FAMILIES = {  # family → (recipe, the official trainer, how its architecture is given to BasicSR)
    "span_light": ("span_light_x2", "zononhzy/SPAN (a BasicSR fork) basicsr/train.py", "SPAN"),
    "span_esr": ("span_esr_ch48_x2", "BasicSR basicsr/train.py + hongyuanyu/SPAN span_arch.py", "SPAN"),
    "hspan": ("hspan_x2", "", ""),
    "drsan": ("drsan_32s_x2", "", ""),
}
NOT_RUN = {
    "hspan": "not run: the EDSR-PyTorch side (laoyangui/HSPAN src/main.py) is not wired into this check "
    "(it needs a DIV2K-layout copy of the training set and its own data loader); run it by hand",
    "drsan": "not run: DRSAN's official trainer is a TensorFlow 1.8 graph (saturnian77/DRSAN) with no "
    "training script published; no TF1 runtime here",
}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def training_folder(root: Path, data_root: Path, name: str, scale: int) -> list[tuple]:
    """Write the training set's pairs (HR cropped to ×scale of the LR) as PNGs under ``root`` and return
    them: both sides read exactly these pixels."""
    pairs = benchmark_pairs(name, scale, root=data_root)
    for p in pairs:
        write_image(root / "HR" / f"{p.name}.png", p.hr)
        write_image(root / "LR" / f"{p.name}.png", p.lr)
    return [(p.hr, p.lr) for p in pairs]


def bicubic_psnr(pairs, scale: int) -> float:
    return statistics.fmean(psnr_y(imresize_matlab(p.lr, scale), p.hr, scale) for p in pairs)


def score(model, recipe, pairs) -> float:
    test_time = TestTime(recipe.eval.inference)
    return evaluate(model, pairs, recipe.scale, test_time=test_time, conventions=("psnr_y",)).mean["psnr_y"]


def ours(recipe, train_pairs, eval_pairs, args, seed: int, out: Path) -> float:
    """PSNR-Y of ReproSR's raw weights after ``args.iters`` iterations of the reduced recipe."""
    plan = make_plan(recipe, "full", len(train_pairs), max_iters=args.iters, seed=seed)
    per_epoch = len(train_pairs) * plan.sampling.enlarge // args.batch
    sampling = dataclasses.replace(plan.sampling, global_batch=args.batch, hr_patch=args.hr_patch,
                                   iters_per_epoch=per_epoch)  # fmt: skip
    plan = dataclasses.replace(plan, sampling=sampling, checkpoint_every=args.iters, val_every=10**9,
                               validate_raw=False)  # fmt: skip
    torch.manual_seed(seed)
    model = architectures.build(recipe.model, recipe.scale, recipe.variant)
    fit(model, PatchStream(train_pairs, sampling), [], plan, out, recipe_name=recipe.name,
        recipe_hash=recipe.hash, device=torch.device("cpu"), resume=False, workers=0)  # fmt: skip
    state = torch.load(out / "last.pt", weights_only=True)
    model.load_state_dict(state["model"])
    return score(model, recipe, eval_pairs)


def official_options(recipe, arch: str, data: Path, args, seed: int, name: str) -> str:
    """A BasicSR option file (YAML is a superset of JSON) for the reduced recipe."""
    import json

    r = recipe
    network = {"type": arch, "num_in_ch": 3, "num_out_ch": 3, "upscale": r.scale}
    if r.model == "span_esr":
        network["feature_channels"] = int(r.variant.removeprefix("ch"))
    opt = {
        "name": name, "model_type": "SRModel", "scale": r.scale, "num_gpu": 0, "manual_seed": seed,
        "datasets": {"train": {
            "name": "train", "type": "PairedImageDataset", "dataroot_gt": str(data / "HR"),
            "dataroot_lq": str(data / "LR"), "filename_tmpl": "{}", "io_backend": {"type": "disk"},
            "gt_size": args.hr_patch, "use_hflip": r.dataset.hflip, "use_rot": r.dataset.rot,
            "num_worker_per_gpu": 0, "batch_size_per_gpu": args.batch,
            "dataset_enlarge_ratio": r.dataset.enlarge, "prefetch_mode": None}},
        "network_g": network,
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {"ema_decay": r.train.ema_decay,
                  "optim_g": {"type": "Adam", "lr": r.optim.lr, "weight_decay": r.optim.weight_decay,
                              "betas": list(r.optim.betas)},
                  "scheduler": {"type": "MultiStepLR", "milestones": list(r.schedule.milestones),
                                "gamma": r.schedule.gamma},
                  "total_iter": args.iters, "warmup_iter": -1,
                  "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": r.loss.reduction}},
        "logger": {"print_freq": max(1, args.iters // 4), "save_checkpoint_freq": args.iters,
                   "use_tb_logger": False, "wandb": {"project": None, "resume_id": None}},
        "dist_params": {"backend": "gloo", "port": 29500},
    }  # fmt: skip
    return json.dumps(opt, indent=1)


def official(
    recipe, family: str, checkout: Path, data: Path, eval_pairs, args, seed: int, out: Path
) -> float:
    """PSNR-Y of the official trainer's raw weights (BasicSR's ``params``) after ``args.iters`` iterations."""
    name = f"learning_check_{family}_seed{seed}_{os.getpid()}"
    opt = out / f"{name}.yml"
    opt.parent.mkdir(parents=True, exist_ok=True)
    opt.write_text(official_options(recipe, FAMILIES[family][2], data, args, seed, name))
    path = os.pathsep.join(p for p in (str(checkout), args.official_pythonpath) if p)  # basicsr importable
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": path}
    run = subprocess.run([args.python, "basicsr/train.py", "-opt", str(opt)], cwd=checkout, env=env,
                         capture_output=True, text=True)  # fmt: skip
    (out / f"{name}.log").write_text(run.stdout + run.stderr)
    if run.returncode != 0:
        raise RuntimeError(f"the official trainer failed (log: {out / f'{name}.log'}): {run.stderr[-800:]}")
    weights = checkout / "experiments" / name / "models" / f"net_g_{args.iters}.pth"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = architectures.build(recipe.model, recipe.scale, recipe.variant)
    model.load_state_dict(state["params"])
    return score(model, recipe, eval_pairs)


def spread(values: list[float]) -> float:
    return max(values) - min(values) if len(values) > 1 else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--hr-patch", type=int, default=64)
    p.add_argument("--train-set", default="Set14")
    p.add_argument("--eval-set", default="Set5")
    p.add_argument("--data-root", type=Path, default=os.environ.get("REPROSR_TEST_DATASETS"))
    p.add_argument("--out", type=Path, default=Path("runs/learning-check"))
    p.add_argument("--python", default=sys.executable, help="interpreter for the official trainers")
    p.add_argument("--span-light-official", type=Path, default=None, help="zononhzy/SPAN checkout")
    p.add_argument("--span-esr-official", type=Path, default=None, help="BasicSR checkout + SPAN-ESR arch")
    p.add_argument("--official-pythonpath", default="", help="PYTHONPATH of the official trainers' runs")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.data_root is None:
        p.error("--data-root (or $REPROSR_TEST_DATASETS) must hold the training and evaluation sets")
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    checkouts = {"span_light": args.span_light_official, "span_esr": args.span_esr_official}
    failed = False
    print(f"learning check: {args.iters} iterations, batch {args.batch}, HR patch {args.hr_patch}, seeds "
          f"{seeds}; training data {args.train_set} HR/LR (a stand-in for DIV2K), evaluated on "
          f"{args.eval_set} (PSNR-Y, raw weights); CPU, {args.threads} threads; "
          f"load average {load_average()}")  # fmt: skip
    print("\n| family | recipe | bicubic | ReproSR per seed | official per seed | spread | verdict |")
    print("|---|---|---|---|---|---|---|")
    for family in args.families.split(","):
        recipe = load(FAMILIES[family][0])
        out = args.out / family
        train_pairs = training_folder(out / "data", args.data_root, args.train_set, recipe.scale)
        eval_pairs = benchmark_pairs(args.eval_set, recipe.scale, root=args.data_root)
        bicubic = bicubic_psnr(eval_pairs, recipe.scale)
        print(f"<!-- {family}: bicubic {bicubic:.2f} dB on {args.eval_set} -->", flush=True)
        checkout = checkouts.get(family)
        reason = NOT_RUN.get(family, "")
        if not reason and checkout is None:
            flag = f"--{family.replace('_', '-')}-official"
            reason = f"not run: no checkout of {FAMILIES[family][1]} given ({flag})"
        mine, theirs = [], []
        start = time.perf_counter()
        for seed in seeds:  # interleaved: the machine's load hits both sides alike
            mine.append(ours(recipe, train_pairs, eval_pairs, args, seed, out / f"ours-seed{seed}"))
            print(f"<!-- {family} seed {seed}: ReproSR {mine[-1]:.2f} dB -->", flush=True)
            if not reason:
                theirs.append(official(recipe, family, checkout, out / "data", eval_pairs, args, seed, out))
                print(f"<!-- {family} seed {seed}: official {theirs[-1]:.2f} dB -->", flush=True)
        learns = statistics.fmean(mine) > bicubic
        width = max(spread(mine), spread(theirs) if theirs else float("nan"))
        if theirs and len(seeds) > 1:
            keeps_up = statistics.fmean(mine) >= statistics.fmean(theirs) - width
            verdict = "pass" if learns and keeps_up else "FAIL"
            if not keeps_up:
                verdict += f" (trails the official mean by more than the spread {width:.2f} dB)"
        else:
            verdict = "pass (learns)" if learns else "FAIL"
            verdict += f"; official: {reason or 'one seed gives no spread: pass --seeds 0,1'}"
        if not learns:
            verdict += f" (does not beat bicubic {bicubic:.2f} dB)"
        failed |= verdict.startswith("FAIL")
        fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs) or "—"  # noqa: E731
        print(f"| {family} | {recipe.name} | {bicubic:.2f} | {fmt(mine)} | {fmt(theirs)} | {width:.2f} | "
              f"{verdict} |", flush=True)  # fmt: skip
        took = time.perf_counter() - start
        print(f"<!-- {family}: {took:.0f} s, load average {load_average()} -->", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
