"""HSPAN: official parameter counts and state_dict layout, shapes, batch independence, forward_chop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import architectures
from architectures.hspan import HSPAN, HighSimilarityPassAttention
from harness import published

pytestmark = pytest.mark.usefixtures("one_thread")

# Names and shapes of the official model's state_dict (src/model/hspan.py with demo.sh's arguments),
# dumped from the official code; no weights.
OFFICIAL_LAYOUT = json.loads((Path(__file__).parent / "data" / "hspan_official_state_dict.json").read_text())
TINY = {"n_resgroups": 2, "n_resblocks": 1, "n_feats": 8, "topk": 4}


@pytest.fixture(scope="module")
def full_models() -> dict[int, HSPAN]:
    """The three full-size models (33M parameters each), built once for the module."""
    torch.manual_seed(0)
    return {scale: architectures.build("hspan", scale).eval() for scale in (2, 3, 4)}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_parameter_counts_match_official(full_models: dict[int, HSPAN], scale: int) -> None:
    full_model = full_models[scale]
    trainable = sum(p.numel() for p in full_model.parameters() if p.requires_grad)
    frozen = [n for n, p in full_model.named_parameters() if not p.requires_grad]
    official = published.official("hspan", None, scale, "train", "", "params_trainable")
    assert trainable == int(official.value)
    assert sorted(frozen) == ["add_mean.bias", "add_mean.weight", "sub_mean.bias", "sub_mean.weight"]
    assert sum(p.numel() for p in full_model.parameters() if not p.requires_grad) == 24
    assert full_model.topk == 128


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_state_dict_loads_strictly(full_models: dict[int, HSPAN], scale: int) -> None:
    full_model = full_models[scale]
    layout = OFFICIAL_LAYOUT[str(full_model.scale)]
    assert {k: list(v.shape) for k, v in full_model.state_dict().items()} == layout
    state = {k: torch.full(shape, float(i)) for i, (k, shape) in enumerate(layout.items())}
    original = {k: v.clone() for k, v in full_model.state_dict().items()}
    try:
        architectures.load_checkpoint(full_model, state)
        assert all(torch.equal(v, state[k]) for k, v in full_model.state_dict().items())
    finally:
        full_model.load_state_dict(original)


def test_full_model_forward_on_tiny_input(full_models: dict[int, HSPAN]) -> None:
    """One full-size forward, at ×4 (two upsampler stages); the tiny models cover the other scales."""
    with torch.no_grad():
        out = full_models[4](torch.rand(1, 3, 12, 12))
    assert out.shape == (1, 3, 48, 48)
    assert torch.isfinite(out).all()


def test_mean_shift_is_the_div2k_mean() -> None:
    model = architectures.build("hspan", 2, **TINY)
    x = torch.rand(1, 3, 4, 4)
    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
    torch.testing.assert_close(model.sub_mean(x), x - mean)
    torch.testing.assert_close(model.add_mean(x), x + mean)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape(scale: int) -> None:
    model = architectures.build("hspan", scale, **TINY).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 9, 7))
    assert out.shape == (2, 3, 9 * scale, 7 * scale)
    assert model.scale == scale


def test_eval_is_batch_independent_and_survives_a_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    model = architectures.build("hspan", 3, **TINY).double().eval()
    twin = architectures.build("hspan", 3, **TINY).double().eval()
    twin.load_state_dict(model.state_dict())
    x = torch.rand(3, 3, 10, 9, dtype=torch.float64)
    with torch.no_grad():
        batched = model(x)
        singles = torch.cat([model(x[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(batched, singles, rtol=0, atol=1e-12)
        torch.testing.assert_close(twin(x), batched, rtol=0, atol=0)


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(TypeError, match="n_feats"):
        architectures.build("hspan", 2, rgb_range=255)


def test_hspa_is_sparsemax_attention_with_res_scale() -> None:
    """HSPA against dense sparsemax (sort-based, over all H·W positions) written out in float64."""
    torch.manual_seed(0)
    hspa = HighSimilarityPassAttention(channel=6, reduction=2, res_scale=0.1, topk=4).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    q = hspa.conv_match1(x).flatten(2).transpose(1, 2)
    k = hspa.conv_match2(x).flatten(2)
    v = hspa.conv_assembly(x).flatten(2).transpose(1, 2)
    scores = q @ k
    z, _ = scores.sort(dim=-1, descending=True)
    rank = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    support = (1 + rank * z > z.cumsum(-1)).sum(-1, keepdim=True)
    tau = (z.cumsum(-1).gather(-1, support - 1) - 1) / support
    attn = (scores - tau).clamp(min=0)
    assert (attn == 0).any(), "choose inputs where sparsemax is actually sparse"
    expected = 0.1 * (attn @ v).transpose(1, 2).reshape(x.shape) + x
    with torch.no_grad():
        torch.testing.assert_close(hspa(x), expected)


class NearestUpsample:
    """Mock model: nearest upsampling, recording the size of every piece it is given."""

    def __init__(self, scale: int):
        self.scale = scale
        self.sizes: list[tuple[int, int]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        return x.repeat_interleave(self.scale, -2).repeat_interleave(self.scale, -1)


def chop_with(mock: NearestUpsample, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """HSPAN.forward_chop with ``mock`` as the model applied to each piece."""
    model = HSPAN(mock.scale, n_resgroups=0, n_feats=4)
    model.forward = mock
    return model.forward_chop(x, **kwargs)


# (h, w, min_size) → piece size and number of model calls, by HSPAN's rule worked by hand:
# 41×53: 20+10=30 → 32, 26+10=36 → 40; 28×44: 14+10=24 → 28 and 22+10=32 → 40 (a full 4 / 8 added);
# 75×66 with min_size 1200: 48×48 (≥ 1200) → 36×40 (≥ 1200) → 32×32, 4³ calls.
CHOP_CASES = [(41, 53, 120000, (32, 40), 4), (28, 44, 120000, (28, 40), 4), (75, 66, 1200, (32, 32), 64)]


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize(("h", "w", "min_size", "piece", "calls"), CHOP_CASES)
def test_forward_chop_pieces_and_stitching(scale, h, w, min_size, piece, calls) -> None:
    rows = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1).expand(1, 1, h, w)
    cols = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w).expand(1, 1, h, w)
    x = torch.cat([rows, cols, torch.rand(1, 1, h, w, dtype=torch.float64)], dim=1)
    mock = NearestUpsample(scale)
    out = chop_with(mock, x, min_size=min_size)
    assert mock.sizes == [piece] * calls
    assert torch.equal(out, x.repeat_interleave(scale, -2).repeat_interleave(scale, -1))


def test_forward_chop_rejects_images_smaller_than_its_pieces() -> None:
    with pytest.raises(ValueError, match="whole-image"):
        chop_with(NearestUpsample(2), torch.rand(1, 3, 20, 40))


def without_attention(model: HSPAN) -> HSPAN:
    for group in model.body[:-1]:
        group.body[-2] = nn.Identity()
    return model


def test_chop_differs_from_whole_only_through_global_attention() -> None:
    torch.manual_seed(0)
    model = architectures.build("hspan", 2, n_resgroups=1, n_resblocks=1, n_feats=8, topk=4).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))
    x = torch.rand(1, 3, 30, 36)
    with torch.no_grad():
        assert (model.forward_chop(x) - model(x)).abs().max() > 1e-4
        # Without HSPA the network is local (receptive radius 7 < shave 10): chopping is exact.
        local = without_attention(model)
        torch.testing.assert_close(local.forward_chop(x), local(x))
