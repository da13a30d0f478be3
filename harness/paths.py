"""Where the checkout's data lives: one home for the repository paths the harness reads."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
PUBLISHED_DIR = RESULTS / "published"
OFFICIAL_CSV = RESULTS / "official" / "official_code.csv"
