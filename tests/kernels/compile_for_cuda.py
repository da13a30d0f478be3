"""Compile the soft-threshold kernels for a CUDA target without a GPU (Triton's bundled ptxas).

    python tests/kernels/compile_for_cuda.py [SM]      # default 90 (H100/H200)

Catches what the interpreter cannot: type errors of loop-carried values, constexpr branches, shared
memory over the limit. Must run with TRITON_INTERPRET unset (the kernels must be `triton.jit` functions).
"""

from __future__ import annotations

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kernels import soft_threshold as st_mod

# A typical autotuner pick at HSPAN's widths (D = 96 split 64 + 32, Dv = 192 split 128 + 64); the
# largest tiles (128 x 64, fp32) take ptxas minutes.
SHAPE = st_mod._pads(96, 192) | dict(BLOCK_M=64, BLOCK_N=64)


def _compile(kernel, pointers: dict[str, str], constexprs: dict, target: GPUTarget, num_warps: int):
    names = kernel.arg_names
    signature = {name: pointers.get(name, "i32") for name in names}
    signature.update(dict.fromkeys(constexprs, "constexpr"))
    source = ASTSource(
        fn=kernel, signature=signature, constexprs={(names.index(k),): v for k, v in constexprs.items()}
    )
    return triton.compile(source, target=target, options=dict(num_warps=num_warps, num_stages=2))


def main(sm: int) -> int:
    target = GPUTarget("cuda", sm, 32)
    for dtype, precision in (("fp32", "ieee"), ("fp32", "tf32"), ("bf16", "tf32"), ("fp16", "tf32")):
        data = {name: "*" + dtype for name in ("Q", "K", "V", "OUT", "DOUT", "DQ", "DK", "DV_OUT")}
        stats = {name: "*fp32" for name in ("ROW_MAX", "TAU", "COUNT", "VSUM", "TILE_MAX", "MEAN_G")}
        lists = {name: "*i32" for name in ("LIVE", "N_LIVE", "DONE", "QB_LIST", "QB_COUNT")}
        pointers = data | stats | lists
        meta = SHAPE | dict(DOT_PRECISION=precision)
        for fallback in (False, True):
            flags = dict(NEED_VSUM=True, FALLBACK=fallback)
            kernel = _compile(st_mod._fwd_kernel, pointers, meta | flags, target, 8)
            print(
                f"sm_{sm} {dtype}/{precision} forward fallback={fallback}: shared {kernel.metadata.shared} B"
            )
        for bwd in (st_mod._bwd_dq_kernel, st_mod._bwd_dkv_kernel):
            kernel = _compile(bwd, pointers, meta, target, 8)
            print(f"sm_{sm} {dtype}/{precision} {bwd.__name__}: shared {kernel.metadata.shared} B")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 90))
