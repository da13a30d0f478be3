"""BasicSR's reference functions, imported from a BasicSR source tree outside the repository.

BasicSR's package ``__init__`` imports its whole training stack; the benchmarks need only
``basicsr/utils/matlab_functions.py`` (``imresize``) and ``basicsr/metrics/psnr_ssim.py``
(``calculate_psnr``, ``calculate_ssim``, which need OpenCV), so those files are loaded by path under
stand-in parent packages. Point ``--basicsr`` or ``$REPROSR_BASICSR`` at the folder holding ``basicsr/``
(e.g. the unpacked ``pip download basicsr --no-deps`` sdist, or a clone of XPixelGroup/BasicSR).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

ENV = "REPROSR_BASICSR"


def datasets_root() -> Path | None:
    """Set5/Set14 for the benchmarks: ``$REPROSR_TEST_DATASETS``, else ``shared/datasets`` beside the
    checkout; None when neither holds Set5."""
    env = os.environ.get("REPROSR_TEST_DATASETS")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return root if (root / "Set5" / "HR").is_dir() else None


def source_root(given: Path | None) -> Path | None:
    """The BasicSR source folder from the argument or ``$REPROSR_BASICSR``; None when neither is set."""
    root = given or (Path(os.environ[ENV]) if os.environ.get(ENV) else None)
    if root is not None and not (root / "basicsr" / "metrics" / "psnr_ssim.py").is_file():
        raise SystemExit(f"error: {root} holds no basicsr/metrics/psnr_ssim.py (a BasicSR source tree)")
    return root


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _packages(root: Path) -> Path:
    pkg = root / "basicsr"
    for name in ("basicsr", "basicsr.utils", "basicsr.metrics"):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(pkg / name.partition(".")[2].replace(".", "/"))]
            sys.modules[name] = module
    return pkg


def version(root: Path) -> str:
    version_file = root / "basicsr" / "version.py"
    if not version_file.is_file():
        return "unknown"
    return getattr(_load("basicsr.version", version_file), "__version__", "unknown")


def imresize(root: Path):
    """BasicSR's ``basicsr.utils.matlab_functions.imresize`` (torch only)."""
    return _load("basicsr.utils.matlab_functions", _packages(root) / "utils" / "matlab_functions.py").imresize


def psnr_ssim(root: Path) -> types.ModuleType:
    """BasicSR's ``basicsr.metrics.psnr_ssim`` (``calculate_psnr``, ``calculate_ssim``; needs OpenCV)."""
    pkg = _packages(root)
    color = _load("basicsr.utils.color_util", pkg / "utils" / "color_util.py")
    sys.modules["basicsr.utils"].bgr2ycbcr = color.bgr2ycbcr
    _load("basicsr.utils.registry", pkg / "utils" / "registry.py")
    _load("basicsr.metrics.metric_util", pkg / "metrics" / "metric_util.py")
    return _load("basicsr.metrics.psnr_ssim", pkg / "metrics" / "psnr_ssim.py")
