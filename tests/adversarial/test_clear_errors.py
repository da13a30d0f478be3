"""Issue 24: tracebacks where exit 2 is promised and errors that named no file. TF indexes (a tensor twice,
an over-long varint, a shape whose byte count overflows int64, a DRSAN kernel that is not 4-D), published
tables (nan/inf, wrong types), recipe values out of range, a `--save-sr` manifest of the wrong shape, a
store that cannot be written, and a `last.pt` of another architecture or with malformed
fields: each a clear error naming the file (and field, tensor or row)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import architectures
from architectures import CheckpointError, tf_checkpoint
from harness import published, recipes, sr_outputs, store
from harness.errors import UserError
from harness.eval_job import run_eval
from harness.eval_request import EvalRequest
from harness.paths import PUBLISHED_DIR
from tests.helpers import TinySR, run_fit, tiny_plan

# ------------------------------------------------------------------------------ a TF index, written here


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([byte])
        out += bytes([byte | 0x80])


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _entry(shape: tuple[int, ...], offset: int, data: bytes) -> bytes:
    """A BundleEntryProto of a float32 tensor in shard 0."""
    dims = b"".join(_bytes_field(2, _varint_field(1, d)) for d in shape)
    crc = tf_checkpoint.masked_crc32c(data)
    return (
        _varint_field(1, 1) + _bytes_field(2, dims) + _varint_field(3, 0) + _varint_field(4, offset)
        + _varint_field(5, len(data)) + _varint(6 << 3 | 5) + struct.pack("<I", crc)
    )  # fmt: skip


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in entries)
    return body + struct.pack("<II", 0, 1)  # one restart point at 0


def _with_trailer(block: bytes) -> bytes:
    return block + b"\0" + struct.pack("<I", tf_checkpoint.masked_crc32c(block + b"\0"))


def write_tf(prefix: Path, entries: list[tuple[str, bytes]], shard: bytes = b"") -> Path:
    """``prefix.index`` (header + ``entries``, in the order given) and its one shard."""
    data = _block([(b"", _varint_field(1, 1))] + [(k.encode(), v) for k, v in entries])
    table = _with_trailer(data)
    index = _with_trailer(_block([(b"\xff", _varint(0) + _varint(len(data)))]))
    handles = _varint(0) + _varint(0) + _varint(len(table)) + _varint(len(index) - 5)
    footer = handles.ljust(40, b"\0") + struct.pack("<Q", tf_checkpoint.TABLE_MAGIC)
    prefix.with_name(prefix.name + ".index").write_bytes(table + index + footer)
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(shard)
    return prefix


def _tensor(values: np.ndarray, offset: int = 0) -> bytes:
    return _entry(values.shape, offset, values.astype("<f4").tobytes())


def test_a_well_formed_written_index_reads_back(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    prefix = write_tf(tmp_path / "m", [("a", _tensor(a))], a.tobytes())
    np.testing.assert_array_equal(tf_checkpoint.read_variables(prefix)["a"], a)


def test_a_tensor_named_twice_in_the_index_is_refused(tmp_path):
    a, b = np.zeros(2, np.float32), np.ones(2, np.float32)
    prefix = write_tf(tmp_path / "m", [("w", _tensor(a)), ("w", _tensor(b, 8))], a.tobytes() + b.tobytes())
    with pytest.raises(tf_checkpoint.TFCheckpointError, match=r"m\.index names tensor 'w' twice"):
        tf_checkpoint.read_index(prefix)


def test_an_over_long_varint_names_the_file_and_the_tensor(tmp_path):
    prefix = write_tf(tmp_path / "m", [("bad/kernel", b"\x08" + b"\xff" * 11 + b"\x01")])
    with pytest.raises(tf_checkpoint.TFCheckpointError) as err:
        tf_checkpoint.read_index(prefix)
    assert re.search(r"m\.index: tensor 'bad/kernel': varint longer than 10 bytes", str(err.value))


def test_a_shape_whose_size_overflows_int64_is_caught_naming_file_and_tensor(tmp_path):
    """2**62 × 4 floats is 2**66 bytes: a size computed in int64 wraps to 0 and matched the empty entry."""
    prefix = write_tf(tmp_path / "m", [("huge", _entry((2**62, 4), 0, b""))])
    with pytest.raises(tf_checkpoint.TFCheckpointError, match=r"data-00000-of-00001 .*tensor 'huge' needs"):
        tf_checkpoint.read_variables(prefix)


def test_a_drsan_head_kernel_that_is_not_4d_names_file_and_tensor(tmp_path):
    head, other = np.zeros((3, 32), np.float32), np.zeros((3, 3, 32, 10), np.float32)
    entries = [("DRAN/conv2d/kernel", _tensor(head)), ("DRAN/conv2d_2/kernel", _tensor(other, head.nbytes))]
    prefix = write_tf(tmp_path / "m", entries, head.tobytes() + other.tobytes())
    model = architectures.build("drsan", 2, "32s")
    with pytest.raises(CheckpointError, match=r"m\.index: tensor 'DRAN/conv2d/kernel' has shape \(3, 32\)"):
        architectures.load_checkpoint(model, prefix.with_name("m.index"))


# ------------------------------------------------------------------------------------ published tables


def _table(tmp_path: Path, value: str, scale: str = "2") -> Path:
    src = sorted(PUBLISHED_DIR.glob("*.csv"))[0]
    lines = src.read_text().splitlines()
    cells = lines[1].split(",")
    cells[3], cells[6] = scale, value  # scale, value
    (tmp_path / "t.csv").write_text("\n".join([lines[0], ",".join(cells)]) + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("value", "scale", "message"),
    [
        ("nan", "2", "value 'nan' is not a finite number"),
        ("inf", "2", "value 'inf' is not a finite number"),
        ("-Infinity", "2", "value '-Infinity' is not a finite number"),
        ("37.x", "2", "value '37.x' is not a number"),
        ("37.5", "two", "scale 'two' is not a positive integer"),
    ],
)
def test_published_values_are_checked_at_load_naming_file_and_line(tmp_path, value, scale, message):
    root = _table(tmp_path, value, scale)
    with pytest.raises(ValueError, match=re.escape(f"t.csv, line 2: {message}")):
        published.load(root)


# ------------------------------------------------------------------------------------------- recipes


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("iters = 3", "iters = 0", "smoke.iters"),
        ("enlarge = 1000", "enlarge = 0", "data.enlarge"),
        ("total = 2_000_000", "total = 0", "schedule.total"),
        ("ema_decay = 0.0", "ema_decay = 1.5", "train.ema_decay"),
        ("gamma = 0.5", "gamma = -1.0", "schedule.gamma"),
        ("lr = 0.0002", "lr = 0.0", "optim.lr"),
    ],
)
def test_recipe_values_out_of_range_name_file_and_field(tmp_path, old, new, field):
    text = recipes.RECIPES["drsan_32s_x2"].read_text()
    assert old in text
    bad = tmp_path / "drsan_32s_x2.toml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(
        recipes.RecipeError, match=rf"{re.escape(str(bad))}: field {re.escape(field)} = .* range"
    ):
        recipes.load(bad)


# ----------------------------------------------------------------------------- records and manifests


@pytest.mark.parametrize("content", ["[]", '{"images": []}', '"text"', "{not json"])
def test_a_save_sr_manifest_of_the_wrong_shape_is_refused_before_the_first_image(tmp_path, content):
    (tmp_path / "sr").mkdir()
    (tmp_path / "sr" / "manifest.json").write_text(content)
    with pytest.raises(ValueError, match=r"manifest\.json.*(not an SR manifest|not JSON)"):
        run_eval(
            EvalRequest(str(tmp_path / "never-read.pth"), ("Set5",), model="span_light", scale=2,
                        save_sr=tmp_path / "sr", store=False)
        )  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == ["manifest.json"]


def test_a_store_that_cannot_be_written_is_a_user_error(tmp_path, monkeypatch):
    """`check_writable` (called by eval and reproduce before the first image) on a store that cannot exist."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "file" / "store"))
    with pytest.raises(UserError, match=r"file/store cannot be written.*REPROSR_RESULTS"):
        store.check_writable()


def test_sr_pngs_are_written_atomically(tmp_path, monkeypatch):
    def fail_midway(self, fp, format=None, **kw):  # noqa: A002 (PIL's name)
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(sr_outputs.Image.Image, "save", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        sr_outputs.save_sr(tmp_path, "baby", torch.zeros(3, 4, 4, dtype=torch.uint8))
    assert list(tmp_path.iterdir()) == []  # no 0-byte or partial PNG under its final name


# ---------------------------------------------------------------------------------------------- resume


class WiderSR(TinySR):
    def __init__(self):
        super().__init__()
        self.body[0] = nn.Conv2d(3, 16, 3, padding=1)
        self.body[2] = nn.Conv2d(16, 12, 3, padding=1)


def test_resuming_a_last_pt_of_another_architecture_is_a_clear_error(tmp_path):
    plan = tiny_plan(iterations=2, checkpoint_every=2)
    run_fit(tmp_path, plan)
    with pytest.raises(ValueError, match=r"last\.pt: model weight 'body\.0\.weight' is \(8, 3, 3, 3\)"):
        run_fit(tmp_path, plan, model=WiderSR())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("iteration", "3", "field 'iteration' is '3'"),
        ("iteration", -5, "field 'iteration' is -5"),
        ("rng", "junk", "field 'rng' is not a list"),
        ("rng", [{"torch": torch.zeros(3)}], "field 'rng' of rank 0 is malformed"),
    ],
)
def test_resuming_a_last_pt_with_malformed_fields_is_a_clear_error(tmp_path, field, value, message):
    plan = tiny_plan(iterations=2, checkpoint_every=2)
    run_fit(tmp_path, plan)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    state[field] = value
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=re.escape(message)):
        run_fit(tmp_path, plan)
