"""Pipe tables of a markdown file (``benchmarks/RESULTS.md``) for the kernel-benchmark section."""

from __future__ import annotations

import re


def markdown_tables(text: str) -> list[dict]:
    """Pipe tables of a markdown file as ``{"caption", "intro", "head", "rows"}``: the caption is the nearest
    heading above, the intro the paragraph right above the table (both "" if none)."""
    tables, heading, paragraph, block = [], "", [], []

    def flush() -> None:
        if len(block) >= 2 and re.fullmatch(r"\|?[\s:|-]+\|?", block[1]):
            cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block]
            intro = " ".join(paragraph)
            tables.append({"caption": heading, "intro": intro, "head": cells[0], "rows": cells[2:]})
            paragraph.clear()
        block.clear()

    fresh = True
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            block.append(line.strip())
            continue
        flush()
        stripped = line.strip()
        if line.startswith("#"):
            heading, fresh = stripped.lstrip("#").strip(), True
            paragraph.clear()
        elif not stripped:
            fresh = True
        elif not line.startswith("    "):  # indented lines are code (commands), not prose
            if fresh:
                paragraph.clear()
            paragraph.append(stripped)
            fresh = False
    flush()
    return tables
