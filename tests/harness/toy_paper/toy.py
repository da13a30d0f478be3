"""A toy paper for the "adding a paper" test: a 3×3 conv head, channel attention through a new registered
operator, a conv + pixel-shuffle tail. Nothing in the package imports it; ``harness.papers.add_paper``
registers it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from architectures.registry import Counting, register
from kernels.registry import Operator, register_operator, shapes


def channel_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """q, k, v (B, C, N) → (B, C, N): softmax over the C×C channel affinities, scaled by 1/√N."""
    attn = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1)
    return attn @ v


def channel_attention_macs(q: Tensor, k: Tensor, v: Tensor) -> int:
    (b, c, n), (_, cv, _) = shapes(q, v)
    return b * c * c * n + b * c * cv * n  # q·kᵀ and attn·v


CHANNEL_ATTENTION = register_operator(
    Operator(
        "toy_channel_attention",
        channel_attention,
        "ToyChannelAttentionFunction",
        channel_attention_macs,
        lambda q, k, v: v.new_zeros(shapes(v)[0]),
    )
)


class ToySR(nn.Module):
    def __init__(self, scale: int, channels: int = 8):
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.tail = nn.Sequential(nn.Conv2d(channels, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)
        q, k, v = self.qkv(h).flatten(2).chunk(3, dim=1)
        return self.tail(h + CHANNEL_ATTENTION(q, k, v).view_as(h))


@register("toy", paper="toy", scales={None: (2,)}, counting=Counting(ops="fvcore", convention="hr720p"))
def build_toy(scale: int, variant: str | None = None, form: str = "train", **overrides) -> ToySR:
    return ToySR(scale, **overrides)
