"""Helpers the tests share (plain functions and stand-in models; fixtures live in conftest.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from harness.recipes import load
from harness.training.loop import fit
from harness.training.patches import PatchStream
from harness.training.plan import Plan, make_plan


class TinySR(nn.Module):
    """conv → ReLU → conv → pixel shuffle: a stand-in with the SR model contract, fast on CPU."""

    def __init__(self, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3 * scale**2, 3, padding=1)
        )
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.shuffle(self.body(x))


def tiny_pairs(scale: int = 2, n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(hr, lr) with hr the nearest-neighbour ×scale of lr, on the 8-bit grid."""
    g = torch.Generator().manual_seed(7)
    pairs = []
    for i in range(n):
        lr = torch.randint(0, 256, (3, 20 + 2 * i, 24), generator=g).float() / 255
        pairs.append((lr.repeat_interleave(scale, -2).repeat_interleave(scale, -1), lr))
    return pairs


SAMPLING = {"hr_patch", "global_batch", "enlarge", "iters_per_epoch", "seed"}
OPTIM, TRAIN, SCHEDULE = {"lr"}, {"ema_decay", "keep", "grad_clip"}, {"gamma"}


def tiny_plan(**changes) -> Plan:
    """The drsan_32s_x2 smoke plan made tiny; the schedule halves at iteration 3 and EMA is on."""
    plan = make_plan(load("drsan_32s_x2"), "smoke", n_images=3)
    base = dict(
        hr_patch=16,
        global_batch=4,
        iterations=8,
        checkpoint_every=4,
        val_every=1000,
        milestones=(3,),
        lr=1e-3,
        ema_decay=0.9,
        enlarge=4,
        iters_per_epoch=3 * 4 // 4,
        keep="last",
    )
    c = {**base, **changes}
    pick = lambda keys: {k: c.pop(k) for k in list(c) if k in keys}  # noqa: E731
    return dataclasses.replace(
        plan,
        sampling=dataclasses.replace(plan.sampling, **pick(SAMPLING)),
        optim=dataclasses.replace(plan.optim, **pick(OPTIM)),
        train=dataclasses.replace(plan.train, **pick(TRAIN)),
        schedule=dataclasses.replace(plan.schedule, **pick(SCHEDULE)),
        scheduled=c.get("iterations", plan.iterations),
        **c,
    )


def run_fit(out: Path, plan: Plan, model: nn.Module | None = None, **kw):
    torch.manual_seed(0)
    model = model or TinySR()
    fit(
        model,
        PatchStream(tiny_pairs(), plan.sampling),
        [],
        plan,
        out,
        recipe_name="tiny",
        recipe_hash="h",
        device=torch.device("cpu"),
        **kw,
    )
    return torch.load(out / "last.pt", weights_only=True)
