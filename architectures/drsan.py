"""DRSAN: Dynamic Residual Self-Attention Network (port of the TF1 code github.com/saturnian77/DRSAN).

Input (B, 3, h, w) RGB in [0, 1] (no mean shift) → output (B, 3, s·h, s·w), unclipped. Every conv has
stride 1, a bias and TF 'same' padding (symmetric zero padding for odd kernels). The released TF
checkpoints' weights map onto this module with :func:`state_dict_from_tf` (names from
:func:`tf_variable_map`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from architectures.checkpoint import CheckpointError
from architectures.errors import BuildError
from architectures.registry import Counting, register

# variant → (width C, number of DRAGs K, units per DRAG N), as built by the official build.py.
VARIANTS: dict[str, tuple[int, int, int]] = {
    "32s": (32, 4, 4),
    "32m": (32, 8, 4),
    "32l": (32, 10, 4),
    "48s": (48, 4, 3),
    "48m": (48, 8, 3),
}
DRM_HIDDEN = 16


def conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """Stride-1 conv with bias and TF 'same' padding."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


class DynamicResidualModule(nn.Module):
    """DRM: (B, C, H, W) → (B, M) dynamic residual weights, M = N(N+1)/2.

    1×1 conv → PReLU → 1×1 conv → global average pool. The weights are signed and unnormalised (no
    softmax or sigmoid), as in the official ``resmod``.
    """

    def __init__(self, channels: int, n_weights: int, hidden: int = DRM_HIDDEN):
        super().__init__()
        self.conv1 = conv(channels, hidden, 1)
        self.act = nn.PReLU(hidden, init=0.0)
        self.conv2 = conv(hidden, n_weights, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act(self.conv1(x))).mean(dim=(2, 3))


class ResidualBlock(nn.Module):
    """Pre-activation block PReLU → conv3×3 → PReLU → conv3×3 (no activation after, no skip)."""

    def __init__(self, channels: int):
        super().__init__()
        self.act1 = nn.PReLU(channels, init=0.0)
        self.conv1 = conv(channels, channels, 3)
        self.act2 = nn.PReLU(channels, init=0.0)
        self.conv2 = conv(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act2(self.conv1(self.act1(x))))


class DynamicResidualAttentionGroup(nn.Module):
    """DRAG: N residual blocks with dynamic residual attention, then a 1×1 fuse of all features.

    ``f_n = (g + Σ_{k<n} r[n,k]·f_k) ⊙ sigmoid(g)`` with ``g = RB_n(f_{n-1})`` and r the DRM's weights
    flattened as r[1,0], r[2,0], r[2,1], r[3,0], …; output ``conv1×1(concat[f_0, …, f_N])``.
    """

    def __init__(self, channels: int, n_units: int):
        super().__init__()
        self.n_units = n_units
        self.drm = DynamicResidualModule(channels, n_units * (n_units + 1) // 2)
        self.blocks = nn.ModuleList(ResidualBlock(channels) for _ in range(n_units))
        self.fuse = conv((n_units + 1) * channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        r = self.drm(x)[:, :, None, None]
        features = [x]
        offset = 0
        for n, block in enumerate(self.blocks, start=1):
            g = block(features[-1])
            fd = sum(features[k] * r[:, offset + k : offset + k + 1] for k in range(n))
            features.append((g + fd) * torch.sigmoid(g))
            offset += n
        return self.fuse(torch.cat(features, dim=1))


class Upsampler(nn.Sequential):
    """×2 / ×3: conv3×3 (C→s²C) + pixel shuffle; ×4: two ×2 stages. No activations.

    TF's ``depth_to_space`` orders the conv's output channels (i·s + j)·C + c where pixel shuffle expects
    c·s² + i·s + j; the two are one fixed permutation of the conv's output channels apart, which
    :func:`state_dict_from_tf` applies.
    """

    def __init__(self, scale: int, channels: int):
        factors = {2: [2], 3: [3], 4: [2, 2]}
        if scale not in factors:
            raise BuildError(f"DRSAN upsamples by 2, 3 or 4, not {scale}")
        layers: list[nn.Module] = []
        for r in factors[scale]:
            layers += [conv(channels, r * r * channels, 3), nn.PixelShuffle(r)]
        super().__init__(*layers)


class DRSAN(nn.Module):
    """DRSAN: conv3×3 head, K DRAGs, conv3×3 + global skip, upsampler, conv3×3 to RGB."""

    def __init__(self, scale: int, channels: int = 32, n_drags: int = 4, n_units: int = 4):
        super().__init__()
        self.scale = scale
        self.head = conv(3, channels, 3)
        self.drags = nn.Sequential(
            *(DynamicResidualAttentionGroup(channels, n_units) for _ in range(n_drags))
        )
        self.body_conv = conv(channels, channels, 3)
        self.upsampler = Upsampler(scale, channels)
        self.tail = conv(channels, 3, 3)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform conv kernels and zero biases (TF ``tf.layers.conv2d`` defaults)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def config(self) -> tuple[int, int, int]:
        """(width C, number of DRAGs K, units per DRAG N)."""
        return self.head.out_channels, len(self.drags), self.drags[0].n_units if len(self.drags) else 0

    def from_tf_variables(self, arrays: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
        """State dict from a TF checkpoint's model variables (training state already dropped), strictly: a
        checkpoint of another variant or scale, or with variables this model does not have, is refused
        with the ``--variant``/``--scale`` to pass."""
        found = tf_checkpoint_config(arrays)
        own = (*self.config, self.scale)
        if found is not None and found != own:
            theirs, ours = describe(*found), describe(*own)
            remedy = (
                f"pass --variant {variant_name(*found[:3])} --scale {found[3]}"
                if variant_name(*found[:3])
                else f"build it with channels={found[0]}, n_drags={found[1]}, n_units={found[2]}, "
                f"scale={found[3]}"
            )
            raise CheckpointError(f"checkpoint is DRSAN {theirs} but the model is {ours}: {remedy}")
        unexpected = sorted(set(arrays) - set(tf_variable_map(self)))
        if unexpected:
            raise CheckpointError(
                f"TF checkpoint has {len(unexpected)} variables this DRSAN does not, e.g. {unexpected[:3]}: "
                "is it a DRSAN checkpoint of the official code?"
            )
        try:
            return state_dict_from_tf(arrays, self)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(str(exc).strip('"')) from exc

    def forward(self, x: Tensor) -> Tensor:
        h0 = self.head(x)
        return self.tail(self.upsampler(self.body_conv(self.drags(h0)) + h0))


@register(
    "drsan",
    paper="drsan",
    scales={"32s": (2, 3, 4), "32m": (2, 3, 4), "48s": (2, 3, 4), "48m": (2, 3, 4), "32l": (2,)},
    default_variant="32s",
    counting=Counting(ops="multi_adds", convention="hr720p"),
    notes="TF1 original; official TF checkpoints load directly (architectures.tf_checkpoint)",
)
def build_drsan(scale: int, variant: str = "32s", form: str = "train", **overrides: int) -> DRSAN:
    """Build a DRSAN variant; overrides ``channels`` (C), ``n_drags`` (K), ``n_units`` (N) for tiny models."""
    channels, n_drags, n_units = VARIANTS[variant]
    params = {"channels": channels, "n_drags": n_drags, "n_units": n_units}
    unknown = set(overrides) - set(params)
    if unknown:
        raise TypeError(f"drsan accepts overrides {sorted(params)}, not {sorted(unknown)}")
    return DRSAN(scale, **(params | overrides))


def variant_name(channels: int, n_drags: int, n_units: int) -> str | None:
    """The released variant (``"32s"`` …) with this configuration, if any."""
    return next((k for k, v in VARIANTS.items() if v == (channels, n_drags, n_units)), None)


def describe(channels: int, n_drags: int, n_units: int, scale: int) -> str:
    name = variant_name(channels, n_drags, n_units) or f"C={channels} K={n_drags} N={n_units}"
    return f"{name} ×{scale}"


_TF_CONV = re.compile(r"^DRAN/conv2d(_\d+)?/kernel$")
_TF_DRM_PRELU = re.compile(r"^DRAN/conv_block\d+prelualpha$")


def tf_checkpoint_config(arrays: Mapping[str, np.ndarray]) -> tuple[int, int, int, int] | None:
    """(C, K, N, scale) of the official TF graph the variables come from; None if they are not DRSAN's.

    C is the head conv's width, K the number of DRM PReLUs, N solves N(N+1)/2 = the first DRM's output
    width; the convs left after head, DRAGs (2N+3 each), body and tail are the upsampler's: two mean ×4,
    one mean ×2 or ×3 by its output width 4C or 9C.
    """
    n_convs = sum(1 for k in arrays if _TF_CONV.match(k))
    if "DRAN/conv2d/kernel" not in arrays or "DRAN/conv2d_2/kernel" not in arrays:
        return None
    for name in sorted(k for k in arrays if _TF_CONV.match(k)):
        if np.ndim(arrays[name]) != 4:
            raise CheckpointError(
                f"tensor {name!r} has shape {tuple(np.shape(arrays[name]))}, but a DRSAN conv kernel is 4-D "
                "(height, width, in, out): the checkpoint is damaged or not DRSAN's"
            )
    channels = int(arrays["DRAN/conv2d/kernel"].shape[3])
    n_drags = sum(1 for k in arrays if _TF_DRM_PRELU.match(k))
    n_weights = int(arrays["DRAN/conv2d_2/kernel"].shape[3])
    n_units = (int(np.sqrt(8 * n_weights + 1)) - 1) // 2
    n_up = n_convs - (3 + n_drags * (2 * n_units + 3))
    if n_up == 2:
        return channels, n_drags, n_units, 4
    last_up = arrays.get(f"DRAN/conv2d_{n_convs - 2}/kernel")
    if n_up != 1 or last_up is None:
        return None
    ratio = int(last_up.shape[3]) // channels
    return (channels, n_drags, n_units, {4: 2, 9: 3}[ratio]) if ratio in (4, 9) else None


def tf_variable_map(model: DRSAN) -> dict[str, str]:
    """TF checkpoint variable name → state_dict key, for every parameter of ``model``.

    Names follow TF1's automatic layer naming in the official ``model.py``/``ops.py``: all convs live in
    scope ``DRAN`` and are numbered ``conv2d``, ``conv2d_1``, … in creation order (head; per DRAG the two
    DRM convs, the 2N block convs, the fuse conv; body conv; upsampler convs; tail); PReLU slopes are
    ``DRAN/conv_block{k}prelualpha`` (DRM) and ``DRAN/conv_block{k}_pReLU_{j}alpha`` (blocks).
    """
    convs: list[str] = ["head"]
    names: dict[str, str] = {}
    for k, drag in enumerate(model.drags, start=1):
        convs += [f"drags.{k - 1}.drm.conv1", f"drags.{k - 1}.drm.conv2"]
        names[f"DRAN/conv_block{k}prelualpha"] = f"drags.{k - 1}.drm.act.weight"
        for u in range(drag.n_units):
            convs += [f"drags.{k - 1}.blocks.{u}.conv1", f"drags.{k - 1}.blocks.{u}.conv2"]
            names[f"DRAN/conv_block{k}_pReLU_{2 * u + 1}alpha"] = f"drags.{k - 1}.blocks.{u}.act1.weight"
            names[f"DRAN/conv_block{k}_pReLU_{2 * u + 2}alpha"] = f"drags.{k - 1}.blocks.{u}.act2.weight"
        convs.append(f"drags.{k - 1}.fuse")
    convs.append("body_conv")
    convs += [f"upsampler.{i}" for i, m in enumerate(model.upsampler) if isinstance(m, nn.Conv2d)]
    convs.append("tail")
    for i, key in enumerate(convs):
        tf_layer = "DRAN/conv2d" if i == 0 else f"DRAN/conv2d_{i}"
        names[f"{tf_layer}/kernel"] = f"{key}.weight"
        names[f"{tf_layer}/bias"] = f"{key}.bias"
    return names


def _depth_to_space_permutation(out_channels: int, r: int) -> np.ndarray:
    """Index ``p`` with ``torch_channel[c·r² + i·r + j] = tf_channel[p[...]] = tf[(i·r + j)·C + c]``."""
    c_out = out_channels // (r * r)
    c, i, j = np.meshgrid(np.arange(c_out), np.arange(r), np.arange(r), indexing="ij")
    return ((i * r + j) * c_out + c).reshape(-1)


def state_dict_from_tf(arrays: Mapping[str, np.ndarray], model: DRSAN) -> dict[str, Tensor]:
    """Convert TF checkpoint arrays (keyed by TF variable name) to a state_dict for ``model``.

    Conv kernels go HWIO → OIHW; upsampler convs also have their output channels reordered from TF's
    depth_to_space layout to pixel shuffle's. Other TF variables (optimiser slots, global_step) are
    ignored; a missing variable or a shape mismatch is an error.
    """
    names = tf_variable_map(model)
    missing = sorted(set(names) - set(arrays))
    if missing:
        raise KeyError(f"TF checkpoint lacks {len(missing)} variables of this DRSAN, e.g. {missing[:3]}")
    own = model.state_dict()
    shuffles = {f"upsampler.{i - 1}": m.upscale_factor for i, m in enumerate(model.upsampler) if i % 2}
    state: dict[str, Tensor] = {}
    for tf_name, key in names.items():
        value = np.asarray(arrays[tf_name])
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        module = key.rsplit(".", 1)[0]
        if module in shuffles:
            value = value[_depth_to_space_permutation(value.shape[0], shuffles[module])]
        if tuple(value.shape) != tuple(own[key].shape):
            raise BuildError(
                f"{tf_name} has shape {value.shape} but {key} needs {tuple(own[key].shape)}: "
                "build the DRSAN variant and scale the checkpoint was trained for"
            )
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return state
