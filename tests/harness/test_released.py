"""The pinned zoo: entries build real models, every file is pinned, downloads are verified before use,
TF releases are converted once, manual entries record their hash, and offline fetches fail fast."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import architectures
from harness import cli, released
from harness.released import PinnedFile, ReleasedCheckpoint
from tests.conftest import shared_checkpoint

TF_FIXTURES = Path(__file__).resolve().parents[1] / "architectures" / "data" / "drsan_tf_fixtures.tar.xz"


@pytest.mark.parametrize("name", sorted(released.RELEASED))
def test_entry_names_a_buildable_model_and_pins_every_file(name):
    entry = released.RELEASED[name]
    assert entry.form in architectures.spec(entry.model).forms
    assert architectures.build(entry.model, entry.scale, entry.variant, form=entry.form).scale == entry.scale
    for f in entry.files:
        if entry.manual:
            assert not f.urls and "{path}" in entry.manual
        else:
            assert f.urls and all(u.startswith("https://") for u in f.urls)
            assert (f.sha256 and len(f.sha256) == 64) or (f.git_blob and len(f.git_blob) == 40)


def test_the_zoo_holds_every_public_release():
    by_model: dict[str, list[ReleasedCheckpoint]] = {}
    for c in released.RELEASED.values():
        by_model.setdefault(c.model, []).append(c)
    drsan = {(c.variant, c.scale) for c in by_model["drsan"]}
    assert len(drsan) == 13 and drsan == {
        (v, s) for v, scales in architectures.spec("drsan").scales.items() for s in scales
    }
    assert all({f.name.rsplit(".", 1)[-1] for f in c.files} >= {"index", "meta"} for c in by_model["drsan"])
    assert {c.scale for c in by_model["span_light"]} == {2, 3, 4}
    assert {(c.variant, c.scale) for c in by_model["span_esr"]} == {
        ("ch48", 2),
        ("ch48", 4),
        ("ch28", 4),
        ("ch26", 4),
    }
    assert [c.manual != "" for c in by_model["hspan"]] == [True]


def test_identical_files_are_one_entry():
    """NTIRE 2026's baseline team00_SPAN.pth has the git blob id of NTIRE 2024's team38 file: one entry,
    both sources, the 2026 name an alias."""
    pins = [(f.sha256, f.git_blob) for c in released.RELEASED.values() for f in c.files if f.urls]
    assert len(pins) == len(set(pins))
    entry = released.released("span_esr_ch28_x4_ntire2026_baseline")
    assert entry.name == "span_esr_ch28_x4_ntire2024"
    assert any("NTIRE2026_ESR" in u and u.endswith("team00_SPAN.pth") for u in entry.files[0].urls)


def test_git_blob_id_is_gits(tmp_path):
    content = b'model_checkpoint_path: "DRSAN32sx2"\n'
    (tmp_path / "f").write_bytes(content)
    git = shutil.which("git")
    if git is None:
        pytest.skip("not run: git is not installed")
    expected = subprocess.run(
        [git, "hash-object", str(tmp_path / "f")], capture_output=True, text=True
    ).stdout
    assert released.git_blob_id(content) == expected.strip()


@pytest.mark.parametrize(
    "shared, name",
    [
        ("ntire2024_team38_span_ch28_x4.pth", "span_esr_ch28_x4_ntire2024"),
        ("ntire2024_team39_spantiny_ch26_x4.pth", "span_esr_ch26_x4_ntire2024"),
    ],
)
def test_shared_ntire_files_match_their_pins(shared, name):
    path = shared_checkpoint(shared)
    if path is None:
        pytest.skip(f"not run: {shared} not found (set REPROSR_TEST_CHECKPOINTS to shared/checkpoints)")
    entry = released.RELEASED[name]
    pinned = entry.files[0]
    assert pinned.check(path) == pinned.sha256
    assert released.git_blob_id(path.read_bytes()) == pinned.git_blob
    assert released.tensors_hash(path) == entry.content_hash  # measured on these files, recorded in the zoo


def test_identify_recognises_a_release_by_its_bytes(monkeypatch, tmp_path):
    for shared, name in (
        ("ntire2024_team38_span_ch28_x4.pth", "span_esr_ch28_x4_ntire2024"),
        ("ntire2024_team39_spantiny_ch26_x4.pth", "span_esr_ch26_x4_ntire2024"),
    ):
        if (path := shared_checkpoint(shared)) is not None:
            renamed = tmp_path / "anything.pth"
            shutil.copyfile(path, renamed)
            assert released.identify(renamed).name == name
    with tarfile.open(TF_FIXTURES) as tar:
        tar.extractall(tmp_path / "tf", filter="data")
    folder = tmp_path / "tf" / "drsan32s_x2"
    assert released.identify(folder) is None and released.identify(tmp_path / "missing.pth") is None
    data = folder / "drsan32s_x2.data-00000-of-00001"
    entry = released.RELEASED["drsan_32s_x2_official"]
    files = tuple(
        replace(f, git_blob=released.git_blob_id(data.read_bytes())) if ".data-" in f.name else f
        for f in entry.files
    )
    monkeypatch.setitem(released.RELEASED, entry.name, replace(entry, files=files))
    assert released.identify(folder).name == "drsan_32s_x2_official"


def _serve(monkeypatch, files: dict[str, Path]):
    """Replace the network: downloads.download copies the local file registered for the URL's basename."""
    calls = []

    def download(url, dest, sha256=None):
        calls.append(url)
        source = files.get(url.rsplit("/", 1)[-1])
        if source is None:
            raise OSError(f"downloading {url} failed ([Errno -2] Name or service not known)")
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        if sha256 is not None and hashlib.sha256(Path(dest).read_bytes()).hexdigest() != sha256:
            Path(dest).unlink()
            raise ValueError("checksum mismatch")
        return Path(dest)

    monkeypatch.setattr("harness.downloads.download", download)
    return calls


def _pin(path: Path, *, sha256: bool) -> PinnedFile:
    content = path.read_bytes()
    return PinnedFile(
        path.name,
        (f"https://example.invalid/{path.name}",),
        sha256=hashlib.sha256(content).hexdigest() if sha256 else None,
        git_blob=None if sha256 else released.git_blob_id(content),
        size=len(content),
    )


def test_pytorch_release_is_downloaded_verified_and_reused(monkeypatch, tmp_path):
    weights = tmp_path / "src" / "w.pth"
    weights.parent.mkdir()
    torch.save(architectures.build("span_light", 2).state_dict(), weights)
    entry = replace(
        released.RELEASED["span_light_x2_official"], name="t", files=(_pin(weights, sha256=False),)
    )
    monkeypatch.setitem(released.RELEASED, "t", entry)
    calls = _serve(monkeypatch, {"w.pth": weights})
    path = released.fetch_released("t", cache_dir=tmp_path / "cache")
    assert path == tmp_path / "cache" / "t" / "w.pth" and path.read_bytes() == weights.read_bytes()
    assert released.fetch_released("t", cache_dir=tmp_path / "cache") == path and len(calls) == 1
    assert released.cached_path("t", tmp_path / "cache") == path


def test_a_file_failing_its_git_blob_pin_is_deleted(monkeypatch, tmp_path):
    good, bad = tmp_path / "good.pth", tmp_path / "bad" / "good.pth"
    bad.parent.mkdir()
    good.write_bytes(b"released bytes")
    bad.write_bytes(b"released bytez")
    entry = replace(released.RELEASED["span_light_x2_official"], name="t", files=(_pin(good, sha256=False),))
    monkeypatch.setitem(released.RELEASED, "t", entry)
    _serve(monkeypatch, {"good.pth": bad})
    with pytest.raises(ValueError, match="git blob id .* expected"):
        released.fetch_released("t", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "t" / "good.pth").exists()


def test_second_mirror_is_used_when_the_first_fails(monkeypatch, tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"bytes")
    pin = _pin(weights, sha256=True)
    pin = replace(pin, urls=("https://a.invalid/missing.pth", "https://b.invalid/w.pth"))
    entry = replace(released.RELEASED["span_light_x2_official"], name="t", files=(pin,))
    monkeypatch.setitem(released.RELEASED, "t", entry)
    calls = _serve(monkeypatch, {"w.pth": weights})
    assert released.fetch_released("t", cache_dir=tmp_path / "c").read_bytes() == b"bytes"
    assert [u.split("/")[2] for u in calls] == ["a.invalid", "b.invalid"]


def test_offline_fetch_fails_fast_with_the_reason(monkeypatch, tmp_path):
    _serve(monkeypatch, {})
    with pytest.raises(
        OSError, match="could not be downloaded: downloading https://raw.githubusercontent.com"
    ):
        released.fetch_released("drsan_32s_x2_official", cache_dir=tmp_path)


def test_tf_release_is_verified_and_converted_once(monkeypatch, tmp_path):
    with tarfile.open(TF_FIXTURES) as tar:
        tar.extractall(tmp_path / "tf", filter="data")
    folder = tmp_path / "tf" / "drsan32s_x2"
    files = tuple(
        _pin(folder / n, sha256=False)
        for n in ("checkpoint", "drsan32s_x2.index", "drsan32s_x2.data-00000-of-00001")
    )
    entry = replace(released.RELEASED["drsan_32s_x2_official"], name="t", files=files)
    monkeypatch.setitem(released.RELEASED, "t", entry)
    calls = _serve(monkeypatch, {p.name: p for p in folder.iterdir()})
    path = released.fetch_released("t", cache_dir=tmp_path / "cache")
    assert path == tmp_path / "cache" / "t" / "t.pth" and len(calls) == 3
    model = architectures.load_checkpoint(architectures.build("drsan", 2, "32s"), path)
    direct = architectures.load_checkpoint(architectures.build("drsan", 2, "32s"), folder)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), direct.state_dict().values(), strict=True)
    )
    released.fetch_released("t", cache_dir=tmp_path / "cache")
    assert len(calls) == 3  # converted once, reused


def test_manual_entry_says_where_to_put_the_file_then_records_its_hash(monkeypatch, tmp_path):
    entry = replace(released.RELEASED["hspan_x4_official"], name="t", model="span_light", scale=2)
    monkeypatch.setitem(released.RELEASED, "t", entry)
    target = released.cached_path("t", tmp_path)
    with pytest.raises(released.ManualDownloadRequired, match=r"pan\.baidu\.com.*" + str(target)):
        released.fetch_released("t", cache_dir=tmp_path)
    target.parent.mkdir(parents=True)
    torch.save(architectures.build("span_light", 2).state_dict(), target)
    assert released.fetch_released("t", cache_dir=tmp_path) == target
    record = target.with_name(target.name + ".sha256").read_text()
    assert record.split()[0] == hashlib.sha256(target.read_bytes()).hexdigest()
    torch.save(architectures.build("span_light", 2).state_dict(), target)  # another file (new init)
    with pytest.raises(ValueError, match="was recorded when it was first checked"):
        released.fetch_released("t", cache_dir=tmp_path)


def test_resolve_takes_names_aliases_and_paths(monkeypatch, tmp_path):
    """An alias fetches its entry's pinned file into the entry's own folder: the same file as the name."""
    monkeypatch.setenv("REPROSR_DATA", str(tmp_path / "data"))
    weights = tmp_path / "src" / "w.pth"
    weights.parent.mkdir()
    weights.write_bytes(b"released bytes")
    name, alias = "span_esr_ch28_x4_ntire2024", "span_esr_ch28_x4_ntire2026_baseline"
    monkeypatch.setitem(
        released.RELEASED, name, replace(released.RELEASED[name], files=(_pin(weights, sha256=True),))
    )
    calls = _serve(monkeypatch, {"w.pth": weights})
    path = released.resolve(alias)
    assert path == released.resolve(name) == tmp_path / "data" / "checkpoints" / name / "w.pth"
    assert path.read_bytes() == b"released bytes" and len(calls) == 1
    assert released.resolve(tmp_path / "x.pth") == tmp_path / "x.pth"


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="span_esr_ch28_x4_ntire2024"):
        released.fetch_released("nope")


def test_cli_checkpoints_json(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("REPROSR_DATA", str(tmp_path))
    cli.main(["checkpoints", "--json"])
    entries = json.loads(capsys.readouterr().out)["checkpoints"]
    assert len(entries) == len(released.RELEASED) == 21
    keys = {"name", "paper", "model", "variant", "scale", "form", "files", "source", "licence", "verifies"}
    keys |= {"content_hash", "known_files"}
    assert all(keys <= set(e) for e in entries)
    drsan = next(e for e in entries if e["name"] == "drsan_32s_x2_official")
    assert {(r["dataset"], r["metric"]) for r in drsan["verifies"]} >= {
        ("Set5", "psnr"),
        ("Urban100", "ssim"),
    }
    assert all(f["git_blob"] for f in drsan["files"]) and not drsan["cached"]
    cli.main(["checkpoints"])
    assert "hspan_x4_official" in capsys.readouterr().out


ENTRY = """
[[release]]
name = "toy_x2_official"
aliases = ["toy_x2_mirror"]
paper = "span_light"
model = "span_light"
variant = ""
scale = 2
form = "train"
layout = "pytorch"
source = "a test"

[[release.files]]
name = "toy.pth"
urls = ["https://example.invalid/toy.pth"]
sha256 = "{sha256}"
"""


@pytest.fixture
def zoo_restored():
    """Every test that registers releases leaves the zoo as it found it."""
    before = dict(released.RELEASED)
    yield
    released.RELEASED.clear()
    released.RELEASED.update(before)


def test_every_package_entry_comes_from_a_data_file():
    folder = Path(released.__file__).with_name("releases")
    assert {Path(e.defined_in).parent for e in released.RELEASED.values()} == {folder}
    assert {Path(e.defined_in).stem for e in released.RELEASED.values()} == {
        e.paper for e in released.RELEASED.values()
    }


@pytest.mark.parametrize(
    "change, message",
    [
        (("scale = 2", "scale = 8"), r"release 'toy_x2_official': field scale = 8; span_light  exists at"),
        (('form = "train"', 'form = "deploy"'), r"field form = 'deploy'; span_light has forms"),
        (('source = "a test"', 'sourc = "a test"'), r"unknown field\(s\) \['sourc'\]"),
        (('source = "a test"', ""), "missing field source"),
        (("scale = 2", 'scale = "2"'), "field scale = '2' is not a int"),
        (('sha256 = "{sha256}"', 'sha256 = "ABC"'), "files\\[0\\]: field sha256 = 'ABC' is not 64"),
        (('sha256 = "{sha256}"', ""), "needs a sha256 or git_blob pin"),
        (('urls = ["https://example.invalid/toy.pth"]', "urls = []"), "field manual must say where"),
        (('model = "span_light"', 'model = "nope"'), "field model: unknown model 'nope'"),
    ],
)
def test_data_errors_name_file_entry_and_field(change, message, tmp_path, zoo_restored):
    path = tmp_path / "toy.toml"
    path.write_text(ENTRY.replace(*change).replace("{sha256}", "0" * 64), encoding="utf-8")
    with pytest.raises(released.ReleaseDataError, match=f"{path}: .*{message}"):
        released.add_file(path)


def test_the_same_tensors_cannot_be_two_entries(tmp_path, zoo_restored):
    ch28 = released.RELEASED["span_esr_ch28_x4_ntire2024"]
    path = tmp_path / "copy.toml"
    path.write_text(ENTRY.replace("{sha256}", ch28.files[0].sha256), encoding="utf-8")
    with pytest.raises(
        released.ReleaseDataError, match="shares .*6c80f050.* with 'span_esr_ch28_x4_ntire2024'"
    ):
        released.add_file(path)
    path.write_text(ENTRY.replace("{sha256}", "1" * 64).replace("toy_x2_mirror", ch28.aliases[0]))
    with pytest.raises(released.ReleaseDataError, match="shares \\['span_esr_ch28_x4_ntire2026_baseline'\\]"):
        released.add_file(path)


def test_a_paper_folder_adds_releases_without_python(tmp_path, zoo_restored):
    from harness import papers

    (tmp_path / "paper" / "releases").mkdir(parents=True)
    (tmp_path / "paper" / "releases" / "toy.toml").write_text(ENTRY.replace("{sha256}", "2" * 64))
    papers.add_paper(tmp_path / "paper")
    papers.add_paper(tmp_path / "paper")  # idempotent
    entry = released.lookup("toy_x2_mirror")
    assert entry is not None and entry.name == "toy_x2_official" and entry.defined_in.endswith("toy.toml")
    assert released.lookup(digest="2" * 64) == entry


def test_one_lookup_by_name_alias_model_and_any_hash():
    ch28 = released.lookup("span_esr_ch28_x4_ntire2026_baseline")
    assert ch28 is released.RELEASED["span_esr_ch28_x4_ntire2024"]
    assert released.lookup(model="span_esr", variant="ch28", scale=4) is ch28
    assert released.lookup(model="span_light", variant="", scale=3).name == "span_light_x3_official"
    for digest in (ch28.files[0].sha256, ch28.files[0].git_blob, ch28.content_hash):
        assert released.lookup(digest=digest) is ch28
    assert (
        released.lookup("span_esr_ch28_x4_ntire2026_baseline", model="hspan", variant=None, scale=4) is None
    )
    assert (
        released.lookup(model="span_esr", variant="ch28", scale=4) is ch28
        and released.released(ch28.aliases[0]) is ch28
    )


def test_identify_knows_a_re_saved_release_by_its_content_hash(tmp_path):
    path = shared_checkpoint("ntire2024_team38_span_ch28_x4.pth")
    if path is None:
        pytest.skip("not run: the NTIRE 2024 ch28 file not found (set REPROSR_TEST_CHECKPOINTS)")
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    resaved = tmp_path / "net_g_ema.pth"
    torch.save({"params_ema": {f"module.{k}": v for k, v in state_dict.items()}}, resaved)
    assert resaved.read_bytes() != path.read_bytes()
    assert released.identify(resaved).name == "span_esr_ch28_x4_ntire2024"


def _tf_entry(monkeypatch, tmp_path, **changes) -> tuple[ReleasedCheckpoint, Path, list]:
    with tarfile.open(TF_FIXTURES) as tar:
        tar.extractall(tmp_path / "tf", filter="data")
    folder = tmp_path / "tf" / "drsan32s_x2"
    files = tuple(
        _pin(folder / n, sha256=False)
        for n in ("checkpoint", "drsan32s_x2.index", "drsan32s_x2.data-00000-of-00001")
    )
    entry = replace(released.RELEASED["drsan_32s_x2_official"], name="t", files=files, **changes)
    monkeypatch.setitem(released.RELEASED, "t", entry)
    return entry, folder, _serve(monkeypatch, {p.name: p for p in folder.iterdir()})


def test_a_converted_tf_release_is_tied_to_its_sources(monkeypatch, tmp_path):
    """Issue 24: a state_dict put in place of the conversion is not trusted because it exists."""
    entry, folder, calls = _tf_entry(monkeypatch, tmp_path)
    cache = tmp_path / "cache"
    path = released.fetch_released("t", cache_dir=cache)
    expected = released.tensors_hash(path)
    assert expected == released.tensors_hash(folder)  # the conversion holds the bundle's tensors
    assert released.recorded_content_hash("t", cache) == expected
    torch.save(architectures.build("drsan", 2, "32s").state_dict(), path)  # another state_dict, same layout
    assert released.tensors_hash(released.fetch_released("t", cache_dir=cache)) == expected
    path.with_name(path.name + ".source.json").write_text("{")  # a damaged record
    assert released.tensors_hash(released.fetch_released("t", cache_dir=cache)) == expected
    assert len(calls) == 3  # the verified sources were reused every time


def test_tensors_that_are_not_the_zoos_content_hash_are_refused(monkeypatch, tmp_path):
    _tf_entry(monkeypatch, tmp_path, content_hash="3" * 64)
    with pytest.raises(ValueError, match="content hash .* but t has 3333"):
        released.fetch_released("t", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "t" / "t.pth").exists()


def test_an_empty_manual_record_is_a_clear_error(monkeypatch, tmp_path):
    entry = replace(released.RELEASED["hspan_x4_official"], name="t", model="span_light", scale=2)
    monkeypatch.setitem(released.RELEASED, "t", entry)
    target = released.cached_path("t", tmp_path)
    target.parent.mkdir(parents=True)
    torch.save(architectures.build("span_light", 2).state_dict(), target)
    target.with_name(target.name + ".sha256").write_text("")
    with pytest.raises(ValueError, match="is empty or not a sha256 record: delete it"):
        released.fetch_released("t", cache_dir=tmp_path)
