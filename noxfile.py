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
    """CPU, up to ~30 min on 2 cores: one recipe per family trained a few hundred iterations on a benchmark
    set's HR/LR (a disclosed stand-in for DIV2K), judged on Set5 against bicubic and against the official
    trainer run side by side (checkouts outside the repo: --span-light-official, --span-esr-official,
    --python; see benchmarks/learning_check.py). Fails when a family does not learn or trails the official
    trainer by more than its seed-to-seed spread. Needs $REPROSR_TEST_DATASETS or --data-root."""
    session.run("python", "benchmarks/learning_check.py", *session.posargs)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Rebuild the static leaderboard site reports/ from the committed store (results/runs), its artifacts,
    the published tables, the recipes and docs/: byte for byte what is committed, unless those changed."""
    session.run("reprosr", "report", "--out", "reports", *session.posargs)


@nox.session(default=False)
def checkpoints(session: nox.Session) -> None:
    """Checkpoint tier of every recipe with an official release in the zoo (`reprosr checkpoints`): fetch,
    verify, evaluate on the paper's benchmark sets, verdicts. An entry that cannot be reached (offline, a
    manual download) gives "not run" verdicts with the reason; a recipe without a release says so."""
    from harness import released

    for name in RECIPES:
        recipe = load(name)
        entry = released.for_recipe(recipe.model, recipe.variant, recipe.scale)
        if entry is None:
            session.log(
                f"{name}: not run: no official checkpoint is published for it (see `reprosr checkpoints`)"
            )
            continue
        out = session.run(
            "reprosr", "reproduce", name, "--checkpoint", "official", "--quiet", "--json", *session.posargs,
            silent=True,
        )  # fmt: skip
        payload = json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("{")))
        cells = [v for v in payload["verdicts"] if v["tier"] == "checkpoint"]
        judged = [v for v in cells if v["status"] != "not run"]
        reasons = dict.fromkeys(v["reason"] for v in cells if v["status"] == "not run")
        session.log(
            f"{name} ({entry.name}): {len(judged)} cells judged "
            f"({sum(v['status'] == 'pass' for v in judged)} pass), {len(cells) - len(judged)} not run"
            + "".join(f"\n    not run: {r}" for r in reasons)
        )


def _reproduce(recipe: str):
    def session_fn(session: nox.Session) -> None:
        session.run("reprosr", "reproduce", recipe, *session.posargs)

    session_fn.__doc__ = (
        f"Reproduce {recipe}: static checks, training (smoke unless --profile full), eval, verdicts."
    )
    return session_fn


for _name in RECIPES:
    nox.session(_reproduce(_name), name=f"reproduce-{_name}", default=False, tags=[load(_name).paper])
