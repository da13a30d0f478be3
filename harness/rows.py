"""The one builder of results-table rows (``verdicts.verdict_row`` builds the verdicts table's): a run's
context, typed, plus one measurement. Unit, colour and convention come from :mod:`harness.measures`."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import asdict, dataclass, replace

from harness import store
from harness.measures import Kind, measure
from harness.schema import Profile, Tier


def new_run_id() -> str:
    """A run id: 12 hex digits (``store.validate`` refuses anything else that could name a path)."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class RunContext:
    """What every row of one run shares: identity, provenance and how the model was obtained."""

    run_id: str
    profile: Profile
    tier: Tier
    paper: str
    model: str
    variant: str
    form: str
    scale: int
    recipe: str = ""
    recipe_hash: str = ""
    checkpoint: str = ""
    checkpoint_hash: str = ""  # the tensors' content hash (architectures.checkpoint.content_hash)
    seed: int = -1
    run_state: str = ""
    training_data: str = ""
    precision: str = "fp32"
    degradation: str = "matlab_bicubic"
    timestamp: str = ""
    git_commit: str = ""
    package_versions: str = ""
    device: str = ""

    @classmethod
    def new(cls, **fields) -> RunContext:
        """A context with a fresh run id and this process's provenance (commit, versions, device, time)."""
        return cls(run_id=new_run_id(), **{**store.provenance(), **fields})

    def but(self, **changes) -> RunContext:
        return replace(self, **changes)


def result_row(
    ctx: RunContext,
    metric: str,
    value: float,
    *,
    dataset: str = "",
    image: str = "",
    convention: str = "",
    unit: str | None = None,
    knobs: dict | None = None,
    runtime_protocol: dict | None = None,
    dataset_checksum: str = "",
    step: int = -1,
) -> dict:
    """One results row: ``metric`` of ``ctx``'s model (on ``dataset``/``image`` when a score). ``knobs`` are
    the test-time columns (``TestTime.columns()``) of an evaluated value; ``convention`` overrides the
    measure's own text (counts say which form and rule)."""
    m = measure(metric)
    scored = m.kind is Kind.QUALITY
    timed = m.kind is Kind.RUNTIME
    row = {k: v for k, v in asdict(ctx).items()}
    row.update(
        profile=str(ctx.profile),
        tier=str(ctx.tier),
        dataset=dataset,
        image=image,
        metric=metric,
        value=float(value) if value is not None else math.nan,
        unit=m.unit if unit is None else unit,
        convention=convention or m.convention,
        color=m.color if scored else "",
        shave=ctx.scale if scored else 0,
        inference="",
        tile=0,
        tile_overlap=0,
        self_ensemble=False,
        runtime_protocol=json.dumps(runtime_protocol or {}, sort_keys=True) if timed else "",
        dataset_checksum=dataset_checksum,
        step=step,
    )
    if knobs:
        row.update(knobs)
    return row
