"""Soft-threshold (sparsemax) attention of HSPAN: PyTorch reference, Triton kernels, autograd wrapper.

`soft_threshold_attention(q, k, v)`: q (B, N, D), k (B, M, D), v (B, M, Dv) -> (B, N, Dv) with
`out[b, i] = sum_j sparsemax_j(q[b, i] . k[b, j]) v[b, j]`; scores are plain dot products (no scaling, no
heads), sparsemax is exact over all M keys. HSPAN's official top-k-128 operator widens k until the support
fits, so it equals this exact sparsemax (see ../shared/specs/fidelity-notes.md).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import use_triton

# Query rows per block in the reference: bounds its memory to ROW_BLOCK x M scores per batch item.
ROW_BLOCK = 256
# Triton tile: BLOCK_M queries x BLOCK_N keys; forward and backward share it, and so the tile-max table.
BLOCK_M = 64
BLOCK_N = 64


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 3:
            raise ValueError(
                f"soft_threshold_attention: {name} must be 3-D (B, tokens, dim), got {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"soft_threshold_attention: {name} must be floating point, got {t.dtype}")
    if not (q.device == k.device == v.device and q.dtype == k.dtype == v.dtype):
        raise ValueError(
            "soft_threshold_attention: q, k, v must share device and dtype, got "
            f"{q.device}/{q.dtype}, {k.device}/{k.dtype}, {v.device}/{v.dtype}"
        )
    (b, _, d), (bk, m, dk), (bv, mv, _) = q.shape, k.shape, v.shape
    if not b == bk == bv:
        raise ValueError(f"soft_threshold_attention: batch sizes differ: q {b}, k {bk}, v {bv}")
    if d != dk:
        raise ValueError(f"soft_threshold_attention: q has D={d} but k has D={dk}; they must match")
    if m != mv:
        raise ValueError(f"soft_threshold_attention: k has M={m} keys but v has {mv}; they must match")
    if m == 0:
        raise ValueError("soft_threshold_attention: need at least one key (M >= 1)")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"soft_threshold_attention: {name} holds NaN or Inf; check the features fed to the attention"
            )


def sparsemax_threshold(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact sparsemax threshold over the last dim: returns (tau, support_size), each s.shape[:-1] + (1,).

    sparsemax(s) = max(s - tau, 0); support = {s > tau}; tau = (sum_support s - 1) / |support|.
    """
    z, _ = torch.sort(s, dim=-1, descending=True)
    cs = z.cumsum(-1)
    rank = torch.arange(1, s.shape[-1] + 1, device=s.device, dtype=s.dtype)
    support = (1 + rank * z > cs).sum(-1, keepdim=True)
    tau = (cs.gather(-1, support - 1) - 1) / support.to(s.dtype)
    return tau, support


def _row_blocks(n: int):
    return ((i, min(i + ROW_BLOCK, n)) for i in range(0, n, ROW_BLOCK))


def _overflow(dtype: torch.dtype) -> FloatingPointError:
    return FloatingPointError(
        f"soft_threshold_attention: q·k overflows {dtype} (finite inputs, infinite scores); the embeddings "
        "are out of range: check the model's weights, or run in float64"
    )


def reference_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference forward in row blocks: returns (out (B,N,Dv), tau (B,N), support_size (B,N) int32).

    Computes in q's dtype, raised to at least float32; `out` is cast back to q's dtype.
    """
    work = torch.promote_types(q.dtype, torch.float32)
    qw, kw, vw = q.to(work), k.to(work), v.to(work)
    b, n, _ = q.shape
    out = q.new_empty(b, n, v.shape[-1], dtype=work)
    tau = q.new_empty(b, n, dtype=work)
    support = q.new_empty(b, n, dtype=torch.int32)
    for i0, i1 in _row_blocks(n):
        s = qw[:, i0:i1] @ kw.transpose(1, 2)
        if not torch.isfinite(s.amax()):
            raise _overflow(work)
        # Sort the max-shifted scores as the official operator does, so the cumsum stays small.
        row_max = s.amax(-1, keepdim=True)
        t, sup = sparsemax_threshold(s - row_max)
        t = t + row_max
        out[:, i0:i1] = torch.clamp(s - t, min=0) @ vw
        tau[:, i0:i1] = t.squeeze(-1)
        support[:, i0:i1] = sup.squeeze(-1).to(torch.int32)
    return out.to(q.dtype), tau, support


def reference_backward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tau: torch.Tensor, dout: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference backward in row blocks, sparsemax Jacobian: returns (dq, dk, dv) in the inputs' dtype.

    With p = max(s - tau, 0), S = {p > 0} and g = dout . v_j: dS = [p > 0] (g - mean_S g),
    dq = dS k, dk = dS^T q, dv = p^T dout.
    """
    work = torch.promote_types(q.dtype, torch.float32)
    qw, kw, vw, tw, dw = q.to(work), k.to(work), v.to(work), tau.to(work), dout.to(work)
    dq, dk, dv = torch.empty_like(qw), torch.zeros_like(kw), torch.zeros_like(vw)
    for i0, i1 in _row_blocks(q.shape[1]):
        p = torch.clamp(qw[:, i0:i1] @ kw.transpose(1, 2) - tw[:, i0:i1, None], min=0)
        on = p > 0
        g = dw[:, i0:i1] @ vw.transpose(1, 2)
        mean = (g * on).sum(-1, keepdim=True) / on.sum(-1, keepdim=True).clamp(min=1)
        ds = torch.where(on, g - mean, 0)
        dq[:, i0:i1] = ds @ kw
        dk += ds.transpose(1, 2) @ qw[:, i0:i1]
        dv += p.transpose(1, 2) @ dw[:, i0:i1]
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


@triton.jit
def _fwd_kernel(
    Q,
    K,
    V,
    OUT,
    ROW_MAX,
    TAU,
    COUNT,
    VSUM,
    TILE_MAX,
    N,
    M,
    D,
    DV,
    D_PAD: tl.constexpr,
    DV_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    NEED_VSUM: tl.constexpr,
):
    qb = tl.program_id(0)
    b = tl.program_id(1)
    n_kb = (M + BLOCK_N - 1) // BLOCK_N
    offs_m = qb * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D_PAD)
    offs_dv = tl.arange(0, DV_PAD)
    row_ok = offs_m < N
    d_ok = offs_d[None, :] < D
    q = tl.load(Q + b * N * D + offs_m[:, None] * D + offs_d[None, :], mask=row_ok[:, None] & d_ok, other=0.0)
    k_base = K + b * M * D
    v_base = V + b * M * DV
    tmax_base = TILE_MAX + (b * tl.cdiv(N, BLOCK_M) + qb) * n_kb

    m = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    for kb in range(0, n_kb):
        offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
        k = tl.load(
            k_base + offs_n[:, None] * D + offs_d[None, :], mask=(offs_n[:, None] < M) & d_ok, other=0.0
        )
        s = tl.where(offs_n[None, :] < M, tl.dot(q, tl.trans(k), input_precision="ieee"), float("-inf"))
        m = tl.maximum(m, tl.max(s, 1))

    # Work in shifted scores u = s - m <= 0: the threshold x = tau - m lies in [-1, 0), and sums over the
    # support stay O(|S|) even when HSPAN's scores reach 1e3. First evaluation at x = -1 also fills the
    # tile-max table that lets every later pass skip tiles lying wholly below the threshold.
    count = tl.zeros((BLOCK_M,), tl.float32)
    total = tl.zeros((BLOCK_M,), tl.float32)
    for kb in range(0, n_kb):
        offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
        k = tl.load(
            k_base + offs_n[:, None] * D + offs_d[None, :], mask=(offs_n[:, None] < M) & d_ok, other=0.0
        )
        s = tl.where(offs_n[None, :] < M, tl.dot(q, tl.trans(k), input_precision="ieee"), float("-inf"))
        u = tl.where(row_ok[:, None], s - m[:, None], float("-inf"))
        tl.store(tmax_base + kb, tl.max(tl.max(u, 1), 0))
        on = u > -1.0
        count += tl.sum(on.to(tl.float32), 1)
        total += tl.sum(tl.where(on, u, 0.0), 1)
    # Rows past N get x = 0, above every u they see: they stay empty and finite.
    count = tl.where(row_ok, count, 1.0)
    x = tl.where(row_ok, (total - 1.0) / count, 0.0)

    # Michelot's iteration (Newton from the left on the convex f(x) = sum max(u - x, 0) - 1): x stays a
    # lower bound of the threshold, the support shrinks strictly until it is fixed, and then
    # x = (sum_S u - 1) / |S| is exact. Terminates in at most M passes; in practice a handful.
    go = tl.max(count, 0) > 0
    while go:
        x_min = tl.min(tl.where(row_ok, x, 0.0), 0)
        new_count = tl.zeros((BLOCK_M,), tl.float32)
        total = tl.zeros((BLOCK_M,), tl.float32)
        for kb in range(0, n_kb):
            if tl.load(tmax_base + kb) > x_min:
                offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
                k = tl.load(
                    k_base + offs_n[:, None] * D + offs_d[None, :],
                    mask=(offs_n[:, None] < M) & d_ok,
                    other=0.0,
                )
                s = tl.where(
                    offs_n[None, :] < M, tl.dot(q, tl.trans(k), input_precision="ieee"), float("-inf")
                )
                u = s - m[:, None]
                on = u > x[:, None]
                new_count += tl.sum(on.to(tl.float32), 1)
                total += tl.sum(tl.where(on, u, 0.0), 1)
        shrunk = (new_count < count) & row_ok
        x = tl.where(shrunk, (total - 1.0) / tl.maximum(new_count, 1.0), x)
        count = tl.where(shrunk, new_count, count)
        go = tl.max(shrunk.to(tl.int32), 0) > 0

    x_min = tl.min(tl.where(row_ok, x, 0.0), 0)
    acc = tl.zeros((BLOCK_M, DV_PAD), tl.float32)
    vsum = tl.zeros((BLOCK_M, DV_PAD), tl.float32)
    for kb in range(0, n_kb):
        if tl.load(tmax_base + kb) > x_min:
            offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
            k = tl.load(
                k_base + offs_n[:, None] * D + offs_d[None, :], mask=(offs_n[:, None] < M) & d_ok, other=0.0
            )
            s = tl.where(offs_n[None, :] < M, tl.dot(q, tl.trans(k), input_precision="ieee"), float("-inf"))
            u = s - m[:, None]
            v = tl.load(
                v_base + offs_n[:, None] * DV + offs_dv[None, :],
                mask=(offs_n[:, None] < M) & (offs_dv[None, :] < DV),
                other=0.0,
            )
            p = tl.maximum(u - x[:, None], 0.0)
            acc += tl.dot(p.to(v.dtype), v, input_precision="ieee")
            if NEED_VSUM:
                vsum += tl.dot((p > 0).to(v.dtype), v, input_precision="ieee")

    out_offs = b * N * DV + offs_m[:, None] * DV + offs_dv[None, :]
    out_mask = row_ok[:, None] & (offs_dv[None, :] < DV)
    tl.store(OUT + out_offs, acc.to(OUT.dtype.element_ty), mask=out_mask)
    if NEED_VSUM:
        tl.store(VSUM + out_offs, vsum, mask=out_mask)
    tl.store(ROW_MAX + b * N + offs_m, m, mask=row_ok)
    tl.store(TAU + b * N + offs_m, x, mask=row_ok)
    tl.store(COUNT + b * N + offs_m, count, mask=row_ok)


@triton.jit
def _bwd_dq_kernel(
    Q,
    K,
    V,
    DOUT,
    ROW_MAX,
    TAU,
    MEAN_G,
    TILE_MAX,
    DQ,
    N,
    M,
    D,
    DV,
    D_PAD: tl.constexpr,
    DV_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    qb = tl.program_id(0)
    b = tl.program_id(1)
    n_kb = (M + BLOCK_N - 1) // BLOCK_N
    offs_m = qb * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D_PAD)
    offs_dv = tl.arange(0, DV_PAD)
    row_ok = offs_m < N
    d_ok = offs_d[None, :] < D
    q = tl.load(Q + b * N * D + offs_m[:, None] * D + offs_d[None, :], mask=row_ok[:, None] & d_ok, other=0.0)
    do = tl.load(
        DOUT + b * N * DV + offs_m[:, None] * DV + offs_dv[None, :],
        mask=row_ok[:, None] & (offs_dv[None, :] < DV),
        other=0.0,
    )
    m = tl.load(ROW_MAX + b * N + offs_m, mask=row_ok, other=0.0)
    x = tl.load(TAU + b * N + offs_m, mask=row_ok, other=0.0)
    mean_g = tl.load(MEAN_G + b * N + offs_m, mask=row_ok, other=0.0)
    x_min = tl.min(x, 0)
    k_base = K + b * M * D
    v_base = V + b * M * DV
    tmax_base = TILE_MAX + (b * tl.cdiv(N, BLOCK_M) + qb) * n_kb
    dq = tl.zeros((BLOCK_M, D_PAD), tl.float32)
    for kb in range(0, n_kb):
        if tl.load(tmax_base + kb) > x_min:
            offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
            k = tl.load(
                k_base + offs_n[:, None] * D + offs_d[None, :], mask=(offs_n[:, None] < M) & d_ok, other=0.0
            )
            s = tl.where(offs_n[None, :] < M, tl.dot(q, tl.trans(k), input_precision="ieee"), float("-inf"))
            u = s - m[:, None]
            v = tl.load(
                v_base + offs_n[:, None] * DV + offs_dv[None, :],
                mask=(offs_n[:, None] < M) & (offs_dv[None, :] < DV),
                other=0.0,
            )
            g = tl.dot(do, tl.trans(v), input_precision="ieee")
            ds = tl.where(u > x[:, None], g - mean_g[:, None], 0.0)
            dq += tl.dot(ds.to(k.dtype), k, input_precision="ieee")
    tl.store(
        DQ + b * N * D + offs_m[:, None] * D + offs_d[None, :],
        dq.to(DQ.dtype.element_ty),
        mask=row_ok[:, None] & (offs_d[None, :] < D),
    )


@triton.jit
def _bwd_dkv_kernel(
    Q,
    K,
    V,
    DOUT,
    ROW_MAX,
    TAU,
    MEAN_G,
    TILE_MAX,
    DK,
    DV_OUT,
    N,
    M,
    D,
    DV,
    D_PAD: tl.constexpr,
    DV_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    kb = tl.program_id(0)
    b = tl.program_id(1)
    n_kb = (M + BLOCK_N - 1) // BLOCK_N
    offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D_PAD)
    offs_dv = tl.arange(0, DV_PAD)
    key_ok = offs_n < M
    k = tl.load(
        K + b * M * D + offs_n[:, None] * D + offs_d[None, :],
        mask=key_ok[:, None] & (offs_d[None, :] < D),
        other=0.0,
    )
    v = tl.load(
        V + b * M * DV + offs_n[:, None] * DV + offs_dv[None, :],
        mask=key_ok[:, None] & (offs_dv[None, :] < DV),
        other=0.0,
    )
    dk = tl.zeros((BLOCK_N, D_PAD), tl.float32)
    dv = tl.zeros((BLOCK_N, DV_PAD), tl.float32)
    for qb in range(0, (N + BLOCK_M - 1) // BLOCK_M):
        offs_m = qb * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = offs_m < N
        x = tl.load(TAU + b * N + offs_m, mask=row_ok, other=0.0)
        if tl.load(TILE_MAX + (b * tl.cdiv(N, BLOCK_M) + qb) * n_kb + kb) > tl.min(x, 0):
            q = tl.load(
                Q + b * N * D + offs_m[:, None] * D + offs_d[None, :],
                mask=row_ok[:, None] & (offs_d[None, :] < D),
                other=0.0,
            )
            do = tl.load(
                DOUT + b * N * DV + offs_m[:, None] * DV + offs_dv[None, :],
                mask=row_ok[:, None] & (offs_dv[None, :] < DV),
                other=0.0,
            )
            m = tl.load(ROW_MAX + b * N + offs_m, mask=row_ok, other=0.0)
            mean_g = tl.load(MEAN_G + b * N + offs_m, mask=row_ok, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
            u = tl.where(key_ok[None, :], s, float("-inf")) - m[:, None]
            on = (u > x[:, None]) & row_ok[:, None]
            p = tl.where(on, u - x[:, None], 0.0)
            g = tl.dot(do, tl.trans(v), input_precision="ieee")
            ds = tl.where(on, g - mean_g[:, None], 0.0)
            dk += tl.dot(tl.trans(ds).to(q.dtype), q, input_precision="ieee")
            dv += tl.dot(tl.trans(p).to(do.dtype), do, input_precision="ieee")
    tl.store(
        DK + b * M * D + offs_n[:, None] * D + offs_d[None, :],
        dk.to(DK.dtype.element_ty),
        mask=key_ok[:, None] & (offs_d[None, :] < D),
    )
    tl.store(
        DV_OUT + b * M * DV + offs_n[:, None] * DV + offs_dv[None, :],
        dv.to(DV_OUT.dtype.element_ty),
        mask=key_ok[:, None] & (offs_dv[None, :] < DV),
    )


def _empty(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer a kernel writes comes from here (tests wrap it to catch out-of-bounds writes)."""
    return torch.empty(*shape, dtype=dtype, device=device)


def _pads(d: int, dv: int) -> tuple[int, int]:
    # tl.arange needs powers of two and tl.dot inner sizes of at least 16.
    return max(16, triton.next_power_of_2(d)), max(16, triton.next_power_of_2(dv))


def triton_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, need_backward: bool
) -> tuple[torch.Tensor, ...]:
    """Fused forward: returns (out, row_max, tau, count, vsum, tile_max); tau is shifted: threshold - row_max.

    Memory O((N + M) D): scores are recomputed per tile, never stored. `vsum` (sum of v over each row's
    support, needed for the backward's mean) is only filled when `need_backward`.
    """
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    (b, n, d), m, dv = q.shape, k.shape[1], v.shape[2]
    d_pad, dv_pad = _pads(d, dv)
    f32 = dict(device=q.device, dtype=torch.float32)
    out = _empty(b, n, dv, device=q.device, dtype=q.dtype)
    row_max, tau, count = (_empty(b, n, **f32) for _ in range(3))
    vsum = _empty(b, n, dv, **f32) if need_backward else _empty(0, **f32)
    tile_max = _empty(b, triton.cdiv(n, BLOCK_M), triton.cdiv(m, BLOCK_N), **f32)
    _fwd_kernel[(triton.cdiv(n, BLOCK_M), b)](
        q,
        k,
        v,
        out,
        row_max,
        tau,
        count,
        vsum,
        tile_max,
        n,
        m,
        d,
        dv,
        D_PAD=d_pad,
        DV_PAD=dv_pad,
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        NEED_VSUM=need_backward,
    )
    return out, row_max, tau, count, vsum, tile_max


def triton_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dout: torch.Tensor,
    row_max: torch.Tensor,
    tau: torch.Tensor,
    count: torch.Tensor,
    vsum: torch.Tensor,
    tile_max: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused backward from `triton_forward`'s saved state: returns (dq, dk, dv)."""
    q, k, v, dout = q.contiguous(), k.contiguous(), v.contiguous(), dout.contiguous()
    (b, n, d), m, dv = q.shape, k.shape[1], v.shape[2]
    d_pad, dv_pad = _pads(d, dv)
    # mean over the support of g_j = dout . v_j is dout . (sum_S v_j) / |S|: no extra pass over the keys.
    mean_g = (dout.float() * vsum).sum(-1) / count
    dq, dk, dvv = (_empty(*t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
    args = (n, m, d, dv)
    meta = dict(D_PAD=d_pad, DV_PAD=dv_pad, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N)
    _bwd_dq_kernel[(triton.cdiv(n, BLOCK_M), b)](
        q, k, v, dout, row_max, tau, mean_g, tile_max, dq, *args, **meta
    )
    _bwd_dkv_kernel[(triton.cdiv(m, BLOCK_N), b)](
        q, k, v, dout, row_max, tau, mean_g, tile_max, dk, dvv, *args, **meta
    )
    return dq, dk, dvv


class SoftThresholdAttentionFunction(torch.autograd.Function):
    """Autograd op: CUDA -> Triton kernels; CPU -> reference (Triton under `TRITON_INTERPRET=1`)."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        ctx.triton = use_triton(q, _fwd_kernel, "soft_threshold_attention")
        if ctx.triton:
            out, *state = triton_forward(q, k, v, need_backward=any(ctx.needs_input_grad))
            if not torch.isfinite(state[0]).all():  # inputs were checked finite: the scores overflowed
                raise _overflow(torch.float32)
        else:
            out, tau, _ = reference_forward(q, k, v)
            state = [tau]
        ctx.save_for_backward(q, k, v, *state)
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        q, k, v, *state = ctx.saved_tensors
        if ctx.triton:
            return triton_backward(q, k, v, dout, *state)
        return reference_backward(q, k, v, state[0], dout)


def soft_threshold_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSPAN attention: q (B,N,D), k (B,M,D), v (B,M,Dv) -> (B,N,Dv), sparsemax over the M dot products."""
    _check_inputs(q, k, v)
    return SoftThresholdAttentionFunction.apply(q, k, v)


def macs(B: int, N: int, M: int, D: int, Dv: int) -> int:
    """Multiply-accumulates of the op: the score matmul (N x M x D) and the value matmul (N x M x Dv)."""
    return B * N * M * (D + Dv)
