"""Sessions: `nox -l` lists them. Sessions run in the current environment (`pip install -e .[test]`
installs everything), so a session starts in seconds and uses the torch build already installed."""

from __future__ import annotations

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
    """Performance benchmarks (kernels need CUDA; the degradation benchmark runs on CPU)."""
    for script in ("bench_degrade.py", "bench_sliding_proxy.py", "bench_soft_threshold.py"):
        session.run("python", f"benchmarks/{script}", *session.posargs)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Rebuild the static leaderboard site reports/ from the committed store (results/runs), its artifacts,
    the published tables, the recipes and docs/: byte for byte what is committed, unless those changed."""
    session.run("reprosr", "report", "--out", "reports", *session.posargs)


def _reproduce(recipe: str):
    def session_fn(session: nox.Session) -> None:
        session.run("reprosr", "reproduce", recipe, *session.posargs)

    session_fn.__doc__ = (
        f"Reproduce {recipe}: static checks, training (smoke unless --profile full), eval, verdicts."
    )
    return session_fn


for _name in RECIPES:
    nox.session(_reproduce(_name), name=f"reproduce-{_name}", default=False, tags=[load(_name).paper])
