"""A recipe resolved for a profile and a training set: what the training loop runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from harness.recipes import Loss, Optim, Recipe, Schedule, TrainSection
from harness.schema import RunState
from harness.training.optimizers import AdamTF1
from harness.training.patches import Sampling

PROFILES = ("full", "smoke")

# what the recipe's names mean
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


@dataclass(frozen=True)
class Plan:
    """A recipe resolved for a profile and a training set. The recipe's sections are referenced, not copied;
    the fields are what the profile and the set decide. Iteration counts are 0-based."""

    scale: int
    sampling: Sampling
    iterations: int  # what this run does
    scheduled: int  # what the profile's schedule asks for: the run is complete when iterations == scheduled
    milestones: tuple[int, ...]
    checkpoint_every: int
    val_every: int
    precision: str
    channels_last: bool
    inference: str
    select_metric: str  # the metric keep="best" selects on (eval.select_metric)
    validate_raw: bool  # a short run with EMA: the raw weights are validated beside the EMA ones
    optim: Optim
    schedule: Schedule
    loss: Loss
    train: TrainSection

    @property
    def global_batch(self) -> int:
        return self.sampling.global_batch

    @property
    def seed(self) -> int:
        return self.sampling.seed

    @property
    def run_state(self) -> RunState:
        return RunState.COMPLETE if self.iterations == self.scheduled else RunState.TRUNCATED


def make_plan(
    recipe: Recipe,
    profile: str,
    n_images: int,
    max_iters: int | None = None,
    precision: str | None = None,
    *,
    seed: int | None = None,
    channels_last: bool | None = None,
) -> Plan:
    """Resolve ``recipe`` for ``profile`` ("full" or "smoke") on a training set of ``n_images`` images.

    Smoke keeps the recipe's optimiser, schedule and augmentation but uses ``[smoke]``'s patch, batch and
    iteration count, and checkpoints/validates once at the end. ``max_iters`` (≥ 1) caps the iterations: a
    capped run is truncated. A short run (smoke or truncated) of a recipe with EMA also validates the raw
    weights: early on the EMA is still mostly the initial network. ``seed`` (default ``train.seed``),
    ``precision`` and ``channels_last`` override the recipe's and are recorded.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
    if max_iters is not None and max_iters < 1:
        raise ValueError(f"--max-iters must be a positive number of iterations, not {max_iters}")
    smoke = profile == "smoke"
    batch = recipe.smoke.batch if smoke else recipe.global_batch
    enlarge = recipe.dataset.enlarge
    iters_per_epoch = n_images * enlarge // batch
    if iters_per_epoch < 1:
        raise ValueError(
            f"{recipe.name}: {n_images} images × enlarge {enlarge} give less than one batch of {batch}; "
            "add training images"
        )
    per_unit = iters_per_epoch if recipe.schedule.unit == "epoch" else 1
    scheduled = recipe.smoke.iters if smoke else recipe.schedule.total * per_unit
    iterations = scheduled if max_iters is None else min(scheduled, max_iters)
    precision = precision or recipe.train.precision
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
    sampling = Sampling(
        scale=recipe.scale,
        hr_patch=recipe.smoke.hr_patch if smoke else recipe.dataset.hr_patch,
        global_batch=batch,
        iters_per_epoch=iters_per_epoch,
        seed=recipe.train.seed if seed is None else seed,
        enlarge=enlarge,
        hflip=recipe.dataset.hflip,
        rot=recipe.dataset.rot,
    )
    return Plan(
        scale=recipe.scale,
        sampling=sampling,
        iterations=iterations,
        scheduled=scheduled,
        milestones=tuple(m * per_unit for m in recipe.schedule.milestones),
        checkpoint_every=iterations if smoke else recipe.train.checkpoint_every,
        val_every=iterations if smoke else recipe.train.val_every,
        precision=precision,
        channels_last=recipe.train.channels_last if channels_last is None else channels_last,
        inference=recipe.eval.inference,
        select_metric=recipe.eval.select_metric,
        validate_raw=(smoke or iterations < scheduled) and recipe.train.ema_decay > 0,
        optim=recipe.optim,
        schedule=recipe.schedule,
        loss=recipe.loss,
        train=recipe.train,
    )
