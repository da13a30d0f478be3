"""A fifth paper in four files, none inside the package: a model file with a new attention operator
(``toy_paper/toy.py``), a recipe, published rows (``toy_paper/toy.csv``) and one registration call
(``harness.papers.add_paper``). Static verification and a smoke reproduce run on it end to end."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

import architectures
from harness import papers, published, store
from harness.cli import main
from harness.recipes import RECIPES, load
from harness.reproduce import reproduce
from harness.schema import Confidence, ReferenceKind, Status, Tier
from harness.verify import static_verdicts
from kernels import OPERATORS

TOY = Path(__file__).with_name("toy_paper")
pytestmark = pytest.mark.usefixtures("one_thread")


def toy_recipe(folder: Path) -> Path:
    """The toy's recipe: the nearest pinned recipe with its ``[recipe]`` table pointing at the toy (so the
    test follows the recipe schema wherever it goes)."""
    text = RECIPES["drsan_32s_x2"].read_text(encoding="utf-8")
    for key, value in {"name": "toy_x2", "paper": "toy", "model": "toy", "variant": ""}.items():
        text = re.sub(rf'(?m)^{key} = ".*"$', f'{key} = "{value}"', text, count=1)
    path = folder / "toy_x2.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def toy_paper(tmp_path, monkeypatch):
    """The toy paper's folder, registered; every registry is restored afterwards."""
    folder = tmp_path / "toy_paper"
    shutil.copytree(TOY, folder)
    toy_recipe(folder)
    saved = [(registry, dict(registry)) for registry in (architectures.MODELS, OPERATORS, RECIPES)]
    extra = list(published._EXTRA_DIRS)
    monkeypatch.setenv("REPROSR_RESULTS", str(tmp_path / "store"))
    papers.add_paper(folder)
    yield folder
    for registry, before in saved:
        registry.clear()
        registry.update(before)
    published._EXTRA_DIRS[:] = extra
    published._table.cache_clear()
    sys.modules.pop("reprosr_extra_toy", None)


def test_the_toy_paper_joins_every_registry(toy_paper):
    assert architectures.spec("toy").counting.ops == "fvcore" and "toy_channel_attention" in OPERATORS
    assert load("toy_x2").model == "toy"
    assert published.lookup("toy", None, 2, None, "flops").source == "toy paper Table 1"
    papers.add_paper(toy_paper)  # idempotent


def test_static_verification_of_the_toy_paper(toy_paper):
    verdicts, measured = static_verdicts(load("toy_x2"))
    by = {(v.metric, v.reference.confidence): v for v in verdicts}
    assert by[("params", Confidence.HIGH)].status == Status.PASS
    assert by[("macs_hr720p", Confidence.HIGH)].status == Status.PASS  # the new operator is counted
    low = by[("params", Confidence.LOW)]
    assert low.status == Status.INDICATIVE and low.reference.kind == ReferenceKind.PAPER
    macs = [m for m in measured if m["metric"] == "macs"]
    attention = 2 * 8 * 8 * 360 * 640  # q·kᵀ and attn·v over the channels, by hand
    convs = 360 * 640 * (8 * 3 * 9 + 24 * 8 + 12 * 8 * 9)
    assert macs[0]["value"] * 1e9 == pytest.approx(attention + convs)


def test_smoke_reproduce_of_the_toy_paper(toy_paper, tmp_path):
    outcome = reproduce("toy_x2", profile="smoke", data_root=tmp_path / "no-data", out_dir=tmp_path / "run")
    statuses = {(v.tier, v.status) for v in outcome.verdicts}
    assert (Tier.STATIC, Status.PASS) in statuses and (Tier.RETRAIN, Status.NOT_RUN) in statuses
    assert not [v for v in outcome.verdicts if v.status == Status.FAIL]
    verdicts = store.read("verdicts")
    assert set(verdicts.paper) == {"toy"} and "indicative" in set(verdicts.status)
    results = store.read("results")
    assert ((results.dataset == "embedded") & (results.metric == "psnr_y")).any()


def test_the_command_line_finds_the_toy_paper_through_the_environment(toy_paper, capsys, monkeypatch):
    monkeypatch.setenv("REPROSR_PAPERS", str(toy_paper))
    main(["verify", "toy_x2", "--json"])
    payload = json.loads(capsys.readouterr().out)
    static = [v for v in payload["verdicts"] if v["tier"] == "static"]
    assert {v["status"] for v in static} == {"pass", "indicative"}
