"""DDP on real architectures (gloo, 2 CPU processes): two processes equal one process, HSPAN's unused
parameter is handled, ranks seed as BasicSR does (seed + rank), resume restores every rank's RNG, and a
torchrun launch stores one run.

Bound: after 2 Adam iterations the first moments (linear in the averaged gradients) match within rtol 1e-4
/ atol 1e-6, and the weights within rtol 1e-4 / atol 1e-5 except ≤ 0.1 % of elements, where Adam's
division by √v turns the reduction-order rounding of a vanishing gradient into up to lr per step (bounded
by 2·lr·iterations). SPAN-light's DropPath draws its masks from each rank's own RNG stream (seed + rank,
as BasicSR seeds), so with DropPath on two processes cannot equal one; it is compared with DropPath off,
and the per-rank seeding is checked on its own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import architectures
from harness import store
from harness.training import ddp
from harness.training import loop as train_module
from harness.training.loop import fit
from harness.training.patches import PatchStream
from harness.training.state import seed_everything
from tests.helpers import TinySR, tiny_pairs, tiny_plan

REPO = Path(__file__).resolve().parents[3]
FAMILIES = {  # recipe → builder arguments (the recipe's real architecture)
    "drsan_32s_x2": ("drsan", 2, "32s"),
    "hspan_x2": ("hspan", 2, None),
    "span_esr_ch48_x2": ("span_esr", 2, "ch48"),
    "span_light_x2": ("span_light", 2, None),
}

pytestmark = pytest.mark.usefixtures("one_thread")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _real_model(name: str) -> nn.Module:
    model, scale, variant = FAMILIES[name]
    torch.manual_seed(0)
    m = architectures.build(model, scale, variant)
    for module in m.modules():  # SPAN-light's DropPath: per-rank masks (see the module docstring)
        if type(module).__name__ == "DropPath":
            module.p = 0.0
    return m


def _plan():
    return tiny_plan(iterations=2, checkpoint_every=2, global_batch=2, ema_decay=0.0, hr_patch=32)


def _fit(name: str, out: Path, model: nn.Module | None = None) -> dict:
    plan = _plan()
    fit(
        model if model is not None else _real_model(name),
        PatchStream(tiny_pairs(), plan.sampling),
        [],
        plan,
        out,
        recipe_name=name,
        recipe_hash="h",
        device=torch.device("cpu"),
    )
    return torch.load(out / "last.pt", weights_only=True)


def _worker(rank: int, port: int, out: str, names: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank))
    torch.set_num_threads(1)
    try:
        for name in names:
            _fit(name, Path(out) / name)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize(
    "name",
    [
        "drsan_32s_x2",
        pytest.param("hspan_x2", marks=pytest.mark.slow),
        pytest.param("span_esr_ch48_x2", marks=pytest.mark.slow),
        pytest.param("span_light_x2", marks=pytest.mark.slow),
    ],
)
def test_two_processes_equal_one_on_the_real_architecture(tmp_path: Path, name: str):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path / "ddp"), [name]), nprocs=2, join=True)
    two = torch.load(tmp_path / "ddp" / name / "last.pt", weights_only=True)
    one = _fit(name, tmp_path / "one")
    init = _real_model(name).state_dict()
    assert len(two["rng"]) == 2  # one RNG state per rank
    # Adam's first moments are linear in the gradients: they match tightly (atol 1e-5: the sliding proxy's
    # CPU path sums a per-rank batch's windows in other chunks than the whole batch's).
    for i, s in one["optimizer"]["state"].items():
        torch.testing.assert_close(
            two["optimizer"]["state"][i]["exp_avg"], s["exp_avg"], rtol=1e-4, atol=1e-5
        )
    # Adam divides by √v: where a gradient vanishes, rounding differences can change an update by up to lr
    # per step, so the weights match within rtol/atol except at most 0.1 % of elements within 2·lr·steps.
    trained, off, total, lr = 0, 0, 0, _plan().optim.lr
    for key, value in one["model"].items():
        trained += not torch.equal(value, init[key])
        diff = (two["model"][key] - value).abs()
        assert diff.max() <= 2 * lr * 2 + 1e-6, key
        off += int((diff > 1e-5 + 1e-4 * value.abs()).sum())
        total += value.numel()
    assert off <= 1e-3 * total, f"{off} of {total} elements beyond rtol 1e-4 / atol 1e-5"
    assert trained > len(init) // 2, "most tensors must have trained"


def test_hspan_unused_parameter_is_found():
    model = architectures.build("hspan", 2)
    assert ddp.unused_parameters(model, torch.rand(1, 3, 8, 8)) == ["a"]
    assert all(p.grad is None for p in model.parameters()), "the probe must leave no gradients"
    span, x = architectures.build("span_light", 2), torch.rand(1, 3, 16, 16)
    before = torch.get_rng_state()
    assert ddp.unused_parameters(span, x) == []  # DropPath draws from the RNG inside the probe
    assert torch.equal(torch.get_rng_state(), before), "the probe must leave the RNG stream untouched"


def test_each_rank_seeds_with_seed_plus_rank(tmp_path, monkeypatch):
    seen = {}

    def fake_fit(model, stream, val, plan, out, **kw):
        seen["seed"] = torch.initial_seed()
        raise RuntimeError("stop")

    monkeypatch.setattr(train_module.ddp, "init", lambda device: (1, 2))
    monkeypatch.setattr(train_module, "fit", fake_fit)
    with pytest.raises(RuntimeError, match="stop"):
        train_module.train("drsan_32s_x2", out_dir=tmp_path, profile="smoke", seed=7)
    assert seen["seed"] == 8


class DropoutSR(TinySR):
    """TinySR with dropout: masks from each rank's RNG stream, so resume must restore every rank's."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.shuffle(self.body[2](self.drop(self.body[1](self.body[0](x)))))


def _resume_worker(rank: int, port: int, out: str, stop_at: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank))
    torch.set_num_threads(1)
    save = train_module._Trainer.save

    def save_then_stop(self):
        save(self)
        if self.progress.iteration == stop_at:
            raise SystemExit(0)  # every rank stops after the same barrier, like a clean kill

    train_module._Trainer.save = save_then_stop
    plan = tiny_plan(iterations=4, checkpoint_every=2, global_batch=4)
    try:
        torch.manual_seed(0)
        model = DropoutSR()
        seed_everything(3 + rank)  # per-rank streams, as train() seeds them
        fit(model, PatchStream(tiny_pairs(), plan.sampling), [], plan, Path(out),
            recipe_name="tiny", recipe_hash="h", device=torch.device("cpu"))  # fmt: skip
    except SystemExit:
        pass
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_resume_across_ranks_is_bit_exact(tmp_path: Path):
    mp.spawn(_resume_worker, args=(_free_port(), str(tmp_path / "straight"), -1), nprocs=2, join=True)
    mp.spawn(_resume_worker, args=(_free_port(), str(tmp_path / "resumed"), 2), nprocs=2, join=True)
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["iteration"] == 2
    mp.spawn(_resume_worker, args=(_free_port(), str(tmp_path / "resumed"), -1), nprocs=2, join=True)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert a["iteration"] == b["iteration"] == 4
    for key, value in a["model"].items():
        assert torch.equal(b["model"][key], value), key
    assert (tmp_path / "straight" / "curves.csv").read_text() == (
        tmp_path / "resumed" / "curves.csv"
    ).read_text()


@pytest.mark.slow
def test_nproc_2_launches_torchrun_and_stores_one_run(tmp_path: Path):
    """`reprosr reproduce R --nproc 2` = `torchrun --nproc_per_node=2 -m harness reproduce R` (gloo, smoke):
    a SPAN recipe (keep="last": the other rank must not read final.pt before rank 0 wrote it) ends with one
    run in the store and one JSON object on stdout."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "REPROSR_RESULTS": str(tmp_path / "store"),
        "OMP_NUM_THREADS": "1",
    }
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "harness", "reproduce", "span_light_x2", "--profile", "smoke",
           "--nproc", "2", "--out", str(tmp_path / "run"), "--workers", "0", "--json", "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    results, verdicts = store.read("results", tmp_path / "store"), store.read("verdicts", tmp_path / "store")
    assert set(results.run_id) == set(verdicts.run_id) == {payload["run_id"]}
    assert (tmp_path / "run" / "train-seed0" / "final.pt").exists()
