"""Papers kept outside the package: one folder per paper joins the registries without writing into them.

A paper folder holds its model file(s) (``*.py``: ``@register`` builders, and ``register_operator`` for a
new attention operator), its recipes (``*.toml``), its published numbers (``*.csv`` in the columns of
``harness.published.COLUMNS``) and its released checkpoints (``releases/*.toml``, the schema of
``harness.release_data``). :func:`add_paper` registers all four; ``$REPROSR_PAPERS`` (folders
separated by ``os.pathsep``) does the same for the command line. See ``docs/adding-a-paper.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

from architectures.registry import load_module
from harness import published, recipes, released


def add_paper(folder: Path) -> None:
    """Register the models, recipes, published tables and releases in ``folder`` (idempotent)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"paper folder {folder} does not exist")
    for model_file in sorted(folder.glob("*.py")):
        load_module(model_file)
    recipes.add_dir(folder)
    if any(folder.glob("*.csv")):
        published.add_dir(folder)
    if (folder / "releases").is_dir():
        released.add_dir(folder / "releases")


def add_papers_from_env() -> None:
    """:func:`add_paper` for every folder in ``$REPROSR_PAPERS``."""
    for entry in os.environ.get("REPROSR_PAPERS", "").split(os.pathsep):
        if entry:
            add_paper(Path(entry))
