"""The compiled MATLAB-bicubic kernel (degrade_kernel.c): built with the system C compiler at first use,
cached per user, called through ctypes on tensor memory.

Build: `$CC` (else `cc`, `gcc` or `clang` on the PATH) with FLAGS into
`$XDG_CACHE_HOME/reprosr/kernels` (else `~/.cache/reprosr/kernels`), named by a hash of the source, the
flags, the compiler's version and the CPU (-march=native code runs only where it was built), written
through harness.files.atomic_file so that processes compiling at once each leave a whole file. Set
REPROSR_NO_C_KERNEL=1 to skip it. When no compiler is found or the build or load fails, `kernel()` is
None, one note says why on stderr, and harness.degrade computes with torch instead: the same bits.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from harness.files import atomic_file

SOURCE = Path(__file__).with_name("degrade_kernel.c")
# -ffp-contract=off: no fused multiply-add in the exact recompute (MATLAB rounds each product before the
# add; the float32 pass opts back in, its error bound holds either way); no -ffast-math: no reassociation
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-std=gnu99", "-shared", "-fPIC")
DISABLE_ENV = "REPROSR_NO_C_KERNEL"
_DST_KINDS = {torch.uint8: 0, torch.float32: 1, torch.float64: 2}  # the kernel's dst_kind
NON_FINITE = "the image holds NaN or Inf: MATLAB bicubic degradation needs finite values"
_ARGTYPES = (
    [ctypes.c_void_p, ctypes.c_int]
    + [ctypes.c_int64] * 9
    + [ctypes.POINTER(ctypes.c_double), ctypes.c_double, ctypes.c_double, ctypes.c_void_p, ctypes.c_int]
)


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/reprosr/kernels`, else `~/.cache/reprosr/kernels`."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "reprosr" / "kernels"


def _compiler() -> list[str]:
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    for name in ("cc", "gcc", "clang"):
        if path := shutil.which(name):
            return [path]
    raise RuntimeError("no C compiler found (set $CC or install gcc)")


def _cpu() -> str:
    """What -march=native depends on: the CPU model and its feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    return "\n".join([platform.machine(), platform.processor(), *dict.fromkeys(wanted)])


def _build() -> Path:
    """The cached shared library, compiled first if absent. Raises on any failure."""
    cc = _compiler()
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"the C compiler {shlex.join(cc)} does not run: {e}") from e
    source = SOURCE.read_bytes()
    parts = [source, " ".join(FLAGS).encode(), version.stdout.encode(), _cpu().encode()]
    key = hashlib.sha256(b"\0".join(parts))
    target = cache_dir() / f"degrade_kernel-{key.hexdigest()[:20]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reprosr-cc-") as tmp:
        built = Path(tmp) / "kernel.so"
        try:
            command = [*cc, *FLAGS, "-o", str(built), str(SOURCE), "-lm"]
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            raise RuntimeError(f"{shlex.join(cc)} failed: {e}") from e
        if result.returncode != 0 or not built.is_file():
            message = result.stderr.strip()[-500:]
            raise RuntimeError(f"{shlex.join(cc)} failed (exit {result.returncode}): {message}")
        try:
            ctypes.CDLL(str(built))  # a library that does not load is never cached
        except OSError as e:
            raise RuntimeError(f"{shlex.join(cc)} built a library that does not load: {e}") from e
        with atomic_file(target) as f:
            f.write(built.read_bytes())
    return target


@functools.cache
def kernel() -> ctypes.CDLL | None:
    """The loaded kernel, or None (REPROSR_NO_C_KERNEL set, or no working compiler: noted once on
    stderr). Cached per process: call `kernel.cache_clear()` after changing the environment."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    try:
        library = ctypes.CDLL(str(_build()))
        function = library.reprosr_bicubic_downsample
    except (OSError, RuntimeError, AttributeError) as e:
        print(
            f"note: MATLAB-bicubic degradation uses the slower torch path (no C kernel: {e})",
            file=sys.stderr,
        )
        return None
    function.argtypes, function.restype = _ARGTYPES, ctypes.c_int
    return library


def downsample(
    x: Tensor, s: int, offset: int, weights: Tensor, tol: float, bound: float, out_dtype: torch.dtype
) -> Tensor:
    """MATLAB's uint8 bicubic downscaling of x (n, H, W) (float32 or float64 on the CPU, any strides) by the
    integer factor s, as the levels (out_dtype uint8) or level/255 in out_dtype (float32, divided in
    float32, or float64): input pixel
    s·j + offset + k has weight weights[k] (float64) in output pixel j; inputs within tol of a level k/255
    are that level (im2double); bound: the largest error in levels of a float32 pass over inputs in
    [-1, 1] (degrade._error_bound). Returns a contiguous (n, ceil(H/s), ceil(W/s)) tensor; raises
    ValueError when x holds NaN or Inf.
    """
    library = kernel()
    if library is None:
        raise RuntimeError("the C kernel is not available: check harness.degrade_c.kernel() first")
    if x.dtype not in (torch.float32, torch.float64) or x.device.type != "cpu":
        raise TypeError(f"the C kernel takes float32 or float64 CPU tensors, got {x.dtype} on {x.device}")
    if out_dtype not in _DST_KINDS:
        raise TypeError(f"the C kernel writes uint8, float32 or float64, not {out_dtype}")
    n, h, w = x.shape
    out = torch.empty(n, -(-h // s), -(-w // s), dtype=out_dtype)
    weights = weights.to(torch.float64).contiguous()
    status = library.reprosr_bicubic_downsample(
        x.data_ptr(),
        int(x.dtype == torch.float64),
        n,
        h,
        w,
        *x.stride(),
        s,
        weights.numel(),
        offset,
        ctypes.cast(weights.data_ptr(), ctypes.POINTER(ctypes.c_double)),
        tol,
        bound,
        out.data_ptr(),
        _DST_KINDS[out_dtype],
    )
    if status == 2:
        raise ValueError(NON_FINITE)
    if status != 0:
        raise MemoryError("the C bicubic kernel could not allocate its row buffers")
    return out
