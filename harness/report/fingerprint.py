"""The convention fingerprint of a number: the evaluation choices that change it.

A PSNR is only comparable with another PSNR made under the same colour space, border shave, rounding, LR
generator, inference mode, self-ensemble, precision and training data. Measured numbers take their fingerprint
from the store's columns; published numbers from :data:`PUBLISHED_STATEMENTS`, which says what each published
convention text states (everything it does not state is :data:`UNKNOWN`). Rankings compare only numbers with
equal fingerprints.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

UNKNOWN = "unknown"  # the source does not say
NOT_RECORDED = "not recorded"  # a store row older than the column (schema v1)
# Every metric the harness stores is computed on the SR output rounded to the uint8 grid (harness.metrics).
HARNESS_ROUNDING = "uint8"
COLORS = {"y": "Y (BT.601)", "rgb": "RGB"}
LR_GENERATORS = {"matlab_bicubic": "MATLAB bicubic"}


@dataclass(frozen=True)
class Fingerprint:
    color: str
    shave: str
    rounding: str
    lr: str
    inference: str
    ensemble: str
    precision: str
    training_data: str

    LABELS = {
        "color": "colour",
        "shave": "shave",
        "rounding": "rounding",
        "lr": "LR generator",
        "inference": "inference",
        "ensemble": "self-ensemble",
        "precision": "precision",
        "training_data": "training data",
    }

    def items(self) -> list[tuple[str, str]]:
        """(label, value) pairs in a fixed order."""
        return [(self.LABELS[f.name], getattr(self, f.name)) for f in fields(self)]

    def unknown(self) -> list[str]:
        """Labels of the fields whose value is unknown or not recorded."""
        return [label for label, value in self.items() if value in (UNKNOWN, NOT_RECORDED)]

    def text(self) -> str:
        return "; ".join(f"{label}: {value}" for label, value in self.items())

    def key(self) -> tuple[str, ...]:
        return astuple(self)


def measured(row, shave_is_scale: bool = False) -> Fingerprint:
    """The fingerprint of a measured results row (a pandas row or namedtuple with the v2 columns)."""
    inference = row.inference or NOT_RECORDED
    if inference == "tile" and row.tile:
        inference = f"tile {row.tile} px, overlap {row.tile_overlap} px"
    return Fingerprint(
        color=COLORS.get(row.color, row.color or NOT_RECORDED),
        shave=str(row.shave),
        rounding=HARNESS_ROUNDING,
        lr=LR_GENERATORS.get(row.degradation, row.degradation or NOT_RECORDED),
        inference=inference,
        ensemble="×8 (flips and rotations)" if row.self_ensemble else "none",
        precision=row.precision or NOT_RECORDED,
        training_data=row.training_data or NOT_RECORDED,
    )


# What each published convention text states; the fields it leaves out are unknown.
PUBLISHED_STATEMENTS: dict[str, dict[str, str]] = {
    "Y channel (BT.601, MATLAB), border shave = scale, SR rounded to uint8": {
        "color": COLORS["y"],
        "shave": "scale",
        "rounding": "uint8",
    },
}


def published(convention: str, scale: int) -> Fingerprint:
    """The fingerprint of a published number under its ``convention`` text at ``scale``."""
    stated = PUBLISHED_STATEMENTS.get(convention, {})
    values = {f.name: stated.get(f.name, UNKNOWN) for f in fields(Fingerprint)}
    if values["shave"] == "scale":
        values["shave"] = str(scale)
    return Fingerprint(**values)
