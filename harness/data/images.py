"""Images: reading and writing 8-bit RGB images, listing the images of a folder, and the crop every
convention applies to HR before comparing it with a ×s output."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from harness.errors import UserError
from harness.files import atomic_file, clean_once

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
_EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA")


class ImageReadError(UserError):
    """An image file exists but cannot be decoded (corrupt, truncated, unsupported)."""


def read_image(path: str | os.PathLike) -> Tensor:
    """Read an 8-bit image as (3, H, W) float32 RGB in [0, 1].

    Grayscale is replicated to three channels and palette images are expanded; alpha is dropped (as
    cv2.imread(IMREAD_COLOR) does in BasicSR). One rule for every bit depth: images with more than 8 bits
    per sample (16-bit gray or RGB PNGs, 16-bit TIFFs, float images) are refused, since the benchmarks and
    the metric conventions are 8-bit and Pillow would silently drop a 16-bit RGB PNG's low byte. Raises
    FileNotFoundError when missing and ImageReadError (naming the file) when it is corrupt, truncated or
    not an 8-bit image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as img:
            bits = _stored_bits(path, img)
            img.load()
            mode = img.mode
            eight_bit = bits <= 8 and mode in _EIGHT_BIT_MODES
            array = np.array(img.convert("RGB"), dtype=np.uint8) if eight_bit else None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(
            f"cannot read image {path} ({exc}); the file is corrupt or truncated: "
            "replace it (e.g. `reprosr data fetch NAME` again)"
        ) from exc
    if array is None:
        depth = f"{bits}-bit " if bits > 8 else ""
        raise ImageReadError(
            f"{path}: {depth}{mode} images are not supported (only 8 bits per sample: the benchmarks and "
            "the metric conventions are 8-bit); convert it to an 8-bit RGB PNG, e.g. "
            "`convert IN -depth 8 OUT.png`"
        )
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255)


def _stored_bits(path: Path, img: Image.Image) -> int:
    """Bits per sample as stored in the file (Pillow decodes 16-bit RGB PNGs to 8-bit "RGB")."""
    if img.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(25)  # signature (8), IHDR length and type (8), width, height, then bit depth
        return header[24] if len(header) == 25 else 8
    if img.format == "TIFF":
        bits = img.tag_v2.get(258, 8)  # BitsPerSample
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


def write_image(path: str | os.PathLike, img: Tensor) -> None:
    """Write a (3, H, W) [0, 1] image, or its uint8 levels, as an 8-bit RGB PNG, atomically (temp file +
    os.replace).

    Float values are clamped to [0, 1], scaled by 255 and rounded half to even (numpy rint); uint8 levels
    are written as they are (`degrade.bicubic_levels` gives them). The file gets the
    permissions of any new file (0666 minus the umask). Temp files that killed writers left in the
    folder are removed on the first write there (`harness.files.clean_once`).
    """
    path = Path(path)
    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"write_image expects a (3, H, W) image, got {tuple(img.shape)}")
    if img.dtype == torch.uint8:
        array = img.detach().cpu().numpy()
    elif not torch.isfinite(img).all():
        raise ValueError(f"refusing to write {path}: the image contains NaN or Inf")
    else:
        array = np.rint(img.detach().double().clamp(0, 1).mul(255).cpu().numpy()).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_once(path.parent)
    with atomic_file(path) as f:
        Image.fromarray(array.transpose(1, 2, 0), "RGB").save(f, format="PNG")


def image_files(folder: Path) -> list[Path]:
    """The images of `folder` sorted by name: files whose suffix is an image suffix (any case), hidden
    files (`.name`) excepted. Links are followed (a data root is the user's folder; BasicSR's datasets
    README recommends `ln -s` to put sets there). Whether each decodes is for :func:`read_image` to say."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def crop_to_scale(img: Tensor, scale: int) -> Tensor:
    """`img` (…, H, W) cropped at the bottom and right to a multiple of `scale` (H − H mod s, W − W mod s):
    the HR a ×s result is compared with, as MATLAB-made benchmark sets and every metric convention crop."""
    h, w = img.shape[-2], img.shape[-1]
    return img[..., : h - h % scale, : w - w % scale]
