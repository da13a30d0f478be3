"""Progress on stderr for every long job (eval per image, reproduce per stage, training iterations,
download bytes), silenced by ``--quiet`` or :func:`set_quiet`. stdout stays free for ``--json``."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress bar of this process."""
    global _quiet
    _quiet = quiet


def bar(total: float | None = None, desc: str = "", unit: str = "it", **kwargs) -> tqdm:
    """A progress bar on stderr; ``unit="B"`` scales bytes (KB/MB/GB). Use as a context manager and
    call ``update(n)``; ``set_postfix(loss=...)`` adds live figures."""
    scale = unit == "B"
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=scale,
        unit_divisor=1024 if scale else 1000,
        file=sys.stderr,
        disable=_quiet,
        dynamic_ncols=True,
        leave=False,
        **kwargs,
    )


def track(items: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate over ``items`` with a progress bar on stderr."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with bar(total=total, desc=desc, unit=unit) as b:
        for item in items:
            yield item
            b.update(1)


def stage(message: str) -> None:
    """One line on stderr naming the stage a long job has reached (reproduce: static → train → eval → …)."""
    if not _quiet:
        print(f"[reprosr] {message}", file=sys.stderr, flush=True)
