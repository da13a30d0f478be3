"""Cases 5 and 12: one rule for every bit depth, fuzzed decoding that fails only with ImageReadError,
PNGs written with the umask's permissions, and temp files of killed writers cleaned on the next run."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness import data, files
from harness.data import ImageReadError, read_image, write_image


def _png(width: int, height: int, bit_depth: int, color_type: int, samples: np.ndarray) -> bytes:
    """A PNG written chunk by chunk (Pillow cannot write 16-bit RGB): filter 0 on every row."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = samples.astype(">u2" if bit_depth == 16 else "u1").reshape(height, -1).tobytes()
    stride = len(raw) // height
    rows = b"".join(b"\0" + raw[i * stride : (i + 1) * stride] for i in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_16_bit_rgb_png_is_refused_like_16_bit_gray(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 65536, (5, 4, 3), dtype=np.uint16)
    (tmp_path / "rgb16.png").write_bytes(_png(4, 5, 16, 2, rgb))
    assert Image.open(tmp_path / "rgb16.png").mode == "RGB"  # Pillow would hand over the high bytes
    (tmp_path / "gray16.png").write_bytes(_png(4, 5, 16, 0, rgb[..., 0]))
    for name in ("rgb16.png", "gray16.png"):
        with pytest.raises(ImageReadError, match=rf"{name}: 16-bit .*only 8 bits per sample"):
            read_image(tmp_path / name)


def test_8_bit_png_written_by_hand_reads_exactly(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    (tmp_path / "rgb8.png").write_bytes(_png(4, 5, 8, 2, rgb))
    img = read_image(tmp_path / "rgb8.png")
    assert torch.equal((img * 255).round().byte().permute(1, 2, 0), torch.from_numpy(rgb))


_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mode=st.sampled_from([*_MODES, "I;16", "I", "F", "RGB16", "GRAY16"]),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_any_bit_depth_reads_iff_8_bit(tmp_path, mode, h, w, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "img.png"
    if mode in ("RGB16", "GRAY16"):
        shape = (h, w, 3) if mode == "RGB16" else (h, w)
        path.write_bytes(_png(w, h, 16, 2 if mode == "RGB16" else 0, rng.integers(0, 65536, shape)))
    elif mode in _MODES:
        Image.fromarray(
            rng.integers(0, 256, (h, w, _MODES[mode]), dtype=np.uint8).squeeze(-1)
            if mode == "L"
            else rng.integers(0, 256, (h, w, _MODES[mode]), dtype=np.uint8),
            mode,
        ).save(path)
    else:
        array = rng.integers(0, 60000, (h, w)).astype(np.uint16 if mode == "I;16" else np.int32)
        image = Image.fromarray(array.astype(np.float32), "F") if mode == "F" else Image.fromarray(array)
        path = path.with_suffix(".png" if mode == "I;16" else ".tif")
        image.save(path)
    if mode in _MODES:
        img = read_image(path)
        assert img.shape == (3, h, w) and img.dtype == torch.float32 and 0 <= img.min() <= img.max() <= 1
    else:
        with pytest.raises(ImageReadError, match="only 8 bits per sample"):
            read_image(path)


def _valid_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


_VALID = _valid_png()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cut=st.integers(0, len(_VALID)),
    flips=st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(1, 255)), max_size=4),
)
def test_fuzzed_png_bytes_decode_or_raise_image_read_error(tmp_path, cut, flips):
    raw = bytearray(_VALID[:cut] if cut < len(_VALID) else _VALID)
    for at, mask in flips:
        if at < len(raw):
            raw[at] ^= mask
    (tmp_path / "fuzz.png").write_bytes(bytes(raw))
    try:
        img = read_image(tmp_path / "fuzz.png")
    except ImageReadError as exc:
        assert "fuzz.png" in str(exc)
    else:
        assert img.shape[0] == 3 and torch.isfinite(img).all() and 0 <= img.min() <= img.max() <= 1


# ---------------------------------------------------------------------------------- files written


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_pngs_get_the_permissions_of_any_new_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_image(tmp_path / "a.png", torch.zeros(3, 4, 4))
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o666 & ~umask


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_temp_files_of_killed_writers_are_removed_on_the_next_write(tmp_path):
    dead = tmp_path / f".a.png.{_dead_pid()}-0123abcd.tmp"
    live = tmp_path / f".b.png.{os.getpid()}-0123abcd.tmp"  # a write in progress in this process
    old_live = tmp_path / f".c.png.{os.getppid()}-0123abcd.tmp"  # live pid, but two days old
    foreign = tmp_path / ".notes.tmp"  # not a name this harness writes
    for p in (dead, live, old_live, foreign):
        p.write_bytes(b"partial")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old_live, (two_days_ago, two_days_ago))
    write_image(tmp_path / "new.png", torch.zeros(3, 2, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, foreign.name, "new.png"])


def test_a_killed_write_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill during the PNG encoding would interrupt it

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "a.png", torch.zeros(3, 2, 2))
    assert list(tmp_path.iterdir()) == []


def test_stale_temps_in_a_fresh_lr_folder_are_removed(tmp_path):
    write_image(tmp_path / "Set" / "HR" / "a.png", torch.rand(3, 8, 8))
    lr_dir = tmp_path / "Set" / "LR_bicubic" / "X2"
    lr_dir.mkdir(parents=True)
    (lr_dir / data.GENERATED_MARKER).touch()
    stale = lr_dir / f".a.png.{_dead_pid()}-deadbeef.tmp"
    stale.write_bytes(b"cut")
    data.benchmark_pairs("Set", 2, tmp_path)
    assert not stale.exists() and (lr_dir / "a.png").exists()


def test_cleanup_ignores_a_missing_folder(tmp_path: Path):
    assert files.remove_stale_temps(tmp_path / "absent") == []
