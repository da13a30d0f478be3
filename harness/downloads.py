"""Downloads and archives: resumable, verified downloads (a sidecar manifest records size and sha256 on the
first download; a partial file is resumed only when the server confirms the offset) and safe extraction
(members checked: no escapes, no links or devices, CRCs and stream ends verified before anything counts as
complete)."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from harness import progress
from harness.errors import UserError
from harness.files import atomic_file

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str | None = None) -> Path:
    """Download `url` to `dest` through `dest.part`, resumably, verified before it is renamed into place.

    Resuming: a `.part` file is continued only when the server confirms the offset (HTTP 206 whose
    Content-Range starts at the partial file's size) and that the remote is still the one the partial came
    from: its validator (strong ETag, else Last-Modified, kept in `dest.part.validator`) is sent as
    `If-Range` and must come back unchanged on the 206. Without a recorded validator a partial is resumed
    only when `sha256` is known (the final check then catches any splice); else it restarts from zero, so a
    file spliced from two versions of the remote is never made, nor pinned by its own sidecar. A full
    response, a changed validator, a range at another offset or a partial file longer than the remote
    restart from zero. A transfer cut short (fewer bytes than the server announced) keeps `.part` (and its
    validator) for the next run and raises OSError.

    Verification before the rename: the size announced by the server, `sha256` when given (on a
    mismatch `.part` is deleted and a UserError names both hashes), and for zip/tar archives every
    member (zip CRCs, tar blocks and end-of-archive marker, gzip/bz2/xz streams). A damaged file is
    deleted, never renamed. Then a sidecar manifest `dest.manifest.json` records url, size and sha256;
    an existing `dest` is re-checked against it (or against `sha256`) and downloaded again on mismatch.
    """
    dest = Path(dest)
    sidecar = dest.with_name(dest.name + ".manifest.json")
    if dest.exists():
        if _matches_record(dest, sidecar, sha256):
            return dest
        dest.unlink()
        sidecar.unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch_part(url, part, resume_unvalidated=sha256 is not None)
    _validator_path(part).unlink(missing_ok=True)
    got = sha256_file(part)
    if sha256 is not None and got != sha256:
        part.unlink()
        raise UserError(
            f"checksum mismatch for {dest.name} from {url}: expected sha256 {sha256}, got "
            f"{got}; the download was deleted, run the command again"
        )
    try:
        check_archive(part)
    except ValueError as exc:
        part.unlink()
        retry = "" if str(exc).startswith("refusing") else ", run the command again"  # unsafe, not damaged
        raise UserError(f"{exc}; the download of {url} was deleted{retry}") from exc
    os.replace(part, dest)
    record = {"url": url, "size": dest.stat().st_size, "sha256": got}
    with atomic_file(sidecar) as f:
        f.write(json.dumps(record, indent=1).encode())
    return dest


def _matches_record(dest: Path, sidecar: Path, sha256: str | None) -> bool:
    """Whether an existing download is intact: its sha256 equals the known one, else the sidecar's record;
    without either (a file from an older version) it must pass :func:`check_archive`, then is recorded."""
    record = None
    if sidecar.exists():
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(sidecar.read_text())
    expected = sha256 or (record.get("sha256") if isinstance(record, dict) else None)
    if expected is not None:
        if isinstance(record, dict) and record.get("size") not in (None, dest.stat().st_size):
            return False
        return sha256_file(dest) == expected
    try:
        check_archive(dest)
    except ValueError:
        return False
    with atomic_file(sidecar) as f:
        f.write(json.dumps({"url": "", "size": dest.stat().st_size, "sha256": sha256_file(dest)}).encode())
    return True


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _validator_path(part: Path) -> Path:
    return part.with_name(part.name + ".validator")


def _validator(url: str, headers) -> dict:
    """What identifies the remote's version: a strong ETag, else Last-Modified ({} when neither)."""
    etag = headers.get("ETag") or ""
    if etag and not etag.startswith("W/"):
        return {"url": url, "etag": etag}
    modified = headers.get("Last-Modified") or ""
    return {"url": url, "last_modified": modified} if modified else {}


def _recorded_validator(part: Path, url: str) -> dict:
    """The validator recorded when `part` was started ({} when none, unreadable, or for another URL)."""
    try:
        record = json.loads(_validator_path(part).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and record.get("url") == url else {}


def _restart(part: Path) -> int:
    """Delete `part` and its validator; the offset to start from (0)."""
    part.unlink(missing_ok=True)
    _validator_path(part).unlink(missing_ok=True)
    return 0


def _fetch_part(url: str, part: Path, resume_unvalidated: bool) -> None:
    """Bring `part` to the remote's full content (see :func:`download` for the resume rules)."""
    offset = part.stat().st_size if part.exists() else 0
    recorded = _recorded_validator(part, url) if offset else {}
    if offset and not recorded and not resume_unvalidated:
        offset = _restart(part)  # nothing ties the partial to the remote's current version
    for _ in range(2):  # the second attempt is a restart from zero after an unconfirmed resume
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        if offset and recorded:
            headers["If-Range"] = recorded.get("etag") or recorded["last_modified"]
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # range not satisfiable: the partial is complete or too long
                match = re.fullmatch(r"bytes \*/(\d+)", exc.headers.get("Content-Range", "") or "")
                same = _validator(url, exc.headers) == recorded if recorded else resume_unvalidated
                if match and int(match[1]) == offset and same:
                    return
                offset, recorded = _restart(part), {}
                continue
            raise OSError(f"downloading {url} failed: HTTP {exc.code}; run the command again") from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OSError(f"downloading {url} failed ({reason}); run the command again to resume") from exc
        with response:
            status = getattr(response, "status", None)
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            start = 0
            if offset and status == 206:
                match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "") or "")
                changed = recorded and _validator(url, response.headers) != recorded
                if match is None or int(match[1]) != offset or changed:
                    # another range than the one asked for, or another version of the file: start over
                    offset, recorded = _restart(part), {}
                    continue
                start = offset
                total = int(match[3]) if match[3] != "*" else None
            else:
                _restart(part)
                current = _validator(url, response.headers)
                if current:
                    with atomic_file(_validator_path(part)) as f:
                        f.write(json.dumps(current).encode())
            _stream(response, part, url, start, total)
        return
    raise OSError(f"downloading {url} failed: the server did not honour a restart; run the command again")


def _stream(response, part: Path, url: str, start: int, total: int | None) -> None:
    """Copy the body to `part` (appended from `start`, or written anew when start is 0), with a progress bar
    in bytes; a body shorter than announced keeps `part` for a resume and raises OSError."""
    with open(part, "ab" if start else "wb") as f, progress.bar(total, part.name[:-5], "B") as bar:
        bar.update(start)
        try:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
        except (http.client.HTTPException, OSError) as exc:
            raise OSError(
                f"downloading {url} was interrupted after {f.tell()} bytes ({exc}); run the command again "
                "to resume"
            ) from exc
        size = f.tell()
    if total is not None and size != total:
        if size > total:
            _restart(part)
        raise OSError(
            f"downloading {url} stopped at {size} of {total} bytes; run the command again to "
            + ("resume" if size < total else "download it anew")
        )


def check_archive(path: Path) -> None:
    """Read every member of a zip or tar archive (any other file passes) and raise a UserError if it is
    damaged: a zip CRC mismatch or a truncated stream, a tar cut off (no end-of-archive marker), or a
    member that is not a regular file, folder or link (FIFO, device)."""
    path = Path(path)
    kind = _archive_kind(path)
    if kind is None:
        return
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    _check_zip_type(path, info)
                bad = zf.testzip()
            if bad is not None:
                raise UserError(f"{path} is damaged: member {bad} fails its CRC check")
            return
        with tarfile.open(path) as tf:
            for member in tf:
                _check_tar_type(path, member)
                if member.isfile():
                    with tf.extractfile(member) as f:
                        while f.read(_CHUNK):
                            pass
        if kind == "tar" and not _ends_with_tar_marker(path):
            raise UserError(f"{path} is damaged: the tar archive is cut off (no end-of-archive marker)")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise UserError(f"{path} is damaged or truncated ({exc})") from exc


def _archive_kind(path: Path) -> str | None:
    """Archive kind by content: "zip", "tar" (uncompressed), "tar.z" (compressed tar), else None."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")):
        try:
            with tarfile.open(path) as tf:
                tf.next()
        except (tarfile.TarError, EOFError, zlib.error, OSError):
            return None  # a compressed file, but not a tar (or damaged beyond recognition)
        return "tar.z"
    return None


def _ends_with_tar_marker(path: Path) -> bool:
    """A complete tar ends with (at least) two zero blocks of 512 bytes."""
    size = path.stat().st_size
    if size < 1024:
        return False
    with open(path, "rb") as f:
        f.seek(size - 1024)
        return f.read(1024) == bytes(1024)


def _check_zip_type(archive: Path, info: zipfile.ZipInfo) -> None:
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
        raise UserError(f"refusing to extract {info.filename!r} from {archive}: it is not a regular file")


def _check_tar_type(archive: Path, member: tarfile.TarInfo) -> None:
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UserError(
            f"refusing to extract {member.name!r} from {archive}: it is a device or FIFO, not a regular file"
        )


def _check_member(archive: Path, name: str) -> None:
    """Refuse absolute member paths and `..` components (zip-slip / tar-slip)."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]) or ".." in pure.parts:
        raise UserError(f"refusing to extract {name!r} from {archive}: it points outside the target folder")


def extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a zip or tar archive into `dest`, refusing absolute paths, `..`, links leading outside and
    special files (FIFOs, devices); a damaged archive (bad CRC, truncated) raises a UserError."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member(archive, info.filename)
                    if stat.S_ISLNK(info.external_attr >> 16):
                        raise UserError(f"refusing to extract {info.filename!r} from {archive}: it is a link")
                    _check_zip_type(archive, info)
                zf.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for member in tf.getmembers():
                    _check_member(archive, member.name)
                    _check_tar_type(archive, member)
                    if member.issym() or member.islnk():
                        target = PurePosixPath(member.linkname)
                        base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
                        _check_member(archive, str(base / target))
                tf.extractall(dest, filter="data")
        else:
            raise UserError(f"{archive} is neither a zip nor a tar archive: delete it and fetch again")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise UserError(f"{archive} is damaged or truncated ({exc}): delete it and fetch again") from exc
    return dest
