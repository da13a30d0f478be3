"""NTIRE efficient-SR statistics, counted as the challenge's ``test_demo.py`` counts them, and its
``results.txt`` table.

What the official harness (github Amazingren/NTIRE2024_ESR and NTIRE2026_ESR, ``test_demo.py`` with
``utils/model_summary.py``, identical in both years) reports per model, and how it is reproduced here:

- #Activations (``get_model_activation(model, (3, 256, 256))``): forward hooks on every ``nn.Conv2d`` /
  ``nn.ConvTranspose2d`` module (subclasses too) sum ``output.numel()`` per call; functional convolutions,
  linear layers and attention are not seen. #Conv2d: the number of those hooked calls (a module called
  twice counts twice). Here: :func:`conv_activations`, the same hooks on a meta-device copy.
- FLOPs [G]: fvcore ``FlopCountAnalysis(model, rand(1, 3, 256, 256)).total()`` (fvcore MACs). Here:
  ``harness.complexity.fvcore_macs``.
- Params [M]: the sum of every parameter's numel.
- Mem [M]: ``torch.cuda.max_memory_allocated() / 1024**2`` after the validation run (weights included,
  never reset). Here: measured on CUDA only; on the CPU "not run".
- PSNR / SSIM: RGB on uint8, border = scale (``utils_image.calculate_psnr`` / ``calculate_ssim``: MATLAB's
  11×11 Gaussian σ 1.5, 'valid', mean over R, G, B). Here: ``metrics.psnr_rgb`` and :func:`ssim_rgb`.

FLOPs differ from the official number only for models calling the attention operators of
``kernels.registry``: fvcore alone counts those calls as 0 (an unsupported ``prim::PythonOp``), here they
are counted from the kernels' ``macs()`` (``harness.complexity.mac_report`` shows both).
Checked against the official code's numbers for the released NTIRE 2024 SPAN checkpoints
(``tests/harness/ntire_official.csv``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import complexity, metrics, runtime
from kernels import counting

NTIRE_LR_SHAPE = (1, 3, 256, 256)
_SSIM_TAPS, _SSIM_SIGMA, _C1, _C2 = 11, 1.5, (0.01 * 255) ** 2, (0.03 * 255) ** 2


def conv_activations(model: nn.Module, lr_shape: Sequence[int] = NTIRE_LR_SHAPE) -> tuple[int, int]:
    """(#activations, #conv) of one forward of a ``lr_shape`` input, as NTIRE's ``get_model_activation``:
    the elements of every ``nn.Conv2d``/``nn.ConvTranspose2d`` module output, and the number of such calls.

    Runs a copy of the model on the meta device (shapes only) with the registry's attention operators as
    shape-only stand-ins, so no arithmetic is done and the model itself is untouched.
    """
    meta_model = copy.deepcopy(model).to("meta").eval()
    seen = {"activations": 0, "convs": 0}

    def hook(module: nn.Module, inputs, output: Tensor) -> None:
        seen["activations"] += output.numel()
        seen["convs"] += 1

    handles = [
        m.register_forward_hook(hook)
        for m in meta_model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    try:
        with counting(), torch.no_grad():
            meta_model(torch.zeros(tuple(lr_shape), device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return seen["activations"], seen["convs"]


def _gaussian_window(device: torch.device) -> Tensor:
    """OpenCV ``getGaussianKernel(11, 1.5)`` outer product (MATLAB ``fspecial``), float64 (1, 1, 11, 11)."""
    x = torch.arange(_SSIM_TAPS, dtype=torch.float64, device=device) - _SSIM_TAPS // 2
    g = torch.exp(-(x**2) / (2 * _SSIM_SIGMA**2))
    g /= g.sum()
    return torch.outer(g, g)[None, None]


def ssim_rgb(sr: Tensor, hr: Tensor, scale: int) -> float:
    """NTIRE ``utils_image.calculate_ssim(img_sr, img_hr, border=scale)`` on RGB: both images rounded to
    uint8 (``metrics.to_uint8``), ``scale`` pixels shaved per border, the SSIM map of each channel with an
    11×11 Gaussian (σ 1.5), 'valid', K1 0.01, K2 0.03, L 255, averaged over the three channels.
    ``sr``, ``hr``: (3, H, W) in [0, 1], equal shapes."""
    if sr.shape != hr.shape or sr.dim() != 3 or sr.shape[0] != 3:
        raise ValueError(f"ssim_rgb needs two (3, H, W) images of one shape, got {tuple(sr.shape)}, "
                         f"{tuple(hr.shape)}")  # fmt: skip
    h, w = sr.shape[1:]
    x, y = (
        metrics.to_uint8(t.to(sr.device)).double()[:, scale : h - scale, scale : w - scale] for t in (sr, hr)
    )
    if min(x.shape[1:]) < _SSIM_TAPS:
        raise ValueError(f"shaved image {tuple(x.shape[1:])} is smaller than the 11×11 SSIM window")
    window = _gaussian_window(x.device)
    x, y = x.unsqueeze(1), y.unsqueeze(1)  # channels as a batch: (3, 1, H, W)
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x**2
    var_y = F.conv2d(y * y, window) - mu_y**2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + _C1) * (2 * cov + _C2)
    return (numerator / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))).mean().item()


@dataclass(frozen=True)
class NtireStats:
    """One model's NTIRE statistics at ``lr_shape``. ``flops``: fvcore MACs (+ registry attention);
    ``peak_memory_mb``: CUDA ``max_memory_allocated`` / 2**20 of one forward, weights included, NaN where
    not measured (``memory_note`` then says why)."""

    params: int
    flops: int
    activations: int
    num_conv: int
    peak_memory_mb: float
    memory_note: str
    lr_shape: tuple[int, ...]


def ntire_statistics(
    model: nn.Module, lr_shape: Sequence[int] = NTIRE_LR_SHAPE, device: str | torch.device | None = None
) -> NtireStats:
    """#Params, FLOPs (fvcore), #Activations, #Conv2d and peak CUDA memory of ``model`` at ``lr_shape``.

    ``device`` (default: where the model is) is where FLOPs are traced and memory measured; the model is
    moved there and left in eval mode, as ``test_demo.py`` leaves it.
    """
    lr_shape = tuple(int(n) for n in lr_shape)
    if len(lr_shape) != 4 or lr_shape[1] != 3 or min(lr_shape) < 1:
        raise ValueError(f"lr_shape must be (B, 3, h, w) with positive sizes, got {lr_shape}")
    where = runtime.resolve_device(device) if device is not None else next(model.parameters()).device
    model.to(where).eval()
    activations, num_conv = conv_activations(model, lr_shape)
    per_op, _ = complexity.fvcore_macs(model, lr_shape)
    if where.type == "cuda":
        peak, note = _peak_memory_mb(model, lr_shape, where), ""
    else:
        peak = math.nan
        note = ("not run: no CUDA device (NTIRE's Mem [M] is torch.cuda.max_memory_allocated; measure with "
                "device='cuda')")  # fmt: skip
    return NtireStats(
        params=sum(p.numel() for p in model.parameters()), flops=sum(per_op.values()),
        activations=activations, num_conv=num_conv, peak_memory_mb=peak, memory_note=note, lr_shape=lr_shape,
    )  # fmt: skip


def _peak_memory_mb(model: nn.Module, lr_shape: tuple[int, ...], device: torch.device) -> float:
    with torch.cuda.device(device):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            model(torch.rand(lr_shape, device=device))
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20


@dataclass(frozen=True)
class NtireRow:
    """One line of ``results.txt``: the validation (and optionally test) set's mean RGB PSNR and mean
    runtime per image, the statistics, and the peak memory of the run (``Mem [M]``: for the set, as
    ``test_demo.py``, not the single 256×256 forward of ``stats``; NaN prints as ``-``)."""

    model: str
    val_psnr: float
    val_time_ms: float
    stats: NtireStats
    memory_mb: float
    test_psnr: float | None = None
    test_time_ms: float | None = None


_FMT_VALID = "{:20s}\t{:10s}\t{:14s}\t{:10s}\t{:10s}\t{:8s}\t{:8s}\t{:8s}\n"
_FMT_TEST = "{:20s}\t{:10s}\t{:10s}\t{:14s}\t{:14s}\t{:14s}\t{:10s}\t{:10s}\t{:8s}\t{:8s}\t{:8s}\n"


def results_table(rows: Sequence[NtireRow]) -> str:
    """``results.txt`` as ``test_demo.py`` writes it: tab-separated, its header and column formats; the
    test-set columns only when every row has them (``--include_test``)."""
    with_test = bool(rows) and all(r.test_psnr is not None and r.test_time_ms is not None for r in rows)
    counts_header = ("Params [M]", "FLOPs [G]", "Acts [M]", "Mem [M]", "Conv")
    if with_test:
        times_header = ("Val Time [ms]", "Test Time [ms]", "Ave Time [ms]")
        text = _FMT_TEST.format("Model", "Val PSNR", "Test PSNR", *times_header, *counts_header)
    else:
        text = _FMT_VALID.format("Model", "Val PSNR", "Val Time [ms]", *counts_header)
    for r in rows:
        s = r.stats
        counts = (f"{s.params / 1e6:2.3f}", f"{s.flops / 1e9:2.2f}", f"{s.activations / 1e6:2.2f}",
                  "-" if math.isnan(r.memory_mb) else f"{r.memory_mb:2.2f}", f"{s.num_conv:4d}")  # fmt: skip
        if with_test:
            mean_time = (r.val_time_ms + r.test_time_ms) / 2
            times = (f"{r.val_time_ms:3.2f}", f"{r.test_time_ms:3.2f}", f"{mean_time:3.2f}")
            text += _FMT_TEST.format(r.model, f"{r.val_psnr:2.2f}", f"{r.test_psnr:2.2f}", *times, *counts)
        else:
            text += _FMT_VALID.format(r.model, f"{r.val_psnr:2.2f}", f"{r.val_time_ms:3.2f}", *counts)
    return text
