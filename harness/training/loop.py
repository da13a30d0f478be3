"""The training engine: one loop for every recipe (loss, optimiser and schedule by the recipe's names,
optional EMA, gradient clipping, bf16 autocast, channels_last, DDP under torchrun).

Files in ``out_dir``: ``last.pt`` (full training state, atomic, loadable with ``weights_only=True``),
``best.pt`` (weights of the best validated model, by ``eval.select_metric``, when the recipe keeps the
best), ``final.pt`` (weights of the evaluated model at the end: the EMA model when the recipe uses EMA),
``curves.csv`` (:data:`CURVE_FIELDS`) and ``summary.json``. The log opens with the first iteration's
measured loss (SPAN-family losses start far above 1 by design) and, for a full run, what it will cost
(:func:`harness.training.cost.estimate`). Rank 0 alone writes them; the others wait at barriers.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

import architectures
from harness import progress
from harness.evaluate import TestTime, evaluate
from harness.files import remove_stale_temps
from harness.recipes import Recipe, load
from harness.training import ddp
from harness.training.cost import estimate
from harness.training.data import training_data
from harness.training.patches import PatchStream, batches
from harness.training.plan import LOSSES, OPTIMIZERS, SCHEDULERS, Plan, make_plan
from harness.training.resume import check_resumable
from harness.training.state import (
    CHECKPOINT_FORMAT,
    EMA,
    Progress,
    atomic_save,
    clone_with,
    eval_weights,
    load_state,
    non_finite,
    rng_state,
    seed_everything,
    set_rng_state,
)

log = logging.getLogger("harness.training.loop")
# val_psnr_y: the evaluated model (EMA when kept); val_psnr_y_raw: the raw weights (short runs with EMA);
# val_score: eval.select_metric of the evaluated model, what keep="best" selects on
CURVE_FIELDS = ("iteration", "loss", "lr", "val_psnr_y", "val_psnr_y_raw", "val_score")
SYNC_EVERY = 50  # iterations between host reads of the loss (one device sync each)


class NonFiniteLossError(FloatingPointError):
    """The loss or the weights became NaN/Inf; the last good checkpoint was kept."""


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` leaves: iterations done, the last synced loss, the best and the last validation (the
    raw weights' PSNR-Y beside the evaluated model's; NaN when not validated) and the files."""

    iterations: int
    final_loss: float
    best_score: float
    best_iteration: int
    final_psnr_y: float
    final_psnr_y_raw: float
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
    select_metric: str
    best_score: float
    best_iteration: int
    final_psnr_y: float
    final_psnr_y_raw: float
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
        state = load_state(self.last, self.device)
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
        self.progress = Progress(state["iteration"], state["best_score"], state["best_iteration"])
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
            "best_score": p.best_score,
            "best_iteration": p.best_iteration,
        }

    def save(self) -> None:
        """Write ``last.pt`` (rank 0) once the weights are known finite; every rank waits for it."""
        state = self.checkpoint()
        # every rank checks (DDP ranks hold the same weights), so all stop together, before the barrier
        where = non_finite({k: state[k] for k in ("model", "ema", "optimizer")})
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
        where = non_finite(weights)
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
    def validate(self, val_pairs: Sequence) -> dict[str, float]:
        """Set means on ``val_pairs``, computed on rank 0 and shared: ``psnr_y`` and ``score``
        (``plan.select_metric``) of the evaluated model, ``psnr_y_raw`` of the raw weights (NaN unless
        ``plan.validate_raw``)."""
        plan, out = self.plan, {"psnr_y": math.nan, "score": math.nan, "psnr_y_raw": math.nan}
        if self.rank == 0 and val_pairs:
            target = self.model if self.ema is None else clone_with(self.model, self.ema.state)
            conventions = tuple(dict.fromkeys(("psnr_y", plan.select_metric)))
            knobs = {"test_time": TestTime(plan.inference)}
            mean = evaluate(target, val_pairs, plan.scale, conventions=conventions, **knobs).mean
            out["psnr_y"], out["score"] = mean["psnr_y"], mean[plan.select_metric]
            if plan.validate_raw:
                raw = evaluate(self.model, val_pairs, plan.scale, conventions=("psnr_y",), **knobs).mean
                out["psnr_y_raw"] = raw["psnr_y"]
        return {k: ddp.broadcast_float(v, self.device) for k, v in out.items()}

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
        last = {"psnr_y": math.nan, "psnr_y_raw": math.nan}
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
                pending.append({"iteration": done, "lr": lr_now})
                validate = done % plan.val_every == 0 or done == plan.iterations
                save = done % plan.checkpoint_every == 0 or done == plan.iterations
                if len(pending) == window or validate or save or done == 1:
                    loss_value = self._sync(losses, pending)
                    p.iteration = done
                    if done == 1 and self.rank == 0:
                        _announce(_first_loss_line(self.name, loss_value))
                    if validate:
                        last = self.validate(val_pairs)
                        pending[-1].update({f"val_{k}": v for k, v in last.items()})
                        if last["score"] > p.best_score:
                            p.best_score, p.best_iteration = last["score"], done
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
        return FitResult(
            plan.iterations, loss_value, p.best_score, p.best_iteration, last["psnr_y"], last["psnr_y_raw"],
            final, best,
        )  # fmt: skip

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


def _announce(message: str) -> None:
    """A line for the training log and for the user (stderr, unless ``--quiet``)."""
    log.info("%s", message)
    progress.stage(message)


def _first_loss_line(name: str, loss: float) -> str:
    """The log line for the first iteration's measured loss, saying why one above 1 is no range bug."""
    line = f"{name}: loss at iteration 1 = {loss:.4f} (measured)"
    if loss > 1:
        line += (
            "; an L1 above 1 on images in [0, 1] means the untrained output lies far outside [0, 1]: "
            "expected for SPAN-family models (SPAN-ESR multiplies its input by 255 and never rescales its "
            "output; SPAN-light doubles its residuals), which learn the output range (see the recipe's notes)"
        )
    return line


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
    stream = PatchStream(td.pairs, plan.sampling)
    if profile == "full" and rank == 0:
        _announce(f"{recipe.name}: before training: {estimate(plan, model, stream, device, world=world)}")
    result = fit(
        model,
        stream,
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
        select_metric=plan.select_metric,
        best_score=result.best_score,
        best_iteration=result.best_iteration,
        final_psnr_y=result.final_psnr_y,
        final_psnr_y_raw=result.final_psnr_y_raw,
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
