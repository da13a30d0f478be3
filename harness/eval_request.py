"""`reprosr eval`'s request as a typed value, from the command line or a TOML file, checked before anything
heavy is imported (this module imports no torch)."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UserError
from harness.schema import Precision


@dataclass(frozen=True)
class EvalRequest:
    """What `reprosr eval` evaluates and how. ``model`` None: detected from the checkpoint's tensors;
    ``inference`` None: the paper's own test-time procedure (``tile`` when a tile size is given)."""

    checkpoint: str
    datasets: tuple[str, ...]
    model: str | None = None
    variant: str | None = None
    scale: int | None = None
    form: str | None = None
    param_key: str | None = None
    data_root: Path | None = None
    hr_dir: Path | None = None  # free HR/LR folders (BasicSR's dataroot_gt / dataroot_lq): one set
    lr_dir: Path | None = None
    filename_tmpl: str = "{}"  # LR file name from the HR stem, e.g. "{}x4"
    inference: str | None = None
    tile: int = 0
    tile_overlap: int | None = None  # None: the model's measured receptive field (harness.tiles)
    tile_mode: str = "crop"  # crop | average
    self_ensemble: bool = False
    precision: str = "fp32"
    device: str = "auto"
    runtime_warmup: int | None = None
    runtime_repeats: int | None = None
    save_sr: Path | None = None
    ntire_report: Path | None = None  # write NTIRE's results.txt table (statistics of test_demo.py) here
    store: bool = True
    config_text: str = field(default="", compare=False)  # the TOML it came from, stored with the run

    @classmethod
    def from_toml(cls, path: Path, **overrides) -> EvalRequest:
        """A request from a TOML file whose keys are this class's fields (``datasets`` a list of names);
        ``overrides`` (options given on the command line) win. Unknown keys and wrong types are refused,
        naming the file and the key."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            table = tomllib.loads(text)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UserError(f"{path}: not a readable TOML evaluation config ({exc})") from None
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "config_text"}
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise UserError(f"{path}: unknown keys {unknown}; an evaluation config takes {sorted(known)}")
        values = {**table, **{k: v for k, v in overrides.items() if v is not None}}
        for key in ("checkpoint", "datasets"):
            if key not in values:
                raise UserError(f"{path}: `{key}` is required")
        if isinstance(values["datasets"], str):
            values["datasets"] = [values["datasets"]]
        for key in ("data_root", "save_sr", "ntire_report", "hr_dir", "lr_dir"):
            if values.get(key) is not None:
                values[key] = (
                    (path.parent / values[key]) if not Path(values[key]).is_absolute() else values[key]
                )
        beside = path.parent / str(values["checkpoint"])
        if overrides.get("checkpoint") is None and beside.exists():  # a file named relative to the config
            values["checkpoint"] = str(beside)
        values["datasets"] = tuple(values["datasets"])
        request = cls(**values, config_text=text)
        request.check(str(path))
        return request

    def check(self, where: str = "eval") -> None:
        """Types and ranges of every field (a UserError naming ``where`` and the field)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "tile_overlap" and value is None:
                continue
            if f.name in ("tile", "tile_overlap") and (not isinstance(value, int) or value < 0):
                raise UserError(f"{where}: `{f.name}` must be an integer >= 0, not {value!r}")
            if f.name in ("self_ensemble", "store") and not isinstance(value, bool):
                raise UserError(f"{where}: `{f.name}` must be true or false, not {value!r}")
        if not self.datasets or not all(isinstance(d, str) and d for d in self.datasets):
            raise UserError(f"{where}: `datasets` must name at least one set, not {self.datasets!r}")
        if self.scale is not None and (not isinstance(self.scale, int) or self.scale < 1):
            raise UserError(f"{where}: `scale` must be a positive integer, not {self.scale!r}")
        if (self.hr_dir is None) != (self.lr_dir is None):
            raise UserError(f"{where}: free folders need both `hr_dir` and `lr_dir`")
        if self.hr_dir is not None and len(self.datasets) != 1:
            raise UserError(f"{where}: free folders are one set: give one name in `datasets` (its label)")
        if "{}" not in self.filename_tmpl:
            raise UserError(f"{where}: `filename_tmpl` must contain {{}} (the HR stem), e.g. '{{}}x4'")
        if self.tile_mode not in ("crop", "average"):
            raise UserError(f"{where}: `tile_mode` must be crop or average, not {self.tile_mode!r}")
        if self.precision not in [str(p) for p in Precision]:
            raise UserError(f"{where}: `precision` must be one of {[str(p) for p in Precision]}")
