"""The vocabulary of results and verdicts as typed values: one home for each set of allowed labels.

Each enum's value is the string stored in the results store (``harness/store.py``) and printed in JSON, so
code compares members (``Status.PASS``), never substrings of labels.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A verdict's outcome. ``INDICATIVE``: compared with a low-confidence reference (e.g. a value read off
    a plot), which can never give pass or fail."""

    PASS = "pass"
    FAIL = "fail"
    INDICATIVE = "indicative"
    NOT_RUN = "not run"
    NO_PUBLISHED_VALUE = "no published value"


class Tier(StrEnum):
    STATIC = "static"
    CHECKPOINT = "checkpoint"
    RETRAIN = "retrain"


class Profile(StrEnum):
    SMOKE = "smoke"
    FULL = "full"
    CHECKPOINT = "checkpoint"


class ReferenceKind(StrEnum):
    """Where a reference number comes from."""

    PAPER = "paper"
    OFFICIAL_CODE = "official code"
    CHALLENGE_REPORT = "challenge report"


class Confidence(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Inference(StrEnum):
    """Test-time procedure: whole image, HSPAN's official chop, padding to a window grid, or tiles (each
    tile's overlap cropped away, or overlapping tiles averaged as NTIRE's ``test_demo.py`` does)."""

    WHOLE = "whole"
    CHOP = "chop"
    PAD = "pad"
    TILE = "tile"
    TILE_AVERAGE = "tile_average"


# The test-time procedures the seed papers use: what recipes, ``reprosr eval --inference`` and
# ``harness.evaluate`` accept (pad and tile are recorded conventions, not implemented procedures).
TEST_TIME = (Inference.WHOLE, Inference.CHOP)


class Precision(StrEnum):
    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"
    FP16 = "fp16"


class RunState(StrEnum):
    """Whether a training run completed its recipe's schedule (only complete runs are judged)."""

    COMPLETE = "complete"
    TRUNCATED = "truncated"
