"""Registry of released official checkpoints: where each comes from, what it builds, its checksum.

Checksums were measured on the files themselves (``sha256sum`` of the blob in the source repository);
files are fetched on demand into ``<data cache>/checkpoints/`` and never ship with this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import data


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """One released weight file and the ``architectures.build`` arguments it loads into."""

    name: str
    model: str
    variant: str | None
    scale: int
    form: str
    url: str
    sha256: str
    source: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


RELEASED: dict[str, ReleasedCheckpoint] = {
    c.name: c
    for c in (
        ReleasedCheckpoint(
            name="span_esr_ch28_x4_ntire2024",
            model="span_esr",
            variant="ch28",
            scale=4,
            form="deploy",
            url="https://raw.githubusercontent.com/Amazingren/NTIRE2024_ESR/"
            "6404fa48dde4a4adbf241a51debdc661aef20449/model_zoo/team38_span_ch28_slim.pth",
            sha256="6c80f05048313289c6526e5fc9726688d7bb3dfdd6ae3c8b1e7dd09f601e5971",
            source="NTIRE 2024 Efficient SR challenge repo (github.com/Amazingren/NTIRE2024_ESR), team38 "
            "XiaomiMM SPAN ch28, model_zoo/team38_span_ch28_slim.pth (plain deploy-form state_dict)",
        ),
    )
}


def released(name: str) -> ReleasedCheckpoint:
    try:
        return RELEASED[name]
    except KeyError:
        raise KeyError(
            f"unknown released checkpoint {name!r}; known: {', '.join(sorted(RELEASED))}"
        ) from None


def cached_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`fetch_released` keeps ``name``: in ``cache_dir``, else ``harness.data.cache_dir()``'s
    ``checkpoints/`` folder."""
    root = Path(cache_dir) if cache_dir is not None else data.cache_dir() / "checkpoints"
    return root / released(name).filename


def fetch_released(name: str, cache_dir: str | Path | None = None) -> Path:
    """Download (or reuse) the released checkpoint ``name``, verified against its sha256; returns its path."""
    entry = released(name)
    return data.download(entry.url, cached_path(name, cache_dir), entry.sha256)


def resolve(checkpoint: str | Path) -> Path:
    """A checkpoint argument as a file: a released checkpoint's name is fetched (or reused), else a path."""
    return fetch_released(str(checkpoint)) if str(checkpoint) in RELEASED else Path(checkpoint)
