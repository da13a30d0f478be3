"""The data a training run uses: training pairs, the selection (validation) set, and any disclosed substitute.

Missing data the recipe names is an error unless substitutes are allowed; every substitute is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from torch import Tensor

from harness import data
from harness.recipes import Recipe
from harness.training.patches import to_uint8


class DataSubstituteError(FileNotFoundError):
    """Data the recipe names is missing; ``allow_substitutes=True`` uses a disclosed substitute instead."""


@dataclass(frozen=True)
class TrainingData:
    """The training pairs, the selection (validation) pairs, and what they are, substitutes disclosed."""

    pairs: list[tuple[Tensor, Tensor]]
    val_pairs: list
    checksum: str
    description: str
    substitutes: tuple[str, ...] = ()


def _lr_on_disk(name: str, scale: int, root: Path | None) -> bool:
    folder = (Path(root) if root is not None else data.cache_dir()) / name / "LR_bicubic" / f"X{scale}"
    return any(folder.glob("*.png")) and not (folder / data.GENERATED_MARKER).exists()


def training_data(
    recipe: Recipe, profile: str, data_root: Path | None, allow_substitutes: bool = False
) -> TrainingData:
    """The data a run trains and selects on. Missing data the recipe names is an error
    (:class:`DataSubstituteError`) unless ``allow_substitutes``: then the LR is generated (MATLAB-exact
    bicubic) where ``data.lr_source = "disk"`` finds none, the embedded photos replace a missing validation
    set, and each substitute is listed."""
    if profile == "smoke":
        pairs = data.embedded_pairs(recipe.scale)
        return TrainingData([(p.hr, p.lr) for p in pairs], pairs, "embedded", "smoke: the embedded photos")
    d, substitutes = recipe.dataset, []
    first, last = d.train_images
    if d.lr_source == "disk" and not _lr_on_disk(d.train, recipe.scale, data_root):
        what = f"{d.train} has no LR_bicubic/X{recipe.scale} files on disk (data.lr_source = 'disk')"
        if not allow_substitutes:
            raise DataSubstituteError(
                f"{what}: run `reprosr data fetch {d.train}`, or pass --allow-substitutes to generate them "
                "(MATLAB-exact bicubic; recorded in the run)"
            )
        substitutes.append(f"{what}: generated here with MATLAB-exact bicubic")
    # kept as uint8 while streaming: DIV2K's 800 float32 images would need ~30 GB at once
    images = islice(data.iter_benchmark_pairs(d.train, recipe.scale, root=data_root), first - 1, last)
    pairs = [(to_uint8(p.hr), to_uint8(p.lr)) for p in images]
    if len(pairs) != last - first + 1:
        raise ValueError(
            f"{d.train} has {first - 1 + len(pairs)} images, fewer than the range {first}–{last}; "
            f"run `reprosr data fetch {d.train}`"
        )
    val_set = recipe.eval.val_set
    try:
        val = data.benchmark_pairs(val_set, recipe.scale, root=data_root)
    except FileNotFoundError as exc:
        if not allow_substitutes:
            raise DataSubstituteError(
                f"validation set {val_set} (eval.val_set, the set keep='{recipe.train.keep}' selects on) is "
                f"missing: {exc}; fetch it, or pass --allow-substitutes to validate on the embedded photos "
                "(recorded in the run)"
            ) from None
        val = data.embedded_pairs(recipe.scale)
        substitutes.append(f"validation set {val_set} missing: validated on the embedded photos instead")
        val_set = "embedded"
    description = f"{d.train}[{first}-{last}] LR {d.lr_source}; validation {val_set}"
    checksum = data.dataset_checksum(d.train, data_root)
    return TrainingData(pairs, val, checksum, description, tuple(substitutes))
