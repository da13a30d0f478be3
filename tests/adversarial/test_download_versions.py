"""Issue 24: a resumed download is never spliced from two versions of the remote (ETag / If-Range), and a
file that could be spliced is never pinned by its own sidecar (loopback server, 127.0.0.1 only)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from harness import downloads


def _payload(seed: int, n: int = 100_000) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _cut_first_download(server, tmp_path, old: bytes) -> int:
    """Start a download of `old` that the server cuts in half; the partial's size."""
    server.files["/f.bin"], server.mode = old, "truncate"
    with pytest.raises(OSError, match="stopped at"):
        downloads.download(server.url("/f.bin"), tmp_path / "f.bin")
    server.mode = "ok"
    return (tmp_path / "f.bin.part").stat().st_size


def test_a_resume_sends_if_range_and_continues_an_unchanged_remote(server, tmp_path):
    server.etags = True
    body = _payload(0)
    half = _cut_first_download(server, tmp_path, body)
    validator = json.loads((tmp_path / "f.bin.part.validator").read_text())
    assert validator["etag"].startswith('"')
    downloads.download(server.url("/f.bin"), tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == body
    assert server.requests[-1] == f"bytes={half}-" and server.if_ranges[-1] == validator["etag"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "f.bin.manifest.json"]


@pytest.mark.parametrize("mode", ["ok", "ignore_if_range"])
def test_a_remote_changed_between_the_cut_and_the_resume_is_downloaded_anew(server, tmp_path, mode):
    """ "ok" honours If-Range (answers 200); "ignore_if_range" answers 206 with the new file's ETag."""
    server.etags = True
    old, new = _payload(0), _payload(1)
    _cut_first_download(server, tmp_path, old)
    server.files["/f.bin"], server.mode = new, mode
    downloads.download(server.url("/f.bin"), tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == new  # not old's head + new's tail
    record = json.loads((tmp_path / "f.bin.manifest.json").read_text())
    assert record["sha256"] == hashlib.sha256(new).hexdigest()


def test_without_a_validator_or_a_known_checksum_a_partial_is_not_resumed(server, tmp_path):
    """No ETag and no pinned sha256: nothing ties the partial to the remote, so it restarts from zero and
    the sidecar pins the new file, never a splice."""
    old, new = _payload(0), _payload(1)
    _cut_first_download(server, tmp_path, old)
    server.files["/f.bin"] = new
    downloads.download(server.url("/f.bin"), tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == new and server.requests[-1] is None


def test_a_remote_changed_to_the_partials_length_is_not_taken_as_complete(server, tmp_path):
    """A 416 for a partial whose size equals the new remote's is complete only if the validator matches."""
    server.etags = True
    old = _payload(0)
    half = _cut_first_download(server, tmp_path, old)
    new = _payload(1, half)  # the new remote is exactly as long as the partial
    server.files["/f.bin"], server.mode = new, "ignore_if_range"
    downloads.download(server.url("/f.bin"), tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == new
