"""What a training run will cost, measured on this device before it starts.

:func:`estimate` times a few real training steps (forward, L1, backward, optimiser step, EMA update when the
recipe keeps one) of a copy of the model on the run's own batches, after a warm-up, and serialises the
training state those steps leave to learn the size of ``last.pt``. Nothing of the run is touched: the
model is copied and no global random number is drawn (the batches are a pure function of seed and
iteration). The hours are an extrapolation of the measured rate: validation, checkpoint writes and data
loading stalls come on top.
"""

from __future__ import annotations

import copy
import io
import time
from dataclasses import dataclass

import torch
from torch import nn

from harness.training.patches import PatchStream
from harness.training.plan import LOSSES, OPTIMIZERS, Plan
from harness.training.state import EMA

WARMUP = 2  # untimed steps first (allocator, cuDNN autotuning, first-touch costs)
TIMED = 5


@dataclass(frozen=True)
class Cost:
    """A run's measured cost: ``iterations`` at ``its_per_s`` (measured here after a warm-up) on
    ``images`` training images, ``samples`` patches in all; ``checkpoint_bytes`` is one ``last.pt``
    (model, EMA, optimiser), ``disk_bytes`` everything the run keeps (``last.pt``, ``final.pt`` and
    ``best.pt`` when the recipe keeps the best)."""

    iterations: int
    images: int
    samples: int
    its_per_s: float
    hours: float
    checkpoint_bytes: int
    disk_bytes: int
    device: str
    timed_steps: int

    def __str__(self) -> str:
        return (
            f"{self.iterations:,} iterations on {self.images:,} training images ({self.samples:,} patches); "
            f"{self.its_per_s:.3g} iterations/s measured on {self.device} over {self.timed_steps} steps "
            f"after {WARMUP} warm-up steps → about {self.hours:.3g} h of training (validation and checkpoint "
            f"writes extra); disk: {self.disk_bytes / 2**20:.3g} MiB for checkpoints (last.pt "
            f"{self.checkpoint_bytes / 2**20:.3g} MiB, rewritten in place)"
        )


def estimate(
    plan: Plan,
    model: nn.Module,
    stream: PatchStream,
    device: torch.device,
    *,
    world: int = 1,
    timed: int = TIMED,
) -> Cost:
    """Time ``WARMUP + timed`` training steps of a copy of ``model`` on this process's share (``1/world``) of
    the run's first batches, and size the checkpoint they leave. ``model`` is left as it was."""
    if timed < 1:
        raise ValueError(f"timed must be at least 1 step, not {timed}")
    net = copy.deepcopy(model).to(device).train()
    optimizer = OPTIMIZERS[plan.optim.type](net.parameters(), plan.optim)
    loss_fn = LOSSES[(plan.loss.type, plan.loss.reduction)]
    ema = EMA(net, plan.train.ema_decay) if plan.train.ema_decay > 0 else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=plan.precision == "bf16")
    start = 0.0
    for t in range(WARMUP + timed):
        if t == WARMUP:
            _synchronize(device)
            start = time.perf_counter()
        lr_img, hr_img = (x.to(device) for x in stream.batch(t, 0, world))
        with autocast:
            sr = net(lr_img)
        loss = loss_fn(sr.float(), hr_img)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update(net)
    _synchronize(device)
    rate = timed / (time.perf_counter() - start)
    state = {"model": net.state_dict(), "ema": ema.state if ema else {}, "optimizer": optimizer.state_dict()}
    checkpoint = _serialised_bytes(state)
    weights = _serialised_bytes(net.state_dict())
    kept = 2 if plan.train.keep == "best" else 1  # final.pt, and best.pt
    return Cost(
        iterations=plan.iterations,
        images=len(stream.hr),
        samples=plan.iterations * plan.global_batch,
        its_per_s=rate,
        hours=plan.iterations / rate / 3600,
        checkpoint_bytes=checkpoint,
        disk_bytes=checkpoint + kept * weights,
        device=str(device),
        timed_steps=timed,
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _serialised_bytes(obj: object) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()
