"""Images, the dataset registry, download/extract/verify (loopback server and file:// only) and pairs."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness import data, downloads
from harness.data import ImageReadError, fetching, read_image, write_image
from harness.degrade import bicubic_downsample

# ------------------------------------------------------------------------------------------- images


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode).save(path)
    return path


def test_write_then_read_is_exact_on_the_uint8_grid(tmp_path):
    levels = torch.randint(0, 256, (3, 9, 7), generator=torch.Generator().manual_seed(0))
    write_image(tmp_path / "a.png", levels.float() / 255)
    back = read_image(tmp_path / "a.png")
    assert back.dtype == torch.float32 and back.shape == (3, 9, 7)
    assert torch.equal((back * 255).round().long(), levels)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left behind


def test_uint8_levels_are_written_as_they_are(tmp_path):
    levels = torch.randint(0, 256, (3, 9, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    write_image(tmp_path / "u.png", levels.permute(1, 2, 0).contiguous().permute(2, 0, 1))  # any strides
    write_image(tmp_path / "f.png", levels.float() / 255)
    assert torch.equal(torch.from_numpy(np.asarray(Image.open(tmp_path / "u.png"))).permute(2, 0, 1), levels)
    assert (tmp_path / "u.png").read_bytes() == (tmp_path / "f.png").read_bytes()


def test_write_rounds_half_to_even_and_clamps(tmp_path):
    levels = torch.tensor([0.5, 1.5, 2.5, 254.5, -3.0, 300.0], dtype=torch.float64)
    write_image(tmp_path / "r.png", levels.div(255).view(1, 1, 6).expand(3, 1, 6))
    got = np.asarray(Image.open(tmp_path / "r.png"))[0, :, 0]
    assert got.tolist() == [0, 2, 2, 254, 0, 255]


def test_write_refuses_nan_and_keeps_nothing(tmp_path):
    img = torch.zeros(3, 4, 4)
    img[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "n.png", img)
    assert list(tmp_path.iterdir()) == []


def test_gray_palette_and_rgba_become_rgb(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    img = read_image(_save(tmp_path / "g.png", gray))
    assert img.shape == (3, 4, 5) and torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    assert torch.equal((img[0] * 255).round().byte(), torch.from_numpy(gray))
    rgba = np.random.default_rng(0).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    img = read_image(_save(tmp_path / "a.png", rgba))
    assert torch.equal((img * 255).round().byte().permute(1, 2, 0), torch.from_numpy(rgba[..., :3]))
    rgb = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).quantize(16).save(tmp_path / "p.png")
    expected = np.array(Image.open(tmp_path / "p.png").convert("RGB"))
    img = read_image(tmp_path / "p.png")
    assert torch.equal((img * 255).round().byte().permute(1, 2, 0), torch.from_numpy(expected))


def test_corrupt_truncated_and_unsupported_images_raise_naming_the_file(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.fromarray(np.zeros((4, 4), dtype=np.uint16) + 1000).save(tmp_path / "deep.png")
    for name in ("junk.png", "cut.png", "deep.png"):
        with pytest.raises(ImageReadError, match=name):
            read_image(tmp_path / name)
    assert issubclass(ImageReadError, ValueError)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")


# ----------------------------------------------------------------------------------------- registry


def test_registry_entries():
    assert set(data.DATASETS) == {
        "DIV2K_train",
        "DIV2K_valid",
        "Set5",
        "Set14",
        "B100",
        "Urban100",
        "Manga109",
        "DIV2K_LSDIR_valid",
    }
    assert data.spec("DIV2K_train").hr_count == 800 and data.spec("DIV2K_valid").hr_count == 100
    assert all(
        a.url.startswith("https://data.vision.ee.ethz.ch/cvl/DIV2K/")
        for a in data.spec("DIV2K_train").archives
    )
    for name in ("Set5", "Set14", "B100", "Urban100"):
        manifest = data.MANIFESTS / data.spec(name).manifest
        rel = [line.split()[1] for line in manifest.read_text().splitlines()]
        assert sum(r.startswith("HR/") for r in rel) == data.spec(name).hr_count
        assert len(rel) == 4 * data.spec(name).hr_count  # HR + LR ×2, ×3, ×4
        # DRSAN's psnrtest/ files, pinned by the same manifests (all 876 checked byte-identical upstream)
        source = data.spec(name).per_file
        assert source.url(name, "HR/baby.png").endswith(f"/psnrtest/HR/{name}/baby.png")
        assert source.url(name, "LR_bicubic/X3/baby.png").endswith(f"/psnrtest/x3/{name}/baby.png")
    assert data.spec("DIV2K_valid").archives[0].member_dir == "DIV2K_valid_HR"
    with pytest.raises(KeyError, match="known"):
        data.spec("Set6")


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("REPROSR_DATA", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert data.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("REPROSR_DATA")
    assert data.cache_dir() == tmp_path / "x" / "reprosr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "reprosr"


# ---------------------------------------------------------------------------------- download/extract


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves the server's `files` dict with HTTP Range support; records the Range headers it saw."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = self.server.files.get(self.path)
        self.server.ranges.append(self.headers.get("Range"))
        if body is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"][len("bytes=") :].rstrip("-")) if self.headers.get("Range") else 0
        if start >= len(body):
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.files, httpd.ranges = {}, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(httpd, path: str) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}{path}"


def test_download_checks_sha_and_renames(server, tmp_path):
    body = bytes(range(256)) * 100
    server.files["/f.bin"] = body
    dest = downloads.download(_url(server, "/f.bin"), tmp_path / "f.bin", hashlib.sha256(body).hexdigest())
    assert dest.read_bytes() == body and not (tmp_path / "f.bin.part").exists()


def test_download_resumes_with_range(server, tmp_path):
    body = bytes(range(256)) * 100
    server.files["/f.bin"] = body
    (tmp_path / "f.bin.part").write_bytes(body[:1000])
    downloads.download(_url(server, "/f.bin"), tmp_path / "f.bin", hashlib.sha256(body).hexdigest())
    assert server.ranges == ["bytes=1000-"]
    assert (tmp_path / "f.bin").read_bytes() == body


def test_download_mismatch_keeps_nothing(server, tmp_path):
    body = b"payload" * 1000
    server.files["/f.bin"] = body
    wrong = "0" * 64
    with pytest.raises(ValueError) as info:
        downloads.download(_url(server, "/f.bin"), tmp_path / "f.bin", wrong)
    message = str(info.value)
    assert "f.bin" in message and wrong in message and hashlib.sha256(body).hexdigest() in message
    assert list(tmp_path.iterdir()) == []


def test_download_file_url(tmp_path):
    (tmp_path / "src.bin").write_bytes(b"abc" * 10)
    dest = downloads.download((tmp_path / "src.bin").as_uri(), tmp_path / "out" / "dst.bin")
    assert dest.read_bytes() == b"abc" * 10


def _tar_with(path: Path, member: tarfile.TarInfo, payload: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as tf:
        member.size = 0 if member.issym() or member.islnk() else len(payload)
        tf.addfile(member, io.BytesIO(payload) if member.size else None)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_extract_refuses_escaping_paths(tmp_path, name):
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr(name, b"x")
    with pytest.raises(ValueError, match="refusing"):
        downloads.extract(tmp_path / "bad.zip", tmp_path / "out")
    with pytest.raises(ValueError, match="refusing"):
        downloads.extract(_tar_with(tmp_path / "bad.tar", tarfile.TarInfo(name)), tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not list((tmp_path / "out").rglob("evil.txt"))


def test_extract_refuses_links_leading_outside(tmp_path):
    link = tarfile.TarInfo("set/link")
    link.type, link.linkname = tarfile.SYMTYPE, "../../outside"
    with pytest.raises(ValueError, match="refusing"):
        downloads.extract(_tar_with(tmp_path / "link.tar", link), tmp_path / "out")
    absolute = tarfile.TarInfo("set/abs")
    absolute.type, absolute.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(ValueError, match="refusing"):
        downloads.extract(_tar_with(tmp_path / "abs.tar", absolute), tmp_path / "out")


# ------------------------------------------------------------------------------------- fetch/verify


def _fake_benchmark(tmp_path: Path, monkeypatch, server) -> tuple[str, dict[str, bytes]]:
    """A 'Mini' set served as a tar in the EDSR mirror layout (LR named <name>x<s>.png), with a manifest."""
    rng = np.random.default_rng(0)
    files: dict[str, bytes] = {}
    for stem in ("b", "a"):
        hr = torch.from_numpy(rng.integers(0, 256, (3, 24, 36), dtype=np.uint8)).float() / 255
        write_image(tmp_path / "png.png", hr)
        files[f"HR/{stem}.png"] = (tmp_path / "png.png").read_bytes()
        for s in (2, 3, 4):
            write_image(tmp_path / "png.png", bicubic_downsample(hr, s)[1])
            files[f"LR_bicubic/X{s}/{stem}.png"] = (tmp_path / "png.png").read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for rel, body in files.items():
            mirror_name = (
                rel if rel.startswith("HR") else rel.replace(".png", f"x{rel.split('/X')[1][0]}.png")
            )
            info = tarfile.TarInfo(f"benchmark/Mini/{mirror_name}")
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    server.files["/benchmark.tar"] = buf.getvalue()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "Mini.sha256").write_text(
        "".join(f"{hashlib.sha256(b).hexdigest()}  {r}\n" for r, b in files.items())
    )
    url = _url(server, "/benchmark.tar")
    archives = (data.Archive(url, "benchmark/Mini/HR", "HR"),) + tuple(
        data.Archive(url, f"benchmark/Mini/LR_bicubic/X{s}", f"LR_bicubic/X{s}") for s in (2, 3, 4)
    )
    spec = data.DatasetSpec("Mini", archives, 2, (2, 3, 4), "Mini.sha256")
    monkeypatch.setitem(data.DATASETS, "Mini", spec)
    monkeypatch.setattr(fetching, "MANIFESTS", manifests)
    return "Mini", files


def test_fetch_places_files_and_verifies(tmp_path, monkeypatch, server):
    name, files = _fake_benchmark(tmp_path, monkeypatch, server)
    root = tmp_path / "root"
    folder = data.fetch(name, root)
    assert folder == root / name
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == sorted(files)
    assert server.ranges == [None]  # the shared archive was downloaded once for all four folders
    report = data.verify(name, root)
    assert report.status == "verified" and report.ok and report.checked == len(files)
    (folder / "LR_bicubic/X3/a.png").write_bytes(files["LR_bicubic/X2/a.png"])
    (folder / "HR/b.png").unlink()
    report = data.verify(name, root)
    assert report.status == "mismatch" and not report.ok
    assert any(p.startswith("LR_bicubic/X3/a.png: sha256") for p in report.problems)
    assert "HR/b.png: missing" in report.problems


def test_fetch_per_file_source_first_then_archive(tmp_path, monkeypatch, server):
    name, files = _fake_benchmark(tmp_path, monkeypatch, server)
    for rel, body in files.items():
        server.files[f"/psnrtest/{rel}"] = body
    base = _url(server, "/psnrtest")
    spec = data.spec(name)
    source = data.PerFileSource(f"{base}/HR/{{file}}", f"{base}/LR_bicubic/X{{scale}}/{{file}}")
    monkeypatch.setitem(data.DATASETS, name, dataclasses.replace(spec, per_file=source))
    folder = data.fetch(name, tmp_path / "root")
    assert data.verify(name, tmp_path / "root").ok and server.ranges.count(None) == len(files)
    # an unreachable per-file source falls back to the archive
    broken = data.PerFileSource("http://127.0.0.1:9/{name}/{file}", "http://127.0.0.1:9/{file}")
    monkeypatch.setitem(data.DATASETS, name, dataclasses.replace(spec, per_file=broken))
    assert data.fetch(name, tmp_path / "other") == tmp_path / "other" / name
    assert data.verify(name, tmp_path / "other").ok
    assert folder.is_dir()


def test_per_file_source_rejects_a_file_failing_its_manifest(tmp_path, monkeypatch, server):
    name, files = _fake_benchmark(tmp_path, monkeypatch, server)
    for rel, body in files.items():
        server.files[f"/p/{rel}"] = body[:-1] + bytes([body[-1] ^ 1]) if rel == "HR/a.png" else body
    base = _url(server, "/p")
    source = data.PerFileSource(f"{base}/HR/{{file}}", f"{base}/LR_bicubic/X{{scale}}/{{file}}")
    monkeypatch.setitem(data.DATASETS, name, dataclasses.replace(data.spec(name), per_file=source))
    with pytest.raises(ValueError, match="checksum mismatch for a.png"):
        data.fetch(name, tmp_path / "root")


def _ntire_valid(root: Path, names=("000001", "0801")) -> None:
    rng = np.random.default_rng(1)
    for stem in names:
        hr = torch.from_numpy(rng.integers(0, 256, (3, 32, 24), dtype=np.uint8)).float() / 255
        write_image(root / "DIV2K_LSDIR_valid_HR" / f"{stem}.png", hr)
        write_image(root / "DIV2K_LSDIR_valid_LR" / f"{stem}x4.png", bicubic_downsample(hr, 4)[1])


def test_ntire_valid_layout_is_read_where_it_lies(tmp_path):
    _ntire_valid(tmp_path)
    pairs = data.benchmark_pairs("DIV2K_LSDIR_valid", 4, tmp_path)
    assert [p.name for p in pairs] == ["000001", "0801"]
    assert pairs[0].lr.shape == (3, 8, 6) and pairs[0].hr.shape == (3, 32, 24)
    assert len(data.dataset_checksum("DIV2K_LSDIR_valid", tmp_path)) == 64
    report = data.verify("DIV2K_LSDIR_valid", tmp_path)
    assert report.status == "mismatch" and any("expected 200" in p for p in report.problems)
    row = next(r for r in data.list_datasets(tmp_path) if r["name"] == "DIV2K_LSDIR_valid")
    assert row["status"] == "present (2 HR)"


def test_ntire_valid_lr_is_never_generated(tmp_path):
    _ntire_valid(tmp_path)
    (tmp_path / "DIV2K_LSDIR_valid_LR" / "0801x4.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"0801\.png → 0801x4\.png.*never generated"):
        data.benchmark_pairs("DIV2K_LSDIR_valid", 4, tmp_path)
    assert not (tmp_path / "DIV2K_LSDIR_valid_LR" / "0801x4.png").exists()
    with pytest.raises(FileNotFoundError, match="DIV2K_LSDIR_valid_HR"):
        data.benchmark_pairs("DIV2K_LSDIR_valid", 4, tmp_path / "empty")
    with pytest.raises(ValueError, match="Google Drive"):
        data.fetch("DIV2K_LSDIR_valid", tmp_path)


def test_verify_without_manifest_does_not_claim_verified(tmp_path):
    hr = tmp_path / "DIV2K_valid" / "HR"
    hr.mkdir(parents=True)
    write_image(hr / "0801.png", torch.zeros(3, 12, 12))
    report = data.verify("DIV2K_valid", tmp_path)
    assert report.status == "mismatch" and not report.ok  # 1 image, 100 expected
    assert any("expected 100" in p for p in report.problems)
    assert any("no archive checksum" in n for n in report.notes)


def test_verify_real_set5_and_missing(datasets_root, tmp_path):
    assert data.verify("Set5", datasets_root).status == "verified"
    missing = data.verify("Set5", tmp_path)
    assert missing.status == "missing" and "reprosr data fetch Set5" in missing.problems[0]


def test_manga109_needs_a_manual_download(tmp_path):
    with pytest.raises(ValueError, match="manga109.org"):
        data.fetch("Manga109", tmp_path)


# --------------------------------------------------------------------------------------------- pairs


def test_benchmark_pairs_real_set5(datasets_root):
    pairs = data.benchmark_pairs("Set5", 3, datasets_root)
    assert [p.name for p in pairs] == ["baby", "bird", "butterfly", "head", "woman"]
    for p in pairs:
        assert p.hr.shape[-2] == 3 * p.lr.shape[-2] and p.hr.shape[-1] == 3 * p.lr.shape[-1]
    woman = pairs[-1]
    assert woman.hr.shape == (3, 342, 228)  # 344×228 cropped to a multiple of 3
    expected = read_image(datasets_root / "Set5/LR_bicubic/X3/woman.png")
    assert torch.equal(woman.lr, expected)


def test_benchmark_pairs_generates_and_caches_missing_lr(datasets_root, tmp_path):
    shutil.copytree(datasets_root / "Set5" / "HR", tmp_path / "Set5" / "HR")
    pairs = data.benchmark_pairs("Set5", 4, tmp_path)
    lr_dir = tmp_path / "Set5" / "LR_bicubic" / "X4"
    assert (lr_dir / data.GENERATED_MARKER).exists() and len(list(lr_dir.glob("*.png"))) == 5
    bird = next(p for p in pairs if p.name == "bird")
    assert torch.equal(bird.lr, bicubic_downsample(read_image(tmp_path / "Set5/HR/bird.png"), 4)[1])
    stamp = (lr_dir / "bird.png").stat().st_mtime_ns
    data.benchmark_pairs("Set5", 4, tmp_path)
    assert (lr_dir / "bird.png").stat().st_mtime_ns == stamp
    report = data.verify("Set5", tmp_path)
    assert report.status == "mismatch" and any("X4 was generated" in n for n in report.notes)
    assert not any(p.startswith("LR_bicubic/X4/") for p in report.problems)


def test_benchmark_pairs_refuses_an_incomplete_lr_folder(datasets_root, tmp_path):
    shutil.copytree(datasets_root / "Set5" / "HR", tmp_path / "Set5" / "HR")
    lr_dir = tmp_path / "Set5" / "LR_bicubic" / "X2"
    lr_dir.mkdir(parents=True)
    shutil.copy(datasets_root / "Set5" / "LR_bicubic" / "X2" / "baby.png", lr_dir)
    with pytest.raises(
        FileNotFoundError, match=r"4 of 5 HR images have no LR \(bird.png, .*reprosr data fetch Set5"
    ):
        data.benchmark_pairs("Set5", 2, tmp_path)


def test_benchmark_pairs_missing_dataset_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"reprosr data fetch Urban100.*--data-root"):
        data.benchmark_pairs("Urban100", 2, tmp_path)


def test_embedded_pairs():
    files = sorted(data.EMBEDDED.glob("*.png"))
    assert 4 <= len(files) <= 6 and sum(f.stat().st_size for f in files) < 1_000_000
    licences = (data.EMBEDDED / "LICENSES.txt").read_text()
    assert all(f.name in licences for f in files)
    for scale in (2, 3, 4):
        pairs = data.embedded_pairs(scale)
        assert [p.name for p in pairs] == [f.stem for f in files]
        for p, f in zip(pairs, files, strict=True):
            assert p.hr.shape == read_image(f).shape  # sizes are multiples of 12: nothing cropped
            assert p.lr.shape == (3, p.hr.shape[1] // scale, p.hr.shape[2] // scale)


def test_dataset_checksum_tracks_content(datasets_root, tmp_path):
    shutil.copytree(datasets_root / "Set5", tmp_path / "Set5")
    reference = data.dataset_checksum("Set5", datasets_root)
    assert data.dataset_checksum("Set5", tmp_path) == reference
    write_image(tmp_path / "Set5/LR_bicubic/X2/baby.png", torch.zeros(3, 256, 256))
    assert data.dataset_checksum("Set5", tmp_path) != reference
