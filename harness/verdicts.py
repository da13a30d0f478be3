"""Verdicts as typed values: a measured number, the :class:`Reference` it is compared with, and the outcome.

A verdict's identity is typed: ``tier`` (:class:`Tier`), ``model``/``variant``/``scale``/``form``, ``dataset``
("" for model-level counts), ``metric`` (the measured metric's id, the same names the results table uses:
``params``, ``params_trainable``, ``macs_hr720p``, ``macs_ntire256``, ``psnr_y``, ``ssim_y``,
``psnr_rgb``, ``runtime_ms``) and the reference's ``kind``. Nothing is encoded in a label and parsed
back: :attr:`Verdict.label` is for people only.

Judging (:func:`judge`): no reference gives ``no published value`` in every tier, measured or not; with a
reference, a reason given as ``not_run`` (or no measurement) gives ``not run``; a low-confidence reference
(e.g. a value read off a plot) gives ``indicative``, never pass or fail; otherwise ``|measured − reference| ≤
tolerance`` passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.schema import Confidence, ReferenceKind, Status, Tier

CHECK_KEYS = (
    "tier",
    "model",
    "variant",
    "scale",
    "form",
    "dataset",
    "metric",
    "reference_kind",
    "reference_source",
)
"""A check's identity in the verdicts table, the same in every schema version: a re-run that measures the same
cell against the same reference adds a measurement of this check, never a new check."""


@dataclass(frozen=True)
class Reference:
    """A number from outside ReproSR: ``value`` in ``unit`` under ``convention``, from ``source``.

    ``text`` is the value as printed by the source ("49.40"), which fixes the rounding tolerance
    (:func:`rounds_to`); "" when the printed form is not known.
    """

    value: float
    source: str
    kind: ReferenceKind
    confidence: Confidence
    unit: str = ""
    convention: str = ""
    text: str = ""

    def scaled(self, factor: float) -> Reference:
        """The same reference in another unit (e.g. millions → a count): ``value × factor``."""
        return Reference(self.value * factor, self.source, self.kind, self.confidence, "", self.convention,
                         self.text)  # fmt: skip


@dataclass(frozen=True)
class Subject:
    """What is being judged: a model of a recipe in one tier, optionally on one benchmark set."""

    tier: Tier
    model: str
    variant: str
    scale: int
    form: str = ""
    dataset: str = ""


@dataclass
class Verdict:
    """One comparison. ``measured``/``tolerance`` are in the unit of ``reference`` (NaN when absent);
    ``n_runs``/``std``/``ci_low``/``ci_high`` describe repeated runs (0 / NaN for a single measurement)."""

    tier: Tier
    model: str
    variant: str
    scale: int
    dataset: str
    form: str
    metric: str
    measured: float
    reference: Reference | None
    tolerance: float
    status: Status
    reason: str = ""
    n_runs: int = 0
    std: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan

    @property
    def reference_value(self) -> float:
        return math.nan if self.reference is None else self.reference.value

    @property
    def delta(self) -> float:
        return self.measured - self.reference_value

    @property
    def label(self) -> str:
        """For people: ``"params [deploy] vs official code"``."""
        form = f" [{self.form}]" if self.form else ""
        versus = f" vs {self.reference.kind}" if self.reference is not None else ""
        return f"{self.metric}{form}{versus}"

    def as_dict(self) -> dict:
        """The CLI's JSON: the identity, ``measured``, ``reference`` (its value), ``source``,
        ``reference_kind``, ``reference_confidence``, ``unit``, ``tolerance``, ``delta``, ``status``,
        ``reason``, ``label``, ``n_runs``."""
        ref = self.reference
        return {
            "tier": self.tier,
            "model": self.model,
            "variant": self.variant,
            "scale": self.scale,
            "dataset": self.dataset,
            "form": self.form,
            "metric": self.metric,
            "label": self.label,
            "measured": self.measured,
            "reference": self.reference_value,
            "source": "" if ref is None else ref.source,
            "reference_kind": "" if ref is None else ref.kind,
            "reference_confidence": "" if ref is None else ref.confidence,
            "unit": "" if ref is None else ref.unit,
            "tolerance": self.tolerance,
            "delta": self.delta,
            "status": self.status,
            "reason": self.reason,
            "n_runs": self.n_runs,
        }


def verdict_row(v: Verdict, *, run_id: str, timestamp: str, profile: str, recipe: str, paper: str) -> dict:
    """The verdicts-table row (``harness/store.py``, schema v2) of one verdict."""
    ref = v.reference
    return {
        "run_id": run_id,
        "timestamp": timestamp,
        "profile": profile,
        "tier": str(v.tier),
        "recipe": recipe,
        "paper": paper,
        "model": v.model,
        "variant": v.variant,
        "form": v.form,
        "scale": v.scale,
        "dataset": v.dataset,
        "metric": v.metric,
        "measured": v.measured,
        "reference": v.reference_value,
        "reference_source": "" if ref is None else ref.source,
        "reference_kind": "" if ref is None else str(ref.kind),
        "reference_confidence": "" if ref is None else str(ref.confidence),
        "delta": v.delta,
        "tolerance": v.tolerance,
        "n_runs": v.n_runs,
        "std": v.std,
        "ci_low": v.ci_low,
        "ci_high": v.ci_high,
        "status": str(v.status),
        "reason": v.reason,
    }


def judge(
    subject: Subject,
    metric: str,
    measured: float | None,
    reference: Reference | None,
    tolerance: float,
    *,
    relative: bool = False,
    not_run: str = "",
) -> Verdict:
    """One verdict of ``metric`` on ``subject``. ``tolerance`` is absolute, or relative to the reference's
    value when ``relative``; the verdict records the absolute bound it used."""
    value = math.nan if measured is None else float(measured)

    def verdict(status: Status, reason: str, bound: float = tolerance) -> Verdict:
        return Verdict(subject.tier, subject.model, subject.variant, subject.scale, subject.dataset,
                       subject.form, metric, value, reference, bound, status, reason)  # fmt: skip

    if reference is None:
        return verdict(
            Status.NO_PUBLISHED_VALUE, "the sources hold no value for this; nothing to compare against"
        )
    bound = tolerance * abs(reference.value) if relative else tolerance
    if not_run or measured is None:
        return verdict(Status.NOT_RUN, not_run or "nothing was measured", bound)
    gap = abs(value - reference.value)
    ok = gap <= bound + 1e-12
    reason = f"|Δ| = {gap:.6g} {'≤' if ok else '>'} {bound:.6g}"
    if reference.confidence == Confidence.LOW:
        return verdict(
            Status.INDICATIVE,
            f"{reason}, but the reference has low confidence ({reference.convention or reference.source}): "
            "it can indicate, never pass or fail",
            bound,
        )
    return verdict(Status.PASS if ok else Status.FAIL, reason, bound)


def rounds_to(reference: float | str) -> float:
    """Tolerance meaning "equal once rounded to the reference's printed digits": 0.37 → ±0.005. Pass the
    value as written (a str) where trailing zeros matter ("49.40" → ±0.005)."""
    text = reference if isinstance(reference, str) else repr(float(reference))
    digits = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10.0**-digits


def format_verdicts(verdicts: list[Verdict]) -> str:
    """A plain-text verdict table, one row per verdict, then the counts per status."""
    head = ["tier", "model", "variant", "scale", "dataset", "check", "measured", "reference", "status", "why"]
    rows = [
        [
            v.tier,
            v.model,
            v.variant or "-",
            f"x{v.scale}",
            v.dataset or "-",
            v.label,
            "" if math.isnan(v.measured) else f"{v.measured:.6g}",
            "" if math.isnan(v.reference_value) else f"{v.reference_value:.6g}",
            v.status.upper(),
            v.reason,
        ]
        for v in verdicts
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    counts = {s: sum(v.status == s for v in verdicts) for s in Status}
    tail = ", ".join(f"{n} {s}" for s, n in counts.items())
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows), "", f"verdicts: {tail}"])
