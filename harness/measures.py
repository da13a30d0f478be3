"""What each measured metric is — its unit, colour space, the published metric it is compared with, its
label and its convention — in one table that the CLI, the store rows, the verdicts and the report read."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    QUALITY = "quality"  # a score of SR against HR on a benchmark set
    RUNTIME = "runtime"  # a wall time or memory figure of the test-time SR
    COUNT = "count"  # parameters, MACs
    TRAINING = "training"  # a training-curve value


@dataclass(frozen=True)
class Measure:
    """One metric id as the results table stores it. ``published`` is the (metric, colour) of the published
    tables it is compared with ("" colour: any); ``set_mean`` how a set value is made from per-image ones."""

    id: str
    kind: Kind
    label: str
    unit: str = ""
    color: str = ""
    convention: str = ""
    published: tuple[str, str] | None = None
    set_mean: str = "mean"  # mean | median | max


MEASURES: dict[str, Measure] = {
    m.id: m
    for m in (
        Measure("psnr_y", Kind.QUALITY, "PSNR-Y", "dB", "y",
                "Y of MATLAB rgb2ycbcr, shave=scale, SR rounded to uint8 (BasicSR/MATLAB)", ("psnr", "y")),
        Measure("ssim_y", Kind.QUALITY, "SSIM-Y", "", "y",
                "Y of rgb2ycbcr, shave=scale, uint8, Gaussian 11x11 sigma 1.5, valid (MATLAB ssim_index)",
                ("ssim", "y")),
        Measure("psnr_rgb", Kind.QUALITY, "PSNR-RGB", "dB", "rgb",
                "RGB, shave=scale, SR rounded to uint8 (NTIRE)", ("psnr", "rgb")),
        Measure("psnr_edsr", Kind.QUALITY, "PSNR (EDSR calc_psnr)", "dB", "y",
                "EDSR-PyTorch calc_psnr: Y-like weights/256 on the difference, shave=scale"),
        Measure("runtime_ms", Kind.RUNTIME, "runtime", "ms", "",
                "test-time SR of one image on the device (batch 1; the LR is on the device before timing and "
                "the SR stays there: host copies excluded): median of the protocol's repeats; set: median "
                "over images", ("runtime_ms", ""), "median"),
        Measure("runtime_iqr_ms", Kind.RUNTIME, "runtime IQR", "ms", "",
                "inter-quartile range of the repeats; set: median over images", None, "median"),
        Measure("peak_memory_mb", Kind.RUNTIME, "peak memory", "MiB", "",
                "peak CUDA memory allocated during the image's runs (weights included); set: max",
                None, "max"),
        Measure("params", Kind.COUNT, "params", "", "", "all parameters", ("params", "")),
        Measure("params_trainable", Kind.COUNT, "trainable params", "", "", "parameters with requires_grad"),
        Measure("macs", Kind.COUNT, "MACs", "G", "", "multiply-accumulates of one forward"),
        Measure("train_loss", Kind.TRAINING, "training loss", "", "", "L1 training loss"),
    )
}  # fmt: skip
QUALITY = tuple(m.id for m in MEASURES.values() if m.kind is Kind.QUALITY)  # scored for every image
RUNTIME = tuple(m.id for m in MEASURES.values() if m.kind is Kind.RUNTIME)


def measure(metric: str) -> Measure:
    """The definition of ``metric``; a ``macs_<convention>`` verdict id is a ``macs`` measure."""
    base = "macs" if metric.startswith("macs_") else metric
    if base not in MEASURES:
        raise KeyError(f"unknown metric {metric!r}; known: {sorted(MEASURES)}")
    return MEASURES[base]
