"""The pinned zoo: every public official weight file of the four papers, where it comes from, its pins.

Each :class:`ReleasedCheckpoint` names the ``architectures.build`` arguments it loads into and its files,
each pinned by sha256 where one is published or measured, else by the upstream git blob id read from the
source repository's tree (``git ls-tree -r -l``): a download is verified by recomputing
``sha1(b"blob <len>\0" + bytes)``. Files are fetched on demand into ``<data cache>/checkpoints/<name>/``,
verified before use, and a TensorFlow release is converted once into a PyTorch state_dict beside them
(``<name>.pth``). A file only on cloud drives (HSPAN) is a manual entry: the user downloads it, ReproSR
checks that it loads strictly and records its sha256 (``<file>.sha256``), refusing a later different file.
The same bytes published in two places are one entry with both sources (recognised by equal pins).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import torch

import architectures
from architectures import tf_checkpoint
from harness import data, downloads, published
from harness.progress import stage


class Format(StrEnum):
    """How a release stores its weights."""

    PYTORCH = "pytorch"  # one torch.save file (a state_dict, possibly wrapped)
    TENSORFLOW = "tensorflow"  # a TF1 checkpoint folder (checkpoint, .index, .data-*, .meta)


class ManualDownloadRequired(FileNotFoundError):
    """A released file that ReproSR cannot download; the message says where to get it and where to put it."""


@dataclass(frozen=True)
class PinnedFile:
    """One file of a release: its download URLs (mirrors, in order), pins, and whether loading needs it."""

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    git_blob: str | None = None
    size: int | None = None
    required: bool = True  # a TF .meta graph is listed for completeness but not needed to load the weights

    def check(self, path: Path) -> str:
        """Verify ``path`` against every pin; returns its sha256, raises ValueError naming both hashes."""
        content = path.read_bytes()
        problems = []
        if self.size is not None and len(content) != self.size:
            problems.append(f"size {len(content)} bytes, expected {self.size}")
        digest = hashlib.sha256(content).hexdigest()
        if self.sha256 is not None and digest != self.sha256:
            problems.append(f"sha256 {digest}, expected {self.sha256}")
        if self.git_blob is not None and (blob := git_blob_id(content)) != self.git_blob:
            problems.append(f"git blob id {blob}, expected {self.git_blob}")
        if problems:
            raise ValueError(
                f"{path} is not the released {self.name}: {'; '.join(problems)}; delete it and fetch again"
            )
        return digest

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "urls": list(self.urls),
            "sha256": self.sha256,
            "git_blob": self.git_blob,
            "size": self.size,
            "required": self.required,
        }


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """One released checkpoint: what it builds, its files, where it comes from, its licence."""

    name: str
    paper: str
    model: str
    variant: str | None
    scale: int
    form: str
    layout: Format
    files: tuple[PinnedFile, ...]
    source: str
    licence: str | None
    manual: str = ""  # how to obtain it by hand, for files with no direct URL
    aliases: tuple[str, ...] = field(default=())

    @property
    def url(self) -> str:
        """The first file's first URL ("" for a manual entry)."""
        return self.files[0].urls[0] if self.files[0].urls else ""

    @property
    def sha256(self) -> str | None:
        """The first file's sha256 pin, if known."""
        return self.files[0].sha256

    @property
    def filename(self) -> str:
        return self.files[0].name

    def verifies(self) -> list[dict]:
        """The published rows this checkpoint can check: every value of its model/variant/scale."""
        table = published.load()
        rows = table[
            (table["model"] == self.model)
            & (table["variant"] == (self.variant or ""))
            & (table["scale"] == self.scale)
        ]
        return [
            {"dataset": r.dataset, "metric": r.metric, "value": r.value, "unit": r.unit, "source": r.source}
            for r in rows.itertuples()
        ]

    def as_dict(self, cache_dir: str | Path | None = None) -> dict:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "paper": self.paper,
            "model": self.model,
            "variant": self.variant or "",
            "scale": self.scale,
            "form": self.form,
            "layout": str(self.layout),
            "files": [f.as_dict() for f in self.files],
            "source": self.source,
            "licence": self.licence,
            "manual": self.manual,
            "cached": cached_path(self.name, cache_dir).exists(),
            "verifies": self.verifies(),
        }


def git_blob_id(content: bytes) -> str:
    """Git's object id of a file's bytes: sha1 of ``b"blob <len>\0" + content``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


# ------------------------------------------------------------------------------------------------ DRSAN

DRSAN_REPO = "saturnian77/DRSAN"
DRSAN_COMMIT = "88418748075a05954f561a512db8921e251fd935"
# Per released checkpoint (variant, scale): its files under ckpt/x<s>/DRSAN_<variant>/ with the git blob ids
# and sizes of `git ls-tree -r -l` at DRSAN_COMMIT. The .data blobs are not in the readable mirror's object
# store, so their sizes are those their .index files record (end of the last tensor); one .meta (32l) is
# absent too (size unknown, not needed to load).
_DRSAN_FILES: dict[tuple[str, int], tuple[tuple[str, str, int | None], ...]] = {
    ("32l", 2): (
        ("DRSAN32l.data-00000-of-00001", "19ea2904ed6d8908d3cac3a4adf492c6571867a4", 10188768),
        ("DRSAN32l.index", "d714656aeacd6059a45b3918cec665e68b274c00", 36098),
        ("DRSAN32l.meta", "45102ac3fe8dba4d48be32ada4567032040c5f86", None),
        ("checkpoint", "7f2655351c03214e903f59977aaf3fa591933483", 73),
    ),
    ("32m", 2): (
        ("DRSAN32mx2.data-00000-of-00001", "5c00001e53ca05f797d9e7a52e8d7973d2a6435e", 8266224),
        ("DRSAN32mx2.index", "f73a06d466c75e97e0611967e8ea32d844febd94", 29081),
        ("DRSAN32mx2.meta", "a2ac76bdb3dc2546ac83da8fc6b3dbe3c1492898", 3403938),
        ("checkpoint", "454737d816619f9ae726af956800c2aa29bc1476", 78),
    ),
    ("32s", 2): (
        ("DRSAN32sx2.data-00000-of-00001", "d7c34a936e93c9a8f3be9e63de3deef77d478f0d", 4421136),
        ("DRSAN32sx2.index", "38737bbfb4dbb41b948af03a3c565a8585874ec9", 14997),
        ("DRSAN32sx2.meta", "5e9c4d894dccfce6de10b9cb32d688876fd2e307", 1742721),
        ("checkpoint", "d783744a778a70111ec7440aaa947b0d56753cd9", 77),
    ),
    ("48m", 2): (
        ("DRSAN48mx2.data-00000-of-00001", "428445c89549849a4bf3425df880eb4548e326ed", 14253936),
        ("DRSAN48mx2.index", "a1caf74336effaad10599a86429a551437ca5f52", 23740),
        ("DRSAN48mx2.meta", "afb7d8203e0ce10d0ea5bfe557fdbc7d6910e9eb", 2649195),
        ("checkpoint", "027637bad047b9c32caae48022c3bb91579b6a37", 77),
    ),
    ("48s", 2): (
        ("DRSAN48sx2.data-00000-of-00001", "4a413bbc574da2583af687bb26f559d3faccfb26", 7766352),
        ("DRSAN48sx2.index", "3243b6c4ef0177a8855c112f8cc87c964ee04d57", 12363),
        ("DRSAN48sx2.meta", "5401c4463f2bfc849195ced38365b9f95b08ce07", 1367460),
        ("checkpoint", "ee5138b4cd7b0b1e4452bd2961239a67afa968ad", 76),
    ),
    ("32m", 3): (
        ("DRSAN32mx3.data-00000-of-00001", "dc01239b883232c50166bc56698ec3190fe549fa", 8821104),
        ("DRSAN32mx3.index", "638d6afd924b71cdb10a18fd09dae417cb57377d", 29081),
        ("DRSAN32mx3.meta", "7cea9df6316e0316d089a6d921c0116bf8880655", 3403952),
        ("checkpoint", "0dd774a20605c8a5654dacdc6b4208bc8bd14d4b", 77),
    ),
    ("32s", 3): (
        ("DRSAN32sx3.data-00000-of-00001", "06edb5b279281c95ae31af60b5270017e255b26a", 4976016),
        ("DRSAN32sx3.index", "95e23f012d5217cb781b7ccaa5a932e57f61b307", 14997),
        ("DRSAN32sx3.meta", "68adae0d1f7faaa4852e75ef9414a0efc5dd76bc", 1742735),
        ("checkpoint", "ad6500c63c0a9e91aa6d3d75ab37b5ff8ddf780e", 77),
    ),
    ("48m", 3): (
        ("DRSAN48mx3.data-00000-of-00001", "56129098e52d5a95b8c9306811fee37aa4c71261", 15500976),
        ("DRSAN48mx3.index", "c65272478169c7d6fc43d0f3354dbbf08ff77728", 23740),
        ("DRSAN48mx3.meta", "75cc81fec34b22a6a0d72b8e8c98ca46cf8c4c30", 2649209),
        ("checkpoint", "bf4b1e127b4e77888471d310970ea3fc71a80369", 77),
    ),
    ("48s", 3): (
        ("DRSAN48sx3.data-00000-of-00001", "dc8d26780f712b1a775931742293bfec69c5630d", 9013392),
        ("DRSAN48sx3.index", "204bf7846efdd6ac343cd2a879f7e34b57c8e64f", 12363),
        ("DRSAN48sx3.meta", "cc2cc644787931f10c1b6e70b0a5b7ee735984b1", 1367474),
        ("checkpoint", "c3ecf627b4e8be4088d9681a388fe120169185e4", 77),
    ),
    ("32m", 4): (
        ("DRSAN32mx4.data-00000-of-00001", "7d763a254a6d73222a8fcc53aa700f69e8f8b3dc", 8710128),
        ("DRSAN32mx4.index", "5963590cd9e1311ffb75a55af38d57ee575e7eb2", 29314),
        ("DRSAN32mx4.meta", "438d4c83cd1b45592220e8eb682b448b130690a4", 3421632),
        ("checkpoint", "15b419428159f90009dacdf9e2418e5627142b54", 77),
    ),
    ("32s", 4): (
        ("DRSAN32sx4.data-00000-of-00001", "8fb0d1b39e530a751e99cb7f260f08a6676b53d6", 4865040),
        ("DRSAN32sx4.index", "51ce45668072f1a996de727aee1c919775d79564", 15250),
        ("DRSAN32sx4.meta", "db5c5edb68ced18f5954757743dd7c47ffe3a325", 1760415),
        ("checkpoint", "e0b382d98cf763fdb4d192b053d0d277736024be", 77),
    ),
    ("48m", 4): (
        ("DRSAN48mx4.data-00000-of-00001", "1a775f15395300b37f5c7ddd1dceb0111640c54f", 15251568),
        ("DRSAN48mx4.index", "51dc739c67a271a0df2cb7f791e97700d5e2b327", 23977),
        ("DRSAN48mx4.meta", "f011fbf6c1dbe191e0c374fa4ef2475fbc9098d3", 2666889),
        ("checkpoint", "c10e18d27b4bc80a7c08f99cc1b1d7bcac70cad9", 77),
    ),
    ("48s", 4): (
        ("DRSAN48sx4.data-00000-of-00001", "38ca2b09d1210baea893f266a34b5701050942c7", 8763984),
        ("DRSAN48sx4.index", "af39a2f3ae75b7970bc4c17c1274bfdf0e44afab", 12601),
        ("DRSAN48sx4.meta", "e9cb33df7a95a963605d6241d5b29fbd1c835c0e", 1385154),
        ("checkpoint", "22ff0fb8409cd4e48af0bccd9845b3b758c8356f", 77),
    ),
}


_LICENCE_DRSAN = None  # the repository has no licence file
_LICENCE_SPAN_LIGHT = "CC BY-NC 4.0 (zononhzy/SPAN LICENSE.txt)"
_LICENCE_NTIRE = "MIT (challenge repository LICENSE; the teams' weights are redistributed there)"


def _drsan(variant: str, scale: int) -> ReleasedCheckpoint:
    folder = f"ckpt/x{scale}/DRSAN_{variant}"
    files = tuple(
        PinnedFile(
            name,
            (f"https://raw.githubusercontent.com/{DRSAN_REPO}/{DRSAN_COMMIT}/{folder}/{name}",),
            git_blob=blob,
            size=size,
            required=not name.endswith(".meta"),
        )
        for name, blob, size in _DRSAN_FILES[(variant, scale)]
    )
    return ReleasedCheckpoint(
        name=f"drsan_{variant}_x{scale}_official",
        paper="drsan",
        model="drsan",
        variant=variant,
        scale=scale,
        form="train",
        layout=Format.TENSORFLOW,
        files=files,
        source=f"github.com/{DRSAN_REPO} @{DRSAN_COMMIT[:7]} {folder}/ (official TF 1.8 checkpoint; "
        "Adam slots and the global step are dropped on loading)",
        licence=_LICENCE_DRSAN,
    )


SPAN_LIGHT_REPO = "zononhzy/SPAN"
SPAN_LIGHT_COMMIT = "4f4eeb5a0d3e43664f192561acc5a503253a0cc8"
# pretrained/sr<s>.pth: git blob ids of `git ls-tree` at SPAN_LIGHT_COMMIT (the mirror lacks their sizes)
_SPAN_LIGHT_BLOBS = {
    2: "1846155d774fe3c7228602e440a9253d676d5641",
    3: "bf153fd21c9a42adc4bd127135950893bfb3d7bd",
    4: "1d103e336d3354a5348c9790b4c2fc63b029333b",
}


def _span_light(scale: int) -> ReleasedCheckpoint:
    path = f"pretrained/sr{scale}.pth"
    return ReleasedCheckpoint(
        name=f"span_light_x{scale}_official",
        paper="span_light",
        model="span_light",
        variant=None,
        scale=scale,
        form="train",
        layout=Format.PYTORCH,
        files=(
            PinnedFile(
                f"sr{scale}.pth",
                (f"https://raw.githubusercontent.com/{SPAN_LIGHT_REPO}/{SPAN_LIGHT_COMMIT}/{path}",),
                git_blob=_SPAN_LIGHT_BLOBS[scale],
            ),
        ),
        source=f"github.com/{SPAN_LIGHT_REPO} @{SPAN_LIGHT_COMMIT[:7]} {path} "
        "(BasicSR checkpoint, params_ema)",
        licence=_LICENCE_SPAN_LIGHT,
    )


OPENMODELDB_COMMIT = "782aac088bd83dd3fc438a42eb0c3868dc559110"
_OPENMODELDB_FILES = (
    "https://objectstorage.us-phoenix-1.oraclecloud.com/n/ax6ygfvpvzka/b/open-modeldb-files/o"
)
# data/models/<s>x-spanx<s>-ch48.json of OpenModelDB/open-model-database at OPENMODELDB_COMMIT: size, sha256,
# URLs (the Google Drive folder it also lists cannot be fetched by a script).
_SPAN_ESR_CH48 = {
    2: (8942586, "0b20caeea7af5507ec3bdc63ff5a141a28506279d2cfec909c417ecb308d3f93"),
    4: (9004922, "c79e716b8eb24182c1d7fcc74fa10ae074bdb34fee7c6e67c73053ff5498c667"),
}


def _span_esr_ch48(scale: int) -> ReleasedCheckpoint:
    size, sha256 = _SPAN_ESR_CH48[scale]
    return ReleasedCheckpoint(
        name=f"span_esr_ch48_x{scale}_official",
        paper="span_esr",
        model="span_esr",
        variant="ch48",
        scale=scale,
        form="train",
        layout=Format.PYTORCH,
        files=(
            PinnedFile(
                f"{scale}x-spanx{scale}-ch48.pth",
                (f"{_OPENMODELDB_FILES}/{scale}x-spanx{scale}-ch48.pth",),
                sha256=sha256,
                size=size,
            ),
        ),
        source=f"official SPAN ×{scale} ch48 pretrain (github.com/hongyuanyu/SPAN, Google Drive), mirrored "
        f"and pinned by OpenModelDB (github.com/OpenModelDB/open-model-database @{OPENMODELDB_COMMIT[:7]} "
        f"data/models/{scale}x-spanx{scale}-ch48.json)",
        licence="Apache-2.0 (as recorded by OpenModelDB)",
    )


NTIRE2024 = ("Amazingren/NTIRE2024_ESR", "6404fa48dde4a4adbf241a51debdc661aef20449")
NTIRE2026 = ("Amazingren/NTIRE2026_ESR", "4592ce6db68b395699f13e7e2a4e3baf317ef1c6")


def _raw(repo_commit: tuple[str, str], path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo_commit[0]}/{repo_commit[1]}/{path}"


_HSPAN_MANUAL = (
    "HSPAN ×4 is published on cloud drives only (github.com/laoyangui/HSPAN @b9e882a README: BaiduYun "
    "https://pan.baidu.com/s/1Rh_krTWZwc2tm8G1yFiIfQ?pwd=e00z or Google Drive "
    "https://drive.google.com/file/d/11sTJWNWlt_OhL4NrwBhBGV0yC0ShtZ4D): download HSPAN_x4.pt and put it at "
    "{path} (or pass its path with --checkpoint); ReproSR checks that it loads and records its sha256"
)

RELEASED: dict[str, ReleasedCheckpoint] = {
    c.name: c
    for c in (
        *(_drsan(variant, scale) for variant, scale in _DRSAN_FILES),
        *(_span_light(s) for s in (2, 3, 4)),
        *(_span_esr_ch48(s) for s in (2, 4)),
        ReleasedCheckpoint(
            name="span_esr_ch28_x4_ntire2024",
            paper="span_esr",
            model="span_esr",
            variant="ch28",
            scale=4,
            form="deploy",
            layout=Format.PYTORCH,
            files=(
                PinnedFile(
                    "team38_span_ch28_slim.pth",
                    (
                        _raw(NTIRE2024, "model_zoo/team38_span_ch28_slim.pth"),
                        _raw(NTIRE2026, "model_zoo/team00_SPAN.pth"),
                    ),
                    sha256="6c80f05048313289c6526e5fc9726688d7bb3dfdd6ae3c8b1e7dd09f601e5971",
                    git_blob="5194158e13ae79b78b62ac86a2ed3dec20c1ed18",
                    size=618658,
                ),
            ),
            source=f"NTIRE 2024 Efficient SR challenge (github.com/{NTIRE2024[0]} @{NTIRE2024[1][:7]} "
            "model_zoo/team38_span_ch28_slim.pth, team XiaomiMM, rank 1; plain deploy-form state_dict). "
            f"Byte-identical to the NTIRE 2026 baseline github.com/{NTIRE2026[0]} @{NTIRE2026[1][:7]} "
            "model_zoo/team00_SPAN.pth (same git blob id)",
            licence=_LICENCE_NTIRE,
            aliases=("span_esr_ch28_x4_ntire2026_baseline",),
        ),
        ReleasedCheckpoint(
            name="span_esr_ch26_x4_ntire2024",
            paper="span_esr",
            model="span_esr",
            variant="ch26",
            scale=4,
            form="deploy",
            layout=Format.PYTORCH,
            files=(
                PinnedFile(
                    "team39_spantiny_ch26_slim.pth",
                    (_raw(NTIRE2024, "model_zoo/team39_spantiny_ch26_slim.pth"),),
                    sha256="30bf224aee5d3fb9cbc7a3bf164a294f957f65c45f5b271052947097922040a5",
                    git_blob="30f167b907516faf7823184b929b6967350e0f61",
                    size=538017,
                ),
            ),
            source=f"NTIRE 2024 Efficient SR challenge (github.com/{NTIRE2024[0]} @{NTIRE2024[1][:7]} "
            "model_zoo/team39_spantiny_ch26_slim.pth, SPAN-T; plain deploy-form state_dict)",
            licence=_LICENCE_NTIRE,
        ),
        ReleasedCheckpoint(
            name="hspan_x4_official",
            paper="hspan",
            model="hspan",
            variant=None,
            scale=4,
            form="train",
            layout=Format.PYTORCH,
            files=(PinnedFile("HSPAN_x4.pt", ()),),
            source="github.com/laoyangui/HSPAN @b9e882a README (pre-trained HSPAN ×4, EDSR-PyTorch "
            "state_dict)",
            licence="MIT (laoyangui/HSPAN LICENSE)",
            manual=_HSPAN_MANUAL,
        ),
    )
}
_ALIASES = {alias: c.name for c in RELEASED.values() for alias in c.aliases}


def released(name: str) -> ReleasedCheckpoint:
    """The zoo entry ``name`` (or one of its aliases); a KeyError lists the known names."""
    try:
        return RELEASED[_ALIASES.get(name, name)]
    except KeyError:
        raise KeyError(
            f"unknown released checkpoint {name!r}; known: {', '.join(sorted(RELEASED))}"
        ) from None


def for_recipe(model: str, variant: str | None, scale: int) -> ReleasedCheckpoint | None:
    """The official release of ``model``/``variant`` at ×``scale``, if the zoo has one."""
    return next(
        (
            c
            for c in RELEASED.values()
            if (c.model, c.variant or None, c.scale) == (model, variant or None, scale)
        ),
        None,
    )


def _folder(name: str, cache_dir: str | Path | None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else data.cache_dir() / "checkpoints"
    return root / released(name).name


def cached_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`fetch_released` leaves ``name`` ready to load: the downloaded file (PyTorch) or the
    converted ``<name>.pth`` (TensorFlow), in ``cache_dir``, else ``<data cache>/checkpoints/<name>/``."""
    entry, folder = released(name), _folder(name, cache_dir)
    return folder / (f"{entry.name}.pth" if entry.layout is Format.TENSORFLOW else entry.filename)


def _download(pinned: PinnedFile, dest: Path) -> Path:
    """Fetch ``pinned`` to ``dest`` from its first reachable URL and verify it; raises OSError if none is."""
    if dest.exists():
        try:
            pinned.check(dest)
            return dest
        except ValueError:
            dest.unlink()  # a damaged or stale copy is fetched again
    errors = []
    for url in pinned.urls:
        try:
            path = downloads.download(url, dest, pinned.sha256)
        except OSError as exc:
            errors.append(str(exc))
            continue
        try:
            pinned.check(path)
        except ValueError:
            path.unlink()
            raise
        return path
    raise OSError(f"{pinned.name} could not be downloaded: {' | '.join(errors)}")


def fetch_released(name: str, cache_dir: str | Path | None = None) -> Path:
    """Download (or reuse) release ``name``, verified against its pins; a TF release is converted once to a
    state_dict. Returns the path to load. Raises OSError when offline, ManualDownloadRequired for a file
    that must be downloaded by hand, ValueError when a file does not match its pins."""
    entry, folder = released(name), _folder(name, cache_dir)
    target = cached_path(name, cache_dir)
    if not entry.files[0].urls:
        return _manual(entry, target)
    if entry.layout is Format.PYTORCH:
        return _download(entry.files[0], target)
    if target.exists():
        return target
    stage(f"fetching {entry.name} ({sum(f.required for f in entry.files)} files)")
    for pinned in entry.files:
        if pinned.required:
            _download(pinned, folder / pinned.name)
    _convert_tf(entry, folder, target)
    return target


def _convert_tf(entry: ReleasedCheckpoint, folder: Path, target: Path) -> None:
    model = architectures.build(entry.model, entry.scale, entry.variant, form=entry.form)
    architectures.load_checkpoint(model, folder)  # crc-checked, strict
    tmp = target.with_name(target.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, target)


def _manual(entry: ReleasedCheckpoint, path: Path) -> Path:
    """A manual entry's file at ``path``: loaded strictly once, its sha256 recorded and then enforced."""
    if not path.is_file():
        raise ManualDownloadRequired(entry.manual.format(path=path))
    record = path.with_name(path.name + ".sha256")
    digest = downloads.sha256_file(path)
    if record.exists():
        if (recorded := record.read_text().split()[0]) != digest:
            raise ValueError(
                f"{path} has sha256 {digest} but {recorded} was recorded when it was first checked: put the "
                f"original file back, or delete {record} to accept this one"
            )
        return path
    architectures.load_checkpoint(
        architectures.build(entry.model, entry.scale, entry.variant, form=entry.form), path
    )
    record.write_text(f"{digest}  {path.name}\n")
    return path


def identify(path: str | Path) -> ReleasedCheckpoint | None:
    """The zoo entry whose weights are the file (or TF checkpoint folder) at ``path``, recognised by its
    sha256 or git blob id whatever the file is called or where it came from; None if it is no release."""
    path = Path(path)
    if tf_checkpoint.is_tf_checkpoint(path):
        try:
            bundle = tf_checkpoint.read_index(tf_checkpoint.find_prefix(path))
        except (OSError, ValueError):
            return None
        path = bundle.shard_path(0)
    if not path.is_file():
        return None
    content = path.read_bytes()
    sha256, blob = hashlib.sha256(content).hexdigest(), git_blob_id(content)
    for entry in RELEASED.values():
        for f in entry.files:
            weights = f.required and f.name != "checkpoint" and not f.name.endswith(".index")
            if weights and (f.sha256 == sha256 or (f.git_blob is not None and f.git_blob == blob)):
                return entry
    return None


def resolve(checkpoint: str | Path) -> Path:
    """A checkpoint argument as a path: a released checkpoint's name (or alias) is fetched (or reused),
    anything else is taken as a path."""
    name = str(checkpoint)
    return fetch_released(name) if name in RELEASED or name in _ALIASES else Path(checkpoint)


def zoo(cache_dir: str | Path | None = None) -> list[dict]:
    """Every entry as a dict (``reprosr checkpoints --json``)."""
    return [c.as_dict(cache_dir) for c in RELEASED.values()]
