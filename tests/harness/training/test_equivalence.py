"""ReproSR's trainer step for step against each official trainer, from fixtures the official training code
wrote itself (``data/equivalence/<family>/``, made by ``data/equivalence/make_fixtures.py``; the README
there says how and from which commit).

Each fixture holds a fixed initial state, k fixed uint8 batches and, after each of the official trainer's k
updates, its loss, learning rate and a digest of every weight tensor (and of the EMA where the trainer keeps
one). :func:`harness.training.loop.fit` runs from the same state on the same batches, configured by the
family's recipe with the fixture's optimiser, schedule (a milestone falls inside the k steps), EMA and
clipping settings; losses, learning rates and digests must agree.

Tolerance. The trainers run the same float32 arithmetic in a different order in places (the EMA is one
fused ``lerp`` here, ``mul_``/``add_`` in BasicSR; EDSR-PyTorch scales uint8 by ×(1/255), not ÷255; the
ports group some sums differently; TensorFlow's kernels are not PyTorch's), so values agree to float32
rounding carried through k Adam steps, not bit for bit. Losses: relative LOSS_RTOL (measured: 0 for
SPAN-ESR, HSPAN and SPAN-light, ≤ 5e-7 for DRSAN). A weight tensor x of n elements: each digest component
within WEIGHT_RTOL·√n·‖x‖ (the sum and the projection of a difference δ are at most √n·‖δ‖) plus
WEIGHT_ATOL·n (Adam normalises each gradient element, so the rounding noise of a gradient near zero becomes
an update of up to lr·|noise|/ε). Measured: at most 0.40 of the tolerance (SPAN-light), 0.14 (DRSAN), 0.11
(SPAN-ESR EMA), 0.05 (HSPAN); one Adam step moves the median tensor by 150 to 2,600 tolerances, so a
missed, doubled or mis-scaled update, another learning rate, β, ε, decay, EMA or loss scale fails
(``test_a_wrong_setting_fails``: β2 0.999 for 0.99 is 9.6×, ε 1e-6 ~7,000×, EMA 0.99 ~5,000×).

Two differences found this way are now the official behaviour: SPAN-light's stochastic-depth mask rule
(``span_light.DropPath``) and, for DRSAN, TensorFlow 1's Adam, which adds ε to √v before v's bias
correction (the DRSAN recipes' ``optim.type = "AdamTF1"``, :class:`harness.training.optimizers.AdamTF1`;
with torch.optim.Adam the DRSAN weights miss the tolerance 326-fold after the first update).
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import architectures
from architectures.drsan import tf_variable_map
from harness.recipes import Recipe, load
from harness.training import loop
from harness.training.plan import Plan, make_plan
from harness.training.state import EMA

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = Path(__file__).parent / "data" / "equivalence"
LOSS_RTOL = 1e-5
WEIGHT_RTOL = 1e-6
WEIGHT_ATOL = 1e-9  # per element: Adam's first steps turn rounding noise in near-zero gradients into ~ε/|g|

# The generator's digest and formula initial state, read from the generator itself (one definition).
_spec = importlib.util.spec_from_file_location("make_fixtures", DATA / "make_fixtures.py")
generator = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generator)


def digest(t: Tensor) -> Tensor:
    return torch.tensor(generator.digest(t), dtype=torch.float64)


Layout = Callable[[dict[str, Tensor]], dict[str, Tensor]]


def same_layout(model: nn.Module) -> Layout:
    return lambda state: state


def tf_layout(model: nn.Module) -> Layout:
    """DRSAN state dict → the TF checkpoint's names and layout (HWIO kernels, depth_to_space order), by
    inverting the product's own converter: it is run once on arrays holding each element's flat index."""
    names = tf_variable_map(model)
    shapes = {name: tuple(model.state_dict()[key].shape) for name, key in names.items()}
    tf_shapes = {n: (s[2], s[3], s[1], s[0]) if len(s) == 4 else s for n, s in shapes.items()}
    index = model.from_tf_variables(
        {n: np.arange(math.prod(s), dtype=np.float32).reshape(s) for n, s in tf_shapes.items()}
    )
    order = {name: torch.argsort(index[key].flatten().long()) for name, key in names.items()}

    def convert(state: dict[str, Tensor]) -> dict[str, Tensor]:
        return {n: state[k].flatten()[order[n]].reshape(tf_shapes[n]) for n, k in names.items()}

    return convert


@dataclass(frozen=True)
class Family:
    """How a fixture meets ReproSR: the recipe whose trainer settings are used, the model built from the
    fixture's meta, the initial state from the official one, and the official layout of a state dict."""

    recipe: str
    build: Callable[[dict], nn.Module]
    initial_state: Callable[[nn.Module, dict[str, Tensor]], dict[str, Tensor]] = lambda model, init: init
    official_layout: Callable[[nn.Module], Layout] = same_layout


HSPAN_ARGS = ("n_resgroups", "n_resblocks", "n_feats", "reduction", "topk", "res_scale")
SPAN_LIGHT_ARGS = (
    "embed_dim", "depths", "num_heads", "window_size", "overlap_size", "mlp_ratio", "drop_path_rate",
)  # fmt: skip
FAMILIES = {
    "span_esr": Family("span_esr_ch28_x4", lambda m: architectures.build(
        "span_esr", m["settings"]["scale"], f"ch{m['network']['feature_channels']}")),
    "span_light": Family("span_light_x2", lambda m: architectures.build(
        "span_light", m["settings"]["scale"], **{k: m["network"][k] for k in SPAN_LIGHT_ARGS})),
    "hspan": Family("hspan_x2", lambda m: architectures.build(
        "hspan", m["settings"]["scale"], **{k: m["settings"][k] for k in HSPAN_ARGS})),
    "drsan": Family(
        "drsan_32s_x2",
        lambda m: architectures.build("drsan", m["settings"]["scale"], m["settings"]["variant"]),
        initial_state=lambda model, tf: model.from_tf_variables({k: v.numpy() for k, v in tf.items()}),
        official_layout=tf_layout,
    ),
}  # fmt: skip


@dataclass
class Fixture:
    meta: dict
    init: dict[str, Tensor]  # official names and layout
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
    if "init" in packed:
        init, offset = {}, 0
        for name, shape in meta["tensors"]:
            n = math.prod(shape)
            init[name] = packed["init"][offset : offset + n].reshape(shape).clone()
            offset += n
        assert offset == packed["init"].numel()
    else:  # too large to store: the generator's formula
        init = {k: torch.from_numpy(v) for k, v in generator.formula_init(meta["tensors"]).items()}
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
    schedule keeps the fixture's unit (milestones in epochs are converted by :func:`make_plan`)."""
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


@dataclass
class Run:
    losses: list[float]
    lrs: list[float]
    model: Tensor  # (k, tensors, 3) digests in the official layout
    ema: Tensor | None


def run_reprosr(fx: Fixture, family: str, out: Path, monkeypatch, **changes) -> Run:
    """:func:`fit` from the fixture's state on its batches, digests taken after each update."""
    fam = FAMILIES[family]
    model = fam.build(fx.meta)
    model.load_state_dict(fam.initial_state(model, fx.init), strict=True)
    plan = plan_for(fam.recipe, fx, **changes)
    assert plan.iterations == len(fx.lr)

    layout = fam.official_layout(model)

    def digests(state: dict[str, Tensor]) -> Tensor:
        official = layout(state)
        return torch.stack([digest(official[k]) for k in fx.names])

    seen: list[Tensor] = []  # weights before each forward = after the previous update
    model.register_forward_pre_hook(lambda m, _: seen.append(digests(m.state_dict())))
    ema_seen: list[Tensor] = []

    class RecordingEMA(EMA):
        def update(self, live: nn.Module) -> None:
            super().update(live)
            ema_seen.append(digests(self.state))

    monkeypatch.setattr(loop, "EMA", RecordingEMA)
    if "rng_seed" in fx.meta["settings"]:  # stochastic depth: the official run seeded here
        torch.manual_seed(fx.meta["settings"]["rng_seed"])
    loop.fit(model, FixedBatches(fx.lr, fx.hr), [], plan, out, recipe_name=fam.recipe,
             recipe_hash="equivalence", device=torch.device("cpu"))  # fmt: skip
    with open(out / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    weights = torch.stack([*seen[1:], digests(model.state_dict())])
    ema = torch.stack(ema_seen) if ema_seen else None
    return Run([float(r["loss"]) for r in rows], [float(r["lr"]) for r in rows], weights, ema)


def weight_excess(ours: Tensor, official: Tensor, fx: Fixture) -> tuple[float, str]:
    """The largest digest difference in units of the tolerance (module docstring), and where it is."""
    sizes = torch.tensor([math.prod(shape) for _, shape in fx.meta["tensors"]], dtype=torch.float64)
    n = sizes[None, :, None]
    bound = WEIGHT_RTOL * n.sqrt() * official[:, :, 1:2] + WEIGHT_ATOL * n
    excess = (ours - official).abs() / bound
    step, rest = divmod(int(excess.argmax()), excess.shape[1] * 3)
    tensor, part = divmod(rest, 3)
    where = (
        f"after step {step + 1}, tensor {fx.names[tensor]}: {('sum', 'norm', 'projection')[part]} "
        f"{ours[step, tensor, part].item():.9g} here vs {official[step, tensor, part].item():.9g} official"
    )
    return excess.max().item(), where


def check(run: Run, fx: Fixture) -> None:
    assert run.lrs == pytest.approx(fx.meta["lr"], rel=1e-12)
    assert run.losses == pytest.approx(fx.meta["loss"], rel=LOSS_RTOL)
    assert (fx.ema is None) == (run.ema is None)
    for what, ours, official in (("weights", run.model, fx.model), ("EMA", run.ema, fx.ema)):
        if official is not None:
            excess, where = weight_excess(ours, official, fx)
            assert excess <= 1, f"{what} {where} ({excess:.3g}× the tolerance)"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_trainer_matches_the_official_trainer_step_by_step(family, tmp_path, monkeypatch):
    fx = load_fixture(family)
    assert len(set(fx.meta["lr"])) > 1, "the fixture's schedule must change the rate within its k steps"
    check(run_reprosr(fx, family, tmp_path, monkeypatch), fx)


@pytest.mark.parametrize(
    "change",
    [{"betas": [0.9, 0.999]}, {"ema_decay": 0.99}, {"eps": 1e-6}],
    ids=["beta2", "ema_decay", "eps"],
)
def test_a_wrong_setting_fails(change, tmp_path, monkeypatch):
    """Settings that leave the learning rates alone but not the updates are caught by the digests."""
    fx = load_fixture("span_esr")
    run = run_reprosr(fx, "span_esr", tmp_path, monkeypatch, **change)
    assert run.lrs == pytest.approx(fx.meta["lr"], rel=1e-12)
    excess = max(weight_excess(run.model, fx.model, fx)[0], weight_excess(run.ema, fx.ema, fx)[0])
    assert excess > 1
