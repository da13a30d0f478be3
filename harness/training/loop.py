"""The training engine: one loop for every recipe (loss, optimiser and schedule by the recipe's names,
optional EMA, gradient clipping, bf16 autocast, channels_last, DDP under torchrun).

Files in ``out_dir``: ``last.pt`` (full training state, atomic, loadable with ``weights_only=True``),
``best.pt`` (weights of the best validated model when the recipe keeps the best), ``final.pt`` (weights
of the evaluated model at the end: the EMA model when the recipe uses EMA), ``curves.csv`` (iteration,
loss, lr, val_psnr_y) and ``summary.json``. Rank 0 alone writes them; the others wait at barriers.

Throughput: batches are built ahead by loader workers (:func:`harness.training.patches.batches`);
per-iteration losses stay on the device and reach the host every ``sync_every`` iterations (and at
validation and checkpoints), where a non-finite loss stops the run: nothing computed after the last good
sync is saved.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

import architectures
from harness.evaluate import TestTime, evaluate
from harness.files import remove_stale_temps
from harness.recipes import Recipe, load
from harness.training import ddp
from harness.training.data import training_data
from harness.training.optimizers import AdamTF1
from harness.training.patches import PatchStream, batches
from harness.training.plan import Plan, make_plan
from harness.training.resume import check_resumable
from harness.training.state import (
    CHECKPOINT_FORMAT,
    EMA,
    Progress,
    atomic_save,
    eval_weights,
    rng_state,
    seed_everything,
    set_rng_state,
)

log = logging.getLogger("harness.training.loop")
CURVE_FIELDS = ("iteration", "loss", "lr", "val_psnr_y")
SYNC_EVERY = 50  # iterations between host reads of the loss (one device sync each)

LOSSES: dict[tuple[str, str], Callable[[Tensor, Tensor], Tensor]] = {  # (loss.type, loss.reduction)
    ("L1", "mean"): lambda sr, hr: (sr - hr).abs().mean()
}
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "Adam": lambda params, o: torch.optim.Adam(
        params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
    ),
    "AdamTF1": lambda params, o: AdamTF1(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps),
}
SCHEDULERS: dict[str, Callable[..., torch.optim.lr_scheduler.LRScheduler]] = {
    "MultiStepLR": lambda opt, milestones, gamma: torch.optim.lr_scheduler.MultiStepLR(
        opt, list(milestones), gamma
    )
}


class NonFiniteLossError(FloatingPointError):
    """The loss or the weights became NaN/Inf; the last good checkpoint was kept."""


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` leaves: iterations done, the last synced loss, the best validation and the files."""

    iterations: int
    final_loss: float
    best_psnr_y: float
    best_iteration: int
    final_checkpoint: Path
    best_checkpoint: Path | None


@dataclass
class TrainSummary:
    """Outcome of :func:`train`; ``final_checkpoint`` holds plain weights for ``load_checkpoint``."""

    recipe: str
    recipe_hash: str
    profile: str
    out_dir: Path
    iterations: int
    run_state: str
    seed: int
    final_loss: float
    best_psnr_y: float
    best_iteration: int
    final_checkpoint: Path
    best_checkpoint: Path | None
    curves: Path
    world_size: int
    device: str
    dataset_checksum: str
    training_data: str
    substitutes: list[str]
    plan: Plan

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


# --------------------------------------------------------------------------------------------- loop


class _Trainer:
    """One run of the loop: model, optimiser, schedule, EMA and the files, for :func:`fit`."""

    def __init__(self, model, plan: Plan, out_dir: Path, recipe_name: str, recipe_hash: str, device):
        self.plan, self.out, self.name, self.hash, self.device = (
            plan,
            out_dir,
            recipe_name,
            recipe_hash,
            device,
        )
        self.rank, self.world = ddp.init(device)
        if plan.global_batch % self.world:
            raise ValueError(
                f"global batch {plan.global_batch} is not divisible by {self.world} processes; "
                "launch a number of processes that divides it"
            )
        self.memory_format = torch.channels_last if plan.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format).train()
        p = plan.sampling.hr_patch // plan.scale
        probe = torch.zeros(1, 3, p, p, device=device).contiguous(memory_format=self.memory_format)
        self.net = ddp.wrap(self.model, device, probe)
        self.optimizer = OPTIMIZERS[plan.optim.type](self.model.parameters(), plan.optim)
        self.scheduler = SCHEDULERS[plan.schedule.type](self.optimizer, plan.milestones, plan.schedule.gamma)
        self.loss_fn = LOSSES[(plan.loss.type, plan.loss.reduction)]
        self.ema = EMA(self.model, plan.train.ema_decay) if plan.train.ema_decay > 0 else None
        self.last, self.best_path = out_dir / "last.pt", out_dir / "best.pt"
        self.curves = out_dir / "curves.csv"
        self.progress = Progress()

    # -- state
    def restore(self) -> None:
        state = _load_state(self.last, self.device)
        if state["recipe_hash"] != self.hash or state["plan"] != dataclasses.asdict(self.plan):
            raise ValueError(
                f"{self.last} was written by another recipe or plan; pass resume=False or a new out_dir"
            )
        check_resumable(state, self.model, self.last)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.state = state["ema"]
        rngs = state["rng"]
        if len(rngs) == self.world:
            set_rng_state(rngs[self.rank])
        else:
            log.warning(
                "%s was written by %d processes, resumed by %d: the RNG streams restart from seed + rank + "
                "iteration (data order is unaffected)",
                self.last,
                len(rngs),
                self.world,
            )
            seed_everything(self.plan.seed + self.rank + state["iteration"])
        self.progress = Progress(state["iteration"], state["best_psnr_y"], state["best_iteration"])
        log.info("resumed %s from %s at iteration %d", self.name, self.last, self.progress.iteration)

    def checkpoint(self) -> dict:
        p = self.progress
        return {
            "format": CHECKPOINT_FORMAT,
            "recipe": self.name,
            "recipe_hash": self.hash,
            "iteration": p.iteration,
            "data_position": p.iteration * self.plan.global_batch,
            "plan": dataclasses.asdict(self.plan),
            "model": self.model.state_dict(),
            "ema": self.ema.state if self.ema else {},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": ddp.gather(rng_state()),
            "best_psnr_y": p.best_psnr_y,
            "best_iteration": p.best_iteration,
        }

    def save(self) -> None:
        """Write ``last.pt`` (rank 0) once the weights are known finite; every rank waits for it."""
        state = self.checkpoint()
        # every rank checks (DDP ranks hold the same weights), so all stop together, before the barrier
        where = _non_finite({k: state[k] for k in ("model", "ema", "optimizer")})
        if where is not None:
            raise NonFiniteLossError(
                f"{self.name}: the training state became NaN/Inf (in {where}) by iteration "
                f"{self.progress.iteration} (a non-finite gradient); not saved. The last good state is "
                f"{self._last_good()}"
            )  # every rank takes part in gathering the RNG states
        if self.rank == 0:
            atomic_save(state, self.last)
        ddp.barrier()

    def save_weights(self, path: Path) -> None:
        """Write the evaluated weights (EMA when kept) to ``path``, never NaN/Inf ones."""
        weights = eval_weights(self.model, self.ema)
        where = _non_finite(weights)
        if where is not None:
            raise NonFiniteLossError(
                f"{self.name}: the weights are NaN/Inf (in {where}) at iteration {self.progress.iteration}; "
                f"{path} not written. The last good state is {self._last_good()}"
            )
        atomic_save(weights, path)

    def _last_good(self) -> str:
        return str(self.last) if self.last.exists() else "not written yet"

    # -- curves
    def open_curves(self):
        """Rank 0: keep the rows up to the resumed iteration (rewritten atomically), then append."""
        if self.rank != 0:
            return None
        remove_stale_temps(self.curves.parent)
        rows = _read_curves(self.curves, self.progress.iteration)
        tmp = self.curves.with_name(f".{self.curves.name}.tmp-{os.getpid()}")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, CURVE_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.curves)
        return open(self.curves, "a", newline="")

    # -- validation
    def validate(self, val_pairs: Sequence) -> float:
        """PSNR-Y (set mean) of the evaluated model on ``val_pairs``, computed on rank 0 and shared."""
        psnr = math.nan
        if self.rank == 0 and val_pairs:
            target = self.model
            if self.ema is not None:
                target = _clone_with(self.model, self.ema.state)
            psnr = evaluate(
                target,
                val_pairs,
                self.plan.scale,
                test_time=TestTime(self.plan.inference),
                conventions=("psnr_y",),
            ).mean["psnr_y"]
        return ddp.broadcast_float(psnr, self.device)

    # -- the loop
    def run(self, stream: PatchStream, val_pairs: Sequence, workers: int) -> FitResult:
        plan, p = self.plan, self.progress
        start = p.iteration
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=plan.precision == "bf16")
        window = max(1, min(SYNC_EVERY, plan.iterations))
        losses = torch.zeros(window, device=self.device)
        log_every, logged = max(1, plan.iterations // 100), start
        pending: list[dict] = []  # rows since the last sync; their losses are in `losses`
        loss_value = math.nan
        curves = self.open_curves()
        writer = csv.DictWriter(curves, CURVE_FIELDS) if curves else None
        source = batches(
            stream, start, plan.iterations, rank=self.rank, world=self.world, workers=workers,
            pin=self.device.type == "cuda",
        )  # fmt: skip
        try:
            for t, (lr_img, hr_img) in enumerate(source, start):
                lr_img = lr_img.to(self.device, non_blocking=True).contiguous(
                    memory_format=self.memory_format
                )
                hr_img = hr_img.to(self.device, non_blocking=True)
                lr_now = self.optimizer.param_groups[0]["lr"]
                with autocast:
                    sr = self.net(lr_img)
                loss = self.loss_fn(sr.float(), hr_img)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if plan.train.grad_clip > 0:
                    nn.utils.clip_grad_value_(self.model.parameters(), plan.train.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update(self.model)
                losses[len(pending)] = loss.detach()
                done = t + 1
                pending.append({"iteration": done, "lr": lr_now, "val_psnr_y": ""})
                validate = done % plan.val_every == 0 or done == plan.iterations
                save = done % plan.checkpoint_every == 0 or done == plan.iterations
                if len(pending) == window or validate or save:
                    loss_value = self._sync(losses, pending)
                    p.iteration = done
                    if validate:
                        psnr = self.validate(val_pairs)
                        pending[-1]["val_psnr_y"] = psnr
                        if psnr > p.best_psnr_y:
                            p.best_psnr_y, p.best_iteration = psnr, done
                            if plan.train.keep == "best" and self.rank == 0:
                                self.save_weights(self.best_path)
                    if writer:
                        writer.writerows(pending)
                        curves.flush()
                    pending.clear()
                    if save:
                        self.save()
                    if self.rank == 0 and (done - logged >= log_every or done == plan.iterations):
                        logged = done
                        log.info(
                            "%s %d/%d loss %.5f lr %.3g", self.name, done, plan.iterations, loss_value, lr_now
                        )
        finally:
            if curves:
                curves.close()
        final = self.out / "final.pt"
        if self.rank == 0:
            self.save_weights(final)
        ddp.barrier()  # the other ranks may read final.pt only after rank 0 wrote it
        best = self.best_path if plan.train.keep == "best" else None
        return FitResult(plan.iterations, loss_value, p.best_psnr_y, p.best_iteration, final, best)

    def _sync(self, losses: Tensor, pending: list[dict]) -> float:
        """Read the pending losses (mean over ranks) into ``pending``; raise on the first non-finite one."""
        values = ddp.mean(losses[: len(pending)]).tolist()
        for row, value in zip(pending, values, strict=True):
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"{self.name}: loss became {value} at iteration {row['iteration']}; nothing after the "
                    f"last good checkpoint was saved. The last good state is {self._last_good()}; lower "
                    "optim.lr, check the data, or resume from it"
                )
            row["loss"] = value
        return values[-1]


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
    where = _non_finite({k: state.get(k, {}) for k in ("model", "ema", "optimizer")})
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
    workers: int = 0,
) -> FitResult:
    """Train ``model`` in place for ``plan.iterations`` (resuming ``out_dir/last.pt`` when present and
    ``resume``); ``workers`` loader processes build batches ahead. Raises :class:`NonFiniteLossError` on a
    NaN/Inf loss or weights."""
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = _Trainer(model, plan, out_dir, recipe_name, recipe_hash, device)
    if resume and trainer.last.exists():
        trainer.restore()
    return trainer.run(stream, val_pairs, workers)


def _clone_with(model: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    import copy

    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone


# --------------------------------------------------------------------------------------------- entry


def default_workers() -> int:
    """Loader processes per rank: up to 4, leaving a core for the training process."""
    per_rank = (os.cpu_count() or 2) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(4, per_rank - 1))


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
    seed: int | None = None,
    allow_substitutes: bool = False,
    workers: int | None = None,
) -> TrainSummary:
    """Train a recipe's model. ``profile="smoke"``: a few iterations on the embedded images, on any device.

    ``device`` defaults to CUDA when available (the local rank's GPU under torchrun). ``precision`` and
    ``seed`` override the recipe's and are recorded; rank ``r`` seeds its RNGs with ``seed + r`` (BasicSR),
    the data order depends on ``seed`` alone. ``resume`` continues from ``out_dir/last.pt`` when present
    (bit-exact on the same device and world size). ``workers``: loader processes (default
    :func:`default_workers`).
    """
    recipe = recipe if isinstance(recipe, Recipe) else load(recipe)
    if device is None:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rank, world = ddp.init(device)
    out = Path(out_dir)
    root = None if data_root is None else Path(data_root)
    td = training_data(recipe, profile, root, allow_substitutes)
    plan = make_plan(recipe, profile, len(td.pairs), max_iters, precision, seed=seed)
    seed_everything(plan.seed + rank)
    model = architectures.build(recipe.model, recipe.scale, recipe.variant, form=recipe.form)
    result = fit(
        model,
        PatchStream(td.pairs, plan.sampling),
        td.val_pairs,
        plan,
        out,
        recipe_name=recipe.name,
        recipe_hash=recipe.hash,
        device=device,
        resume=resume,
        workers=default_workers() if workers is None else workers,
    )
    summary = TrainSummary(
        recipe=recipe.name,
        recipe_hash=recipe.hash,
        profile=profile,
        out_dir=out,
        iterations=result.iterations,
        run_state=str(plan.run_state),
        seed=plan.seed,
        final_loss=result.final_loss,
        best_psnr_y=result.best_psnr_y,
        best_iteration=result.best_iteration,
        final_checkpoint=result.final_checkpoint,
        best_checkpoint=result.best_checkpoint,
        curves=out / "curves.csv",
        world_size=world,
        device=str(device),
        dataset_checksum=td.checksum,
        training_data=td.description,
        substitutes=list(td.substitutes),
        plan=plan,
    )
    if rank == 0:
        (out / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2))
    return summary
