"""The report in a real browser: headless Chromium opens the fixture site from file:// (DOM, screenshots)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from harness import report, store
from tests.harness.test_report import fixture_runs, fixture_store


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("not run: chromium not installed (apt-get install chromium)")
    return found


def browse(browser: str, tmp_path: Path, page: Path, *args: str) -> str:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", *args, page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory, datasets_root) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    fixture_store(tmp / "store")
    return report.build_site(tmp / "site", tmp / "store", fixture_runs(tmp, datasets_root))


def test_dom_has_the_leaderboards_badge_counts_and_plots(site, tmp_path):
    dom = browse(chromium(), tmp_path, site, "--dump-dom")
    boards = re.findall(r'<section class="board" id="x(\d)-(\w+)"', dom)
    assert ("2", "Set5") in boards and len(boards) == dom.count('<table class="sortable leaderboard">')
    static = report.latest_verdicts(store.read("verdicts", site.parent.parent / "store"), "static")
    block = dom.split('aria-label="static verdicts"', 1)[1].split("</ul>", 1)[0]
    counts = re.findall(r'data-status="([^"]+)" data-count="(\d+)"', block)
    assert {s: int(n) for s, n in counts} == report.status_counts(static.status)
    assert dom.count('<svg class="plot"') >= 2 and "<title" in dom
    assert 'data-status="fail"' in dom and "badge-smoke" in dom


def test_model_page_shows_crops_with_alt_text(site, tmp_path):
    dom = browse(chromium(), tmp_path, site.with_name("model-drsan_32s_x2.html"), "--dump-dom")
    images = re.findall(r'<img src="([^"]+)" alt="([^"]+)"', dom)
    assert len(images) == 3 * report.CROPS_PER_SET
    assert all((site.parent / src).is_file() and alt for src, alt in images)


@pytest.mark.parametrize("width", [1280, 390])
def test_screenshots_render_at_desktop_and_phone_widths(site, tmp_path, width):
    shot = tmp_path / f"index-{width}.png"
    browse(chromium(), tmp_path, site, f"--screenshot={shot}", f"--window-size={width},2000")
    image = Image.open(shot)
    assert image.size == (width, 2000)
    assert len(set(image.convert("L").resize((64, 100)).getdata())) > 10, "the page rendered blank"
