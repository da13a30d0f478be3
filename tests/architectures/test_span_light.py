"""SPAN-light: parameter counts, official state_dict layout, shapes, and float64 golden behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import architectures
from architectures.span_light import SPAB, SPANLight

pytestmark = pytest.mark.usefixtures("one_thread")

# state_dict key → shape of the official class at ×2/×3/×4 with the options/SPAN configuration, dumped in key
# order from basicsr/archs/span_arch.py::SPAN (zononhzy/SPAN) instantiated outside this repository.
OFFICIAL_LAYOUT = json.loads(
    (Path(__file__).parent / "data" / "span_light_official_state_dict.json").read_text()
)

SMALL = dict(embed_dim=8, depths=(1, 2), num_heads=(2, 4), window_size=6, overlap_size=2, mlp_ratio=2)


def _conv(prefix, out_ch, in_ch, k):
    return {f"{prefix}.weight": (out_ch, in_ch, k, k), f"{prefix}.bias": (out_ch,)}


def _norm(prefix, width):
    return {f"{prefix}.weight": (width,), f"{prefix}.bias": (width,)}


def _expected_layout(scale, dim=60, depths=(2,) * 6, heads=(6,) * 6, window=12, mlp_ratio=2):
    """Official key → shape, derived from the constructor of basicsr/archs/span_arch.py::SPAN."""
    esa, hidden = max(16, dim // 4), int(dim * mlp_ratio)
    layout = _conv("conv_first", dim, 3, 3)
    for i, (depth, nh) in enumerate(zip(depths, heads, strict=True)):
        elfeb = f"layers.{i}.residual_group.blocks.0"
        layout[f"{elfeb}.weight"] = (dim, 1, 3, 3)
        layout |= _conv(f"{elfeb}.conv_block.0", dim, dim, 1) | _conv(f"{elfeb}.conv_block.1", dim, 1, 5)
        layout |= _conv(f"{elfeb}.conv2", dim, dim, 1)
        for j in range(1, depth + 1):
            b = f"layers.{i}.residual_group.blocks.{j}"
            layout[f"{b}.temperature"] = (nh, 1, 1)
            layout[f"{b}.relative_position_bias_table"] = ((2 * window - 1) ** 2, nh)
            layout[f"{b}.relative_position_index"] = (window**2, window**2)
            layout |= _norm(f"{b}.norm1.norm", dim) | _norm(f"{b}.norm2.norm", dim)
            layout |= _conv(f"{b}.qkv", 3 * dim, dim, 1) | _conv(f"{b}.proj_out", dim, dim, 1)
            layout |= _conv(f"{b}.hft_attention.conv_after_upsample.0", dim, 1, 3)
            layout |= _conv(f"{b}.conv_ffn.fc1", hidden, dim, 1)
            layout |= _norm(f"{b}.conv_ffn.sg.norm.norm", hidden // 2)
            layout |= _conv(f"{b}.conv_ffn.sg.conv", hidden // 2, 1, 3)
            layout |= _conv(f"{b}.conv_ffn.fc2", dim, hidden // 2, 1)
        e = f"layers.{i}.esa"
        layout |= _conv(f"{e}.conv1", esa, dim, 1) | _conv(f"{e}.conv_f", esa, esa, 1)
        layout |= _conv(f"{e}.conv2", esa, esa, 3) | _conv(f"{e}.conv3", esa, esa, 3)
        layout |= _conv(f"{e}.conv4", dim, esa, 1)
    return layout | _conv("conv_after_body", dim, dim, 3) | _conv("upsample.0", scale**2 * 3, dim, 3)


def _official_style_attention(qkv, heads, temperature, table, index, window, overlap):
    """Official SPAB attention core by materialised windows (F.unfold → per-window exp → F.fold), any dtype.

    qkv (B, 3C, H, W) from the qkv conv; temperature (heads, 1, 1); table ((2w−1)², heads); index (w², w²).
    """
    b, c3, h, w = qkv.shape
    hd = c3 // (3 * heads)
    stride = window - overlap
    win = F.unfold(qkv, window, stride=stride)  # (B, 3C·w², L)
    win = win.reshape(b, 3 * heads, hd, window**2, -1).permute(0, 4, 1, 3, 2)  # (B, L, 3nH, w², hd)
    q, k, v = win.chunk(3, dim=2)
    bias = table[index.reshape(-1)].reshape(window**2, window**2, heads).permute(2, 0, 1)
    logits = (q * temperature) @ k.transpose(-2, -1) + bias
    e = torch.exp(logits - logits.amax(-1, keepdim=True))

    def fold(t):  # (B, L, nH, w², d) → (B, nH·d, H, W), summing overlaps
        t = t.permute(0, 2, 4, 3, 1).reshape(b, -1, t.shape[1])
        return F.fold(t, (h, w), window, stride=stride)

    num = fold(e @ v).reshape(b, heads, hd, h, w)
    den = fold(e.sum(-1, keepdim=True)).reshape(b, heads, 1, h, w)
    return (num / den).reshape(b, heads * hd, h, w)


def _ln(norm_proxy, x):
    ln = norm_proxy.norm
    return F.layer_norm(x.permute(0, 2, 3, 1), ln.normalized_shape, ln.weight, ln.bias).permute(0, 3, 1, 2)


def _reference_elfeb(m, x):
    shift = lambda t: F.conv2d(t, m.weight, padding=1, groups=t.shape[1])  # noqa: E731
    return m.conv2(shift(F.gelu(m.conv_block[1](m.conv_block[0](shift(x)))))) + x


def _reference_hft(m, x):
    h, w = x.shape[-2:]
    attn = 3 * x
    for s in (2, 4, 8):
        attn = attn - F.interpolate(F.adaptive_avg_pool2d(x, (h // s, w // s)), size=(h, w), mode="nearest")
    return torch.sigmoid(m.conv_after_upsample[0](attn)) * x


def _reference_sgfn(m, x):
    x1, x2 = F.gelu(m.fc1(x)).chunk(2, dim=1)
    return m.fc2(x1 * m.sg.conv(_ln(m.sg.norm, x2)))


def _reference_esa(m, x):
    c1_ = m.conv1(x)
    c3 = m.conv3(F.max_pool2d(m.conv2(c1_), kernel_size=7, stride=3))
    c3 = F.interpolate(c3, (x.size(2), x.size(3)), mode="bilinear", align_corners=False)
    return x * torch.sigmoid(m.conv4(c3 + m.conv_f(c1_)))


def _reference_block(blk, x):
    """Official SPAB.forward (eval) around the materialised-window attention."""
    y = _official_style_attention(
        blk.qkv(_ln(blk.norm1, x)),
        blk.num_heads,
        blk.temperature,
        blk.relative_position_bias_table,
        blk.relative_position_index,
        blk.window_size,
        blk.overlap_size,
    )
    x = x + _reference_hft(blk.hft_attention, blk.proj_out(y))
    return x + _reference_sgfn(blk.conv_ffn, _ln(blk.norm2, x))


def _reference_forward(model, x):
    """Official SPAN.forward (pixelshuffledirect, eval): reflect pad, mean shift, doubled residuals, crop.

    Only the leaf convolutions and norms' weights are taken from ``model``; the wiring is re-derived here.
    """
    h, w = x.shape[-2:]
    stride = model.window_size - model.overlap_size
    pad_h = (stride - (h - model.overlap_size) % stride) % stride
    pad_w = (stride - (w - model.overlap_size) % stride) % stride
    mean = torch.Tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1).type_as(x)  # float32 values, as official
    x = model.conv_first(F.pad(x, (0, pad_w, 0, pad_h), "reflect") - mean)
    feats = x
    for layer in model.layers:
        elfeb, *spabs = layer.residual_group.blocks
        feats = _reference_elfeb(elfeb, feats) + feats
        for blk in spabs:
            feats = _reference_block(blk, feats) + feats
        feats = _reference_esa(layer.esa, feats)
    out = F.pixel_shuffle(model.upsample[0](model.conv_after_body(feats) + x), model.scale) + mean
    return out[..., : h * model.scale, : w * model.scale]


@pytest.fixture
def perturbed_small_model():
    """Small float64 ×3 model, eval mode, every parameter (incl. the zero-initialised ones) randomised."""
    torch.manual_seed(0)
    model = architectures.build("span_light", 3, **SMALL).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn_like(p) * (0.5 if "temperature" in name else 0.2) + ("norm" in name))
    return model


def test_the_buffers_are_the_relative_position_indices():
    """(The parameter counts against the official code: tests/architectures/test_registry.py.)"""
    buffers = dict(architectures.build("span_light", 2).named_buffers())
    assert len(buffers) == 12
    assert all(n.endswith("relative_position_index") and b.shape == (144, 144) for n, b in buffers.items())


def test_relative_position_index_is_swin_layout():
    index = architectures.build("span_light", 2).layers[0].residual_group.blocks[1].relative_position_index
    w = 12
    rows, cols = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    r, c = rows.reshape(-1), cols.reshape(-1)
    expected = (r[:, None] - r[None, :] + w - 1) * (2 * w - 1) + (c[:, None] - c[None, :] + w - 1)
    assert index.dtype == torch.int64
    assert torch.equal(index, expected)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_state_dict_layout_loads_strict(scale):
    model = architectures.build("span_light", scale)
    layout = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert layout == list(OFFICIAL_LAYOUT[str(scale)].items())
    assert dict((k, tuple(s)) for k, s in layout) == _expected_layout(scale)
    torch.manual_seed(1)
    official = {k: torch.randn(s) for k, s in OFFICIAL_LAYOUT[str(scale)].items() if "index" not in k}
    official |= {k: v.clone() for k, v in model.state_dict().items() if "index" in k}
    model.load_state_dict(official, strict=True)
    assert all(torch.equal(v, official[k]) for k, v in model.state_dict().items())


def test_small_overrides_follow_the_official_layout():
    model = architectures.build("span_light", 3, **SMALL)
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert layout == _expected_layout(3, dim=8, depths=(1, 2), heads=(2, 4), window=6, mlp_ratio=2)


def test_elfeb_shift_is_frozen_and_shifts_fifths():
    elfeb = architectures.build("span_light", 2).layers[0].residual_group.blocks[0]
    assert not elfeb.weight.requires_grad
    x = torch.zeros(1, 60, 5, 5)
    x[:, :, 2, 2] = 1.0
    shifted = elfeb._shift(x)[0]
    assert all(shifted[c, 2, 1] == 1 for c in range(0, 12))  # left
    assert all(shifted[c, 2, 3] == 1 for c in range(12, 24))  # right
    assert all(shifted[c, 1, 2] == 1 for c in range(24, 36))  # up
    assert all(shifted[c, 3, 2] == 1 for c in range(36, 48))  # down
    assert all(shifted[c, 2, 2] == 1 for c in range(48, 60))  # identity
    assert shifted.sum() == 60


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shape_for_input_off_the_window_grid(scale):
    torch.manual_seed(0)
    model = architectures.build("span_light", scale).eval()
    assert model.scale == scale
    assert model.padding(20, 25) == (1, 5)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 20, 25))
    assert out.shape == (1, 3, 20 * scale, 25 * scale)
    assert torch.isfinite(out).all()


def test_eval_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    model = architectures.build("span_light", 4).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        a, b, single = model(x), model(x), model(x[1:])
    assert torch.equal(a, b)
    torch.testing.assert_close(a[1:], single, rtol=1e-5, atol=1e-4)


def test_too_small_input_is_a_clear_error():
    model = architectures.build("span_light", 2)
    with pytest.raises(ValueError, match="at least 13 pixels"):
        model(torch.rand(1, 3, 12, 40))
    assert model(torch.rand(1, 3, 13, 13)).shape == (1, 3, 26, 26)


def test_windowed_attention_equals_materialised_windows_float64(perturbed_small_model):
    blk = perturbed_small_model.layers[1].residual_group.blocks[2]
    assert isinstance(blk, SPAB)
    torch.manual_seed(2)
    x = torch.randn(2, 8, 18, 22, dtype=torch.float64)  # (18 − 2) and (22 − 2) are multiples of stride 4
    with torch.no_grad():
        got = blk.attention(x)
        want = _official_style_attention(
            blk.qkv(x),
            blk.num_heads,
            blk.temperature,
            blk.relative_position_bias_table,
            blk.relative_position_index,
            blk.window_size,
            blk.overlap_size,
        )
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_model_equals_official_forward_float64(perturbed_small_model):
    torch.manual_seed(3)
    x = torch.rand(1, 3, 17, 21, dtype=torch.float64)  # padded to 18 × 22
    with torch.no_grad():
        got = perturbed_small_model(x)
        want = _reference_forward(perturbed_small_model, x)
    assert got.shape == (1, 3, 51, 63)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_drop_path_is_active_only_in_training():
    torch.manual_seed(0)
    model = SPANLight(upscale=2, **SMALL, drop_path_rate=0.9)
    x = torch.rand(4, 3, 18, 18)
    with torch.no_grad():
        train_a, train_b = model.train()(x), model(x)
        eval_a, eval_b = model.eval()(x), model(x)
    assert not torch.equal(train_a, train_b)
    assert torch.equal(eval_a, eval_b)


def test_gradients_reach_attention_parameters_but_not_the_frozen_shift():
    torch.manual_seed(0)
    model = SPANLight(upscale=2, **SMALL).train()
    model(torch.rand(1, 3, 18, 18)).square().mean().backward()
    spab = model.layers[0].residual_group.blocks[1]
    for p in (spab.temperature, spab.relative_position_bias_table, spab.qkv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.layers[0].residual_group.blocks[0].weight.grad is None
