"""DRSAN: parameter counts of the official checkpoints, shapes, the DRAG formula, TF weight conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import architectures
from architectures.drsan import (
    DRSAN,
    DynamicResidualAttentionGroup,
    _depth_to_space_permutation,
    state_dict_from_tf,
    tf_variable_map,
)
from harness import published

pytestmark = pytest.mark.usefixtures("one_thread")


def official_params(variant: str, scale: int) -> int:
    """The count the official checkpoints' .index files hold (results/official/official_code.csv)."""
    return int(published.official("drsan", variant, scale, "train", "", "params").value)


OFFICIAL_TABLE = published.official_table().query("model == 'drsan' and metric == 'params'")
OFFICIAL_VARIANTS = sorted(zip(OFFICIAL_TABLE.variant, OFFICIAL_TABLE.scale, strict=True))
TINY = {"channels": 8, "n_drags": 2, "n_units": 3}
# Model-variable names → TF shapes read from the 13 official checkpoints' .index files (see its "note").
TF_INDEX = json.loads((Path(__file__).parent / "data" / "drsan_tf_index.json").read_text())["checkpoints"]


def randomize_(module: torch.nn.Module, seed: int = 0) -> None:
    """Random weights everywhere, PReLU slopes included (their init 0 would hide a slope mix-up)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))


def test_registry_lists_the_published_variants() -> None:
    spec = architectures.spec("drsan")
    assert {(v, s) for v, scales in spec.scales.items() for s in scales} == set(OFFICIAL_VARIANTS)
    assert spec.default_variant == "32s"
    with pytest.raises(ValueError, match="32l"):
        architectures.build("drsan", 3, "32l")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape(scale: int) -> None:
    model = architectures.build("drsan", scale, **TINY).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 7, 10))
    assert out.shape == (2, 3, 7 * scale, 10 * scale)
    assert model.scale == scale


def test_published_variant_runs_on_small_input() -> None:
    model = architectures.build("drsan", 4, "48m").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 6, 5)).shape == (1, 3, 24, 20)


def test_init_is_xavier_uniform_with_zero_biases() -> None:
    torch.manual_seed(0)
    model = architectures.build("drsan", 2, "32s")
    tail = model.drags[0].fuse.weight  # 160 → 32, 1×1: bound sqrt(6 / (160 + 32))
    bound = (6 / (160 + 32)) ** 0.5
    assert tail.abs().max() <= bound and tail.abs().max() > 0.9 * bound
    assert all(m.bias.abs().max() == 0 for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert all(p.abs().max() == 0 for n, p in model.named_parameters() if "act" in n)


def test_eval_is_batch_independent_and_survives_a_state_dict_round_trip() -> None:
    model = architectures.build("drsan", 3, **TINY).eval()
    randomize_(model)
    x = torch.rand(3, 3, 9, 8, dtype=torch.float64)
    model.double()
    twin = architectures.build("drsan", 3, **TINY).double().eval()
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        batched = model(x)
        singles = torch.cat([model(x[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(batched, singles, rtol=0, atol=1e-12)
        torch.testing.assert_close(twin(x), batched, rtol=0, atol=0)


def reference_drag(drag: DynamicResidualAttentionGroup, x: torch.Tensor) -> torch.Tensor:
    """The DRAG formula of specs/drsan.md, written out with functional ops and explicit index pairs."""
    p = {k: v.double() for k, v in drag.state_dict().items()}
    x = x.double()
    n_units = len(drag.blocks)
    t = F.prelu(F.conv2d(x, p["drm.conv1.weight"], p["drm.conv1.bias"]), p["drm.act.weight"])
    r = F.conv2d(t, p["drm.conv2.weight"], p["drm.conv2.bias"]).mean(dim=(2, 3))
    pairs = [(n, k) for n in range(1, n_units + 1) for k in range(n)]  # r[1,0], r[2,0], r[2,1], …
    f = [x]
    for n in range(1, n_units + 1):
        b = f"blocks.{n - 1}."
        h = F.prelu(f[n - 1], p[b + "act1.weight"])
        h = F.conv2d(h, p[b + "conv1.weight"], p[b + "conv1.bias"], padding=1)
        h = F.prelu(h, p[b + "act2.weight"])
        g = F.conv2d(h, p[b + "conv2.weight"], p[b + "conv2.bias"], padding=1)
        fd = torch.zeros_like(g)
        for idx, (m, k) in enumerate(pairs):
            if m == n:
                fd = fd + r[:, idx, None, None, None] * f[k]
        f.append((g + fd) * torch.sigmoid(g))
    return F.conv2d(torch.cat(f, dim=1), p["fuse.weight"], p["fuse.bias"])


def test_drag_matches_independent_recomputation() -> None:
    drag = DynamicResidualAttentionGroup(channels=6, n_units=4)
    randomize_(drag, seed=1)
    x = torch.randn(2, 6, 7, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = drag(x)
    torch.testing.assert_close(out.double(), reference_drag(drag, x), rtol=1e-5, atol=1e-5)


def test_dynamic_weights_are_signed_and_unnormalised() -> None:
    """With the DRM's last conv zeroed, r equals its bias: a negative r must enter f_1 as is."""
    drag = DynamicResidualAttentionGroup(channels=4, n_units=1)
    randomize_(drag, seed=3)
    x = torch.randn(1, 4, 5, 6, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        drag.drm.conv2.weight.zero_()
        drag.drm.conv2.bias.fill_(-2.5)
        assert torch.equal(drag.drm(x), torch.full((1, 1), -2.5))
        out = drag(x)
        g = drag.blocks[0](x)
        expected = drag.fuse(torch.cat([x, (g - 2.5 * x) * torch.sigmoid(g)], dim=1))
        drag.drm.conv2.bias.fill_(1.0)  # what any softmax/sigmoid normalisation of one weight gives
        normalised = drag(x)
    torch.testing.assert_close(out, expected)
    assert (out - normalised).abs().max() > 0.1


def official_tf_variables(channels: int, n_drags: int, n_units: int, scale: int) -> dict[str, tuple]:
    """Names and HWIO shapes of the trainable variables the official model.py creates, in order."""
    convs = [(3, 3, 3, channels)]
    alphas = {}
    for k in range(1, n_drags + 1):
        convs += [(1, 1, channels, 16), (1, 1, 16, n_units * (n_units + 1) // 2)]
        alphas[f"DRAN/conv_block{k}prelualpha"] = (16,)
        for j in range(1, 2 * n_units + 1):
            convs.append((3, 3, channels, channels))
            alphas[f"DRAN/conv_block{k}_pReLU_{j}alpha"] = (channels,)
        convs.append((1, 1, (n_units + 1) * channels, channels))
    convs.append((3, 3, channels, channels))
    convs += {2: [(3, 3, channels, 4 * channels)], 3: [(3, 3, channels, 9 * channels)]}.get(
        scale, [(3, 3, channels, 4 * channels)] * 2
    )
    convs.append((3, 3, channels, 3))
    out = dict(alphas)
    for i, shape in enumerate(convs):
        name = "DRAN/conv2d" if i == 0 else f"DRAN/conv2d_{i}"
        out[f"{name}/kernel"] = shape
        out[f"{name}/bias"] = (shape[-1],)
    return out


@pytest.mark.parametrize(("variant", "scale"), [("32s", 2), ("48s", 3), ("32m", 4)])
def test_tf_variable_map_covers_the_official_variables(variant: str, scale: int) -> None:
    model = architectures.build("drsan", scale, variant)
    c, k, n = architectures.drsan.VARIANTS[variant]
    official = official_tf_variables(c, k, n, scale)
    assert sum(int(np.prod(s)) for s in official.values()) == official_params(variant, scale)
    names = tf_variable_map(model)
    assert set(names) == set(official)
    assert sorted(names.values()) == sorted(model.state_dict())


def test_tf_variable_map_spot_checks() -> None:
    names = tf_variable_map(architectures.build("drsan", 2, "32s"))
    assert names["DRAN/conv2d/kernel"] == "head.weight"
    assert names["DRAN/conv2d_1/kernel"] == "drags.0.drm.conv1.weight"
    assert names["DRAN/conv2d_11/kernel"] == "drags.0.fuse.weight"
    assert names["DRAN/conv2d_12/kernel"] == "drags.1.drm.conv1.weight"
    assert names["DRAN/conv_block4_pReLU_8alpha"] == "drags.3.blocks.3.act2.weight"
    assert names["DRAN/conv2d_45/bias"] == "body_conv.bias"
    assert names["DRAN/conv2d_47/kernel"] == "tail.weight"


def tf_depth_to_space(x: torch.Tensor, r: int) -> torch.Tensor:
    """TF's depth_to_space on NCHW: out[c, h·r+i, w·r+j] = in[(i·r+j)·C + c, h, w]."""
    b, crr, h, w = x.shape
    return x.view(b, r, r, crr // (r * r), h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, -1, h * r, w * r)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_state_dict_from_tf_loads_and_reproduces_tf_upsampling(scale: int) -> None:
    c, k, n = 8, 1, 2
    rng = np.random.default_rng(scale)
    arrays = {
        name: rng.standard_normal(shape).astype(np.float32)
        for name, shape in official_tf_variables(c, k, n, scale).items()
    }
    arrays["global_step"] = np.array(10_000)
    model = DRSAN(scale, channels=c, n_drags=k, n_units=n)
    model.load_state_dict(state_dict_from_tf(arrays, model), strict=True)
    assert torch.equal(
        model.head.weight, torch.from_numpy(arrays["DRAN/conv2d/kernel"].transpose(3, 2, 0, 1))
    )

    x = torch.randn(1, c, 4, 5)
    expected = x
    first_up = 1 + k * (2 + 2 * n + 1) + 1
    for i, r in enumerate([2, 2] if scale == 4 else [scale]):
        kernel = torch.from_numpy(arrays[f"DRAN/conv2d_{first_up + i}/kernel"].transpose(3, 2, 0, 1))
        bias = torch.from_numpy(arrays[f"DRAN/conv2d_{first_up + i}/bias"])
        expected = tf_depth_to_space(F.conv2d(expected, kernel, bias, padding=1), r)
    with torch.no_grad():
        torch.testing.assert_close(model.upsampler(x), expected)


def test_state_dict_from_tf_rejects_a_wrong_variant() -> None:
    arrays = {name: np.zeros(shape, np.float32) for name, shape in official_tf_variables(8, 1, 2, 2).items()}
    with pytest.raises(ValueError, match="variant"):
        state_dict_from_tf(arrays, DRSAN(2, channels=16, n_drags=1, n_units=2))
    with pytest.raises(KeyError, match="lacks"):
        state_dict_from_tf(arrays, DRSAN(2, channels=8, n_drags=2, n_units=2))


def test_tf_index_covers_every_official_checkpoint() -> None:
    assert sorted((c["variant"], c["scale"]) for c in TF_INDEX.values()) == OFFICIAL_VARIANTS


@pytest.mark.parametrize("checkpoint", sorted(TF_INDEX))
def test_tf_variable_map_matches_the_official_checkpoint_index(checkpoint: str) -> None:
    """Names one-to-one with the checkpoint's model variables; HWIO kernels ↔ OIHW weights, vectors as is."""
    entry = TF_INDEX[checkpoint]
    variant, scale = entry["variant"], entry["scale"]
    variables = {name: tuple(shape) for name, shape in entry["variables"].items()}
    assert sum(int(np.prod(s)) for s in variables.values()) == official_params(variant, scale)
    model = architectures.build("drsan", scale, variant)
    own = model.state_dict()
    names = tf_variable_map(model)
    assert set(names) == set(variables)
    assert sorted(names.values()) == sorted(own)  # a bijection onto the state_dict
    for tf_name, key in names.items():
        shape = variables[tf_name]
        expected = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape
        assert tuple(own[key].shape) == expected, (tf_name, key)


@pytest.mark.parametrize("checkpoint", sorted(TF_INDEX))
def test_state_dict_from_tf_loads_the_official_checkpoint_layout(checkpoint: str) -> None:
    """Synthetic arrays with the checkpoint's names/shapes (plus its optimiser variables) load strictly."""
    entry = TF_INDEX[checkpoint]
    rng = np.random.default_rng(entry["scale"])
    arrays = {
        name: rng.standard_normal(shape).astype(np.float32) for name, shape in entry["variables"].items()
    }
    extras = {f"{name}/AdamOptimizer{suffix}": a for name, a in arrays.items() for suffix in ("", "_1")}
    extras |= {"Variable": np.array(10_000, np.int32), "beta1_power": np.float32(0.5), "beta2_power": 0.9}
    model = architectures.build("drsan", entry["scale"], entry["variant"])
    state = state_dict_from_tf(arrays | extras, model)
    model.load_state_dict(state, strict=True)
    shuffles = {f"upsampler.{i - 1}": m.upscale_factor for i, m in enumerate(model.upsampler) if i % 2}
    for tf_name, key in tf_variable_map(model).items():
        value = arrays[tf_name].transpose(3, 2, 0, 1) if arrays[tf_name].ndim == 4 else arrays[tf_name]
        module = key.rsplit(".", 1)[0]
        if module in shuffles:
            value = value[_depth_to_space_permutation(value.shape[0], shuffles[module])]
        assert torch.equal(state[key], torch.from_numpy(np.ascontiguousarray(value))), (tf_name, key)
