"""Recipes: every pinned recipe loads, every field has provenance, validation names file and field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import architectures
from harness.recipes import RECIPES, RECONSTRUCTED, SCHEMA, RecipeError, load
from harness.schema import Confidence


def test_every_recipe_names_a_registered_model_and_every_paper_has_one():
    papers = set()
    for name in RECIPES:
        recipe = load(name)
        spec = architectures.spec(recipe.model)
        assert recipe.paper == spec.paper and recipe.form in spec.forms, name
        assert recipe.scale in spec.scales[recipe.variant], name
        assert recipe.eval.inference == spec.test_time, name
        papers.add(recipe.paper)
    assert papers == {spec.paper for spec in architectures.MODELS.values()}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_field_has_a_source(name):
    raw = tomllib.loads(RECIPES[name].read_text(encoding="utf-8"))
    fields = {f"{section}.{key}" for section in SCHEMA for key in raw[section]}
    assert fields == set(raw["sources"]), "fields and [sources] keys differ"
    assert all(isinstance(s, str) and s.strip() for s in raw["sources"].values())
    recipe = load(name)
    assert recipe.name == name and recipe.scale == int(name[-1])
    assert recipe.data["data"]["hr_patch"] % recipe.scale == 0


def test_span_light_matches_official_options():
    """Values read from zononhzy/SPAN options/SPAN/train_SPAN_SRx{2,3,4}_scratch.yml and README."""
    for scale, gt_size, gpus in ((2, 132, 2), (3, 198, 4), (4, 264, 4)):
        r = load(f"span_light_x{scale}")
        assert (r.dataset.hr_patch, r.dataset.gpus, r.global_batch) == (gt_size, gpus, 16 * gpus)
        assert r.schedule.milestones == [250000, 400000, 450000, 475000] and r.schedule.total == 500000
        assert (r.optim.lr, r.optim.betas, r.train.ema_decay, r.train.seed) == (
            5e-4,
            [0.9, 0.99],
            0.999,
            0,
        )
        assert r.eval.inference == "whole" and r.dataset.train == "DIV2K_train"


def test_hspan_epoch_schedule_and_chop():
    r = load("hspan_x2")
    assert (r.schedule.unit, r.schedule.milestones, r.schedule.total) == (
        "epoch",
        [200, 400, 600, 800],
        999,  # demo.sh's --epochs 1000: EDSR-PyTorch's Trainer.terminate stops after 999 epochs
    )
    assert (r.dataset.hr_patch, r.global_batch, r.dataset.enlarge) == (96, 16, 20)
    assert r.eval.inference == "chop"
    assert RECONSTRUCTED in load("hspan_x4").source("data.hr_patch")


@pytest.mark.parametrize("name", sorted(n for n in RECIPES if n.startswith("span_esr")))
def test_span_esr_fields_carry_traiNNer_redux_pinned_and_a_rating_each(name):
    """The paper's settings as traiNNer-redux@68629319 records them (OFFICIAL_SETTINGS_FROMSCRATCH), rated
    medium (low for the NTIRE ch28 entry they do not describe); the rest reconstructed and rated low."""
    r = load(name)
    assert set(r.confidence) == set(r.sources)
    assert (r.schedule.total, r.schedule.milestones, r.optim.lr) == (
        1_000_000, [200_000, 400_000, 600_000, 800_000], 5e-4
    )  # fmt: skip
    assert r.dataset.hr_patch == 64 * r.scale and r.global_batch == 64
    third = Confidence.LOW if r.variant == "ch28" else Confidence.MEDIUM
    for field in ("schedule.total", "schedule.milestones", "optim.lr", "data.hr_patch", "data.batch_per_gpu"):
        assert "traiNNer-redux@68629319" in r.source(field) and r.rating(field) == third, field
    assert "paper: 64" in r.source("data.batch_per_gpu")
    assert all(r.rating(f) == Confidence.LOW for f in r.sources if RECONSTRUCTED in r.source(f))
    assert "zononhzy" not in " ".join(r.sources.values())  # SPAN-light's yml is another paper's


def test_recipes_without_a_confidence_table_rate_nothing():
    assert load("span_light_x4").confidence == {} and load("span_light_x4").rating("optim.lr") is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('"optim.lr" = "medium"\n', ""), "rates no field(s) ['optim.lr']"),
        (lambda t: t.replace('"optim.lr" = "medium"', '"optim.lr" = "certain"'), "optim.lr = 'certain'"),
        (lambda t: t + '"optim.momentum" = "low"\n', "optim.momentum"),
    ],
)
def test_invalid_confidence_names_file_and_field(tmp_path: Path, edit, message):
    bad = tmp_path / "span_esr_ch48_x4.toml"
    bad.write_text(edit(RECIPES["span_esr_ch48_x4"].read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(RecipeError) as err:
        load(bad)
    assert str(bad) in str(err.value) and message in str(err.value)


def test_confidence_is_hashed(tmp_path: Path):
    copy = tmp_path / "span_esr_ch48_x4.toml"
    text = RECIPES["span_esr_ch48_x4"].read_text(encoding="utf-8")
    copy.write_text(text.replace('"optim.lr" = "medium"', '"optim.lr" = "low"'), encoding="utf-8")
    assert load(copy).hash != load("span_esr_ch48_x4").hash


def test_hspan_selects_by_edsr_calc_psnr():
    for scale in (2, 3, 4):
        r = load(f"hspan_x{scale}")
        assert r.train.keep == "best" and r.eval.select_metric == "psnr_edsr"
        assert "calc_psnr" in r.source("eval.select_metric")


def test_hash_is_canonical(tmp_path: Path):
    """Reordered keys, comments and whitespace give the same hash; a changed value does not."""
    original = RECIPES["drsan_32s_x2"]
    raw = tomllib.loads(original.read_text(encoding="utf-8"))
    lines = ["# reordered copy", ""]
    for section in reversed(list(raw)):
        lines.append(f"[{section}]   ")
        for key in reversed(list(raw[section])):
            value = raw[section][key]
            lines.append(f'"{key}" = {_toml(value)}')
    copy = tmp_path / "drsan_32s_x2.toml"
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load(copy).hash == load("drsan_32s_x2").hash
    changed = copy.read_text(encoding="utf-8").replace('"lr" = 0.0002', '"lr" = 0.0003')
    assert changed != copy.read_text(encoding="utf-8")
    copy.write_text(changed, encoding="utf-8")
    assert load(copy).hash != load("drsan_32s_x2").hash


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("gamma = 0.5\n", "gamma = 0.5\nwarmup = 0\n"), "schedule.warmup"),
        (lambda t: t.replace("eps = 1e-08\n", ""), "missing field optim.eps"),
        (lambda t: t.replace('"optim.eps" = ', '"optim.eps_typo" = '), "optim.eps"),
        (lambda t: t.replace("batch_per_gpu = 16", 'batch_per_gpu = "16"'), "data.batch_per_gpu"),
        (lambda t: t.replace('inference = "whole"', 'inference = "tiles"'), "eval.inference"),
        (lambda t: t.replace('type = "AdamTF1"', 'type = "AdamW"'), "optim.type = 'AdamW'; allowed"),
        (lambda t: t.replace("weight_decay = 0.0", "weight_decay = 1e-4"), "optim.weight_decay must be 0"),
    ],
)
def test_invalid_recipes_name_file_and_field(tmp_path: Path, edit, message):
    bad = tmp_path / "drsan_32s_x2.toml"
    bad.write_text(edit(RECIPES["drsan_32s_x2"].read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(RecipeError) as err:
        load(bad)
    assert str(bad) in str(err.value) and message in str(err.value)


def test_unknown_recipe_lists_known_names():
    with pytest.raises(KeyError, match="span_light_x2"):
        load("span_light_x5")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace('paper = "drsan"', 'paper = "hspan"'),
            "recipe.paper = 'hspan' but architectures",
        ),
        (lambda t: t.replace('inference = "whole"', 'inference = "chop"'), "eval.inference = 'chop' but"),
        (lambda t: t.replace('variant = "32s"', 'variant = "64x"'), "recipe.variant = '64x'"),
        (lambda t: t.replace('form = "train"', 'form = "deploy"'), "drsan has forms ('train',)"),
    ],
)
def test_recipes_are_checked_against_the_model_registry(tmp_path: Path, edit, message):
    bad = tmp_path / "drsan_32s_x2.toml"
    bad.write_text(edit(RECIPES["drsan_32s_x2"].read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(bad)


def test_typed_sections_hold_every_field_of_the_schema():
    r = load("hspan_x3")
    assert r.eval.inference == "chop" and not hasattr(r, "__getitem__")  # one way: typed sections
    assert set(SCHEMA["eval"]) == {"inference", "val_set", "select_metric", "benchmarks"}  # all read
    assert "checksums" not in SCHEMA["data"]


# DRSAN: the learning rate of each saved TF training graph (saturnian77/DRSAN ckpt/x*/DRSAN_*/*.meta, Const
# ExponentialDecay/learning_rate), decoded as described in each recipe's source.
GRAPH_LR = {
    "drsan_32s_x2": 2e-4, "drsan_32m_x2": 2e-4, "drsan_48s_x2": 2e-4, "drsan_48m_x2": 2e-4,
    "drsan_32s_x3": 2e-4, "drsan_32m_x3": 5e-5, "drsan_48s_x3": 1e-4, "drsan_48m_x3": 1e-4,
    "drsan_32s_x4": 2e-4, "drsan_32m_x4": 1e-4, "drsan_48s_x4": 2e-4, "drsan_48m_x4": 1e-4,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(GRAPH_LR))
def test_drsan_recipes_carry_their_training_graph(name):
    r = load(name)
    assert r.optim.lr == GRAPH_LR[name]
    assert r.optim.type == "AdamTF1" and "ApplyAdam nodes" in r.source("optim.type")
    assert (r.optim.betas, r.optim.eps, r.dataset.batch_per_gpu, r.dataset.hr_patch) == (
        [0.9, 0.999],
        1e-8,
        16,
        48 * r.scale,
    )
    assert r.schedule.milestones[:2] == [200_000, 400_000] and r.schedule.gamma == 0.5
    for field in (
        "optim.lr",
        "optim.betas",
        "optim.eps",
        "data.batch_per_gpu",
        "data.hr_patch",
        "schedule.gamma",
    ):
        assert "decoded from the saved TF training graph" in r.source(field) and ".meta" in r.source(field)
    assert "1000" in r.source("data.hflip") and "online random crops" in r.source("data.hflip")


def test_drsan_32l_has_no_graph_and_says_so():
    r = load("drsan_32l_x2")
    assert r.optim.type == "AdamTF1" and "AdamOptimizer_1" in r.source("optim.type")
    assert RECONSTRUCTED in r.source("optim.lr") and "absent" in r.source("optim.lr")
