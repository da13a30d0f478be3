"""Released-checkpoint registry: entries build real models, fetching goes through the checksummed download."""

from __future__ import annotations

import pytest

import architectures
from harness import released


@pytest.mark.parametrize("name", sorted(released.RELEASED))
def test_entry_names_a_buildable_model(name):
    entry = released.RELEASED[name]
    assert entry.form in architectures.spec(entry.model).forms
    assert architectures.build(entry.model, entry.scale, entry.variant, form=entry.form).scale == entry.scale
    assert len(entry.sha256) == 64 and entry.url.startswith("https://")


def test_fetch_uses_checksummed_download_into_cache(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(
        "harness.data.download", lambda url, dest, sha256: calls.append((url, dest, sha256)) or dest
    )
    entry = released.RELEASED["span_esr_ch28_x4_ntire2024"]
    path = released.fetch_released(entry.name, cache_dir=tmp_path)
    assert (
        calls == [(entry.url, tmp_path / "team38_span_ch28_slim.pth", entry.sha256)] and path == calls[0][1]
    )


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="span_esr_ch28_x4_ntire2024"):
        released.fetch_released("nope")
