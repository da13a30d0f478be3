"""SPAN-ESR: parameter counts, shapes, official key layouts, train/deploy equivalence, golden output."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import architectures
from architectures.checkpoint import CheckpointError, load_checkpoint
from harness import published

pytestmark = pytest.mark.usefixtures("one_thread")


def official_layout(channels: int, scale: int, form: str) -> dict[str, tuple[int, ...]]:
    """Key → shape of the official ``SPAN`` state_dict (hongyuanyu/SPAN basicsr/archs/span_arch.py, train
    form) and of the NTIRE 2024 deploy release (Amazingren/NTIRE2024_ESR models/team38_SPAN.py), written
    from their module definitions."""

    def conv3xc(prefix: str, ci: int, co: int, gain: int = 2) -> dict[str, tuple[int, ...]]:
        train = {
            "sk.weight": (co, ci, 1, 1), "sk.bias": (co,),
            "conv.0.weight": (gain * ci, ci, 1, 1), "conv.0.bias": (gain * ci,),
            "conv.1.weight": (gain * co, gain * ci, 3, 3), "conv.1.bias": (gain * co,),
            "conv.2.weight": (co, gain * co, 1, 1), "conv.2.bias": (co,),
        }  # fmt: skip
        deploy = {"eval_conv.weight": (co, ci, 3, 3), "eval_conv.bias": (co,)}
        parts = {**train, **deploy} if form == "train" else deploy
        return {f"{prefix}.{k}": v for k, v in parts.items()}

    c = channels
    layout = conv3xc("conv_1", 3, c)
    for i in range(1, 7):
        for j in range(1, 4):
            layout |= conv3xc(f"block_{i}.c{j}_r", c, c)
    layout |= {"conv_cat.weight": (c, 4 * c, 1, 1), "conv_cat.bias": (c,)}
    layout |= conv3xc("conv_2", c, c)
    layout |= {"upsampler.0.weight": (3 * scale**2, c, 3, 3), "upsampler.0.bias": (3 * scale**2,)}
    return layout


def formula_weights(model: torch.nn.Module) -> None:
    """Deterministic weights independent of any RNG: a sine wave per tensor, in state_dict order."""
    with torch.no_grad():
        for i, t in enumerate(model.state_dict().values()):
            n = t.numel()
            wave = torch.sin(torch.arange(n, dtype=torch.float64) * 0.37 + i).reshape(t.shape)
            t.copy_(wave * (1 / math.sqrt(n / t.shape[0]) if t.ndim > 1 else 0.1))


def formula_input(h: int, w: int) -> torch.Tensor:
    r = torch.arange(3 * h * w, dtype=torch.float64).reshape(1, 3, h, w)
    return 0.5 + 0.45 * torch.sin(r * 0.11) * torch.cos(r * 0.029)


def small(scale: int = 3, form: str = "train", channels: int = 12) -> torch.nn.Module:
    torch.manual_seed(0)
    return architectures.build("span_esr", scale, f"ch{channels}", form=form).double().eval()


def count(model: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def official_params(variant: str, scale: int, form: str) -> list[tuple[str, int]]:
    table = published.official_table().query(
        "model == 'span_esr' and variant == @variant and scale == @scale and form == @form"
    )
    return [(r.metric, int(r.value)) for r in table.itertuples() if r.metric.startswith("params")]


# The official classes' counts (results/official/official_code.csv) against our port and the layout.
@pytest.mark.parametrize(
    ("variant", "scale", "form"),
    [("ch48", s, f) for s in (2, 3, 4) for f in ("train", "deploy")]
    + [("ch52", 4, "deploy"), ("ch28", 4, "deploy")],
)
def test_parameter_counts(variant, scale, form):
    model = architectures.build("span_esr", scale, variant, form=form)
    official = dict(official_params(variant, scale, form))
    assert count(model) == official["params"]
    if "params_trainable" in official:
        assert count(model, trainable=True) == official["params_trainable"]
    layout = official_layout(model.feature_channels, scale, form)
    assert sum(math.prod(s) for s in layout.values()) == official["params"]


@pytest.mark.parametrize("form", ["train", "deploy"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shape_and_scale(scale, form):
    model = small(scale, form)
    y = model(torch.rand(2, 3, 7, 10, dtype=torch.float64))
    assert y.shape == (2, 3, 7 * scale, 10 * scale) and model.scale == scale


@pytest.mark.parametrize("form", ["train", "deploy"])
def test_state_dict_has_official_layout(form):
    model = architectures.build("span_esr", 4, "ch28", form=form)
    layout = official_layout(28, 4, form)
    assert list(model.state_dict()) == list(layout)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout


@pytest.mark.parametrize("form", ["train", "deploy"])
def test_official_layout_loads_strictly(form):
    torch.manual_seed(1)
    official = {k: torch.randn(shape) for k, shape in official_layout(12, 2, form).items()}
    checkpoint = {"params": official} if form == "train" else official  # BasicSR vs NTIRE plain state_dict
    model = load_checkpoint(architectures.build("span_esr", 2, "ch12", form=form), checkpoint)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in official.items())


def test_golden_output_of_official_class():
    # Measured on the official class (hongyuanyu/SPAN basicsr/archs/span_arch.py, SPAN(3, 3,
    # feature_channels=12, upscale=3), float64, train mode) with formula_weights and formula_input(9, 11).
    model = small(scale=3, channels=12)
    formula_weights(model)
    y = model(formula_input(9, 11))
    assert y.sum().item() == pytest.approx(34.472580219422, rel=1e-10)
    assert y.pow(2).sum().item() == pytest.approx(60976.537918596281, rel=1e-10)
    assert y[0, 1, 13, 17].item() == pytest.approx(5.970777736186, rel=1e-10)
    assert y[0, 2, 26, 32].item() == pytest.approx(-1.027146526486, rel=1e-10)


def test_train_and_deploy_agree_in_interior_and_at_border():
    train = small(scale=2)
    deploy = copy.deepcopy(train).reparameterize()
    x = torch.rand(1, 3, 12, 15, dtype=torch.float64)
    diff = (train(x) - deploy(x)).abs()
    frame = torch.ones_like(diff, dtype=torch.bool)
    frame[..., 2:-2, 2:-2] = False  # one LR pixel (= scale HR pixels) at each edge
    interior, border = diff[~frame].max().item(), diff[frame].max().item()
    # The zero-padded training branch sees b1 at the padding, which the merged bias already sums: the
    # forms agree at the border too (measured, not assumed; see the module docstring).
    assert interior < 1e-10, interior
    assert border < 1e-10, border


def test_reparameterize_is_in_place_and_idempotent():
    model = small(scale=2)
    x = torch.rand(1, 3, 8, 9, dtype=torch.float64)
    assert model.reparameterize() is model and model.form == "deploy"
    once = {k: v.clone() for k, v in model.state_dict().items()}
    y1 = model(x)
    model.reparameterize()
    assert list(model.state_dict()) == list(official_layout(12, 2, "deploy"))
    assert all(torch.equal(once[k], v) for k, v in model.state_dict().items())
    assert torch.equal(y1, model(x))


@pytest.mark.parametrize("form", ["train", "deploy"])
def test_eval_is_deterministic_and_leaves_weights_alone(form):
    # The official Conv3XC re-merges eval_conv on every eval forward; ours must not touch loaded weights.
    model = small(scale=2, form=form)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        y1, y2 = model(x), model(x)
    assert torch.equal(y1, y2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_train_checkpoint_converts_into_deploy_model():
    train = small(scale=3)
    with torch.no_grad():
        for p in train.parameters():
            p.add_(0.01)  # makes the checkpoint's eval_conv stale, as in official BasicSR checkpoints
    deploy = load_checkpoint(small(scale=3, form="deploy"), {"params_ema": train.state_dict()})
    x = torch.rand(1, 3, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(deploy(x), train(x), rtol=0, atol=1e-10)


def test_deploy_checkpoint_into_train_model_is_a_clear_error():
    deploy_sd = small(scale=2, form="deploy").state_dict()
    with pytest.raises(CheckpointError, match="this is a deploy-form checkpoint.*form='deploy'"):
        load_checkpoint(small(scale=2), deploy_sd)


def test_any_channel_variant_builds_and_bad_names_are_refused():
    assert architectures.build("span_esr", 4, "ch30").feature_channels == 30
    assert architectures.spec("span_esr").default_variant == "ch48"
    with pytest.raises(ValueError, match="ch<N>"):
        architectures.build("span_esr", 4, "wide")
