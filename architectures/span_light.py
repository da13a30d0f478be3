"""SPAN-light: Lightweight Image Super-Resolution with Sliding Proxy Attention Network (zononhzy/SPAN).

Port of ``basicsr/archs/span_arch.py`` with the published configuration (``options/SPAN/*.yml``): embed_dim
60, 6 groups × (1 ELFEB + 2 SPAB), 6 heads, 12×12 windows overlapping by 3 (stride 9), mlp_ratio 2,
``pixelshuffledirect`` upsampler, ``1conv`` residual connection, img_range 1, DIV2K mean shift.
Module and parameter names reproduce the official ``state_dict`` keys, so official BasicSR checkpoints
(``params_ema``) load with ``strict=True``.

Kept from the official code on purpose (the code wins where the paper differs):

- every block already adds its own shortcut and ``BasicLayer`` adds it again (``x = blk(x) + x``): the
  residual is doubled;
- the attention is not a softmax over the union of the overlapping windows: each window subtracts its own
  row maximum, then numerators and denominators are summed over the windows covering a pixel (see
  :func:`kernels.sliding_proxy_attention`);
- q is scaled by a learnable per-head ``temperature`` (parameter shape (heads, 1, 1)), not by 1/sqrt(d);
- the ELFEB shift kernel is a frozen ``nn.Parameter`` (counted in ``parameters()``, saved in checkpoints);
- stochastic depth ``drop_path_rate`` 0.1 (the class default, which the configs do not override).

Not ported (unused by every published configuration): ``padding_size`` ≠ 0, other upsamplers and
``resi_connection='3conv'``, dropout rates, and the shrinking of the window when ``img_size`` ≤ window.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from architectures.common import DIV2K_RGB_MEAN
from architectures.errors import BuildError
from architectures.registry import register
from kernels import operator

_SLIDING_PROXY = operator("sliding_proxy")


def _trunc_normal_init(module: nn.Module) -> None:
    """The official ``_init_weights``: conv weights ~ truncated N(0, 0.02²) cut at ±2, biases 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class DropPath(nn.Module):
    """Stochastic depth per sample, active in training mode only. The mask is the official code's (timm's
    older rule): ``floor(keep + rand)``, i.e. a sample is kept when ``rand >= p`` — the same probability as
    ``rand < keep`` but, for the same random draws, the same samples as the official trainer drops."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = (
            keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        ).floor_()
        return x / keep * mask


class LayerNormProxy(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SpatialGate(nn.Module):
    """Split channels in halves (x1, x2); return x1 · DWConv3×3(LN(x2)). ``dim`` is the half width."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = LayerNormProxy(dim)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = torch.split(x, x.shape[1] // 2, dim=1)
        return x1 * self.conv(self.norm(x2))


class SGFN(nn.Module):
    """Spatial-Gate Feed-forward Network: 1×1 (C→hidden), GELU, spatial gate (hidden→hidden/2), 1×1 (→C)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.sg = SpatialGate(hidden // 2)
        self.fc2 = nn.Conv2d(hidden // 2, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.sg(self.act(self.fc1(x))))


class HFTAttention(nn.Module):
    """High-frequency texture attention: x · sigmoid(DWConv3×3(Σ_s x − nearest(avgpool_s(x)))), s = 2, 4, 8.

    Needs H, W ≥ 8 (the ×8 pooling).
    """

    pool_scales = (2, 4, 8)

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_after_upsample = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        high = len(self.pool_scales) * x
        for s in self.pool_scales:
            pooled = F.adaptive_avg_pool2d(x, (h // s, w // s))
            high = high - F.interpolate(pooled, size=(h, w), mode="nearest")
        return self.conv_after_upsample(high) * x


class EnhancedSpatialAttention(nn.Module):
    """ESA (RFANet) as trimmed in SPAN (no ``conv_max``/``conv3_``).

    Needs H, W ≥ 15 (stride-2 3×3 conv, then a 7×7 max-pool).
    """

    def __init__(self, esa_channels: int, n_feats: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_feats, esa_channels, 1)
        self.conv_f = nn.Conv2d(esa_channels, esa_channels, 1)
        self.conv2 = nn.Conv2d(esa_channels, esa_channels, 3, stride=2)
        self.conv3 = nn.Conv2d(esa_channels, esa_channels, 3, padding=1)
        self.conv4 = nn.Conv2d(esa_channels, n_feats, 1)

    def forward(self, x: Tensor) -> Tensor:
        c1_ = self.conv1(x)
        c3 = self.conv3(F.max_pool2d(self.conv2(c1_), kernel_size=7, stride=3))
        c3 = F.interpolate(c3, x.shape[-2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))


class ELFEB(nn.Module):
    """Efficient local feature extraction block: shift → 1×1 → DW5×5 → GELU → shift → 1×1, plus shortcut.

    The shift is a fixed depthwise 3×3 kernel (a frozen parameter named ``weight``): channel fifths move
    left, right, up, down; the rest stay.
    """

    n_div = 5

    def __init__(self, dim: int) -> None:
        super().__init__()
        shift = torch.zeros(dim, 1, 3, 3)
        g = dim // self.n_div
        shift[0 * g : 1 * g, 0, 1, 2] = 1.0
        shift[1 * g : 2 * g, 0, 1, 0] = 1.0
        shift[2 * g : 3 * g, 0, 2, 1] = 1.0
        shift[3 * g : 4 * g, 0, 0, 1] = 1.0
        shift[4 * g :, 0, 1, 1] = 1.0
        self.weight = nn.Parameter(shift, requires_grad=False)
        self.conv_block = nn.Sequential(
            nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 5, padding=2, groups=dim), nn.GELU()
        )
        self.conv2 = nn.Conv2d(dim, dim, 1)

    def _shift(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, padding=1, groups=x.shape[1])

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self._shift(self.conv_block(self._shift(x)))) + x


def relative_position_index(window_size: int) -> Tensor:
    """Swin relative-position index (w², w²) int64 into a ((2w−1)², heads) table; positions row-major."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return rel[..., 0] * (2 * window_size - 1) + rel[..., 1]


class SPAB(nn.Module):
    """Sliding Proxy Attention Block: LN → qkv 1×1 → sliding proxy attention → 1×1 → HFT attention (+x);
    LN → SGFN (+x).

    Input (B, C, H, W) with (H − overlap) and (W − overlap) multiples of (window − overlap).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        overlap_size: int,
        mlp_ratio: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise BuildError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        if not 0 <= overlap_size < window_size:
            raise BuildError(f"overlap_size must be in [0, window_size={window_size}), got {overlap_size}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.overlap_size = overlap_size
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.norm1 = LayerNormProxy(dim)
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02, a=-2.0, b=2.0)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.hft_attention = HFTAttention(dim)
        self.drop_path = DropPath(drop_path)
        self.norm2 = LayerNormProxy(dim)
        self.conv_ffn = SGFN(dim, int(dim * mlp_ratio))

    def relative_position_bias(self) -> Tensor:
        """The table gathered to (heads, w², w²)."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def attention(self, x: Tensor) -> Tensor:
        """Sliding proxy attention of the normalised features (B, C, H, W) → (B, C, H, W)."""
        b, c, h, w = x.shape
        # qkv channels are [q | k | v], each split into heads of contiguous channels (official unfold layout).
        q, k, v = self.qkv(x).view(b, 3, self.num_heads, c // self.num_heads, h, w).unbind(1)
        out = _SLIDING_PROXY(
            q,
            k,
            v,
            temperature=self.temperature.view(-1),
            rel_bias=self.relative_position_bias(),
            window_size=self.window_size,
            overlap=self.overlap_size,
        )
        return out.reshape(b, c, h, w)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.hft_attention(self.proj_out(self.attention(self.norm1(x)))))
        return x + self.drop_path(self.conv_ffn(self.norm2(x)))


class BasicLayer(nn.Module):
    """One ELFEB then ``depth`` SPABs, each wrapped in a second residual (official ``x = blk(x) + x``)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        overlap_size: int,
        mlp_ratio: float,
        drop_path: Sequence[float],
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [ELFEB(dim)]
            + [SPAB(dim, num_heads, window_size, overlap_size, mlp_ratio, drop_path[i]) for i in range(depth)]
        )

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x) + x
        return x


class SPTB(nn.Module):
    """Sliding Proxy Transformer Block: a :class:`BasicLayer` followed by ESA."""

    def __init__(self, dim: int, **layer_kwargs) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, **layer_kwargs)
        self.esa = EnhancedSpatialAttention(max(16, dim // 4), dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.esa(self.residual_group(x))


class SPANLight(nn.Module):
    """SPAN-light. Input (B, 3, h, w) RGB in [0, 1] → (B, 3, s·h, s·w) in [0, 1] (unclipped).

    The input is reflect-padded at the bottom/right so that (h − overlap), (w − overlap) are multiples of
    (window − overlap), and the output is cropped back to s·h × s·w.
    """

    def __init__(
        self,
        *,
        upscale: int,
        embed_dim: int = 60,
        depths: Sequence[int] = (2, 2, 2, 2, 2, 2),
        num_heads: int | Sequence[int] = 6,
        window_size: int = 12,
        overlap_size: int = 3,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        heads = [num_heads] * len(depths) if isinstance(num_heads, int) else list(num_heads)
        if len(heads) != len(depths):
            raise BuildError(f"num_heads {heads} must give one head count per group of depths {list(depths)}")
        self.scale = upscale
        self.window_size = window_size
        self.overlap_size = overlap_size
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.conv_first = nn.Conv2d(3, embed_dim, 3, padding=1)
        self.layers = nn.ModuleList(
            SPTB(
                embed_dim,
                depth=d,
                num_heads=heads[i],
                window_size=window_size,
                overlap_size=overlap_size,
                mlp_ratio=mlp_ratio,
                drop_path=dpr[sum(depths[:i]) : sum(depths[: i + 1])],
            )
            for i, d in enumerate(depths)
        )
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        self.upsample = nn.Sequential(
            nn.Conv2d(embed_dim, upscale**2 * 3, 3, padding=1), nn.PixelShuffle(upscale)
        )
        self.apply(_trunc_normal_init)

    def padding(self, h: int, w: int) -> tuple[int, int]:
        """Bottom and right reflect padding that aligns (h, w) to the sliding-window grid."""
        stride = self.window_size - self.overlap_size
        return (-(h - self.overlap_size)) % stride, (-(w - self.overlap_size)) % stride

    def _side_fits(self, n: int) -> bool:
        # ESA's stride-2 conv and 7×7 max-pool need ≥ 15 pixels; reflect padding needs pad < size.
        pad = self.padding(n, n)[0]
        return n + pad >= 15 and pad < n

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if not (self._side_fits(h) and self._side_fits(w)):
            smallest = next(n for n in range(1, 10_000) if self._side_fits(n))
            raise BuildError(
                f"SPAN-light cannot process a {h}×{w} LR input: each side must be at least {smallest} "
                "pixels; pad or tile the image first"
            )
        pad_h, pad_w = self.padding(h, w)
        # The official mean is a float32 tensor cast to the input's dtype: same rounding in float64.
        mean = torch.tensor(DIV2K_RGB_MEAN, dtype=torch.float32).to(x).view(1, 3, 1, 1)
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") - mean
        x = self.conv_first(x)
        feats = x
        for layer in self.layers:
            feats = layer(feats)
        x = self.upsample(self.conv_after_body(feats) + x) + mean
        return x[..., : h * self.scale, : w * self.scale]


@register("span_light", paper="span_light", scales={None: (2, 3, 4)}, default_variant=None, test_time="whole")
def build_span_light(scale: int, variant: str | None = None, form: str = "train", **overrides) -> SPANLight:
    """SPAN-light at ×``scale``; ``overrides`` are :class:`SPANLight` hyper-parameters (official names)."""
    if variant is not None:
        raise BuildError(f"span_light has no variants, got {variant!r}")
    return SPANLight(upscale=scale, **overrides)
