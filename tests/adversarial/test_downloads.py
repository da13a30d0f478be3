"""Case 2 and the archive half of case 9: downloads resume only what a server confirms, are verified
(size, sha256, every archive member) before they count as complete, and bad archives are clear errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harness import cli, data, downloads, progress


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _payload(n: int = 200_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_first_download_records_size_and_sha256(server, tmp_path):
    body = _tar({"set/a.bin": _payload()})
    server.files["/a.tar"] = body
    dest = downloads.download(server.url("/a.tar"), tmp_path / "a.tar")
    record = json.loads((tmp_path / "a.tar.manifest.json").read_text())
    assert dest.read_bytes() == body
    assert record == {"url": server.url("/a.tar"), "size": len(body), "sha256": _sha(body)}


def test_a_recorded_download_damaged_later_is_fetched_again(server, tmp_path):
    body = _tar({"set/a.bin": _payload()})
    server.files["/a.tar"] = body
    downloads.download(server.url("/a.tar"), tmp_path / "a.tar")
    damaged = bytearray(body)
    damaged[700] ^= 0xFF
    (tmp_path / "a.tar").write_bytes(bytes(damaged))
    downloads.download(server.url("/a.tar"), tmp_path / "a.tar")
    assert (tmp_path / "a.tar").read_bytes() == body and server.requests == [None, None]


def test_a_cut_off_archive_an_older_version_marked_complete_is_fetched_again(server, tmp_path):
    body = _tar({"set/a.bin": _payload()})
    server.files["/a.tar"] = body
    (tmp_path / "a.tar").write_bytes(body[: len(body) // 2])  # complete by name, no sidecar manifest
    downloads.download(server.url("/a.tar"), tmp_path / "a.tar")
    assert (tmp_path / "a.tar").read_bytes() == body and (tmp_path / "a.tar.manifest.json").exists()


def test_resume_at_a_wrong_offset_restarts_from_zero(server, tmp_path):
    body = _payload()
    server.files["/f.bin"], server.mode = body, "wrong_offset"
    (tmp_path / "f.bin.part").write_bytes(body[:5000])
    downloads.download(server.url("/f.bin"), tmp_path / "f.bin", _sha(body))
    assert (tmp_path / "f.bin").read_bytes() == body
    assert server.requests == ["bytes=5000-", None]


def test_a_server_ignoring_the_range_overwrites_the_partial(server, tmp_path):
    body = _payload()
    server.files["/f.bin"], server.mode = body, "ignore_range"
    (tmp_path / "f.bin.part").write_bytes(b"\0" * 5000)  # not even the right bytes
    downloads.download(server.url("/f.bin"), tmp_path / "f.bin", _sha(body))
    assert (tmp_path / "f.bin").read_bytes() == body


def test_a_partial_longer_than_the_remote_restarts(server, tmp_path):
    body = _payload()
    server.files["/f.bin"] = body
    (tmp_path / "f.bin.part").write_bytes(body + b"junk" * 100)
    downloads.download(server.url("/f.bin"), tmp_path / "f.bin", _sha(body))
    assert (tmp_path / "f.bin").read_bytes() == body
    assert server.requests == [f"bytes={len(body) + 400}-", None]


def test_a_truncated_body_is_kept_for_a_confirmed_resume_never_marked_complete(server, tmp_path):
    body = _tar({"set/a.bin": _payload()})
    server.files["/a.tar"], server.mode = body, "truncate"
    with pytest.raises(OSError, match=r"stopped at \d+ of \d+ bytes.*resume"):
        downloads.download(server.url("/a.tar"), tmp_path / "a.tar", _sha(body))
    assert _leftovers(tmp_path) == ["a.tar.part"]
    half = (tmp_path / "a.tar.part").stat().st_size
    assert 0 < half < len(body)
    server.mode = "ok"
    downloads.download(server.url("/a.tar"), tmp_path / "a.tar", _sha(body))
    assert (tmp_path / "a.tar").read_bytes() == body
    assert server.requests[-1] == f"bytes={half}-"


def test_a_cut_off_archive_of_unknown_length_is_deleted_not_marked_complete(server, tmp_path):
    server.files["/a.tar"], server.mode = _tar({"set/a.bin": _payload()}), "close_delimited"
    with pytest.raises(ValueError, match="damaged|truncated|cut off"):
        downloads.download(server.url("/a.tar"), tmp_path / "a.tar")
    assert _leftovers(tmp_path) == []


def test_a_tar_cut_at_a_member_boundary_is_detected(tmp_path):
    first = _tar({"set/a.bin": b"a" * 512})
    whole = _tar({"set/a.bin": b"a" * 512, "set/b.bin": b"b" * 512})
    (tmp_path / "cut.tar").write_bytes(whole[:1024])  # header + data of a.bin, nothing after
    assert first[:1024] == whole[:1024]
    with pytest.raises(ValueError, match="cut off"):
        downloads.check_archive(tmp_path / "cut.tar")


def test_with_a_known_checksum_a_corrupt_download_is_deleted(server, tmp_path):
    body = _payload()
    server.files["/f.bin"] = body
    corrupt = bytearray(body[:5000])
    corrupt[10] ^= 1
    (tmp_path / "f.bin.part").write_bytes(bytes(corrupt))  # resumed, but the head is wrong
    with pytest.raises(ValueError, match="checksum mismatch"):
        downloads.download(server.url("/f.bin"), tmp_path / "f.bin", _sha(body))
    assert _leftovers(tmp_path) == []
    downloads.download(server.url("/f.bin"), tmp_path / "f.bin", _sha(body))
    assert (tmp_path / "f.bin").read_bytes() == body


def test_download_progress_counts_bytes(server, tmp_path, monkeypatch):
    seen = []
    real = progress.bar
    monkeypatch.setattr(progress, "bar", lambda total, desc, unit: seen.append((total, unit)) or real())
    server.files["/f.bin"] = body = _payload(50_000)
    downloads.download(server.url("/f.bin"), tmp_path / "f.bin")
    assert seen == [(len(body), "B")]


# ------------------------------------------------------------------------------------------- archives


def _special_tar(path: Path, kind: bytes) -> Path:
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("set/special")
        info.type = kind
        tf.addfile(info)
    return path


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_fifo_and_device_tar_members_are_refused(tmp_path, kind):
    archive = _special_tar(tmp_path / "s.tar", kind)
    with pytest.raises(ValueError, match="device or FIFO"):
        downloads.extract(archive, tmp_path / "out")
    with pytest.raises(ValueError, match="device or FIFO"):
        downloads.check_archive(archive)
    assert not (tmp_path / "out" / "set" / "special").exists()


def test_a_fifo_zip_member_is_refused(tmp_path):
    info = zipfile.ZipInfo("set/pipe")
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    with zipfile.ZipFile(tmp_path / "f.zip", "w") as zf:
        zf.writestr(info, b"")
    with pytest.raises(ValueError, match="not a regular file"):
        downloads.extract(tmp_path / "f.zip", tmp_path / "out")


def test_a_zip_with_a_bad_crc_is_detected(tmp_path):
    body = b"0123456789" * 100
    with zipfile.ZipFile(tmp_path / "z.zip", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("set/a.bin", body)
    raw = bytearray((tmp_path / "z.zip").read_bytes())
    at = raw.index(body)
    raw[at + 3] ^= 0xFF  # a stored byte changed: the CRC no longer matches
    (tmp_path / "z.zip").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="CRC"):
        downloads.check_archive(tmp_path / "z.zip")
    with pytest.raises(ValueError, match="damaged"):
        downloads.extract(tmp_path / "z.zip", tmp_path / "out")


# ---------------------------------------------------------------------------------------- data fetch


def _mini_spec(server, monkeypatch) -> None:
    url = server.url("/benchmark.tar")
    archives = (data.Archive(url, "benchmark/Mini/HR", "HR"),)
    monkeypatch.setitem(data.DATASETS, "Mini", data.DatasetSpec("Mini", archives, 1, (), None))


def test_data_fetch_of_a_cut_off_archive_is_a_clear_error(server, tmp_path, monkeypatch, capsys):
    _mini_spec(server, monkeypatch)
    server.files["/benchmark.tar"] = _tar({"benchmark/Mini/HR/a.png": _payload()})
    server.mode = "close_delimited"
    for _ in range(2):  # and again: nothing was marked complete by the first attempt
        with pytest.raises(SystemExit) as exit_:
            cli.main(["data", "fetch", "Mini", "--data-root", str(tmp_path), "--json", "--quiet"])
        assert exit_.value.code == 2
        out, err = capsys.readouterr()
        assert "Traceback" not in err and err.startswith("error: ")
        assert "damaged" in json.loads(out)["error"]
        assert not list((tmp_path / "downloads").iterdir())


def test_stale_extraction_folders_of_killed_fetches_are_removed(server, tmp_path, monkeypatch):
    _mini_spec(server, monkeypatch)
    server.files["/benchmark.tar"] = _tar({"benchmark/Mini/HR/a.png": b"x"})
    stale = tmp_path / f".extract-{_dead_pid()}-abc123"
    (stale / "benchmark").mkdir(parents=True)
    data.fetch("Mini", tmp_path)
    assert not stale.exists() and (tmp_path / "Mini" / "HR" / "a.png").read_bytes() == b"x"


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
