"""The site in a real browser (headless Chromium, file://): the verdict summary, no smoke row in any
leaderboard, no table wider than a 1280 px window on any page, every link and image resolving, screenshots."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from harness.paths import REPO
from harness.report import build_site, queries
from tests.harness.test_report import fixture_store

WIDTH = 1280


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("not run: chromium not installed (apt-get install chromium)")
    return found


def browse(tmp_path: Path, page: Path, *args: str) -> str:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--allow-file-access-from-files", "--virtual-time-budget=60000",
        f"--user-data-dir={tmp_path / 'profile'}", *args, page.as_uri(),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout


# Loads every page of the site in turn in a WIDTH-px iframe and records what the layout engine measured.
PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" style="width:%(width)dpx;height:900px;border:0"></iframe>
<script>
var pages = %(pages)s, out = {}, i = 0, frame = document.getElementById("f");
frame.addEventListener("load", function () {
  var d = frame.contentDocument, w = d.documentElement.clientWidth;
  out[pages[i]] = {
    viewport: w, page: d.documentElement.scrollWidth,
    wide: Array.prototype.map.call(d.querySelectorAll("table"), function (t) {
      return [t.caption ? t.caption.textContent.trim().slice(0, 80) : t.className,
              Math.round(t.getBoundingClientRect().right)];
    }).filter(function (x) { return x[1] > w; }),
    links: Array.prototype.map.call(d.querySelectorAll("a[href]"), function (a) { return a.href; }),
    images: Array.prototype.map.call(d.querySelectorAll("img"), function (m) {
      return [m.getAttribute("src"), m.complete && m.naturalWidth > 0];
    })
  };
  i += 1;
  if (i < pages.length) { frame.src = pages[i]; return; }
  var pre = document.createElement("pre"); pre.id = "result"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
frame.src = pages[0];
</script></body></html>"""


def probe(tmp_path: Path, site: Path) -> dict:
    pages = [p.as_uri() for p in sorted(site.glob("*.html"))]
    wrapper = tmp_path / "probe.html"
    wrapper.write_text(PROBE % {"width": WIDTH, "pages": json.dumps(pages)})
    dom = browse(tmp_path, wrapper, "--dump-dom", f"--window-size={WIDTH + 40},1000")
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, flags=re.S)
    assert found, "the probe did not finish"
    return {Path(k).name: v for k, v in json.loads(found.group(1).replace("&amp;", "&")).items()}


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    fixture_store(tmp / "store")
    return build_site(tmp / "site", tmp / "store", tmp / "none")


def check_layout_and_links(measured: dict, site: Path) -> None:
    assert set(measured) == {p.name for p in site.glob("*.html")}
    for name, m in measured.items():
        assert m["wide"] == [] and m["page"] <= m["viewport"], (name, m["wide"], m["page"])
        assert all(ok for _, ok in m["images"]), (name, m["images"])
        for href in m["links"]:
            if href.startswith("file://"):
                target, _, anchor = href.removeprefix("file://").partition("#")
                assert Path(target).is_file(), (name, href)
                if anchor:
                    assert f'id="{anchor}"' in Path(target).read_text(), (name, href)
            else:
                assert re.match(r"https://[a-z0-9.-]+\.[a-z]+/", href), (name, href)


def test_committed_site_fits_1280px_and_every_link_and_image_resolves(tmp_path):
    site = REPO / "reports"
    check_layout_and_links(probe(tmp_path, site), site)


def test_fixture_site_fits_1280px_and_every_link_resolves(tmp_path, fixture_site):
    check_layout_and_links(probe(tmp_path, fixture_site.parent), fixture_site.parent)


def test_verdict_summary_leads_and_leaderboards_hold_no_smoke_row(tmp_path, fixture_site):
    dom = browse(tmp_path, fixture_site, "--dump-dom")
    assert dom.index('id="verdicts"') < dom.index('id="checkpoint"') < dom.index('id="leaderboards"')
    summary = queries.verdict_summary(queries.load(fixture_site.parent.parent / "store").verdicts)
    for row in summary:
        tr = re.search(rf'<tr data-paper="{row["paper"]}" data-tier="{row["tier"]}">(.*?)</tr>', dom, re.S)
        counts = dict(re.findall(r'data-status="([^"]+)" data-count="(\d+)"', tr.group(1)))
        assert {s: int(n) for s, n in counts.items()} == row["counts"]
    boards = re.findall(r'<table class="sortable wide leaderboard">(.*?)</table>', dom, re.S)
    assert boards and 'data-origin="reproduced"' in "".join(boards)
    assert not re.search(r'data-profile="smoke"', "".join(boards)) and "smoke01" not in "".join(boards)
    diagnostics = browse(tmp_path, fixture_site.with_name("diagnostics.html"), "--dump-dom")
    assert "smoke01" in diagnostics


@pytest.mark.parametrize("width", [1280, 390])
def test_screenshots_render_at_desktop_and_phone_widths(tmp_path, width):
    shot = tmp_path / f"index-{width}.png"
    browse(tmp_path, REPO / "reports" / "index.html", f"--screenshot={shot}", f"--window-size={width},2000")
    image = Image.open(shot)
    assert image.size == (width, 2000)
    assert len(set(image.convert("L").resize((64, 100)).tobytes())) > 10, "the page rendered blank"
