"""ReproSR's trainer step for step against each official trainer, from fixtures the official training code
wrote itself (``data/equivalence/<family>/``, made by ``data/equivalence/make_fixtures.py``; see the README
there for how and from which commit).

Each fixture holds a fixed initial state, k fixed uint8 batches and, after each of the official trainer's k
updates, its loss, learning rate and a digest of every weight tensor (and of the EMA where the trainer keeps
one). :func:`harness.training.loop.fit` runs from the same state on the same batches, configured by the
family's recipe with the fixture's optimiser, schedule (a milestone falls inside the k steps), EMA and
clipping settings; losses, learning rates and digests must agree.

Tolerance: the two trainers run the same float32 operations in a different order in places (the EMA is one
fused ``lerp`` here, ``mul_``/``add_`` in BasicSR; a port's forward may group sums differently), so values
agree to float32 rounding amplified by k Adam steps, not bit for bit. Losses: relative 1e-5. A weight
tensor ``x`` of n elements: each digest within ``WEIGHT_RTOL·√n·‖x‖`` (the sum and the projection of a
difference δ are bounded by √n·‖δ‖), WEIGHT_RTOL = 1e-5, while one Adam step moves every trained element by
about the learning rate (≥ 1e-4 here, i.e. ≥ 1e-3 of a typical weight): a missed or doubled step, a wrong
learning rate, decay, EMA or loss scale is 100× above the tolerance. The last test shows that it fails.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import architectures
from harness.recipes import Recipe, load
from harness.training import loop
from harness.training.plan import Plan, make_plan
from harness.training.state import EMA

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = Path(__file__).parent / "data" / "equivalence"
PHI = (math.sqrt(5) - 1) / 2
LOSS_RTOL = 1e-5
WEIGHT_RTOL = 1e-5

HSPAN_ARGS = ("n_resgroups", "n_resblocks", "n_feats", "reduction", "topk", "res_scale")

# family → (recipe whose trainer settings are used, how the fixture's network is built here from its meta)
FAMILIES = {
    "span_esr": ("span_esr_ch28_x4", lambda m: architectures.build(
        "span_esr", m["settings"]["scale"], f"ch{m['network']['feature_channels']}")),
    "hspan": ("hspan_x2", lambda m: architectures.build(
        "hspan", m["settings"]["scale"], **{k: m["settings"][k] for k in HSPAN_ARGS})),
}  # fmt: skip


def digest(t: Tensor) -> Tensor:
    """(sum, L2 norm, Σ x_i·c_i) in float64, c_i = frac(i·φ) − ½ (the generator's own formula)."""
    x = t.detach().double().flatten()
    c = torch.arange(x.numel(), dtype=torch.float64).mul(PHI).frac().sub(0.5)
    return torch.stack([x.sum(), x.norm(), (x * c).sum()])


@dataclass
class Fixture:
    meta: dict
    init: dict[str, Tensor]
    lr: Tensor  # (k, B, 3, h, w) uint8
    hr: Tensor
    model: Tensor  # (k, tensors, 3) float64 digests after each step
    ema: Tensor | None

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.meta["tensors"]]


def load_fixture(family: str) -> Fixture:
    meta = json.loads((DATA / family / "meta.json").read_text())
    packed = torch.load(DATA / family / "fixture.pt", weights_only=True)
    init, offset = {}, 0
    for name, shape in meta["tensors"]:
        n = math.prod(shape)
        init[name] = packed["init"][offset : offset + n].reshape(shape).clone()
        offset += n
    assert offset == packed["init"].numel()
    return Fixture(meta, init, packed["lr"], packed["hr"], packed["model"], packed.get("ema"))


class FixedBatches:
    """The fixture's batches as :func:`fit` reads a stream: iteration t gets the official run's batch t."""

    def __init__(self, lr: Tensor, hr: Tensor):
        self.lr, self.hr = lr, hr

    def batch(self, iteration: int, rank: int = 0, world: int = 1) -> tuple[Tensor, Tensor]:
        assert (rank, world) == (0, 1)
        return self.lr[iteration].float() / 255, self.hr[iteration].float() / 255


def _with_fields(recipe: Recipe, fields: dict) -> Recipe:
    data = {s: dict(v) for s, v in recipe.data.items()}
    for dotted, value in fields.items():
        section, key = dotted.split(".")
        data[section][key] = value
    return dataclasses.replace(recipe, data=data)


def plan_for(recipe_name: str, fx: Fixture, **changes) -> Plan:
    """The recipe's plan with the fixture's batch, patch, optimiser, schedule, EMA and clipping; the
    schedule keeps the recipe's unit (milestones in epochs are converted by :func:`make_plan`)."""
    s = {**fx.meta["settings"], **changes}
    k, batch, unit = s["k"], s["batch"], s.get("unit", "iteration")
    iters_per_epoch = s.get("iters_per_epoch", k)
    total = k // iters_per_epoch if unit == "epoch" else k
    recipe = _with_fields(load(recipe_name), {
        "data.hr_patch": s["lr_side"] * s["scale"], "data.batch_per_gpu": batch, "data.gpus": 1,
        "data.enlarge": 1, "optim.lr": s["lr"], "optim.betas": s["betas"], "optim.eps": s["eps"],
        "optim.weight_decay": s["weight_decay"], "schedule.unit": unit,
        "schedule.milestones": s["milestones"], "schedule.gamma": s["gamma"], "schedule.total": total,
        "train.ema_decay": s["ema_decay"], "train.grad_clip": s["grad_clip"], "train.precision": "fp32",
        "train.channels_last": False, "train.checkpoint_every": k, "train.val_every": k, "train.keep": "last",
    })  # fmt: skip
    return make_plan(recipe, "full", n_images=batch * iters_per_epoch)


def run_reprosr(fx: Fixture, family: str, tmp_path: Path, monkeypatch, **changes):
    """:func:`fit` from the fixture's state on its batches → (losses, lrs, model digests, EMA digests)."""
    recipe_name, build = FAMILIES[family]
    model = build(fx.meta)
    model.load_state_dict(fx.init, strict=True)
    plan = plan_for(recipe_name, fx, **changes)
    assert plan.iterations == len(fx.lr)
    names = fx.names
    seen: list[Tensor] = []  # weights before each forward = after the previous update
    model.register_forward_pre_hook(lambda m, _: seen.append(_digests(m.state_dict(), names)))
    ema_seen: list[Tensor] = []

    class RecordingEMA(EMA):
        def update(self, live: nn.Module) -> None:
            super().update(live)
            ema_seen.append(_digests(self.state, names))

    monkeypatch.setattr(loop, "EMA", RecordingEMA)
    loop.fit(model, FixedBatches(fx.lr, fx.hr), [], plan, tmp_path, recipe_name=recipe_name,
             recipe_hash="equivalence", device=torch.device("cpu"))  # fmt: skip
    with open(tmp_path / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    weights = torch.stack([*seen[1:], _digests(model.state_dict(), names)])
    ema = torch.stack(ema_seen) if ema_seen else None
    return [float(r["loss"]) for r in rows], [float(r["lr"]) for r in rows], weights, ema


def _digests(state: dict[str, Tensor], names: list[str]) -> Tensor:
    return torch.stack([digest(state[k]) for k in names])


def assert_weights_agree(ours: Tensor, official: Tensor, fx: Fixture, what: str) -> None:
    """Digests (k, tensors, 3) within WEIGHT_RTOL·√n·‖x‖ per tensor and step (module docstring)."""
    sizes = torch.tensor([math.prod(shape) for _, shape in fx.meta["tensors"]], dtype=torch.float64)
    bound = WEIGHT_RTOL * sizes.sqrt()[None, :, None] * official[:, :, 1:2] + 1e-12
    excess = (ours - official).abs() / bound
    step, rest = divmod(int(excess.argmax()), excess.shape[1] * 3)
    tensor, part = divmod(rest, 3)
    assert excess.max() <= 1, (
        f"{what} after step {step + 1}, tensor {fx.names[tensor]}: {('sum', 'norm', 'projection')[part]} "
        f"{ours[step, tensor, part].item():.9g} here vs {official[step, tensor, part].item():.9g} official "
        f"({excess.max().item():.3g}× the tolerance)"
    )


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_trainer_matches_the_official_trainer_step_by_step(family, tmp_path, monkeypatch):
    fx = load_fixture(family)
    losses, lrs, weights, ema = run_reprosr(fx, family, tmp_path, monkeypatch)
    assert lrs == pytest.approx(fx.meta["lr"], rel=1e-12)
    assert len(set(lrs)) > 1, "the fixture's schedule must change the learning rate within its k steps"
    assert losses == pytest.approx(fx.meta["loss"], rel=LOSS_RTOL)
    assert_weights_agree(weights, fx.model, fx, "weights")
    assert (fx.ema is None) == (ema is None)
    if ema is not None:
        assert_weights_agree(ema, fx.ema, fx, "EMA")
