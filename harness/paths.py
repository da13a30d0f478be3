"""Where the committed inputs live: the checkout, or the copy a built wheel carries.

In a checkout (editable install, CI, ``PYTHONPATH``) every committed file is read from the repository. A
non-editable install has no repository: ``setup.py`` copies the committed inputs a command reads
(:data:`SHIPPED`) into the wheel as ``harness/_repo/<same relative path>``, and :func:`repo_file` finds them
there.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGED = Path(__file__).resolve().parent / "_repo"
# Committed inputs that commands read at run time (relative to the repository root).
SHIPPED = (
    "results/published",
    "results/official",
    "results/runs",
    "results/artifacts",
    "docs",
    "benchmarks/RESULTS.md",
)


def repo_file(relative: str) -> Path:
    """``REPO/relative`` when this is a checkout holding it, else the wheel's copy (which may be absent)."""
    checkout = REPO / relative
    if checkout.exists() or not (PACKAGED / relative).exists():
        return checkout
    return PACKAGED / relative


PUBLISHED_DIR = repo_file("results/published")
OFFICIAL_CSV = repo_file("results/official/official_code.csv")
