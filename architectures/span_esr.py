"""SPAN-ESR: Swift Parameter-free Attention Network for efficient SR (github hongyuanyu/SPAN).

Port of ``basicsr/archs/span_arch.py`` (class ``SPAN``) with its NTIRE 2024 deploy form (Amazingren/
NTIRE2024_ESR ``models/team38_SPAN.py``). State-dict keys are the official ones in both forms.

Forms:

- ``train``: every :class:`Conv3XC` holds its training branches (``conv.0-2`` and ``sk``) and, as in the
  official class, a frozen merged ``eval_conv`` (it counts in the official parameter total and sits in
  official BasicSR checkpoints). The forward always runs the training branches: unlike the official
  module, eval mode does NOT re-merge ``eval_conv`` on every forward (that re-merge silently overwrites
  loaded deploy weights).
- ``deploy``: every :class:`Conv3XC` is one 3×3 conv (``eval_conv``), as in the NTIRE 2024 release.
  :meth:`SPANESR.reparameterize` turns a train-form model into this form in place.

Border behaviour of the two forms: the training branch applies the 1×1 → 3×3 (no padding) → 1×1 chain to
the zero-padded input, so at the border the 3×3 sees the first 1×1's bias ``b1`` where the input is
padding. The merged kernel's bias sums ``W2·b1`` over all nine taps, which is exactly that contribution,
so the two forms agree at the border as well as in the interior (measured in
``tests/architectures/test_span_esr.py``: float64 difference at rounding level everywhere). A
port that padded inside the 3×3 instead would differ on a one-pixel frame per Conv3XC.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from architectures.checkpoint import CheckpointError
from architectures.common import DIV2K_RGB_MEAN
from architectures.errors import BuildError
from architectures.registry import Counting, register

TRAIN_BRANCH_SUFFIXES = (".sk.weight", ".sk.bias") + tuple(
    f".conv.{i}.{p}" for i in range(3) for p in ("weight", "bias")
)


def merge_conv3xc(
    w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, w3: Tensor, b3: Tensor, w_sk: Tensor, b_sk: Tensor
) -> tuple[Tensor, Tensor]:
    """Fold 1×1 (w1 b1) → 3×3 (w2 b2) → 1×1 (w3 b3) plus a 1×1 skip (w_sk b_sk) into one 3×3 conv.

    Shapes: w1 (g·Ci, Ci, 1, 1), w2 (g·Co, g·Ci, 3, 3), w3 (Co, g·Co, 1, 1), w_sk (Co, Ci, 1, 1).
    Returns (weight (Co, Ci, 3, 3), bias (Co,)) in the inputs' dtype; computed in float64.
    """
    dtype = w2.dtype
    w1, b1, w2, b2, w3, b3, w_sk, b_sk = (t.double() for t in (w1, b1, w2, b2, w3, b3, w_sk, b_sk))
    w1, w3 = w1[:, :, 0, 0], w3[:, :, 0, 0]
    weight = torch.einsum("on,nmuv,mi->oiuv", w3, w2, w1)
    weight[:, :, 1, 1] += w_sk[:, :, 0, 0]
    bias = w3 @ (torch.einsum("nmuv,m->n", w2, b1) + b2) + b3 + b_sk
    return weight.to(dtype), bias.to(dtype)


class Conv3XC(nn.Module):
    """Re-parameterisable 3×3 conv, (B, Ci, H, W) → (B, Co, H, W).

    Train form: ``conv`` (1×1 Ci→g·Ci, 3×3 without padding g·Ci→g·Co, 1×1 g·Co→Co) on the zero-padded
    input, plus the 1×1 skip ``sk`` on the input; its ``eval_conv`` holds the merge as of construction or
    the last :meth:`reparameterize` and is never read. Deploy form: ``eval_conv`` only (3×3, padding 1).
    """

    def __init__(self, c_in: int, c_out: int, gain: int = 2, form: str = "train") -> None:
        super().__init__()
        self.form = form
        if form == "train":
            self.sk = nn.Conv2d(c_in, c_out, 1)
            self.conv = nn.Sequential(
                nn.Conv2d(c_in, c_in * gain, 1),
                nn.Conv2d(c_in * gain, c_out * gain, 3),
                nn.Conv2d(c_out * gain, c_out, 1),
            )
        self.eval_conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        # Frozen in both forms, as in the official class (it is never trained directly).
        self.eval_conv.requires_grad_(False)
        if form == "train":
            self._merge_into_eval_conv()

    def forward(self, x: Tensor) -> Tensor:
        if self.form == "deploy":
            return self.eval_conv(x)
        return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)

    @torch.no_grad()
    def _merge_into_eval_conv(self) -> None:
        c0, c1, c2 = self.conv
        w, b = merge_conv3xc(
            c0.weight, c0.bias, c1.weight, c1.bias, c2.weight, c2.bias, self.sk.weight, self.sk.bias
        )
        self.eval_conv.weight.copy_(w)
        self.eval_conv.bias.copy_(b)

    def reparameterize(self) -> None:
        """Merge the training branches into ``eval_conv`` and drop them (no-op in deploy form)."""
        if self.form == "deploy":
            return
        self._merge_into_eval_conv()
        del self.sk, self.conv
        self.form = "deploy"


class SPAB(nn.Module):
    """Swift parameter-free attention block, (B, C, H, W) → ((B, C, H, W) output, SiLU(c1_r(x)))."""

    def __init__(self, channels: int, form: str = "train") -> None:
        super().__init__()
        self.c1_r = Conv3XC(channels, channels, form=form)
        self.c2_r = Conv3XC(channels, channels, form=form)
        self.c3_r = Conv3XC(channels, channels, form=form)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # The official SiLU is in place, so the intermediate it returns is the activated tensor.
        out1 = F.silu(self.c1_r(x))
        out3 = self.c3_r(F.silu(self.c2_r(out1)))
        attention = torch.sigmoid(out3) - 0.5
        return (out3 + x) * attention, out1


class SPANESR(nn.Module):
    """SPAN (hongyuanyu/SPAN): (B, 3, h, w) RGB in [0, 1] → (B, 3, s·h, s·w), in [0, 1], not clipped.

    The input is normalised as ``(x − DIV2K mean) · 255``; the output is not de-normalised (the upsampler
    regresses [0, 1] directly, as in the official code).
    """

    def __init__(self, scale: int, feature_channels: int = 48, form: str = "train") -> None:
        super().__init__()
        if form not in ("train", "deploy"):
            raise BuildError(f"SPAN-ESR form must be 'train' or 'deploy', not {form!r}")
        self.scale = scale
        self.feature_channels = feature_channels
        self.form = form
        self.img_range = 255.0
        # Not in the official state_dict (a plain attribute there), hence not persistent.
        self.register_buffer("mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        c = feature_channels
        self.conv_1 = Conv3XC(3, c, form=form)
        for i in range(1, 7):
            self.add_module(f"block_{i}", SPAB(c, form=form))
        self.conv_cat = nn.Conv2d(4 * c, c, 1)
        self.conv_2 = Conv3XC(c, c, form=form)
        self.upsampler = nn.Sequential(nn.Conv2d(c, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: Tensor) -> Tensor:
        features = self.conv_1((x - self.mean) * self.img_range)
        out_b1, _ = self.block_1(features)
        out = out_b1
        for block in (self.block_2, self.block_3, self.block_4, self.block_5):
            out, _ = block(out)
        out_b6, block6_intermediate = self.block_6(out)
        fused = self.conv_cat(torch.cat([features, self.conv_2(out_b6), out_b1, block6_intermediate], 1))
        return self.upsampler(fused)

    def reparameterize(self) -> SPANESR:
        """Train form → deploy form, in place; idempotent. Returns the model."""
        for module in list(self.modules()):
            if isinstance(module, Conv3XC):
                module.reparameterize()
        self.form = "deploy"
        return self

    def variant_for_width(self, width: int) -> str:
        """The ``--variant`` that builds this model with ``width`` feature channels."""
        return f"ch{width}"

    def adapt_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Make an official checkpoint fit this model's form (hook of :func:`load_checkpoint`).

        A train-form checkpoint loads into a deploy-form model by merging its branches (the checkpoint's
        own ``eval_conv`` may be stale: the official class only refreshes it in eval-mode forwards).
        A deploy-form checkpoint cannot be loaded into a train-form model: the branches are lost.
        """
        has_branches = any(k.endswith(TRAIN_BRANCH_SUFFIXES) for k in state_dict)
        if self.form == "train":
            if not has_branches and any(k.endswith("eval_conv.weight") for k in state_dict):
                raise CheckpointError(
                    "this is a deploy-form checkpoint (merged eval_conv weights only): build with "
                    "form='deploy' (--form deploy)"
                )
            return state_dict
        if not has_branches:
            return state_dict
        return _merge_state_dict(state_dict)


def _merge_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Train-form state_dict → deploy-form state_dict (each Conv3XC's branches merged into eval_conv)."""
    prefixes = sorted({k.removesuffix(".sk.weight") for k in state_dict if k.endswith(".sk.weight")})
    merged = {k: v for k, v in state_dict.items() if not k.endswith(TRAIN_BRANCH_SUFFIXES)}
    for p in prefixes:
        w, b = merge_conv3xc(
            *(state_dict[f"{p}.conv.{i}.{t}"] for i in range(3) for t in ("weight", "bias")),
            state_dict[f"{p}.sk.weight"],
            state_dict[f"{p}.sk.bias"],
        )
        merged[f"{p}.eval_conv.weight"], merged[f"{p}.eval_conv.bias"] = w, b
    return merged


MAX_FEATURE_CHANNELS = 1024  # ~30× the published widths; beyond, a typo would allocate gigabytes


def feature_channels_of(variant: str) -> int:
    """``"ch48"`` → 48; any ``ch<N>`` with 1 ≤ N ≤ MAX_FEATURE_CHANNELS is accepted."""
    match = re.fullmatch(r"ch(\d+)", variant)
    if match is None or int(match.group(1)) < 1:
        raise BuildError(
            f"SPAN-ESR variants are named ch<N> (N feature channels, e.g. ch48), not {variant!r}"
        )
    if int(match.group(1)) > MAX_FEATURE_CHANNELS:
        raise BuildError(
            f"SPAN-ESR variant {variant!r} asks for {int(match.group(1))} feature channels, more than the "
            f"{MAX_FEATURE_CHANNELS} this harness builds (published: ch28, ch48, ch52)"
        )
    return int(match.group(1))


@register(
    "span_esr",
    paper="span_esr",
    scales={"ch48": (2, 3, 4), "ch52": (2, 3, 4), "ch28": (4,)},
    default_variant="ch48",
    forms=("train", "deploy"),
    open_variants=True,
    counting=Counting(ops="fvcore", convention="ntire256"),
    notes="ch28 x4 = NTIRE 2024 release (deploy form); ch48/ch52 official weights are on Google Drive only",
)
def build_span_esr(scale: int, variant: str, form: str = "train", **overrides) -> SPANESR:
    """Build SPAN-ESR; ``overrides`` may set ``feature_channels`` (else taken from the variant)."""
    feature_channels = overrides.pop("feature_channels", feature_channels_of(variant))
    if overrides:
        raise TypeError(f"span_esr takes only the override feature_channels, not {sorted(overrides)}")
    return SPANESR(scale, feature_channels, form)
