"""Read TensorFlow 1 checkpoints (tensor bundles) without TensorFlow.

A checkpoint ``<prefix>`` is ``<prefix>.index``, an SSTable (LevelDB table format) mapping each tensor name
to a ``BundleEntryProto`` (dtype, shape, shard, offset, size, masked crc32c) plus a header entry under the
empty key (``BundleHeaderProto``: number of shards, endianness), and the shards
``<prefix>.data-<i:05d>-of-<n:05d>`` holding the raw little-endian tensor bytes. Every block of the table
and every tensor read is checked against its crc32c.

:func:`read_variables` accepts the released directory (its ``checkpoint`` text file names the prefix), the
prefix itself, or the ``.index`` / ``.data-*`` path, and drops the training state (Adam slots, the
``beta1_power``/``beta2_power`` accumulators, integer step counters such as ``global_step``).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import crc32c as _crc32c
import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression type byte + masked crc32c
_CRC_MASK_DELTA = 0xA282EAD8

# tensorflow/core/framework/types.proto DataType → numpy little-endian dtype (numeric types only).
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}
DTYPE_NAMES = {7: "string", 8: "complex64", 14: "bfloat16", 18: "complex128", 20: "resource", 21: "variant"}

# Optimizer state saved beside the model variables: Adam's slots (named after the optimizer, "Adam" or
# "AdamOptimizer" as in the DRSAN release) and its beta-power accumulators. Integer scalars (global_step,
# or an unnamed step "Variable") are step counters and are dropped too.
_SLOT = re.compile(r"/(Adam|AdamOptimizer)(_1)?$")
_BETA_POWER = re.compile(r"^(.*/)?beta[12]_power(_\d+)?$")


class TFCheckpointError(ValueError):
    """A TF checkpoint that cannot be read (missing shard, corrupt block or tensor, unsupported layout)."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: dtype (TF enum), shape, shard, byte offset and size, masked crc32c."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int

    @property
    def numpy_dtype(self) -> np.dtype:
        if self.dtype not in DTYPES:
            kind = DTYPE_NAMES.get(self.dtype, f"enum {self.dtype}")
            raise TFCheckpointError(f"tensor {self.name!r} has TF dtype {kind}, which is not supported")
        return DTYPES[self.dtype]


# ----------------------------------------------------------------------------------- crc32c, protobuf


def masked_crc32c(data: bytes | memoryview) -> int:
    """LevelDB/TF masked crc32c: rotate right by 15 and add a constant."""
    crc = _crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise TFCheckpointError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise TFCheckpointError("varint longer than 10 bytes")


def _fields(buf: bytes | memoryview) -> dict[int, list]:
    """Decode a protobuf message into field number → values (ints for varint/fixed, bytes otherwise)."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos : pos + length]), pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise TFCheckpointError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    if pos != len(buf):
        raise TFCheckpointError("truncated protobuf message")
    return fields


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _entry(name: str, proto: bytes) -> TensorEntry:
    f = _fields(proto)
    if 7 in f:
        raise TFCheckpointError(f"tensor {name!r} is saved in slices (partitioned variable): not supported")
    dims = [_fields(d).get(1, [0])[0] for d in _fields(f[2][0]).get(2, [])] if 2 in f else []
    shape = tuple(_int64(d) for d in dims)
    if any(d < 0 for d in shape):
        raise TFCheckpointError(f"tensor {name!r} has an unknown dimension in its shape {shape}")
    return TensorEntry(
        name=name,
        dtype=f.get(1, [0])[0],
        shape=shape,
        shard=f.get(3, [0])[0],
        offset=f.get(4, [0])[0],
        size=f.get(5, [0])[0],
        crc32c=f.get(6, [0])[0],
    )


# ------------------------------------------------------------------------------------------- SSTable


def _block(table: bytes, handle: bytes | memoryview, pos: int, origin: Path) -> tuple[memoryview, int]:
    """The contents of the block whose BlockHandle (offset, size varints) starts at ``handle[pos]``."""
    offset, pos = _varint(handle, pos)
    size, pos = _varint(handle, pos)
    end = offset + size + BLOCK_TRAILER_SIZE
    if end > len(table):
        raise TFCheckpointError(f"{origin} is truncated (a block ends at byte {end} of {len(table)})")
    view = memoryview(table)
    compression, crc = table[offset + size], struct.unpack_from("<I", table, offset + size + 1)[0]
    if masked_crc32c(view[offset : offset + size + 1]) != crc:
        raise TFCheckpointError(
            f"{origin} is corrupt (block at byte {offset} fails its crc32c): re-download it"
        )
    if compression != 0:
        raise TFCheckpointError(
            f"{origin} uses block compression type {compression}; only uncompressed tables"
        )
    return view[offset : offset + size], pos


def _block_entries(block: memoryview) -> list[tuple[bytes, memoryview]]:
    """(key, value) pairs of a table block (prefix-compressed keys, restart array at the end)."""
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * n_restarts
    entries, key, pos = [], b"", 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + bytes(block[pos : pos + unshared])
        pos += unshared
        entries.append((key, block[pos : pos + length]))
        pos += length
    return entries


def _table_entries(path: Path) -> list[tuple[bytes, memoryview]]:
    table = path.read_bytes()
    if len(table) < FOOTER_SIZE:
        raise TFCheckpointError(f"{path} is too short to be a TF checkpoint index ({len(table)} bytes)")
    footer = table[-FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)[0] != TABLE_MAGIC:
        raise TFCheckpointError(f"{path} is not a TF checkpoint index (no SSTable magic number at its end)")
    _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle (offset, size)
    index, _ = _block(table, footer, pos, path)
    entries = []
    for _, handle in _block_entries(index):
        data, _ = _block(table, handle, 0, path)
        entries += _block_entries(data)
    return entries


# -------------------------------------------------------------------------------------------- bundle


@dataclass(frozen=True)
class TFCheckpoint:
    """A tensor bundle's index: its prefix, number of shards and entries by tensor name."""

    prefix: Path
    num_shards: int
    entries: dict[str, TensorEntry]

    def shard_path(self, shard: int) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}.data-{shard:05d}-of-{self.num_shards:05d}")

    def verify(self) -> None:
        """Check every numeric tensor's bytes against its crc32c (string tensors are not checked)."""
        self.read([n for n, e in self.entries.items() if e.dtype in DTYPES])

    def read(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The named tensors (default: all), each checked against its size and crc32c."""
        wanted = [self.entries[n] for n in (self.entries if names is None else names)]
        shards: dict[int, bytes] = {}
        arrays = {}
        for e in wanted:
            if e.shard not in shards:
                path = self.shard_path(e.shard)
                if not path.is_file():
                    raise FileNotFoundError(
                        f"TF checkpoint shard missing: {path} (tensor {e.name!r} is in shard {e.shard} of "
                        f"{self.num_shards}); download every .data-* file beside {self.prefix.name}.index"
                    )
                shards[e.shard] = path.read_bytes()
            data = shards[e.shard]
            dtype = e.numpy_dtype
            expected = math.prod(e.shape) * dtype.itemsize  # Python ints: no int64 overflow
            if e.size != expected or e.offset + e.size > len(data):
                raise TFCheckpointError(
                    f"{self.shard_path(e.shard)} is truncated or does not belong to this index: tensor "
                    f"{e.name!r} needs bytes {e.offset}..{e.offset + expected} of {len(data)}; re-download it"
                )
            raw = memoryview(data)[e.offset : e.offset + e.size]
            if masked_crc32c(raw) != e.crc32c:
                raise TFCheckpointError(
                    f"tensor {e.name!r} in {self.shard_path(e.shard)} fails its crc32c: the file is corrupt, "
                    "re-download it"
                )
            arrays[e.name] = np.frombuffer(raw, dtype=dtype).reshape(e.shape).copy()
        return arrays


def read_index(prefix: str | Path) -> TFCheckpoint:
    """Parse ``<prefix>.index``: the header (shards, endianness) and every tensor's entry."""
    prefix = Path(prefix)
    index = prefix.with_name(prefix.name + ".index")
    if not index.is_file():
        raise FileNotFoundError(f"TF checkpoint index not found: {index}")
    try:
        return _parse_index(prefix, index)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise TFCheckpointError(f"{index} is corrupt ({exc}): re-download it") from exc
    except TFCheckpointError as exc:
        if str(index) in str(exc):
            raise
        raise TFCheckpointError(f"{index} is corrupt ({exc}): re-download it") from exc


def _parse_index(prefix: Path, index: Path) -> TFCheckpoint:
    num_shards, entries = None, {}
    for key, value in _table_entries(index):
        if key == b"":
            header = _fields(value)
            if header.get(2, [0])[0] != 0:
                raise TFCheckpointError(f"{index} was written big-endian: not supported")
            num_shards = header.get(1, [1])[0]
        else:
            name = key.decode("utf-8")
            if name in entries:
                raise TFCheckpointError(
                    f"{index} names tensor {name!r} twice: a damaged or hand-edited index; re-download it"
                )
            try:
                entries[name] = _entry(name, bytes(value))
            except TFCheckpointError as exc:
                raise TFCheckpointError(f"{index}: tensor {name!r}: {exc}; re-download it") from exc
    if num_shards is None:
        raise TFCheckpointError(f"{index} has no bundle header entry: not a TF2/TF1 V2 checkpoint index")
    return TFCheckpoint(prefix, num_shards, entries)


def is_tf_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` names a TF checkpoint: a folder with a ``checkpoint`` file or one ``.index``, a
    prefix with an ``.index`` beside it, or an ``.index`` / ``.data-*`` file."""
    path = Path(path)
    if path.is_dir():
        return (path / "checkpoint").is_file() or bool(list(path.glob("*.index")))
    return (
        path.suffix == ".index"
        or bool(re.search(r"\.data-\d{5}-of-\d{5}$", path.name))
        or path.with_name(path.name + ".index").is_file()
    )


def find_prefix(path: str | Path) -> Path:
    """The checkpoint prefix named by a folder (its ``checkpoint`` file, else its single ``.index``), a
    prefix, or an ``.index`` / ``.data-*`` path."""
    path = Path(path)
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
            match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', state.read_text(), re.MULTILINE)
            if not match:
                raise TFCheckpointError(f"{state} names no model_checkpoint_path")
            named = Path(match.group(1))
            # TF may record an absolute path of the training machine: the file beside it is meant.
            for candidate in (path / named, path / named.name):
                if candidate.with_name(candidate.name + ".index").is_file():
                    return candidate
            raise FileNotFoundError(
                f"{state} names {match.group(1)!r} but {path / named.name}.index does not exist"
            )
        indexes = sorted(path.glob("*.index"))
        if len(indexes) != 1:
            raise FileNotFoundError(
                f"{path} has no `checkpoint` file and {len(indexes)} .index files: "
                "pass the prefix or the .index path"
            )
        return indexes[0].with_suffix("")
    if path.suffix == ".index":
        return path.with_suffix("")
    data = re.match(r"(.*)\.data-\d{5}-of-\d{5}$", path.name)
    return path.with_name(data.group(1)) if data else path


def is_training_state(entry: TensorEntry) -> bool:
    """Optimizer slots, Adam's beta powers and integer scalar step counters."""
    step = entry.shape == () and entry.dtype in (3, 9)
    return step or bool(_SLOT.search(entry.name) or _BETA_POWER.match(entry.name))


def read_variables(path: str | Path) -> dict[str, np.ndarray]:
    """The model variables of the TF checkpoint at ``path`` (folder, prefix, .index or .data path), keyed by
    TF name; training state is dropped. Every tensor read is crc-checked."""
    bundle = read_index(find_prefix(path))
    bundle.verify()
    return bundle.read([n for n, e in bundle.entries.items() if not is_training_state(e)])
