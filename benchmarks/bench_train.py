"""Training throughput: ReproSR's loop (harness.training.loop.fit) vs BasicSR's train loop, same recipe,
same model, same images, side by side in one process (rounds interleaved, median iterations/s per side).

BasicSR side = what SPAN-light/SPAN-ESR users run today (zononhzy/SPAN is a BasicSR fork): PairedImageDataset
(PNG read per sample, paired_random_crop, augment) through build_dataloader + EnlargedSampler +
CPUPrefetcher/CUDAPrefetcher, then SRModel.optimize_parameters (L1Loss, Adam, MultiStepRestartLR, model_ema,
loss .item() per iteration). The architecture is ReproSR's port, registered in BasicSR's ARCH_REGISTRY, so
only the loops differ. BasicSR is loaded from a checkout outside this repository: ``--basicsr PATH`` or
``$REPROSR_BASICSR``; without it that side is "not run".

Run: python benchmarks/bench_train.py [--recipe span_esr_ch48_x4] [--iters 20] [--rounds 3] [--batch B]
     [--hr-patch P] [--workers W] [--basicsr PATH] [--device cpu|cuda] [--no-knobs]
Each side, in each round, is one run timed in steady state over --iters iterations after --warmup (ours: a
forward pre-hook marks iteration starts; BasicSR: its own loop). Prints the environment (device, load
average), min and median seconds per iteration per side, the per-round speed-up over BasicSR (range and
median) for ReproSR fp32 (the recipe), bf16 autocast and channels_last (recorded recipe knobs), and whether
the ≥ 1.3× claim at the fp32 recipe holds in every round.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import architectures  # noqa: E402
from harness.data import iter_benchmark_pairs, write_image  # noqa: E402
from harness.degrade import bicubic_downsample  # noqa: E402
from harness.recipes import load  # noqa: E402
from harness.training.loop import fit  # noqa: E402
from harness.training.patches import PatchStream  # noqa: E402
from harness.training.plan import make_plan  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stats  # noqa: E402  (benchmarks/stats.py)

BASICSR, FP32 = "BasicSR SRModel loop", "ReproSR fp32 (recipe)"
GOAL = 1.3  # speed-up over BasicSR claimed at the same fp32 recipe


def make_images(root: Path, scale: int, n: int, size: int) -> None:
    """``n`` random-texture HR images of ``size``² and their MATLAB-bicubic LR, DIV2K layout."""
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        base = torch.rand(3, size // 8, size // 8, generator=g)
        hr = torch.nn.functional.interpolate(base[None], size=(size, size), mode="bilinear")[0]
        hr = (hr + 0.1 * torch.rand(3, size, size, generator=g)).clamp(0, 1)
        write_image(root / "HR" / f"{i:04d}.png", hr)
        write_image(root / "LR" / f"{i:04d}.png", bicubic_downsample(hr, scale)[1])


def ours(recipe, pairs, args, device, out: Path, *, precision: str, channels_last: bool) -> float:
    """Seconds per iteration of ``fit`` in steady state: one run of warmup + iters + 1 iterations, timed
    from the start of iteration ``warmup``'s forward to the start of iteration ``warmup + iters``'s (a
    forward pre-hook on the model), so setup, warm-up and the final save are outside the timed span."""
    plan = make_plan(recipe, "full", len(pairs), precision=precision, channels_last=channels_last)
    sampling = replace(plan.sampling, global_batch=args.batch, hr_patch=args.hr_patch)
    iters = args.warmup + args.iters + 1
    plan = replace(plan, sampling=sampling, iterations=iters, scheduled=iters, checkpoint_every=iters,
                   val_every=10**9)  # fmt: skip
    torch.manual_seed(0)
    model = architectures.build(recipe.model, recipe.scale, recipe.variant)
    starts: list[float] = []
    model.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
    run_dir = Path(tempfile.mkdtemp(prefix=f"{precision}-{channels_last}-", dir=out))
    fit(model, PatchStream(pairs, sampling), [], plan, run_dir,
        recipe_name=recipe.name, recipe_hash=recipe.hash, device=device, resume=False,
        workers=args.workers)  # fmt: skip
    return (starts[args.warmup + args.iters] - starts[args.warmup]) / args.iters


def basicsr_side(recipe, data_root: Path, args, device, out: Path):
    """A callable giving BasicSR's seconds per iteration (steady state), or None when BasicSR is absent."""
    path = args.basicsr or os.environ.get("REPROSR_BASICSR")
    if not path or not Path(path, "basicsr").is_dir():
        return None, "not run: no BasicSR checkout (--basicsr PATH or $REPROSR_BASICSR)"
    sys.path.insert(0, str(path))
    try:
        from basicsr.data import build_dataloader
        from basicsr.data.data_sampler import EnlargedSampler
        from basicsr.data.paired_image_dataset import PairedImageDataset
        from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
        from basicsr.models.sr_model import SRModel
        from basicsr.utils.registry import ARCH_REGISTRY
    except ImportError as exc:
        return None, f"not run: BasicSR at {path} does not import ({exc})"

    if "ReproSRArch" not in ARCH_REGISTRY:

        @ARCH_REGISTRY.register()
        def ReproSRArch(model, scale, variant):  # noqa: N802 (BasicSR looks architectures up by class name)
            return architectures.build(model, scale, variant or None)

    r = recipe
    dataset_opt = {
        "name": "bench", "type": "PairedImageDataset", "dataroot_gt": str(data_root / "HR"),
        "dataroot_lq": str(data_root / "LR"), "io_backend": {"type": "disk"}, "filename_tmpl": "{}",
        "gt_size": args.hr_patch, "use_hflip": r.dataset.hflip, "use_rot": r.dataset.rot, "phase": "train",
        "scale": r.scale, "num_worker_per_gpu": args.workers, "batch_size_per_gpu": args.batch,
        "dataset_enlarge_ratio": r.dataset.enlarge, "use_shuffle": True, "pin_memory": device.type == "cuda",
        "prefetch_mode": "cuda" if device.type == "cuda" else None,
    }  # fmt: skip
    opt = {
        "name": "bench", "model_type": "SRModel", "scale": r.scale, "num_gpu": int(device.type == "cuda"),
        "is_train": True, "dist": False, "rank": 0, "world_size": 1,
        "network_g": {"type": "ReproSRArch", "model": r.model, "scale": r.scale, "variant": r.variant or ""},
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None,
                 "experiments_root": str(out), "models": str(out), "training_states": str(out)},
        "train": {"ema_decay": r.train.ema_decay,
                  "optim_g": {"type": "Adam", "lr": r.optim.lr, "weight_decay": r.optim.weight_decay,
                              "betas": list(r.optim.betas)},
                  "scheduler": {"type": "MultiStepLR", "milestones": list(r.schedule.milestones),
                                "gamma": r.schedule.gamma},
                  "total_iter": r.schedule.total, "warmup_iter": -1,
                  "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": r.loss.reduction}},
        "val": None, "logger": {"print_freq": 10**9},
    }  # fmt: skip

    def run() -> float:
        torch.manual_seed(0)
        dataset = PairedImageDataset(copy.deepcopy(dataset_opt))
        sampler = EnlargedSampler(dataset, 1, 0, dataset_opt["dataset_enlarge_ratio"])
        loader = build_dataloader(
            dataset, dataset_opt, num_gpu=opt["num_gpu"], dist=False, sampler=sampler, seed=0
        )
        prefetcher = CUDAPrefetcher(loader, opt) if device.type == "cuda" else CPUPrefetcher(loader)
        model = SRModel(copy.deepcopy(opt))  # BasicSR pops keys from the options it is given
        prefetcher.reset()
        start, it = None, 0
        while it < args.warmup + args.iters:
            batch = prefetcher.next()
            if batch is None:
                prefetcher.reset()
                batch = prefetcher.next()
            if it == args.warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            it += 1
            model.update_learning_rate(it, warmup_iter=-1)
            model.feed_data(batch)
            model.optimize_parameters(it)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / args.iters

    return run, f"BasicSR {path}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="span_esr_ch48_x4")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=None, help="default: the recipe's batch per GPU")
    p.add_argument("--hr-patch", type=int, default=None, help="default: the recipe's HR patch")
    p.add_argument("--workers", type=int, default=1, help="loader processes, both sides")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--image-size", type=int, default=480)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--basicsr", default=None)
    p.add_argument(
        "--no-knobs", action="store_true", help="only BasicSR and the fp32 recipe (no bf16, no channels_last)"
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    recipe, device = load(args.recipe), torch.device(args.device)
    args.batch = args.batch or recipe.dataset.batch_per_gpu
    args.hr_patch = args.hr_patch or recipe.dataset.hr_patch
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_images(tmp / "data", recipe.scale, args.images, args.image_size)
        (tmp / "layout" / "bench").mkdir(parents=True)
        os.symlink(tmp / "data" / "HR", tmp / "layout" / "bench" / "HR")
        (tmp / "layout" / "bench" / "LR_bicubic").mkdir()
        os.symlink(tmp / "data" / "LR", tmp / "layout" / "bench" / "LR_bicubic" / f"X{recipe.scale}")
        pairs = [(q.hr, q.lr) for q in iter_benchmark_pairs("bench", recipe.scale, tmp / "layout")]
        bsr, label = basicsr_side(recipe, tmp / "data", args, device, tmp / "basicsr")
        start_env = stats.environment()
        sides = {
            FP32: lambda: ours(recipe, pairs, args, device, tmp, precision="fp32",
                                                  channels_last=False),
            "ReproSR bf16 autocast": lambda: ours(recipe, pairs, args, device, tmp, precision="bf16",
                                                  channels_last=False),
            "ReproSR channels_last": lambda: ours(recipe, pairs, args, device, tmp, precision="fp32",
                                                  channels_last=True),
        }  # fmt: skip
        if bsr is not None:
            sides = {BASICSR: bsr, **sides}
        if args.no_knobs:
            sides = {k: f for k, f in sides.items() if k in (BASICSR, FP32)}
        # interleaved rounds (load hits every side alike); each call returns its own steady-state seconds per
        # iteration, which stats.summary/ratios read like stats.rounds' times
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.rounds):
            for name, fn in sides.items():
                times[name].append(fn())
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"{recipe.name}: batch {args.batch}, HR patch {args.hr_patch}, {args.workers} loader worker(s), "
          f"{args.images} images {args.image_size}², {where}; {args.iters} timed iterations after "
          f"{args.warmup} per side and round, {args.rounds} interleaved rounds")  # fmt: skip
    print(f"environment: {stats.environment()} (start: {start_env})")
    if bsr is None:
        print(f"BasicSR: {label}")
        print(stats.summary(times, FP32))
        print(f"≥ {GOAL}× BasicSR at the fp32 recipe: not run (no BasicSR)")
        return
    print(stats.summary(times, BASICSR))
    print("\n| loop | it/s (median) | it/s (best round) | speed-up over BasicSR per round (median, range) |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        r = stats.ratios(times, BASICSR, name)
        ratio = f"{statistics.median(r):.2f}× ({min(r):.2f}–{max(r):.2f}×)" if name != BASICSR else "1.00×"
        print(f"| {name} | {1 / statistics.median(ts):.3f} | {1 / min(ts):.3f} | {ratio} |")
    r = stats.ratios(times, BASICSR, FP32)
    held = (
        "holds"
        if min(r) >= GOAL
        else ("holds in the median only" if statistics.median(r) >= GOAL else "does not hold")
    )
    print(f"\n≥ {GOAL}× BasicSR at the same fp32 recipe: {held} (per round {min(r):.2f}–{max(r):.2f}×, "
          f"median {statistics.median(r):.2f}×)")  # fmt: skip


if __name__ == "__main__":
    main()
