"""HSPAN: High-Similarity-Pass Attention Network (port of github.com/laoyangui/HSPAN, EDSR-PyTorch based).

Input (B, 3, h, w) RGB in [0, 1] → output (B, 3, s·h, s·w), unclipped. Module names and the state_dict
layout are the official ones, so the released checkpoints (plain EDSR state_dicts) load strictly. The
official ``rgb_range`` is fixed to 1 here (the model contract is [0, 1] images).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from architectures.common import DIV2K_RGB_MEAN
from architectures.errors import BuildError
from architectures.registry import register
from kernels import operator

_SOFT_THRESHOLD = operator("soft_threshold")


def default_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """EDSR's conv: stride 1, bias, zero padding kernel_size // 2."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


class MeanShift(nn.Conv2d):
    """Adds ``sign`` × the DIV2K mean per channel, as EDSR's 1×1 conv with frozen weights.

    The frozen weight (3×3×1×1) and bias (3) are parameters with ``requires_grad=False``, as in EDSR, so
    they are in the state_dict and in ``parameters()`` (12 entries per layer).
    """

    def __init__(self, sign: int, rgb_mean: tuple[float, float, float] = DIV2K_RGB_MEAN):
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * torch.tensor(rgb_mean))
        for p in self.parameters():
            p.requires_grad = False


class BasicBlock(nn.Sequential):
    """conv (k×k) → PReLU (one shared slope), the official HSPA embedding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(default_conv(in_channels, out_channels, kernel_size), nn.PReLU())


class LocalityExplorationBlock(nn.Module):
    """LEB: x + conv3×3(ReLU(conv3×3(x))) (the official ``res_scale`` argument is unused)."""

    def __init__(self, n_feats: int):
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feats, n_feats, 3), nn.ReLU(inplace=True), default_conv(n_feats, n_feats, 3)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + x


class HighSimilarityPassAttention(nn.Module):
    """HSPA: global attention normalised by soft thresholding (sparsemax), ×res_scale, plus the input.

    Queries and keys are 1×1 conv + PReLU embeddings (C → C/reduction), values (the assembly) C → C;
    scores are plain dot products over all H·W positions. ``topk`` is the official operator's initial k:
    it widens k until the support fits, so its output is exact sparsemax and ``topk`` only affected
    speed there; it is kept as a recorded hyper-parameter and does not change the output here.
    """

    def __init__(self, channel: int, reduction: int, res_scale: float, topk: int):
        super().__init__()
        self.res_scale = res_scale
        self.topk = topk
        self.conv_match1 = BasicBlock(channel, channel // reduction, 1)
        self.conv_match2 = BasicBlock(channel, channel // reduction, 1)
        self.conv_assembly = BasicBlock(channel, channel, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        query = self.conv_match1(x).flatten(2).transpose(1, 2)
        key = self.conv_match2(x).flatten(2).transpose(1, 2)
        value = self.conv_assembly(x).flatten(2).transpose(1, 2)
        out = _SOFT_THRESHOLD(query, key, value)
        return self.res_scale * out.transpose(1, 2).reshape(b, c, h, w) + x


class HSPAM(nn.Module):
    """High-Similarity-Pass Attention-based Module: x + res_scale·conv(HSPA(LEB^n(x)))."""

    def __init__(self, n_feats: int, reduction: int, res_scale: float, n_resblocks: int, topk: int):
        super().__init__()
        self.res_scale = res_scale
        self.body = nn.Sequential(
            *(LocalityExplorationBlock(n_feats) for _ in range(n_resblocks)),
            HighSimilarityPassAttention(n_feats, reduction, res_scale, topk),
            default_conv(n_feats, n_feats, 3),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) * self.res_scale + x


class Upsampler(nn.Sequential):
    """EDSR upsampler without activations: (conv3×3 C→4C, shuffle 2) × log2(s), or conv C→9C, shuffle 3."""

    def __init__(self, scale: int, n_feats: int):
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [default_conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [default_conv(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
        else:
            raise BuildError(f"HSPAN upsamples by a power of 2 or by 3, not {scale}")
        super().__init__(*layers)


class HSPAN(nn.Module):
    """Mean shift, conv3×3 head, n_resgroups HSPAMs + conv3×3 with a global skip, upsampler, conv3×3."""

    def __init__(
        self,
        scale: int,
        n_resgroups: int = 10,
        n_resblocks: int = 4,
        n_feats: int = 192,
        reduction: int = 2,
        topk: int = 128,
        res_scale: float = 0.1,
    ):
        super().__init__()
        self.scale = scale
        self.topk = topk
        # Unused by the official forward, but a trained parameter in its checkpoints.
        self.a = nn.Parameter(torch.zeros(1))
        self.sub_mean = MeanShift(sign=-1)
        self.add_mean = MeanShift(sign=1)
        self.head = nn.Sequential(default_conv(3, n_feats, 3))
        self.body = nn.Sequential(
            *(HSPAM(n_feats, reduction, res_scale, n_resblocks, topk) for _ in range(n_resgroups)),
            default_conv(n_feats, n_feats, 3),
        )
        self.tail = nn.Sequential(Upsampler(scale, n_feats), default_conv(n_feats, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.sub_mean(x))
        return self.add_mean(self.tail(self.body(x) + x))

    def forward_chop(self, x: Tensor, shave: int = 10, min_size: int = 120000) -> Tensor:
        """HSPAN's test-time chopping (its ``Model.forward_chop`` with one GPU), recursively.

        The LR image is cut into four overlapping corners of h_size × w_size, with h_size = h//2 + shave
        and w_size = w//2 + shave rounded up to the next multiple of 4 and 8 — a full 4 or 8 is added when
        already divisible, as the official ``h_size += 4 - h_size % 4`` does. Corners with
        h_size·w_size ≥ min_size are chopped again; the SR corners are stitched at s·(h//2), s·(w//2).
        Attention is global within a piece, so this differs from :meth:`forward` on the whole image.
        """
        b, c, h, w = x.shape
        h_half, w_half = h // 2, w // 2
        h_size, w_size = h_half + shave, w_half + shave
        h_size += 4 - h_size % 4
        w_size += 8 - w_size % 8
        if h_size > h or w_size > w:
            raise BuildError(
                f"image of {h}×{w} is too small for HSPAN's chopping (pieces of {h_size}×{w_size}); "
                "use whole-image inference (model(x)) instead"
            )
        pieces = [
            x[:, :, 0:h_size, 0:w_size],
            x[:, :, 0:h_size, (w - w_size) : w],
            x[:, :, (h - h_size) : h, 0:w_size],
            x[:, :, (h - h_size) : h, (w - w_size) : w],
        ]
        if h_size * w_size < min_size:
            sr = [self(p) for p in pieces]
        else:
            sr = [self.forward_chop(p, shave=shave, min_size=min_size) for p in pieces]

        s = self.scale
        h, w, h_half, w_half, h_size, w_size = s * h, s * w, s * h_half, s * w_half, s * h_size, s * w_size
        out = x.new_empty(b, c, h, w)
        out[:, :, 0:h_half, 0:w_half] = sr[0][:, :, 0:h_half, 0:w_half]
        out[:, :, 0:h_half, w_half:w] = sr[1][:, :, 0:h_half, (w_size - w + w_half) : w_size]
        out[:, :, h_half:h, 0:w_half] = sr[2][:, :, (h_size - h + h_half) : h_size, 0:w_half]
        out[:, :, h_half:h, w_half:w] = sr[3][
            :, :, (h_size - h + h_half) : h_size, (w_size - w + w_half) : w_size
        ]
        return out


@register(
    "hspan",
    paper="hspan",
    scales={None: (2, 3, 4)},
    test_time="chop",
    notes="demo.sh hyper-parameters; published numbers use forward_chop (shave 10, min_size 120000)",
)
def build_hspan(scale: int, variant: str | None = None, form: str = "train", **overrides) -> HSPAN:
    """Build HSPAN with demo.sh's hyper-parameters; overrides are the official args.

    Accepted overrides: ``n_resgroups``, ``n_resblocks``, ``n_feats``, ``reduction``, ``topk``, ``res_scale``.
    """
    unknown = set(overrides) - {"n_resgroups", "n_resblocks", "n_feats", "reduction", "topk", "res_scale"}
    if unknown:
        raise TypeError(
            f"hspan has no override {sorted(unknown)}; use n_resgroups, n_resblocks, n_feats, reduction, "
            "topk, res_scale"
        )
    return HSPAN(scale, **overrides)
