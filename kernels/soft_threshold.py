"""Soft-threshold (sparsemax) attention of HSPAN: PyTorch reference, Triton kernels, autograd wrapper.

`soft_threshold_attention(q, k, v)`: q (B, N, D), k (B, M, D), v (B, M, Dv) -> (B, N, Dv) with
`out[b, i] = sum_j sparsemax_j(q[b, i] . k[b, j]) v[b, j]`; scores are plain dot products (no scaling, no
heads), sparsemax is exact over all M keys. HSPAN's official top-k-128 operator widens k until the support
fits, so it equals this exact sparsemax (see ../shared/specs/fidelity-notes.md).

Precision of the Triton path: bf16/fp16 inputs go to tensor cores with fp32 accumulation (probabilities and
gradients are rounded to the input dtype before their matmuls, as flash attention does); fp32 inputs use
IEEE fp32 dot products, or TF32 when `tf32=True` (default: `torch.backends.cuda.matmul.allow_tf32`). The
threshold search (row max, support, threshold) is fp32 throughout. float64 always takes the reference.

Checks: shapes and dtypes are checked on every call. Values (NaN/Inf inputs, fp32 overflow of q.k) are
checked, with a clear error, on the reference path (CPU, float64), and on the Triton path only in the debug
mode of `kernels.dispatch.device_checks` (PyTorch's anomaly mode or REPROSR_KERNEL_CHECKS=1), since each check
costs a device->host sync; outside it non-finite values give NaN rows.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from kernels.dispatch import device_checks, use_triton

# Query rows per block in the reference: bounds its memory to ROW_BLOCK x M scores per batch item.
ROW_BLOCK = 256
# First top-k width of the reference's threshold search (the official operator's), doubled while the
# support fills it.
TOPK = 128
# Michelot passes the forward kernel makes before handing a query block to the exact fallback kernel.
MAX_ITERS = 8
# Autotuning (block sizes, warps, stages) on a GPU; the interpreter gets one configuration.
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
FWD_CONFIGS = (
    [(32, 32, 4, 1)]
    if INTERPRETING
    else [
        (bm, bn, w, st)
        for bm, bn, w in ((64, 64, 4), (64, 64, 8), (128, 64, 8), (64, 32, 4), (128, 32, 8), (32, 64, 4))
        for st in (1, 2, 3)
    ]
)
BWD_CONFIGS = [(4, 1)] if INTERPRETING else [(w, st) for w in (4, 8) for st in (1, 2, 3)]
MIN_BLOCK_M = min(c[0] for c in FWD_CONFIGS)
MIN_BLOCK_N = min(c[1] for c in FWD_CONFIGS)


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


def _check_finite(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        # a finite sum (one fast pass) proves every element finite; a sum of finite values can overflow,
        # so only an infinite sum is checked element by element
        if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"soft_threshold_attention: {name} holds NaN or Inf; check the features fed to the attention"
            )


def sparsemax_threshold(s: torch.Tensor, topk: int = TOPK) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact sparsemax threshold over the last dim: returns (tau, support_size), each s.shape[:-1] + (1,).

    sparsemax(s) = max(s - tau, 0); support = {s > tau}; tau = (sum_support s - 1) / |support|. Searches
    the top `topk` scores of each row and doubles k for the rows whose support fills it, as the official
    operator does; rows of at most k scores are sorted whole.
    """
    rows = s.reshape(-1, s.shape[-1])
    tau = rows.new_empty(rows.shape[0])
    support = torch.empty(rows.shape[0], dtype=torch.long, device=s.device)
    todo, sub, k = None, rows, topk
    while True:
        kk = min(k, rows.shape[-1])
        z = sub.topk(kk, dim=-1).values if kk < rows.shape[-1] else sub.sort(-1, descending=True).values
        cs = z.cumsum(-1)
        rank = torch.arange(1, kk + 1, device=s.device, dtype=s.dtype)
        sup = (1 + rank * z > cs).sum(-1)
        t = (cs.gather(-1, (sup - 1)[:, None]).squeeze(-1) - 1) / sup.to(s.dtype)
        if todo is None:
            tau, support = t, sup
        else:
            tau[todo], support[todo] = t, sup
        unsolved = sup == kk
        if kk == rows.shape[-1] or not bool(unsolved.any()):
            break
        todo = unsolved.nonzero().squeeze(-1) if todo is None else todo[unsolved]
        sub, k = rows[todo], 2 * k
    shape = (*s.shape[:-1], 1)
    return tau.view(shape), support.view(shape)


def michelot_threshold(s: torch.Tensor, max_iters: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact sparsemax threshold of rows whose max is 0, s (R, M) → (tau, support_size), each (R, 1).

    Michelot's iteration from the lower bound tau = −1 (Σ_j max(s_j − tau, 0) ≥ −tau, so tau* ≥ −1):
    S = {s > tau}, tau ← (Σ_S s − 1) / |S| rises monotonically to tau* and stops when S stops shrinking;
    each pass is four vectorised elementwise passes over the rows, where a top-k search sorts every row.
    Rows not settled after `max_iters` passes (none in practice) take `sparsemax_threshold`.
    """
    tau = s.new_full((s.shape[0], 1), -1.0)
    on, masked = torch.empty_like(s), torch.empty_like(s)
    count = None
    for _ in range(max_iters):
        torch.gt(s, tau, out=on)
        new_count = on.sum(-1, keepdim=True)
        if count is not None and torch.equal(new_count, count):
            return tau, count.long()
        count = new_count
        tau = (torch.mul(s, on, out=masked).sum(-1, keepdim=True) - 1) / count
    torch.gt(s, tau, out=on)
    todo = (on.sum(-1, keepdim=True) != count).squeeze(-1).nonzero().squeeze(-1)
    if len(todo):
        tau[todo], count[todo] = (x.to(s.dtype) for x in sparsemax_threshold(s[todo]))
    return tau, count.long()


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

    Computes in q's dtype, raised to at least float32; `out` is cast back to q's dtype. Memory: one block
    of ROW_BLOCK x M scores at a time.
    """
    work = torch.promote_types(q.dtype, torch.float32)
    qw, kt, vw = q.to(work), k.to(work).transpose(1, 2), v.to(work)
    b, n, _ = q.shape
    out = q.new_empty(b, n, v.shape[-1], dtype=work)
    tau = q.new_empty(b, n, dtype=work)
    support = q.new_empty(b, n, dtype=torch.int32)
    scores = q.new_empty(b * min(n, ROW_BLOCK) * k.shape[1], dtype=work)  # one block, reused
    for i0, i1 in _row_blocks(n):
        s = torch.bmm(qw[:, i0:i1], kt, out=scores[: b * (i1 - i0) * k.shape[1]].view(b, i1 - i0, -1))
        row_max = s.amax(-1, keepdim=True)
        if not bool(torch.isfinite(row_max).all()):
            raise _overflow(work)
        # Search the max-shifted scores as the official operator does, so the sums stay small.
        s -= row_max
        t, sup = michelot_threshold(s.view(-1, s.shape[-1]))
        t, sup = t.view(*s.shape[:-1], 1), sup.view(*s.shape[:-1], 1)
        torch.bmm(s.sub_(t).clamp_(min=0), vw, out=out[:, i0:i1])
        tau[:, i0:i1] = (t + row_max).squeeze(-1)
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
    kt, vt = kw.transpose(1, 2), vw.transpose(1, 2)
    dq, dk, dv = torch.empty_like(qw), torch.zeros_like(kw), torch.zeros_like(vw)
    for i0, i1 in _row_blocks(q.shape[1]):
        p = torch.bmm(qw[:, i0:i1], kt).sub_(tw[:, i0:i1, None]).clamp_(min=0)
        on = (p > 0).to(work)
        g = torch.bmm(dw[:, i0:i1], vt).mul_(on)
        mean = g.sum(-1, keepdim=True) / on.sum(-1, keepdim=True).clamp_(min=1)
        ds = g.sub_(mean).mul_(on)
        torch.bmm(ds, kw, out=dq[:, i0:i1])
        dk.baddbmm_(ds.transpose(1, 2), qw[:, i0:i1])
        dv.baddbmm_(p.transpose(1, 2), dw[:, i0:i1])
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


@triton.jit
def _dot(a, b, DOT_PRECISION: tl.constexpr):
    """a @ b accumulated in fp32; "emulate" upcasts both to fp32 (the interpreter has no bf16 matmul)."""
    if DOT_PRECISION == "emulate":
        c = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        c = tl.dot(a, b, input_precision=DOT_PRECISION)
    return c


@triton.jit
def _rows(base, offs_r, r_ok, D, c0, C: tl.constexpr):
    """Rows `offs_r` of a row-major (., D) matrix, columns c0 .. c0 + C (zeros past D and masked rows)."""
    offs_c = c0 + tl.arange(0, C)
    return tl.load(
        base + offs_r[:, None] * D + offs_c[None, :], mask=r_ok[:, None] & (offs_c[None, :] < D), other=0.0
    )


@triton.jit
def _store_rows(base, x, offs_r, r_ok, D, c0, C: tl.constexpr):
    offs_c = c0 + tl.arange(0, C)
    tl.store(base + offs_r[:, None] * D + offs_c[None, :], x, mask=r_ok[:, None] & (offs_c[None, :] < D))


@triton.jit
def _load_split(base, offs_r, r_ok, D, D_LO: tl.constexpr, D_HI: tl.constexpr, SPLIT_D: tl.constexpr):
    """A (rows, D) block as columns [0, D_LO) and, when SPLIT_D, [D_LO, D_LO + D_HI) (else a copy)."""
    lo = _rows(base, offs_r, r_ok, D, 0, D_LO)
    if SPLIT_D:
        hi = _rows(base, offs_r, r_ok, D, D_LO, D_HI)
    else:
        hi = lo
    return lo, hi


@triton.jit
def _scores(
    q_lo,
    q_hi,
    k_base,
    kb,
    M,
    D,
    BLOCK_N: tl.constexpr,
    D_LO: tl.constexpr,
    D_HI: tl.constexpr,
    SPLIT_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Scores of a query block against key tile `kb` (-inf past M), and the tile's keys and offsets."""
    offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
    key_ok = offs_n < M
    k_lo, k_hi = _load_split(k_base, offs_n, key_ok, D, D_LO, D_HI, SPLIT_D)
    s = _dot(q_lo, tl.trans(k_lo), DOT_PRECISION)
    if SPLIT_D:
        s += _dot(q_hi, tl.trans(k_hi), DOT_PRECISION)
    return tl.where(key_ok[None, :], s, float("-inf")), k_lo, k_hi, offs_n, key_ok


@triton.jit
def _compact(live_base, tmax_base, n_live, thr, FIRST: tl.constexpr):
    """Keeps, in order and in place, the listed key tiles whose max score exceeds `thr`; returns how many.

    FIRST: the list is every tile 0 .. n_live - 1 (nothing listed yet)."""
    kept = tl.program_id(0) * 0
    for i in range(0, n_live):
        if FIRST:
            kb = i
        else:
            kb = tl.load(live_base + i)
        tl.store(live_base + kept, kb)
        kept += (tl.load(tmax_base + kb) > thr).to(tl.int32)
    tl.debug_barrier()
    return kept


@triton.jit(do_not_specialize=["MAX_PASSES"])
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
    LIVE,
    N_LIVE,
    DONE,
    N,
    M,
    D,
    DV,
    NQB_ALLOC,
    NKB_ALLOC,
    MAX_PASSES,
    SIZE_CLASS,
    D_LO: tl.constexpr,
    D_HI: tl.constexpr,
    SPLIT_D: tl.constexpr,
    DV_LO: tl.constexpr,
    DV_HI: tl.constexpr,
    SPLIT_DV: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    NEED_VSUM: tl.constexpr,
    FALLBACK: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """One query block: threshold search, then the output over the block's live key tiles.

    Main launch (FALLBACK=False): one sweep over all key tiles gives the row max, each tile's max score and
    a lower bound of the threshold; then at most MAX_PASSES Michelot passes over the live tiles; converged
    blocks write their output, the others their state. Fallback launch: only blocks left unconverged, run
    to convergence (the support shrinks every pass, so at most M + 1 passes). SIZE_CLASS (log2 of the token
    count) is only an autotuning key.
    """
    qb = tl.program_id(0)
    b = tl.program_id(1)
    n_kb = tl.cdiv(M, BLOCK_N)
    offs_m = qb * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = offs_m < N
    q_lo, q_hi = _load_split(Q + b * N * D, offs_m, row_ok, D, D_LO, D_HI, SPLIT_D)
    k_base = K + b * M * D
    v_base = V + b * M * DV
    block = b * NQB_ALLOC + qb
    tmax_base = TILE_MAX + block * NKB_ALLOC
    live_base = LIVE + block * NKB_ALLOC
    stats = b * N + offs_m

    # Shifted scores u = s - m <= 0 (m the row max) keep the threshold x = tau - m in [-1, 0) and sums over
    # the support O(|S|) even when HSPAN's scores reach 1e3.
    if FALLBACK:
        todo = tl.load(DONE + block) == 0
        m = tl.load(ROW_MAX + stats, mask=row_ok, other=0.0)
        x = tl.load(TAU + stats, mask=row_ok, other=0.0)
        count = tl.load(COUNT + stats, mask=row_ok, other=1.0)
        n_live = tl.load(N_LIVE + block)
        row_on = row_ok & (m == m)
    else:
        todo = tl.program_id(0) >= 0
        # Sweep: online row max; count and sum of u over {u > -1} under the running max. The set so summed
        # contains {s > m_final - 1}, which contains the support, so (sum - 1) / count bounds tau from below.
        m = tl.full((BLOCK_M,), float("-inf"), tl.float32)
        count = tl.zeros((BLOCK_M,), tl.float32)
        total = tl.zeros((BLOCK_M,), tl.float32)
        n_bad = tl.zeros((BLOCK_M,), tl.int32)
        for kb in range(0, n_kb):
            s, k_lo, k_hi, offs_n, key_ok = _scores(
                q_lo, q_hi, k_base, kb, M, D, BLOCK_N, D_LO, D_HI, SPLIT_D, DOT_PRECISION
            )
            n_bad += tl.sum((key_ok[None, :] & ~(tl.abs(s) < float("inf"))).to(tl.int32), 1)
            tile_row_max = tl.max(s, 1)
            tl.store(tmax_base + kb, tl.max(tl.where(row_ok, tile_row_max, float("-inf")), 0))
            m_new = tl.maximum(m, tile_row_max)
            total -= count * tl.where(count > 0, m_new - m, 0.0)
            u = s - m_new[:, None]
            on = u > -1.0
            count += tl.sum(on.to(tl.float32), 1)
            total += tl.sum(tl.where(on, u, 0.0), 1)
            m = m_new
        tl.debug_barrier()
        # A NaN or infinite score (NaN/Inf input, or q.k overflowing) makes its row's max NaN: the row's
        # output is NaN and the debug-mode check reports it.
        m = tl.where(n_bad > 0, float("nan"), m)
        # Rows past N or with a NaN max get x = 0, above every u they see: they stay empty and finite.
        row_on = row_ok & (m == m)
        x = tl.where(row_on, tl.maximum((total - 1.0) / count, -1.0), 0.0)
        count = tl.where(row_on, M + 1.0, 1.0)
        n_live = _compact(live_base, tmax_base, n_kb, tl.min(tl.where(row_on, m + x, float("inf")), 0), True)

    if todo:
        # Michelot's iteration (Newton from the left on the convex f(x) = sum max(u - x, 0) - 1): x stays a
        # lower bound of the threshold, the support shrinks strictly until it is fixed, and then
        # x = (sum_S u - 1) / |S| is exact. A row is settled without a confirming pass when its new x lies
        # below the smallest u of the set it was computed from (that set is then the support). Tiles whose
        # max lies below every row's bound are dropped from the list.
        passes = tl.program_id(0) * 0
        shrinking = passes == 0
        while shrinking & (passes < MAX_PASSES):
            new_count = tl.zeros((BLOCK_M,), tl.float32)
            total = tl.zeros((BLOCK_M,), tl.float32)
            u_min = tl.zeros((BLOCK_M,), tl.float32)
            for i in range(0, n_live):
                s, k_lo, k_hi, offs_n, key_ok = _scores(
                    q_lo,
                    q_hi,
                    k_base,
                    tl.load(live_base + i),
                    M,
                    D,
                    BLOCK_N,
                    D_LO,
                    D_HI,
                    SPLIT_D,
                    DOT_PRECISION,
                )
                u = s - m[:, None]
                on = u > x[:, None]
                new_count += tl.sum(on.to(tl.float32), 1)
                total += tl.sum(tl.where(on, u, 0.0), 1)
                u_min = tl.minimum(u_min, tl.min(tl.where(on, u, 0.0), 1))
            shrunk = (new_count < count) & row_on
            x_new = (total - 1.0) / tl.maximum(new_count, 1.0)
            x = tl.where(shrunk, x_new, x)
            count = tl.where(shrunk, new_count, count)
            shrinking = tl.max((shrunk & (u_min <= x_new)).to(tl.int32), 0) > 0
            n_live = _compact(
                live_base, tmax_base, n_live, tl.min(tl.where(row_on, m + x, float("inf")), 0), False
            )
            passes += 1
        converged = shrinking == 0
        if converged:
            acc_lo = tl.zeros((BLOCK_M, DV_LO), tl.float32)
            acc_hi = tl.zeros((BLOCK_M, DV_HI), tl.float32)
            vsum_lo = tl.zeros((BLOCK_M, DV_LO), tl.float32)
            vsum_hi = tl.zeros((BLOCK_M, DV_HI), tl.float32)
            for i in range(0, n_live):
                s, k_lo, k_hi, offs_n, key_ok = _scores(
                    q_lo,
                    q_hi,
                    k_base,
                    tl.load(live_base + i),
                    M,
                    D,
                    BLOCK_N,
                    D_LO,
                    D_HI,
                    SPLIT_D,
                    DOT_PRECISION,
                )
                v_lo, v_hi = _load_split(v_base, offs_n, key_ok, DV, DV_LO, DV_HI, SPLIT_DV)
                p = tl.maximum(s - m[:, None] - x[:, None], 0.0)
                pc = p.to(v_lo.dtype)
                acc_lo += _dot(pc, v_lo, DOT_PRECISION)
                if SPLIT_DV:
                    acc_hi += _dot(pc, v_hi, DOT_PRECISION)
                if NEED_VSUM:
                    on = tl.where(p > 0, 1.0, 0.0).to(v_lo.dtype)
                    vsum_lo += _dot(on, v_lo, DOT_PRECISION)
                    if SPLIT_DV:
                        vsum_hi += _dot(on, v_hi, DOT_PRECISION)
            finite = (m == m)[:, None]
            out_b = OUT + b * N * DV
            _store_rows(
                out_b,
                tl.where(finite, acc_lo, float("nan")).to(OUT.dtype.element_ty),
                offs_m,
                row_ok,
                DV,
                0,
                DV_LO,
            )
            if SPLIT_DV:
                acc_hi = tl.where(finite, acc_hi, float("nan")).to(OUT.dtype.element_ty)
                _store_rows(out_b, acc_hi, offs_m, row_ok, DV, DV_LO, DV_HI)
            if NEED_VSUM:
                _store_rows(VSUM + b * N * DV, vsum_lo, offs_m, row_ok, DV, 0, DV_LO)
                if SPLIT_DV:
                    _store_rows(VSUM + b * N * DV, vsum_hi, offs_m, row_ok, DV, DV_LO, DV_HI)
        tl.store(ROW_MAX + stats, m, mask=row_ok)
        tl.store(TAU + stats, x, mask=row_ok)
        tl.store(COUNT + stats, count, mask=row_ok)
        tl.store(N_LIVE + block, n_live)
        tl.store(DONE + block, converged.to(tl.int32))


@triton.jit
def _bwd_dq_kernel(
    Q,
    K,
    V,
    DOUT,
    ROW_MAX,
    TAU,
    MEAN_G,
    LIVE,
    N_LIVE,
    DQ,
    N,
    M,
    D,
    DV,
    NQB_ALLOC,
    NKB_ALLOC,
    SIZE_CLASS,
    D_LO: tl.constexpr,
    D_HI: tl.constexpr,
    SPLIT_D: tl.constexpr,
    DV_LO: tl.constexpr,
    DV_HI: tl.constexpr,
    SPLIT_DV: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """dq of one query block, over the forward's list of its live key tiles."""
    qb = tl.program_id(0)
    b = tl.program_id(1)
    offs_m = qb * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = offs_m < N
    q_lo, q_hi = _load_split(Q + b * N * D, offs_m, row_ok, D, D_LO, D_HI, SPLIT_D)
    do_lo, do_hi = _load_split(DOUT + b * N * DV, offs_m, row_ok, DV, DV_LO, DV_HI, SPLIT_DV)
    m = tl.load(ROW_MAX + b * N + offs_m, mask=row_ok, other=0.0)
    x = tl.load(TAU + b * N + offs_m, mask=row_ok, other=0.0)
    mean_g = tl.load(MEAN_G + b * N + offs_m, mask=row_ok, other=0.0)
    k_base = K + b * M * D
    v_base = V + b * M * DV
    block = b * NQB_ALLOC + qb
    dq_lo = tl.zeros((BLOCK_M, D_LO), tl.float32)
    dq_hi = tl.zeros((BLOCK_M, D_HI), tl.float32)
    for i in range(0, tl.load(N_LIVE + block)):
        kb = tl.load(LIVE + block * NKB_ALLOC + i)
        s, k_lo, k_hi, offs_n, key_ok = _scores(
            q_lo, q_hi, k_base, kb, M, D, BLOCK_N, D_LO, D_HI, SPLIT_D, DOT_PRECISION
        )
        v_lo, v_hi = _load_split(v_base, offs_n, key_ok, DV, DV_LO, DV_HI, SPLIT_DV)
        g = _dot(do_lo, tl.trans(v_lo), DOT_PRECISION)
        if SPLIT_DV:
            g += _dot(do_hi, tl.trans(v_hi), DOT_PRECISION)
        ds = tl.where(s - m[:, None] > x[:, None], g - mean_g[:, None], 0.0)
        ds = ds.to(k_lo.dtype)
        dq_lo += _dot(ds, k_lo, DOT_PRECISION)
        if SPLIT_D:
            dq_hi += _dot(ds, k_hi, DOT_PRECISION)
    _store_rows(DQ + b * N * D, dq_lo.to(DQ.dtype.element_ty), offs_m, row_ok, D, 0, D_LO)
    if SPLIT_D:
        _store_rows(DQ + b * N * D, dq_hi.to(DQ.dtype.element_ty), offs_m, row_ok, D, D_LO, D_HI)


@triton.jit
def _bwd_dkv_kernel(
    Q,
    K,
    V,
    DOUT,
    ROW_MAX,
    TAU,
    MEAN_G,
    QB_LIST,
    QB_COUNT,
    DK,
    DV_OUT,
    N,
    M,
    D,
    DV,
    SIZE_CLASS,
    D_LO: tl.constexpr,
    D_HI: tl.constexpr,
    SPLIT_D: tl.constexpr,
    DV_LO: tl.constexpr,
    DV_HI: tl.constexpr,
    SPLIT_DV: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """dk and dv of one key tile, over the list of query blocks for which the tile is live."""
    kb = tl.program_id(0)
    b = tl.program_id(1)
    n_kb = tl.cdiv(M, BLOCK_N)
    n_qb = tl.cdiv(N, BLOCK_M)
    offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
    key_ok = offs_n < M
    k_lo, k_hi = _load_split(K + b * M * D, offs_n, key_ok, D, D_LO, D_HI, SPLIT_D)
    v_lo, v_hi = _load_split(V + b * M * DV, offs_n, key_ok, DV, DV_LO, DV_HI, SPLIT_DV)
    dk_lo = tl.zeros((BLOCK_N, D_LO), tl.float32)
    dk_hi = tl.zeros((BLOCK_N, D_HI), tl.float32)
    dv_lo = tl.zeros((BLOCK_N, DV_LO), tl.float32)
    dv_hi = tl.zeros((BLOCK_N, DV_HI), tl.float32)
    tile = b * n_kb + kb
    for i in range(0, tl.load(QB_COUNT + tile)):
        offs_m = tl.load(QB_LIST + tile * n_qb + i) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = offs_m < N
        q_lo, q_hi = _load_split(Q + b * N * D, offs_m, row_ok, D, D_LO, D_HI, SPLIT_D)
        do_lo, do_hi = _load_split(DOUT + b * N * DV, offs_m, row_ok, DV, DV_LO, DV_HI, SPLIT_DV)
        m = tl.load(ROW_MAX + b * N + offs_m, mask=row_ok, other=0.0)
        x = tl.load(TAU + b * N + offs_m, mask=row_ok, other=0.0)
        mean_g = tl.load(MEAN_G + b * N + offs_m, mask=row_ok, other=0.0)
        s = _dot(q_lo, tl.trans(k_lo), DOT_PRECISION)
        if SPLIT_D:
            s += _dot(q_hi, tl.trans(k_hi), DOT_PRECISION)
        u = tl.where(key_ok[None, :], s, float("-inf")) - m[:, None]
        on = (u > x[:, None]) & row_ok[:, None]
        p = tl.where(on, u - x[:, None], 0.0)
        g = _dot(do_lo, tl.trans(v_lo), DOT_PRECISION)
        if SPLIT_DV:
            g += _dot(do_hi, tl.trans(v_hi), DOT_PRECISION)
        ds = tl.where(on, g - mean_g[:, None], 0.0)
        ds_t = tl.trans(ds).to(q_lo.dtype)
        dk_lo += _dot(ds_t, q_lo, DOT_PRECISION)
        if SPLIT_D:
            dk_hi += _dot(ds_t, q_hi, DOT_PRECISION)
        p_t = tl.trans(p).to(do_lo.dtype)
        dv_lo += _dot(p_t, do_lo, DOT_PRECISION)
        if SPLIT_DV:
            dv_hi += _dot(p_t, do_hi, DOT_PRECISION)
    _store_rows(DK + b * M * D, dk_lo.to(DK.dtype.element_ty), offs_n, key_ok, D, 0, D_LO)
    if SPLIT_D:
        _store_rows(DK + b * M * D, dk_hi.to(DK.dtype.element_ty), offs_n, key_ok, D, D_LO, D_HI)
    _store_rows(DV_OUT + b * M * DV, dv_lo.to(DV_OUT.dtype.element_ty), offs_n, key_ok, DV, 0, DV_LO)
    if SPLIT_DV:
        _store_rows(DV_OUT + b * M * DV, dv_hi.to(DV_OUT.dtype.element_ty), offs_n, key_ok, DV, DV_LO, DV_HI)


_fwd_tuned = triton.autotune(
    [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st)
        for bm, bn, w, st in FWD_CONFIGS
    ],
    key=["D", "DV", "SIZE_CLASS", "NEED_VSUM", "DOT_PRECISION"],
)(_fwd_kernel)
_bwd_configs = [triton.Config({}, num_warps=w, num_stages=st) for w, st in BWD_CONFIGS]
_bwd_dq_tuned = triton.autotune(_bwd_configs, key=["D", "DV", "SIZE_CLASS", "BLOCK_M", "BLOCK_N"])(
    _bwd_dq_kernel
)
_bwd_dkv_tuned = triton.autotune(_bwd_configs, key=["D", "DV", "SIZE_CLASS", "BLOCK_M", "BLOCK_N"])(
    _bwd_dkv_kernel
)


def _empty(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer a kernel writes comes from here (tests wrap it to catch out-of-bounds writes)."""
    return torch.empty(*shape, dtype=dtype, device=device)


def _split(width: int) -> tuple[int, int, bool]:
    """(lo, hi, split): `width` padded to a power of two `lo`, or, when that pads less, to two, lo + hi
    (HSPAN's 96 = 64 + 32 and 192 = 128 + 64). tl.arange needs powers of two, tl.dot sizes of at least 16;
    without a split `hi` is a placeholder."""
    whole = max(16, triton.next_power_of_2(width))
    lo = max(16, whole // 2)
    hi = max(16, triton.next_power_of_2(width - lo)) if width > lo else 16
    split = width > lo and lo + hi < whole
    return (lo if split else whole), hi, split


def _pads(d: int, dv: int) -> dict:
    """The kernels' width constexprs for D and Dv."""
    (d_lo, d_hi, split_d), (dv_lo, dv_hi, split_dv) = _split(d), _split(dv)
    return dict(D_LO=d_lo, D_HI=d_hi, SPLIT_D=split_d, DV_LO=dv_lo, DV_HI=dv_hi, SPLIT_DV=split_dv)


def dot_precision(dtype: torch.dtype, tf32: bool | None) -> str:
    """`tl.dot` input precision: TF32 for fp32 only when allowed; bf16/fp16 take tensor cores regardless
    (emulated in fp32 for bf16 under the interpreter, whose bf16 matmul multiplies the raw bits)."""
    if dtype != torch.float32:
        return "emulate" if INTERPRETING and dtype == torch.bfloat16 else "tf32"
    return "tf32" if (torch.backends.cuda.matmul.allow_tf32 if tf32 is None else tf32) else "ieee"


def triton_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, need_backward: bool, tf32: bool | None = None
) -> tuple[torch.Tensor, dict]:
    """Fused forward: returns (out, state); `state` holds what `triton_backward` needs.

    Memory O((N + M) D) plus O(N M / (MIN_BLOCK_M MIN_BLOCK_N)) tile tables: scores are recomputed per tile,
    never stored. `vsum` (sum of v over each row's support, for the backward's mean) is only computed when
    `need_backward`. Launches: the autotuned main kernel, then the fallback kernel (a no-op for converged
    blocks); no device->host sync.
    """
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    (b, n, d), m, dv = q.shape, k.shape[1], v.shape[2]
    nqb, nkb = triton.cdiv(n, MIN_BLOCK_M), triton.cdiv(m, MIN_BLOCK_N)
    dev = q.device
    f32 = dict(device=dev, dtype=torch.float32)
    i32 = dict(device=dev, dtype=torch.int32)
    out = _empty(b, n, dv, device=dev, dtype=q.dtype)
    row_max, tau, count = (_empty(b, n, **f32) for _ in range(3))
    vsum = _empty(b, n, dv, **f32) if need_backward else _empty(1, **f32)
    tile_max = _empty(b, nqb, nkb, **f32)
    live = _empty(b, nqb, nkb, **i32)
    n_live, done = _empty(b, nqb, **i32), _empty(b, nqb, **i32)
    args = [q, k, v, out, row_max, tau, count, vsum, tile_max, live, n_live, done, n, m, d, dv, nqb, nkb]
    size_class = max(n, m).bit_length()
    meta = dict(**_pads(d, dv), NEED_VSUM=need_backward, DOT_PRECISION=dot_precision(q.dtype, tf32))
    _fwd_tuned[lambda c: (triton.cdiv(n, c["BLOCK_M"]), b)](
        *args, MAX_ITERS, size_class, FALLBACK=False, **meta
    )
    best = _fwd_tuned.best_config
    bm, bn = best.kwargs["BLOCK_M"], best.kwargs["BLOCK_N"]
    _fwd_kernel[(triton.cdiv(n, bm), b)](
        *args,
        m + 1,
        size_class,
        FALLBACK=True,
        BLOCK_M=bm,
        BLOCK_N=bn,
        num_warps=best.num_warps,
        num_stages=best.num_stages,
        **meta,
    )
    state = dict(
        row_max=row_max, tau=tau, count=count, vsum=vsum, live=live, n_live=n_live, block=(bm, bn), tf32=tf32
    )
    return out, state


def _query_block_lists(live: torch.Tensor, n_live: torch.Tensor, n_qb: int, n_kb: int):
    """Transposes the per-query-block lists of live key tiles into per-key-tile lists of query blocks.

    Returns (qb_list (B, n_kb, n_qb) int32, live ones first in order; qb_count (B, n_kb) int32); device ops
    only, no sync.
    """
    b = live.shape[0]
    listed = torch.arange(live.shape[2], device=live.device) < n_live[:, :n_qb, None]
    cols = torch.where(listed, live[:, :n_qb], n_kb).long()
    mask = torch.zeros(b, n_qb, n_kb + 1, dtype=torch.int32, device=live.device)
    mask.scatter_(2, cols, 1)
    mask_t = mask[:, :, :n_kb].transpose(1, 2)
    order = torch.sort(mask_t, dim=-1, descending=True, stable=True).indices
    return order.to(torch.int32).contiguous(), mask_t.sum(-1, dtype=torch.int32).contiguous()


def triton_backward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dout: torch.Tensor, state: dict
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused backward from `triton_forward`'s state: returns (dq, dk, dv); no device->host sync."""
    q, k, v, dout = q.contiguous(), k.contiguous(), v.contiguous(), dout.contiguous()
    (b, n, d), m, dv = q.shape, k.shape[1], v.shape[2]
    bm, bn = state["block"]
    n_qb, n_kb = triton.cdiv(n, bm), triton.cdiv(m, bn)
    live, n_live = state["live"], state["n_live"]
    # mean over the support of g_j = dout . v_j is dout . (sum_S v_j) / |S|: no extra pass over the keys.
    mean_g = (dout.float() * state["vsum"]).sum(-1) / state["count"]
    qb_list, qb_count = _query_block_lists(live, n_live, n_qb, n_kb)
    dq, dk, dvv = (_empty(*t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
    stats = (state["row_max"], state["tau"], mean_g)
    size_class = max(n, m).bit_length()
    meta = dict(
        **_pads(d, dv),
        BLOCK_M=bm,
        BLOCK_N=bn,
        DOT_PRECISION=dot_precision(q.dtype, state["tf32"]),
    )
    _bwd_dq_tuned[(n_qb, b)](
        q, k, v, dout, *stats, live, n_live, dq, n, m, d, dv, live.shape[1], live.shape[2], size_class, **meta
    )
    _bwd_dkv_tuned[(n_kb, b)](
        q, k, v, dout, *stats, qb_list, qb_count, dk, dvv, n, m, d, dv, size_class, **meta
    )
    return dq, dk, dvv


class SoftThresholdAttentionFunction(torch.autograd.Function):
    """Autograd op: CUDA -> Triton kernels; CPU -> reference (Triton under `TRITON_INTERPRET=1`)."""

    @staticmethod
    def forward(
        ctx,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        need_backward: bool = True,
        tf32: bool | None = None,
    ) -> torch.Tensor:
        ctx.triton = use_triton(q, _fwd_kernel, "soft_threshold_attention")
        checked = not ctx.triton or device_checks()
        if checked:
            _check_finite(q, k, v)
        if ctx.triton:
            out, ctx.state = triton_forward(q, k, v, need_backward=need_backward, tf32=tf32)
            if checked and not bool(torch.isfinite(ctx.state["row_max"]).all()):
                raise _overflow(torch.float32)
            ctx.save_for_backward(q, k, v)
        else:
            out, tau, _ = reference_forward(q, k, v)
            ctx.save_for_backward(q, k, v, tau)
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        q, k, v, *tau = ctx.saved_tensors
        if ctx.triton:
            grads = triton_backward(q, k, v, dout, ctx.state)
        else:
            grads = reference_backward(q, k, v, tau[0], dout)
        return (*grads, None, None)


def soft_threshold_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tf32: bool | None = None
) -> torch.Tensor:
    """HSPAN attention: q (B,N,D), k (B,M,D), v (B,M,Dv) -> (B,N,Dv), sparsemax over the M dot products.

    `tf32`: fp32 inputs on the Triton path use TF32 dot products (default: follow
    `torch.backends.cuda.matmul.allow_tf32`); ignored for other dtypes and on the reference path.
    """
    _check_inputs(q, k, v)
    need_backward = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    return SoftThresholdAttentionFunction.apply(q, k, v, need_backward, tf32)


def macs(B: int, N: int, M: int, D: int, Dv: int) -> int:
    """Multiply-accumulates of the op: the score matmul (N x M x D) and the value matmul (N x M x Dv)."""
    return B * N * M * (D + Dv)
