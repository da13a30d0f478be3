"""Sessions: `nox -l` lists them. Sessions run in the current environment (`pip install -e .[test]`
installs everything), so a session starts in seconds and uses the torch build already installed."""

from __future__ import annotations

import json

import nox

from harness.recipes import RECIPES, load

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests", "lint"]


@nox.session
def tests(session: nox.Session) -> None:
    """The default suite (what CI runs): every fast test; the kernel tests run in a second process with
    the Triton kernels executed by the interpreter on the CPU (TRITON_INTERPRET must be set before triton
    is imported)."""
    session.run("pytest", "-q", "-m", "not slow", "--ignore=tests/kernels", *session.posargs)
    session.run(
        "pytest", "-q", "-m", "not slow", "tests/kernels", *session.posargs, env={"TRITON_INTERPRET": "1"}
    )


@nox.session
def kernels(session: nox.Session) -> None:
    """Kernel numerics: Triton kernels vs float64 references under TRITON_INTERPRET=1, slow cases included."""
    session.run("pytest", "-q", "tests/kernels", *session.posargs, env={"TRITON_INTERPRET": "1"})


@nox.session(default=False)
def full(session: nox.Session) -> None:
    """Every test, the slow full-size checks included."""
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(default=False)
def benchmarks(session: nox.Session) -> None:
    """Performance benchmarks (kernels need CUDA; degradation and metrics, against BasicSR, on CPU)."""
    scripts = ("bench_degrade.py", "bench_metrics.py", "bench_sliding_proxy.py", "bench_soft_threshold.py")
    for script in scripts:
        session.run("python", f"benchmarks/{script}", *session.posargs)


@nox.session(name="gpu-check", default=False)
def gpu_check(session: nox.Session) -> None:
    """On one CUDA GPU (~8 min): a short full-profile training of one recipe per family, the kernel tests
    compiled on CUDA and the kernel benchmarks; writes runs/gpu-check/gpu_check.md. Fails at once without
    CUDA."""
    session.run("python", "benchmarks/gpu_check.py", *session.posargs)


@nox.session(name="learning-check", default=False)
def learning_check(session: nox.Session) -> None:
    """CPU, ~30 min on 2 cores: one recipe per family trained a few dozen to ~1400 iterations on a benchmark
    set's HR/LR (a disclosed stand-in for DIV2K) by ReproSR and by the official training code side by side
    (checkouts outside the repo: --span-light-official, --span-esr-official, --hspan-official,
    --drsan-official, run by --python; benchmarks/official_trainers/setup_env.sh DIR makes them and prints
    the command), judged on Set5. Fails when a family does not learn or trails the official trainer by
    more than the seed-to-seed spread. Needs $REPROSR_TEST_DATASETS or --data-root."""
    session.run("python", "benchmarks/learning_check.py", *session.posargs)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Rebuild the static leaderboard site reports/ from the committed store (results/runs), its artifacts,
    the published tables, the recipes and docs/: byte for byte what is committed, unless those changed."""
    session.run("reprosr", "report", "--out", "reports", *session.posargs)


@nox.session(default=False)
def checkpoints(session: nox.Session) -> None:
    """Checkpoint tier of every recipe with an official release in the zoo (`reprosr checkpoints`): fetch,
    verify, evaluate on the paper's benchmark sets, verdicts. Prints one line per recipe (judged cells, or
    why nothing was judged) and fails when no recipe could be judged (offline, say)."""
    from harness import released

    summary, judged_recipes = [], 0
    for name in RECIPES:
        recipe = load(name)
        entry = released.lookup(model=recipe.model, variant=recipe.variant, scale=recipe.scale)
        if entry is None:
            summary.append(f"{name}: no official checkpoint is published (see `reprosr checkpoints`)")
            continue
        out = session.run(
            "reprosr", "reproduce", name, "--checkpoint", "official", "--quiet", "--json", *session.posargs,
            silent=True, success_codes=[0, 2],
        )  # fmt: skip
        payload = json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("{")))
        if "error" in payload:
            summary.append(f"{name} ({entry.name}): not judged: {payload['error']}")
            continue
        cells = [v for v in payload["verdicts"] if v["tier"] == "checkpoint"]
        judged = [v for v in cells if v["status"] not in ("not run", "no published value")]
        judged_recipes += bool(judged)
        summary.append(
            f"{name} ({entry.name}): {len(judged)} cells judged "
            f"({sum(v['status'] == 'pass' for v in judged)} pass) of {len(cells)}, run {payload['run_id']}"
        )
    session.log("checkpoint tier per recipe:\n  " + "\n  ".join(summary))
    if not judged_recipes:
        session.error("no recipe could be judged: see the reasons above")


@nox.session(name="regenerate-store", default=False)
def regenerate_store(session: nox.Session) -> None:
    """Maintainers: rebuild the committed store (results/runs, results/artifacts) and the site (reports/)
    from the current code: one smoke run of every recipe (static tier, the training pipeline, verdicts) and
    the checkpoint runs of the released files at hand, all published, then `reprosr report`. Arguments:
    `-- DATA_ROOT CHECKPOINT_DIR` (default ../shared/datasets ../shared/checkpoints)."""
    import os
    import shutil
    import subprocess
    import tempfile
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    given = session.posargs or ["../shared/datasets", "../shared/checkpoints"]
    data_root, checkpoints = (Path(a).resolve() for a in given)
    local = Path(tempfile.mkdtemp(prefix="reprosr-regenerate-"))
    env = {"REPROSR_RESULTS": str(local / "store"), "OMP_NUM_THREADS": "1"}  # runs side by side, one per core
    runs = local / "runs"
    jobs = [[name, "--out", str(runs / name)] for name in RECIPES]
    for recipe, filename in CHECKPOINT_RUNS:
        if (checkpoints / filename).is_file():
            jobs.append([recipe, "--checkpoint", str(checkpoints / filename), "--data-root", str(data_root),
                         "--out", str(runs / f"{recipe}-checkpoint")])  # fmt: skip
        else:
            session.warn(f"{filename} not in {checkpoints}: its checkpoint run is left out")

    def run(job: list[str]) -> str:
        done = subprocess.run(["reprosr", "reproduce", *job, "--quiet", "--json"], env={**os.environ, **env},
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode:
            session.error(f"reprosr reproduce {' '.join(job)} failed:\n{done.stdout}{done.stderr}")
        session.log(f"done: {job[0]}{' (checkpoint)' if '--checkpoint' in job else ''}")
        return json.loads(done.stdout.strip().splitlines()[-1])["run_id"]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # one run per core
        run_ids = list(pool.map(run, jobs))
    for folder in ("results/runs", "results/artifacts"):
        shutil.rmtree(folder, ignore_errors=True)
    session.run("reprosr", "publish", *run_ids, "--source", str(local / "store"), "--runs", str(runs),
                "--data-root", str(data_root), env=env)  # fmt: skip
    session.run("reprosr", "report", "--out", "reports")
    shutil.rmtree(local)


# Released files the committed store evaluates (recipe, file name in the checkpoint folder).
CHECKPOINT_RUNS = (("span_esr_ch28_x4", "ntire2024_team38_span_ch28_x4.pth"),)


def _reproduce(recipe: str):
    def session_fn(session: nox.Session) -> None:
        session.run("reprosr", "reproduce", recipe, *session.posargs)

    session_fn.__doc__ = (
        f"Reproduce {recipe}: static checks, training (smoke unless --profile full), eval, verdicts."
    )
    return session_fn


for _name in RECIPES:
    nox.session(_reproduce(_name), name=f"reproduce-{_name}", default=False, tags=[load(_name).paper])
