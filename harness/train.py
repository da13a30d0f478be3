"""The training engine: one loop for every recipe (L1, Adam, MultiStepLR, optional EMA, optional DDP).

Determinism: the data order is a pure function of (seed, iteration). Iteration ``t`` of an epoch of
``n_images · enlarge`` samples (``iters_per_epoch = n_images · enlarge // global_batch``, the incomplete
last batch dropped as BasicSR does) takes the slots ``[j·B, (j+1)·B)`` of that epoch's permutation;
each sample's crop and flips come from a generator seeded by (seed, epoch, slot). Under DDP rank ``r``
of ``W`` takes the ``r``-th contiguous ``B/W`` of those samples, so W processes reproduce one process with
the same global batch (gradients are averaged, the L1 mean is over equal-sized shards).

Files in ``out_dir``: ``last.pt`` (full training state, atomic, loadable with ``weights_only=True``),
``best.pt`` (weights of the best validated model when the recipe keeps the best), ``final.pt`` (weights
of the evaluated model at the end: the EMA model when the recipe uses EMA), ``curves.csv`` (iteration,
loss, lr, val_psnr_y) and ``summary.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from harness.files import remove_stale_temps
from harness.recipes import Recipe, load

log = logging.getLogger("harness.train")
PROFILES = ("full", "smoke")
CHECKPOINT_FORMAT = 1


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/Inf; no update was applied and the last good checkpoint was kept."""


class NonFiniteStateError(FloatingPointError):
    """Weights or optimiser state became NaN/Inf (a gradient overflowed with a finite loss); nothing was
    written, so ``last.pt`` still holds the last good state."""


@dataclass(frozen=True)
class Plan:
    """Everything the loop needs, resolved from a recipe and a profile. Iteration counts are 0-based."""

    scale: int
    hr_patch: int
    global_batch: int
    iterations: int
    iters_per_epoch: int
    milestones: tuple[int, ...]
    gamma: float
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    ema_decay: float
    grad_clip: float
    precision: str
    seed: int
    enlarge: int
    hflip: bool
    rot: bool
    checkpoint_every: int
    val_every: int
    keep: str
    inference: str


@dataclass
class TrainSummary:
    """Outcome of :func:`train`; ``final_checkpoint`` holds plain weights for ``load_checkpoint``."""

    recipe: str
    recipe_hash: str
    profile: str
    out_dir: Path
    iterations: int
    final_loss: float
    best_psnr_y: float
    best_iteration: int
    final_checkpoint: Path
    best_checkpoint: Path | None
    curves: Path
    world_size: int
    device: str
    dataset_checksum: str
    plan: Plan

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def make_plan(
    recipe: Recipe, profile: str, n_images: int, max_iters: int | None = None, precision: str | None = None
) -> Plan:
    """Resolve ``recipe`` for ``profile`` ("full" or "smoke") on a training set of ``n_images`` images.

    Smoke keeps the recipe's optimiser, schedule and augmentation but uses ``[smoke]``'s patch, batch and
    iteration count, and checkpoints/validates once at the end. ``max_iters`` caps the iterations.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
    smoke = profile == "smoke"
    batch = recipe["smoke.batch"] if smoke else recipe.global_batch
    iters_per_epoch = n_images * recipe["data.enlarge"] // batch
    if iters_per_epoch < 1:
        raise ValueError(
            f"{recipe.name}: {n_images} images × enlarge {recipe['data.enlarge']} give less than "
            f"one batch of {batch}; add training images"
        )
    per_unit = iters_per_epoch if recipe["schedule.unit"] == "epoch" else 1
    iterations = recipe["smoke.iters"] if smoke else recipe["schedule.total"] * per_unit
    if max_iters is not None:
        iterations = min(iterations, max_iters)
    precision = precision or recipe["train.precision"]
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
    return Plan(
        scale=recipe.scale,
        hr_patch=recipe["smoke.hr_patch"] if smoke else recipe["data.hr_patch"],
        global_batch=batch,
        iterations=iterations,
        iters_per_epoch=iters_per_epoch,
        milestones=tuple(m * per_unit for m in recipe["schedule.milestones"]),
        gamma=recipe["schedule.gamma"],
        lr=recipe["optim.lr"],
        betas=tuple(recipe["optim.betas"]),
        eps=recipe["optim.eps"],
        weight_decay=recipe["optim.weight_decay"],
        ema_decay=recipe["train.ema_decay"],
        grad_clip=recipe["train.grad_clip"],
        precision=precision,
        seed=recipe["train.seed"],
        enlarge=recipe["data.enlarge"],
        hflip=recipe["data.hflip"],
        rot=recipe["data.rot"],
        checkpoint_every=iterations if smoke else recipe["train.checkpoint_every"],
        val_every=iterations if smoke else recipe["train.val_every"],
        keep=recipe["train.keep"],
        inference=recipe["eval.inference"],
    )


class PatchStream:
    """Aligned random patches: LR patch p×p at (y, x), HR patch s·p×s·p at (s·y, s·x), same flips/rot90.

    ``pairs`` are (hr, lr) uint8 tensors, or float ones in [0, 1] kept as uint8 (they come from 8-bit PNGs).
    """

    def __init__(self, pairs: Sequence[tuple[Tensor, Tensor]], plan: Plan):
        self.hr = [_to_uint8(hr) for hr, _ in pairs]
        self.lr = [_to_uint8(lr) for _, lr in pairs]
        self.plan = plan
        self.lr_patch = plan.hr_patch // plan.scale
        for i, (hr, lr) in enumerate(zip(self.hr, self.lr, strict=True)):
            if tuple(hr.shape[-2:]) != (lr.shape[-2] * plan.scale, lr.shape[-1] * plan.scale):
                raise ValueError(
                    f"training pair {i}: HR {tuple(hr.shape)} is not ×{plan.scale} of LR {tuple(lr.shape)}"
                )
            if min(lr.shape[-2:]) < self.lr_patch:
                raise ValueError(
                    f"training pair {i}: LR {tuple(lr.shape)} is smaller than the {self.lr_patch}-pixel patch"
                )
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            n = len(self.hr) * self.plan.enlarge
            self._epoch, self._perm = epoch, np.random.default_rng([self.plan.seed, epoch]).permutation(n)
        return self._perm

    def sample(self, epoch: int, slot: int) -> tuple[Tensor, Tensor]:
        image = int(self._permutation(epoch)[slot]) % len(self.hr)
        rng = np.random.default_rng([self.plan.seed, epoch, slot])
        lr, hr, p, s = self.lr[image], self.hr[image], self.lr_patch, self.plan.scale
        y = int(rng.integers(0, lr.shape[-2] - p + 1))
        x = int(rng.integers(0, lr.shape[-1] - p + 1))
        lr = lr[:, y : y + p, x : x + p]
        hr = hr[:, s * y : s * (y + p), s * x : s * (x + p)]
        hflip, vflip, rot90 = (rng.random(3) < 0.5) & np.array(
            [self.plan.hflip, self.plan.rot, self.plan.rot]
        )
        if hflip:
            lr, hr = lr.flip(-1), hr.flip(-1)
        if vflip:
            lr, hr = lr.flip(-2), hr.flip(-2)
        if rot90:
            lr, hr = lr.transpose(-1, -2), hr.transpose(-1, -2)
        return lr, hr

    def batch(self, iteration: int, rank: int = 0, world: int = 1) -> tuple[Tensor, Tensor]:
        """This rank's share of the global batch of ``iteration``: LR (b, 3, p, p), HR (b, 3, s·p, s·p)."""
        b = self.plan.global_batch // world
        epoch, j = divmod(iteration, self.plan.iters_per_epoch)
        slots = range(j * self.plan.global_batch + rank * b, j * self.plan.global_batch + (rank + 1) * b)
        lrs, hrs = zip(*(self.sample(epoch, k) for k in slots), strict=True)
        return torch.stack(lrs).float() / 255, torch.stack(hrs).float() / 255


def _to_uint8(img: Tensor) -> Tensor:
    if img.dtype == torch.uint8:
        return img.contiguous()
    return (img.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).contiguous()


# --------------------------------------------------------------------------------------------- state


def _rng_state() -> dict:
    """RNG states as tensors and plain types so that ``torch.load(weights_only=True)`` accepts them."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, mt, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": py_gauss},
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace`` (never a torn file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class EMA:
    """BasicSR-style EMA (``ema = decay·ema + (1 − decay)·param``, started as a copy of the model).

    Floating-point buffers are averaged like parameters and other buffers copied; the SR models here hold
    only constant buffers, for which this equals BasicSR (which averages parameters only).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                self.state[k].copy_(v)


# --------------------------------------------------------------------------------------------- loop


def _distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group (NCCL on CUDA, gloo on CPU) when launched so."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _mean_across(value: float, device: torch.device, world: int) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / world


def _read_curves(path: Path, upto: int) -> list[dict]:
    """The rows of ``path`` up to iteration ``upto``; a line cut off by a kill is dropped."""
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            try:
                iteration, _ = int(r["iteration"]), float(r["loss"])
            except (TypeError, ValueError):
                continue
            if iteration <= upto:
                rows.append(r)
    return rows


CURVE_FIELDS = ("iteration", "loss", "lr", "val_psnr_y")


def _open_curves(path: Path, upto: int):
    """``path`` rewritten atomically with its rows up to ``upto`` (temp file, fsync, ``os.replace``), then
    opened for appending: a kill at any moment leaves every earlier row in the file. Temp files of
    killed runs in the folder are removed first."""
    remove_stale_temps(path.parent)
    rows = _read_curves(path, upto)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, CURVE_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return open(path, "a", newline="")


def _non_finite(obj: object, where: str = "") -> str | None:
    """The key path of the first floating-point tensor in ``obj`` (nested dicts/lists) holding NaN/Inf."""
    if isinstance(obj, Tensor):
        return where if obj.is_floating_point() and not torch.isfinite(obj).all() else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def _save_finite(obj: object, path: Path, last: Path, context: str) -> None:
    """:func:`atomic_save`, refusing a state with NaN/Inf: a bad step never replaces a good file."""
    _require_finite(obj, path, last, context)
    atomic_save(obj, path)


def _require_finite(obj: object, path: Path, last: Path, context: str) -> None:
    """Raise NonFiniteStateError if ``obj``, about to be saved as ``path``, holds NaN/Inf."""
    where = _non_finite(obj)
    if where is not None:
        kept = f"{last} still holds the last good state" if last.exists() else "no state was saved yet"
        raise NonFiniteStateError(
            f"{context}: {where} became NaN/Inf (a gradient overflowed although the loss was finite), so "
            f"{path.name} was not written; {kept}. Lower optim.lr, set train.grad_clip or check the data, "
            "then run again (it resumes from the last good state)"
        )


def _load_state(path: Path, device: torch.device) -> dict:
    """The training state in ``path``; a damaged or non-finite one raises ValueError saying what to do."""
    remedy = f"delete {path} to train from the start (the other files of {path.parent} are kept)"
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a damaged pickle fails in many ways (IndexError, KeyError, EOFError, …)
        lines = [line for line in str(exc).splitlines() if line.strip() and "eights" not in line]
        detail = lines[0] if lines else type(exc).__name__
        raise ValueError(f"{path} is damaged and cannot be resumed from ({detail[:200]}): {remedy}") from exc
    if not isinstance(state, dict) or not {"recipe_hash", "plan", "model", "iteration"} <= state.keys():
        raise ValueError(f"{path} is not a training state written by reprosr: {remedy}")
    where = _non_finite([state["model"], state.get("ema", {}), state.get("optimizer", {})])
    if where is not None:
        raise ValueError(f"{path} holds NaN/Inf values (in {where}) and cannot be resumed from: {remedy}")
    return state


def fit(
    model: nn.Module,
    stream: PatchStream,
    val_pairs: Sequence,
    plan: Plan,
    out_dir: Path,
    *,
    recipe_name: str,
    recipe_hash: str,
    device: torch.device,
    resume: bool = True,
) -> tuple[int, float, float, int, Path | None]:
    """Train ``model`` in place for ``plan.iterations``; returns (iterations, last loss, best val PSNR-Y,
    its iteration, best checkpoint). Raises :class:`NonFiniteLossError` on a NaN/Inf loss."""
    rank, world = _distributed(device)
    if plan.global_batch % world:
        raise ValueError(
            f"global batch {plan.global_batch} is not divisible by {world} processes; "
            "launch a number of processes that divides it"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(device).train()
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.Adam(
        model.parameters(), lr=plan.lr, betas=plan.betas, eps=plan.eps, weight_decay=plan.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(plan.milestones), plan.gamma)
    ema = EMA(model, plan.ema_decay) if plan.ema_decay > 0 else None
    last, best_path = out_dir / "last.pt", out_dir / "best.pt"
    start, best_psnr, best_iter = 0, -math.inf, -1
    if resume and last.exists():
        state = _load_state(last, device)
        if state["recipe_hash"] != recipe_hash or state["plan"] != dataclasses.asdict(plan):
            raise ValueError(
                f"{last} was written by another recipe or plan; pass resume=False or a new out_dir"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.state = state["ema"]
        _set_rng_state(state["rng"])
        start, best_psnr, best_iter = state["iteration"], state["best_psnr_y"], state["best_iteration"]
        log.info("resumed %s from %s at iteration %d", recipe_name, last, start)
    curves_path = out_dir / "curves.csv"
    writer_file = _open_curves(curves_path, start) if rank == 0 else None
    writer = csv.DictWriter(writer_file, CURVE_FIELDS) if writer_file else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=plan.precision == "bf16")
    loss_value = math.nan
    log_every = max(1, plan.iterations // 100)
    try:
        for t in range(start, plan.iterations):
            lr_img, hr_img = (x.to(device) for x in stream.batch(t, rank, world))
            lr_now = optimizer.param_groups[0]["lr"]
            with autocast:
                sr = net(lr_img)
            loss = (sr.float() - hr_img).abs().mean()
            loss_value = _mean_across(loss.item(), device, world)
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"{recipe_name}: loss became {loss_value} at iteration {t + 1}; stopped before updating. "
                    f"The last good state is {last if last.exists() else 'not written yet'}; lower optim.lr, "
                    "check the data, or resume from it"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if plan.grad_clip > 0:
                nn.utils.clip_grad_value_(model.parameters(), plan.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            done = t + 1
            row = {"iteration": done, "loss": loss_value, "lr": lr_now, "val_psnr_y": ""}
            if done % plan.val_every == 0 or done == plan.iterations:
                psnr = _validate(model, ema, val_pairs, plan, rank, world, device)
                row["val_psnr_y"] = psnr
                if psnr > best_psnr:
                    best_psnr, best_iter = psnr, done
                    if plan.keep == "best" and rank == 0:
                        _save_finite(
                            _eval_weights(model, ema), best_path, last, f"{recipe_name} at iteration {done}"
                        )
            if writer:
                writer.writerow(row)
                writer_file.flush()
            if done % plan.checkpoint_every == 0 or done == plan.iterations:
                state = _checkpoint(
                    model,
                    ema,
                    optimizer,
                    scheduler,
                    done,
                    best_psnr,
                    best_iter,
                    plan,
                    recipe_name,
                    recipe_hash,
                )
                # every rank checks (DDP ranks hold the same weights), so all stop together, before a barrier
                _require_finite(state, last, last, f"{recipe_name} at iteration {done}")
                if rank == 0:
                    atomic_save(state, last)
                if world > 1:
                    dist.barrier()
            if rank == 0 and (done % log_every == 0 or done == plan.iterations):
                log.info("%s %d/%d loss %.5f lr %.3g", recipe_name, done, plan.iterations, loss_value, lr_now)
    finally:
        if writer_file:
            writer_file.close()
    if rank == 0:
        _save_finite(_eval_weights(model, ema), out_dir / "final.pt", last, f"{recipe_name} at the end")
    return plan.iterations, loss_value, best_psnr, best_iter, best_path if plan.keep == "best" else None


def _eval_weights(model: nn.Module, ema: EMA | None) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in (ema.state if ema else model.state_dict()).items()}


def _checkpoint(
    model, ema, optimizer, scheduler, done, best_psnr, best_iter, plan, name, recipe_hash
) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "recipe": name,
        "recipe_hash": recipe_hash,
        "iteration": done,
        "data_position": done * plan.global_batch,
        "plan": dataclasses.asdict(plan),
        "model": model.state_dict(),
        "ema": ema.state if ema else {},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "best_psnr_y": best_psnr,
        "best_iteration": best_iter,
    }


def _validate(model, ema, val_pairs, plan, rank, world, device) -> float:
    """PSNR-Y (set mean) of the evaluated model on ``val_pairs``, computed on rank 0 and shared."""
    psnr = math.nan
    if rank == 0 and val_pairs:
        from harness.evaluate import evaluate

        target = model
        if ema is not None:
            target = _clone_with(model, ema.state)
        psnr = evaluate(
            target, val_pairs, plan.scale, inference=plan.inference, conventions=("psnr_y",)
        ).mean["psnr_y"]
    if world > 1:
        t = torch.tensor([psnr], dtype=torch.float64, device=device)
        dist.broadcast(t, 0)
        psnr = t.item()
    return psnr


def _clone_with(model: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    import copy

    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone


# --------------------------------------------------------------------------------------------- entry


def _training_pairs(recipe: Recipe, profile: str, data_root: Path | None) -> tuple[list, list, str]:
    """(training pairs, validation pairs, dataset checksum) for the profile."""
    from harness import data

    if profile == "smoke":
        pairs = data.embedded_pairs(recipe.scale)
        return [(p.hr, p.lr) for p in pairs], pairs, "embedded"
    first, last = recipe["data.train_images"]
    train_set = recipe["data.train"]
    # kept as uint8 while streaming: DIV2K's 800 float32 images would need ~30 GB at once
    images = islice(data.iter_benchmark_pairs(train_set, recipe.scale, root=data_root), first - 1, last)
    pairs = [(_to_uint8(p.hr), _to_uint8(p.lr)) for p in images]
    if len(pairs) != last - first + 1:
        raise ValueError(
            f"{train_set} has {first - 1 + len(pairs)} images, fewer than the range {first}–{last}; "
            f"run `reprosr data fetch {train_set}`"
        )
    try:
        val = data.benchmark_pairs(recipe["eval.val_set"], recipe.scale, root=data_root)
    except FileNotFoundError:
        log.warning("%s not found: validating on the embedded images instead", recipe["eval.val_set"])
        val = data.embedded_pairs(recipe.scale)
    return pairs, val, data.dataset_checksum(train_set, data_root)


def train(
    recipe: str | Recipe,
    *,
    out_dir: str | os.PathLike,
    profile: str = "full",
    max_iters: int | None = None,
    device: str | torch.device | None = None,
    data_root: str | os.PathLike | None = None,
    resume: bool = True,
    precision: str | None = None,
) -> TrainSummary:
    """Train a recipe's model. ``profile="smoke"``: a few iterations on the embedded images, on any device.

    ``device`` defaults to CUDA when available (the local rank's GPU under torchrun). ``precision``
    overrides the recipe's (``"fp32"`` or ``"bf16"`` autocast) and is recorded in the summary.
    ``resume`` continues from ``out_dir/last.pt`` when present (bit-exact on the same device and world size).
    """
    import architectures

    recipe = recipe if isinstance(recipe, Recipe) else load(recipe)
    if device is None:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(out_dir)
    pairs, val_pairs, checksum = _training_pairs(
        recipe, profile, None if data_root is None else Path(data_root)
    )
    plan = make_plan(recipe, profile, len(pairs), max_iters, precision)
    torch.manual_seed(plan.seed)
    random.seed(plan.seed)
    np.random.seed(plan.seed)
    model = architectures.build(recipe.model, recipe.scale, recipe.variant, form=recipe.form)
    stream = PatchStream(pairs, plan)
    iterations, loss, best, best_iter, best_path = fit(
        model,
        stream,
        val_pairs,
        plan,
        out,
        recipe_name=recipe.name,
        recipe_hash=recipe.hash,
        device=device,
        resume=resume,
    )
    world = dist.get_world_size() if dist.is_initialized() else 1
    summary = TrainSummary(
        recipe.name,
        recipe.hash,
        profile,
        out,
        iterations,
        loss,
        best,
        best_iter,
        out / "final.pt",
        best_path,
        out / "curves.csv",
        world,
        str(device),
        checksum,
        plan,
    )
    if not dist.is_initialized() or dist.get_rank() == 0:
        (out / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2))
    return summary
