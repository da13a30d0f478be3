"""Cases 1, 3 and the `last.pt` part of case 9: a non-finite state is never saved as the last good one,
kills never empty `curves.csv`, and a damaged `last.pt` is a clear error naming the file."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.training.loop import NonFiniteLossError, fit
from harness.training.patches import PatchStream
from tests.helpers import tiny_plan

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(nn.Module):
    """conv → pixel shuffle ×2; from the ``nan_grad_at``-th forward on, its backward yields NaN gradients
    while the loss stays finite (an overflow inside backward); ``block_at`` pauses that forward."""

    def __init__(self, nan_grad_at: int = 0, block_at: int = 0):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.shuffle = nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)
        self.calls, self.nan_grad_at, self.block_at = 0, nan_grad_at, block_at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.block_at:
            print("blocked", flush=True)
            sys.stdin.readline()
        y = self.shuffle(self.conv(x))
        return _NaNGrad.apply(y) if self.nan_grad_at and self.calls >= self.nan_grad_at else y


class _NaNGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * math.nan


def plan(**changes):
    return tiny_plan(**{"checkpoint_every": 2, "milestones": (6,), "iters_per_epoch": 3, **changes})


def pairs():
    g = torch.Generator().manual_seed(7)
    lrs = [torch.randint(0, 256, (3, 20, 24), generator=g).float() / 255 for _ in range(3)]
    return [(lr.repeat_interleave(2, -2).repeat_interleave(2, -1), lr) for lr in lrs]


def run(out: Path, model: nn.Module, p=None):
    torch.manual_seed(0)
    p = p or plan()
    fit(
        model,
        PatchStream(pairs(), p.sampling),
        [],
        p,
        out,
        recipe_name="tiny",
        recipe_hash="h",
        device=torch.device("cpu"),
    )


def test_a_nan_gradient_with_a_finite_loss_never_replaces_last_good(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"NaN/Inf \(in model\..*by iteration 4.*last\.pt"):
        run(tmp_path, Tiny(nan_grad_at=4))  # the 4th step is a checkpoint step
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["iteration"] == 2
    for part in ("model", "ema"):
        assert all(torch.isfinite(v).all() for v in state[part].values())
    moments = [t for s in state["optimizer"]["state"].values() for t in s.values() if torch.is_tensor(t)]
    assert moments and all(torch.isfinite(t).all() for t in moments)  # AdamTF1 keeps its step as an int
    run(tmp_path, Tiny())  # and the run resumes from it
    assert torch.load(tmp_path / "last.pt", weights_only=True)["iteration"] == 8


def test_a_nan_state_on_the_last_iteration_writes_no_final_weights(tmp_path):
    with pytest.raises(NonFiniteLossError, match="not written yet"):
        run(tmp_path, Tiny(nan_grad_at=2), plan(iterations=2, checkpoint_every=2))
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "final.pt").exists()


CHILD = """
import sys
sys.path.insert(0, {repo!r})
import torch
from pathlib import Path
from tests.adversarial.test_training import Tiny, run

torch.set_num_threads(1)
run(Path(sys.argv[1]), Tiny(block_at=int(sys.argv[2])))
"""


def _run_until_killed(out: Path, script: Path, block_at: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WORLD_SIZE"}
    child = subprocess.Popen(
        [sys.executable, str(script), str(out), str(block_at)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "blocked"
    finally:
        child.kill()  # SIGKILL: no cleanup, no flush
        child.wait()


def _curve(path: Path) -> list[tuple[int, str]]:
    with open(path, newline="") as f:
        return [(int(r["iteration"]), r["loss"]) for r in csv.DictReader(f)]


def test_a_second_kill_right_after_a_resume_keeps_earlier_iterations(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(repo=str(REPO))))
    out = tmp_path / "run"
    _run_until_killed(out, script, block_at=6)  # iterations 1-5 done, last.pt at 4
    first = _curve(out / "curves.csv")  # rows reach the file at least at every checkpoint (losses stay
    assert [i for i, _ in first][:4] == [1, 2, 3, 4]  # on the device between host syncs)
    _run_until_killed(out, script, block_at=1)  # killed in the first iteration after resuming at 4
    assert _curve(out / "curves.csv") == first[:4]
    run(out, Tiny())
    run(tmp_path / "straight", Tiny())
    assert _curve(out / "curves.csv") == _curve(tmp_path / "straight" / "curves.csv")
    assert [i for i, _ in _curve(out / "curves.csv")] == list(range(1, 9))


def test_a_curve_line_cut_by_a_kill_is_dropped_on_resume(tmp_path):
    run(tmp_path, Tiny(), plan(iterations=4))
    with open(tmp_path / "curves.csv", "a") as f:
        f.write("5,0.12")  # a row torn mid-write
    run(tmp_path, Tiny(), plan(iterations=4))
    assert [i for i, _ in _curve(tmp_path / "curves.csv")] == [1, 2, 3, 4]


@pytest.mark.parametrize("damage", ["text", "truncated", "not_a_state", "nan"])
def test_a_damaged_last_pt_is_a_clear_error_naming_it(tmp_path, damage):
    run(tmp_path, Tiny(), plan(iterations=2))
    last = tmp_path / "last.pt"
    if damage == "text":
        last.write_text("this is not a checkpoint\n")
    elif damage == "truncated":
        last.write_bytes(last.read_bytes()[:2000])
    elif damage == "not_a_state":
        torch.save({"weights": torch.zeros(2)}, last)
    else:
        state = torch.load(last, weights_only=True)
        next(iter(state["model"].values())).fill_(math.nan)
        torch.save(state, last)
    with pytest.raises(ValueError, match=rf"{last}.*delete {last} to train from the start") as info:
        run(tmp_path, Tiny(), plan(iterations=4))
    assert "weights_only" not in str(info.value)


def test_temp_files_of_a_killed_run_are_removed_when_it_resumes(tmp_path):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    stale = [tmp_path / f".last.pt.tmp-{pid}", tmp_path / f".curves.csv.tmp-{pid}"]
    for path in stale:
        path.write_bytes(b"torn")
    run(tmp_path, Tiny(), plan(iterations=2))
    assert not any(path.exists() for path in stale)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
