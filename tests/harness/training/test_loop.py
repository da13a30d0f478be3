"""Training engine: aligned patches, schedule, DDP = one process, bit-exact resume after SIGKILL, NaN stop."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from harness.data import embedded_pairs
from harness.recipes import load
from harness.training.data import DataSubstituteError, training_data
from harness.training.loop import NonFiniteLossError, fit, train
from harness.training.patches import PatchStream
from harness.training.plan import make_plan
from tests.helpers import TinySR, run_fit, tiny_pairs, tiny_plan

REPO = Path(__file__).resolve().parents[3]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_patches_are_aligned_and_rank_shards_recompose_the_batch():
    plan = tiny_plan()
    stream = PatchStream(tiny_pairs(), plan.sampling)
    lr, hr = stream.batch(5)
    assert lr.shape == (4, 3, 8, 8) and hr.shape == (4, 3, 16, 16)
    assert torch.equal(hr, lr.repeat_interleave(2, -2).repeat_interleave(2, -1))
    shards = [stream.batch(5, rank, 2) for rank in (0, 1)]
    assert torch.equal(torch.cat([s[0] for s in shards]), lr)
    assert torch.equal(PatchStream(tiny_pairs(), plan.sampling).batch(5)[0], lr), (
        "data order must depend on (seed, t) only"
    )
    assert not torch.equal(stream.batch(6)[0], lr)


def test_augmentation_uses_flips_and_rot90():
    plan = tiny_plan(hr_patch=40, enlarge=64, iters_per_epoch=48)
    stream = PatchStream(tiny_pairs(n=1), plan.sampling)
    lr = tiny_pairs(n=1)[0][1]
    variants = set()
    for slot in range(64):
        patch = stream.sample(0, slot)[0].float() / 255
        for name, f in {
            "id": lambda x: x,
            "h": lambda x: x.flip(-1),
            "v": lambda x: x.flip(-2),
            "hv": lambda x: x.flip(-1, -2),
            "t": lambda x: x.transpose(-1, -2),
        }.items():
            if any(torch.equal(patch, f(lr[:, :, dx : dx + 20])) for dx in range(5)):
                variants.add(name)
    assert {"id", "h", "v", "t"} <= variants


def test_lr_follows_milestones_and_curves_are_written(tmp_path: Path):
    plan = tiny_plan(iterations=6, milestones=(2, 4), gamma=0.5)
    state = run_fit(tmp_path, plan)
    with open(tmp_path / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    expected = [plan.optim.lr * plan.schedule.gamma ** sum(m <= t for m in plan.milestones) for t in range(6)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(expected, rel=1e-12)
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert state["iteration"] == 6 and state["data_position"] == 6 * plan.global_batch


CHILD = """
import sys
import torch
from pathlib import Path
from tests.helpers import TinySR, run_fit, tiny_plan

class BlockingSR(TinySR):
    calls = 0

    def forward(self, x):
        BlockingSR.calls += 1
        if BlockingSR.calls == 7:  # iterations 1-6 done, checkpoint written at 4
            print("blocked", flush=True)
            sys.stdin.readline()
        return super().forward(x)

torch.set_num_threads(1)
torch.manual_seed(0)
run_fit(Path(sys.argv[1]), tiny_plan(), BlockingSR())
"""


def test_resume_after_sigkill_is_bit_exact(tmp_path: Path):
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    child = subprocess.Popen(
        [sys.executable, str(script), str(killed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=REPO,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "blocked"
        assert torch.load(killed / "last.pt", weights_only=True)["iteration"] == 4
    finally:
        child.kill()
        child.wait()
    resumed = run_fit(killed, tiny_plan())
    reference = run_fit(straight, tiny_plan())
    assert resumed["iteration"] == reference["iteration"] == 8
    for part in ("model", "ema"):
        for key, value in reference[part].items():
            assert torch.equal(resumed[part][key], value), f"{part}.{key} differs after resume"
    assert (killed / "curves.csv").read_text() == (straight / "curves.csv").read_text()


class NaNAfter(TinySR):
    """Outputs NaN from the ``n``-th forward on, like a diverging run."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, x):
        self.calls += 1
        y = super().forward(x)
        return y * math.nan if self.calls >= self.n else y


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path):
    plan = tiny_plan(iterations=8, checkpoint_every=2)
    torch.manual_seed(0)
    with pytest.raises(NonFiniteLossError, match="iteration 4") as err:
        fit(
            NaNAfter(4),
            PatchStream(tiny_pairs(), plan.sampling),
            [],
            plan,
            tmp_path,
            recipe_name="tiny",
            recipe_hash="h",
            device=torch.device("cpu"),
        )
    assert str(tmp_path / "last.pt") in str(err.value)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_resume_refuses_another_plan(tmp_path: Path):
    run_fit(tmp_path, tiny_plan(iterations=2))
    with pytest.raises(ValueError, match="resume=False"):
        run_fit(tmp_path, tiny_plan(iterations=2, lr=2e-3))


def test_bf16_is_explicit_and_recorded():
    recipe = load("drsan_32s_x2")
    assert make_plan(recipe, "smoke", 5).precision == "fp32"
    assert make_plan(recipe, "smoke", 5, precision="bf16").precision == "bf16"
    with pytest.raises(ValueError, match="precision"):
        make_plan(recipe, "smoke", 5, precision="fp8")


def test_epoch_schedule_converts_to_iterations():
    plan = make_plan(load("hspan_x2"), "full", n_images=800)
    assert plan.sampling.iters_per_epoch == 1000
    assert plan.milestones == (200_000, 400_000, 600_000, 800_000) and plan.iterations == 999_000


def _registered(model: str) -> None:
    import architectures

    if model not in architectures.MODELS:
        pytest.skip(f"not run: architectures has no {model!r} yet")


@pytest.mark.parametrize(
    "name",
    [
        "drsan_32s_x2",
        pytest.param("span_light_x2", marks=pytest.mark.slow),
        pytest.param("span_esr_ch48_x4", marks=pytest.mark.slow),
        pytest.param("hspan_x2", marks=pytest.mark.slow),
    ],
)
def test_smoke_profile_trains_the_real_architecture(tmp_path: Path, name: str):
    import architectures

    recipe = load(name)
    _registered(recipe.model)
    summary = train(name, out_dir=tmp_path, profile="smoke")
    assert summary.iterations == recipe.smoke.iters and math.isfinite(summary.final_loss)
    assert math.isfinite(summary.best_score)
    # a smoke run is short: with EMA, the raw weights are validated beside the EMA ones
    assert math.isfinite(summary.final_psnr_y_raw) == (recipe.train.ema_decay > 0)
    model = architectures.build(recipe.model, recipe.scale, recipe.variant)
    model.load_state_dict(torch.load(summary.final_checkpoint, weights_only=True), strict=True)
    assert (tmp_path / "summary.json").exists()


def _with_fields(recipe, **fields):
    data = {s: dict(v) for s, v in recipe.data.items()}
    for dotted, value in fields.items():
        section, key = dotted.split(".")
        data[section][key] = value
    return dataclasses.replace(recipe, data=data)


def _div2k_like(root: Path, n: int = 3, lr: bool = True) -> None:
    from harness.data import write_image
    from harness.degrade import bicubic_downsample

    for i in range(n):
        hr = torch.rand(3, 48, 50)
        write_image(root / "DIV2K_train" / "HR" / f"{i + 1:04d}.png", hr)
        if lr:
            write_image(
                root / "DIV2K_train" / "LR_bicubic" / "X2" / f"{i + 1:04d}.png", bicubic_downsample(hr, 2)[1]
            )


def test_full_profile_streams_the_training_set_as_uint8(tmp_path, datasets_root):
    import shutil

    _div2k_like(tmp_path)
    shutil.copytree(datasets_root / "Set5", tmp_path / "Set5")
    recipe = _with_fields(load("drsan_32s_x2"), **{"data.train_images": [2, 3]})
    td = training_data(recipe, "full", tmp_path)
    assert [(hr.dtype, tuple(hr.shape), tuple(lr.shape)) for hr, lr in td.pairs] == [
        (torch.uint8, (3, 48, 50), (3, 24, 25))
    ] * 2
    assert [p.name for p in td.val_pairs][0] == "baby" and len(td.checksum) == 64 and not td.substitutes
    assert td.description == "DIV2K_train[2-3] LR disk; validation Set5"
    with pytest.raises(ValueError, match="reprosr data fetch DIV2K_train"):
        training_data(_with_fields(recipe, **{"data.train_images": [1, 5]}), "full", tmp_path)


def test_missing_validation_set_is_an_error_unless_a_substitute_is_allowed(tmp_path):

    _div2k_like(tmp_path)
    recipe = _with_fields(load("drsan_32s_x2"), **{"data.train_images": [1, 3]})
    with pytest.raises(DataSubstituteError, match="validation set Set5.*--allow-substitutes"):
        training_data(recipe, "full", tmp_path)
    td = training_data(recipe, "full", tmp_path, allow_substitutes=True)
    assert [p.name for p in td.val_pairs] == [p.name for p in embedded_pairs(2)]
    assert td.substitutes == ("validation set Set5 missing: validated on the embedded photos instead",)
    assert td.description.endswith("validation embedded")


def test_missing_lr_on_disk_is_an_error_unless_generation_is_allowed(tmp_path):

    _div2k_like(tmp_path, lr=False)
    recipe = _with_fields(load("drsan_32s_x2"), **{"data.train_images": [1, 3]})
    with pytest.raises(DataSubstituteError, match="no LR_bicubic/X2 files on disk"):
        training_data(recipe, "full", tmp_path)
    assert not (tmp_path / "DIV2K_train" / "LR_bicubic").exists(), "the refusal must not generate anything"
    td = training_data(recipe, "full", tmp_path, allow_substitutes=True)
    assert any("generated here" in s for s in td.substitutes)
    degrade = _with_fields(recipe, **{"data.lr_source": "degrade"})
    assert not any("LR" in s for s in training_data(degrade, "full", tmp_path, True).substitutes)


def test_max_iters_must_be_positive_and_marks_the_run_truncated():
    recipe = load("drsan_32s_x2")
    for bad in (0, -3):
        with pytest.raises(ValueError, match="--max-iters must be a positive"):
            make_plan(recipe, "full", 800, max_iters=bad)
    assert make_plan(recipe, "full", 800, max_iters=2).run_state == "truncated"
    assert make_plan(recipe, "full", 800).run_state == "complete"
    assert make_plan(recipe, "smoke", 5, max_iters=100).run_state == "complete"


def test_losses_reach_the_host_only_at_sync_points(tmp_path: Path, monkeypatch):
    from harness.training import loop as train_module

    calls = []
    sync = train_module._Trainer._sync
    monkeypatch.setattr(train_module._Trainer, "_sync", lambda self, *a: calls.append(1) or sync(self, *a))
    run_fit(tmp_path, tiny_plan(iterations=8, checkpoint_every=8))
    assert len(calls) == 2, "two host reads for 8 iterations: the first loss (logged) and the end"
    with open(tmp_path / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == list(range(1, 9)) and all(
        float(r["loss"]) > 0 for r in rows
    )


def test_fused_ema_is_the_basicsr_average():
    from harness.training.state import EMA

    torch.manual_seed(0)
    model = TinySR()
    ema = EMA(model, 0.9)
    start = {k: v.clone() for k, v in ema.state.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    ema.update(model)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ema.state[k], 0.9 * start[k] + 0.1 * v, rtol=1e-6, atol=1e-7)


def test_channels_last_and_bf16_are_recorded_knobs(tmp_path: Path):
    recipe = load("span_esr_ch48_x4")
    plan = make_plan(recipe, "smoke", 5, channels_last=True, precision="bf16")
    assert (plan.channels_last, plan.precision) == (True, "bf16")
    default = make_plan(recipe, "smoke", 5)
    assert (default.channels_last, default.precision) == (False, "fp32")  # the paper's fp32, NCHW
    state = run_fit(
        tmp_path, tiny_plan(iterations=2, checkpoint_every=2, channels_last=True, precision="bf16")
    )
    assert state["plan"]["channels_last"] is True and state["plan"]["precision"] == "bf16"
    assert all(torch.isfinite(v).all() for v in state["model"].values())


class NaNGradAt(TinySR):
    """Finite outputs, but the gradient of the first conv becomes NaN at the ``n``-th backward."""

    def __init__(self, n: int):
        super().__init__()
        self.calls = 0
        self.body[0].weight.register_hook(self._hook)
        self.n = n

    def _hook(self, grad):
        self.calls += 1
        return grad * math.nan if self.calls == self.n else grad


def test_a_nonfinite_gradient_is_never_saved(tmp_path: Path):
    plan = tiny_plan(iterations=8, checkpoint_every=2)
    torch.manual_seed(0)
    with pytest.raises(NonFiniteLossError):
        fit(NaNGradAt(3), PatchStream(tiny_pairs(), plan.sampling), [], plan, tmp_path,
            recipe_name="tiny", recipe_hash="h", device=torch.device("cpu"))  # fmt: skip
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["iteration"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())


class FailAt(TinySR):
    """Raises at the ``n``-th forward (a crash or kill at that point)."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return super().forward(x)


def test_a_second_stop_right_after_resume_keeps_the_curves(tmp_path: Path):
    plan = tiny_plan(iterations=8, checkpoint_every=4)
    for model in (FailAt(6), FailAt(1)):  # stop after the checkpoint at 4, then at once after resuming
        torch.manual_seed(0)
        with pytest.raises(KeyboardInterrupt):
            fit(model, PatchStream(tiny_pairs(), plan.sampling), [], plan, tmp_path,
                recipe_name="tiny", recipe_hash="h", device=torch.device("cpu"))  # fmt: skip
        with open(tmp_path / "curves.csv", newline="") as f:
            assert [int(r["iteration"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]


def test_short_runs_validate_raw_weights_beside_ema_and_log_the_first_loss(tmp_path: Path, caplog):
    import logging

    from harness.data import Pair

    val = [Pair(f"p{i}", hr, lr) for i, (hr, lr) in enumerate(tiny_pairs())]
    plan = tiny_plan(iterations=4, val_every=4, ema_decay=0.9, validate_raw=True)
    torch.manual_seed(0)
    with caplog.at_level(logging.INFO, logger="harness.training.loop"):
        result = fit(TinySR(), PatchStream(tiny_pairs(), plan.sampling), val, plan, tmp_path,
                     recipe_name="tiny", recipe_hash="h", device=torch.device("cpu"))  # fmt: skip
    assert any("loss at iteration 1 = " in r.getMessage() for r in caplog.records)
    with open(tmp_path / "curves.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    ema, raw = float(last["val_psnr_y"]), float(last["val_psnr_y_raw"])
    assert math.isfinite(ema) and math.isfinite(raw) and ema != raw
    assert (result.final_psnr_y, result.final_psnr_y_raw) == (ema, raw)
    assert float(last["val_score"]) == ema == result.best_score  # select_metric psnr_y


def test_first_loss_line_explains_a_loss_above_one():
    from harness.training.loop import _first_loss_line

    assert "SPAN-ESR multiplies its input by 255" in _first_loss_line("r", 4.2)
    assert "255" not in _first_loss_line("r", 0.2)


def test_validate_raw_only_for_short_runs_with_ema():
    span = load("span_esr_ch48_x4")
    assert make_plan(span, "smoke", 3).validate_raw
    assert make_plan(span, "full", 800, max_iters=1000).validate_raw
    assert not make_plan(span, "full", 800).validate_raw
    assert not make_plan(load("drsan_32s_x2"), "smoke", 3).validate_raw  # no EMA
    assert make_plan(load("hspan_x2"), "smoke", 3).select_metric == "psnr_edsr"


@pytest.mark.parametrize("name", ["span_esr_ch48_x2", "span_light_x2"])
def test_span_family_losses_start_above_one_as_the_recipe_notes_say(name):
    import architectures

    recipe = load(name)
    torch.manual_seed(0)
    model = architectures.build(recipe.model, recipe.scale, recipe.variant).eval()
    pair = embedded_pairs(recipe.scale)[0]
    lr, hr = pair.lr[None, :, :32, :32], pair.hr[None, :, :64, :64]
    with torch.no_grad():
        assert (model(lr) - hr).abs().mean() > 1
    assert "Loss scale:" in recipe.path.read_text(encoding="utf-8")


def test_a_full_run_announces_its_cost_before_training(tmp_path, datasets_root, monkeypatch, capsys):
    import shutil

    from harness.training import loop

    _div2k_like(tmp_path)
    shutil.copytree(datasets_root / "Set5", tmp_path / "Set5")
    recipe = _with_fields(load("drsan_32s_x2"), **{"data.train_images": [1, 3], "data.hr_patch": 32})

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    monkeypatch.setattr(loop, "fit", stop)
    monkeypatch.setattr(loop, "estimate", lambda plan, *a, **k: f"{plan.iterations} iterations (cost)")
    with pytest.raises(Stop):
        train(recipe, out_dir=tmp_path / "run", profile="full", data_root=tmp_path, max_iters=7)
    assert "before training: 7 iterations (cost)" in capsys.readouterr().err
    with pytest.raises(Stop):
        train(recipe, out_dir=tmp_path / "smoke", profile="smoke")
    assert "before training" not in capsys.readouterr().err
