"""Issue 24, processes: killing the `reprosr reproduce --nproc N` launcher (SIGTERM or SIGKILL) leaves no
torchrun and no worker running, and a user error under --nproc is one error object with exit 2.

The fast tests supervise a stand-in for torchrun that behaves as torchrun does (workers in their own
sessions, killed on SIGTERM); the slow ones run the real torchrun. Every kill is a real signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.paths import REPO

# Like torchrun: a worker in its own session, stopped (killpg) when this process gets SIGTERM.
FAKE_TORCHRUN = """
import os, signal, subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
def stop(signum, frame):
    os.killpg(worker.pid, signal.SIGTERM)
    raise SystemExit(128 + signum)
signal.signal(signal.SIGTERM, stop)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {worker.pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
worker.wait()
"""
# A torchrun worker script that records its pid and its parent's (torchrun's), then waits to be killed.
WORKER = """
import os, time
rank = os.environ["RANK"]
with open(os.path.join(os.environ["PIDS"], f"{rank}.tmp"), "w") as f:
    f.write(f"{os.getpid()} {os.getppid()}")
os.replace(os.path.join(os.environ["PIDS"], f"{rank}.tmp"), os.path.join(os.environ["PIDS"], rank))
time.sleep(300)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _launcher(command: list[str]) -> subprocess.Popen:
    code = f"import sys; from harness.launch import supervise; sys.exit(supervise({command!r}))"
    return subprocess.Popen([sys.executable, "-c", code], env=_env())


def _kill_everything(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_launcher_stops_torchrun_and_its_workers(tmp_path, sig):
    pids_file = tmp_path / "pids"
    script = tmp_path / "fake_torchrun.py"
    script.write_text(FAKE_TORCHRUN)
    launcher = _launcher([sys.executable, str(script), str(pids_file)])
    try:
        _wait_for(pids_file.exists, 20, "the stand-in torchrun to start its worker")
        torchrun, worker = map(int, pids_file.read_text().split())
        launcher.send_signal(sig)
        assert launcher.wait(timeout=20) == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig)
        _wait_for(lambda: not _alive(torchrun) and not _alive(worker), 20, "torchrun and its worker to stop")
    finally:
        launcher.kill()
        if pids_file.exists():
            _kill_everything([int(p) for p in pids_file.read_text().split()])


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_launcher_stops_the_real_torchrun_and_its_workers(tmp_path, sig):
    (tmp_path / "pids").mkdir()
    (tmp_path / "worker.py").write_text(WORKER)
    command = [sys.executable, "-m", "harness.launch", "--standalone", "--nproc_per_node=2",
               str(tmp_path / "worker.py")]  # fmt: skip
    code = f"import os, sys; os.environ['PIDS'] = {str(tmp_path / 'pids')!r}; " + (
        f"from harness.launch import supervise; sys.exit(supervise({command!r}))"
    )
    launcher = subprocess.Popen([sys.executable, "-c", code], env=_env())
    pids: list[int] = []
    try:
        ranks = [tmp_path / "pids" / r for r in ("0", "1")]
        _wait_for(lambda: all(p.exists() for p in ranks), 240, "both torchrun workers to start")
        pids = sorted({int(x) for p in ranks for x in p.read_text().split()})  # 2 workers + torchrun
        assert len(pids) == 3
        launcher.send_signal(sig)
        launcher.wait(timeout=60)
        _wait_for(lambda: not any(map(_alive, pids)), 60, "torchrun and its workers to stop")
    finally:
        launcher.kill()
        _kill_everything(pids)


@pytest.mark.slow
def test_a_user_error_under_nproc_is_one_error_object_and_exit_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "harness", "reproduce", "no_such_recipe", "--nproc", "2", "--json"],
        env={**_env(), "REPROSR_RESULTS": str(tmp_path / "store")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "unknown recipe 'no_such_recipe'" in json.loads(lines[0])["error"]
    assert "Traceback" not in done.stderr and done.stderr.count("error: unknown recipe") == 1
