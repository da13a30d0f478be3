"""SPAN-ESR: parameter counts, shapes, official key layouts, train/deploy equivalence, golden output."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import architectures
from architectures.checkpoint import CheckpointError, load_checkpoint

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


# Counts of the official classes (fidelity notes; re-measured on hongyuanyu/SPAN's SPAN class).
@pytest.mark.parametrize(
    ("variant", "scale", "form", "total", "trainable"),
    [
        ("ch48", 2, "train", 2_221_140, 1_824_900),
        ("ch48", 3, "train", 2_227_635, 1_831_395),
        ("ch48", 4, "train", 2_236_728, 1_840_488),
        ("ch48", 2, "deploy", 410_700, None),
        ("ch48", 3, "deploy", 417_195, None),
        ("ch48", 4, "deploy", 426_288, None),
        ("ch52", 4, "deploy", 498_208, None),
        ("ch28", 4, "deploy", 150_688, None),
    ],
)
def test_parameter_counts(variant, scale, form, total, trainable):
    model = architectures.build("span_esr", scale, variant, form=form)
    assert count(model) == total
    if trainable is not None:
        assert count(model, trainable=True) == trainable
    assert sum(math.prod(s) for s in official_layout(model.feature_channels, scale, form).values()) == total


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
