"""Sliding proxy attention of SPAN-light (zononhzy/SPAN, `SPAB.forward`).

Layout: q, k, v are (B, heads, d, H, W). Windows are w×w with stride s = w − overlap, placed at
(i·s, j·s) for i < nH = (H − overlap) / s, j < nW = (W − overlap) / s (what `F.unfold` with that
stride visits). For a window and a query pixel p inside it, with t = temperature[head]:

    s_pj = (t·q_p) · k_j + rel_bias[head, p_local, j_local]     over the window's keys j
    m = max_j s_pj,  N_p += Σ_j e^(s_pj − m) v_j,  D_p += Σ_j e^(s_pj − m)

and out_p = N_p / D_p summed over every window covering p. Each window subtracts its own max, so this is
not a softmax over the union of the windows; it is what the official code computes and is kept exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from kernels.dispatch import use_triton


def _window_grid(size: int, window_size: int, overlap: int, axis: str) -> int:
    """Number of windows along one axis; raises if the windows do not tile the axis exactly."""
    stride = window_size - overlap
    if size < window_size or (size - overlap) % stride:
        raise ValueError(
            f"{axis}={size} is not covered by {window_size}×{window_size} windows with overlap {overlap}: "
            f"({axis} − overlap) must be a positive multiple of window_size − overlap = {stride}; "
            "reflect-pad the input at the bottom/right first (as SPAN-light does) and crop the output"
        )
    return (size - overlap) // stride


def _check_inputs(
    q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, rel_bias: Tensor, window_size: int, overlap: int
) -> tuple[Tensor, int, int]:
    """Validate shapes/values; return temperature flattened to (heads,) and the window grid (nH, nW)."""
    if not (isinstance(window_size, int) and isinstance(overlap, int) and 0 <= overlap < window_size):
        raise ValueError(f"need integers 0 <= overlap < window_size, got {window_size=} {overlap=}")
    if q.dim() != 5 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(
            "q, k, v must all be (B, heads, d, H, W) with the same shape, got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype) or not q.is_floating_point():
        raise TypeError(f"q, k, v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    heads, area = q.shape[1], window_size * window_size
    if temperature.numel() != heads:
        raise ValueError(
            f"temperature has {temperature.numel()} elements but q has {heads} heads: pass one per head, "
            "shaped (heads,) or (heads, 1, 1)"
        )
    if tuple(rel_bias.shape) != (heads, area, area):
        raise ValueError(
            f"rel_bias must be the gathered relative position bias (heads, w², w²) = {(heads, area, area)}, "
            f"got {tuple(rel_bias.shape)}"
        )
    n_h = _window_grid(q.shape[3], window_size, overlap, "H")
    n_w = _window_grid(q.shape[4], window_size, overlap, "W")
    for name, t in (("q", q), ("k", k), ("v", v), ("temperature", temperature), ("rel_bias", rel_bias)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or Inf: sliding proxy attention needs finite inputs")
    return temperature.reshape(heads), n_h, n_w


def sliding_proxy_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, *, temperature: Tensor, rel_bias: Tensor, window_size: int, overlap: int
) -> Tensor:
    """PyTorch reference (any float dtype, differentiable), one row of windows at a time.

    Peak extra memory is one row of window attention matrices, (B, heads, nW, w², w²). Gradients follow
    `torch.max`, as in the official code: the max shift does not cancel across windows, so the argmax
    key of every window row receives a gradient through m.
    """
    temperature, n_h, n_w = _check_inputs(q, k, v, temperature, rel_bias, window_size, overlap)
    b, heads, d, h, w = q.shape
    ws, stride, area = window_size, window_size - overlap, window_size * window_size
    cols = (
        torch.arange(n_w, device=q.device)[:, None] * stride + torch.arange(ws, device=q.device)
    ).flatten()
    t = temperature.to(q.dtype).view(1, heads, 1, 1, 1)
    bias = rel_bias.to(q.dtype)[None, :, None]

    def windows(x: Tensor, y0: int) -> Tensor:
        # (B, heads, d, w, W) → (B, heads, nW, w², d), window pixels in row-major order like F.unfold
        strip = x[:, :, :, y0 : y0 + ws].unfold(4, ws, stride)  # B, heads, d, w, nW, w
        return strip.permute(0, 1, 4, 3, 5, 2).reshape(b, heads, n_w, area, d)

    num = q.new_zeros(b, heads, d, h, w)
    den = q.new_zeros(b, heads, 1, h, w)
    for i in range(n_h):
        y0 = i * stride
        scores = (windows(q, y0) * t) @ windows(k, y0).transpose(-2, -1) + bias
        e = torch.exp(scores - torch.max(scores, dim=-1, keepdim=True)[0])
        parts = torch.cat([e @ windows(v, y0), e.sum(-1, keepdim=True)], dim=-1)  # B, heads, nW, w², d+1
        parts = parts.reshape(b, heads, n_w, ws, ws, d + 1).permute(0, 1, 5, 3, 2, 4)
        strip = parts.new_zeros(b, heads, d + 1, ws, w).index_add(
            4, cols, parts.reshape(b, heads, d + 1, ws, -1)
        )
        num[:, :, :, y0 : y0 + ws] += strip[:, :, :d]
        den[:, :, :, y0 : y0 + ws] += strip[:, :, d:]
    return num / den


def sliding_proxy_attention_official_style(
    q: Tensor, k: Tensor, v: Tensor, *, temperature: Tensor, rel_bias: Tensor, window_size: int, overlap: int
) -> Tensor:
    """The official formulation: unfold every window, full (w², w²) attention per window, fold back.

    Independent of `sliding_proxy_attention_reference` (used to cross-check it and as the benchmark
    baseline); it materialises all windows' attention matrices at once, like `SPAB.forward`.
    """
    temperature, _, _ = _check_inputs(q, k, v, temperature, rel_bias, window_size, overlap)
    b, heads, d, h, w = q.shape
    stride, area = window_size - overlap, window_size * window_size

    def unfold(x: Tensor) -> Tensor:  # (B, heads, d, H, W) → (B, L, heads, w², d)
        cols = F.unfold(x.reshape(b, heads * d, h, w), window_size, stride=stride)
        return cols.reshape(b, heads, d, area, -1).permute(0, 4, 1, 3, 2)

    def fold(x: Tensor) -> Tensor:  # (B, L, heads, w², c) → (B, heads, c, H, W)
        c = x.shape[-1]
        cols = x.permute(0, 2, 4, 3, 1).reshape(b, heads * c * area, -1)
        return F.fold(cols, (h, w), window_size, stride=stride).reshape(b, heads, c, h, w)

    attn = (unfold(q) * temperature.to(q.dtype).view(1, 1, heads, 1, 1)) @ unfold(k).transpose(-2, -1)
    attn = attn + rel_bias.to(q.dtype)[None, None]
    exp_attn = torch.exp(attn - torch.max(attn, dim=-1, keepdim=True)[0])
    return fold(exp_attn @ unfold(v)) / fold(exp_attn.sum(-1, keepdim=True))


@triton.jit
def _sliding_proxy_fwd(
    Q,
    K,
    V,
    T,
    BIAS,
    OUT,
    DEN,
    H,
    W,
    N_WH,
    N_WW,
    N_CW,
    HEADS: tl.constexpr,
    D: tl.constexpr,
    WS: tl.constexpr,
    STRIDE: tl.constexpr,
    NCOV: tl.constexpr,
    BQ: tl.constexpr,
    BK: tl.constexpr,
    BD: tl.constexpr,
):
    """One program per (batch·head, stride cell): the cell's ≤ STRIDE² query pixels gather from the
    ≤ NCOV² windows covering them, so each output pixel is written once (no atomics, deterministic)."""
    bh = tl.program_id(0).to(tl.int64)  # flat offsets exceed int32 at large B·heads·d·H·W
    cy = tl.program_id(1) // N_CW
    cx = tl.program_id(1) % N_CW
    head = bh % HEADS
    r = tl.arange(0, BQ)
    qy = cy * STRIDE + r // STRIDE
    qx = cx * STRIDE + r % STRIDE
    q_ok = (r < STRIDE * STRIDE) & (qy < H) & (qx < W)
    c = tl.arange(0, BD)
    c_ok = c < D
    j = tl.arange(0, BK)
    k_ok = j < WS * WS
    base = bh * D * H * W
    q_ptrs = base + c[None, :] * H * W + qy[:, None] * W + qx[:, None]
    # official order: q is scaled by the temperature before the product with k
    qt = tl.load(Q + q_ptrs, mask=q_ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32) * tl.load(
        T + head
    ).to(tl.float32)
    num = tl.zeros((BQ, BD), dtype=tl.float32)
    den = tl.zeros((BQ,), dtype=tl.float32)
    for a in tl.static_range(NCOV):
        for b in tl.static_range(NCOV):
            wy = cy - a
            wx = cx - b
            # window validity as vectors: under TRITON_INTERPRET, vector & scalar-bool yields int32 masks
            wyq, wxq, wyk, wxk = r * 0 + wy, r * 0 + wx, j * 0 + wy, j * 0 + wx
            ly = qy - wy * STRIDE
            lx = qx - wx * STRIDE
            inside = q_ok & (ly >= 0) & (ly < WS) & (lx >= 0) & (lx < WS)
            inside = inside & (wyq >= 0) & (wyq < N_WH) & (wxq >= 0) & (wxq < N_WW)
            k_win = k_ok & (wyk >= 0) & (wyk < N_WH) & (wxk >= 0) & (wxk < N_WW)
            kv_ptrs = (
                base
                + c[None, :] * H * W
                + (wy * STRIDE + j // WS)[:, None] * W
                + (wx * STRIDE + j % WS)[:, None]
            )
            kv_mask = k_win[:, None] & c_ok[None, :]
            kt = tl.load(K + kv_ptrs, mask=kv_mask, other=0.0).to(tl.float32)
            vt = tl.load(V + kv_ptrs, mask=kv_mask, other=0.0).to(tl.float32)
            bias = tl.load(
                BIAS + head * WS * WS * WS * WS + (ly * WS + lx)[:, None] * WS * WS + j[None, :],
                mask=inside[:, None] & k_ok[None, :],
                other=0.0,
            ).to(tl.float32)
            s = tl.dot(qt, tl.trans(kt), input_precision="ieee") + bias
            s = tl.where(k_ok[None, :], s, float("-inf"))
            e = tl.exp(s - tl.max(s, axis=1)[:, None])
            e = tl.where(inside[:, None], e, 0.0)
            num += tl.dot(e, vt, input_precision="ieee")
            den += tl.sum(e, axis=1)
    den = tl.where(q_ok, den, 1.0)
    tl.store(OUT + q_ptrs, (num / den[:, None]).to(OUT.dtype.element_ty), mask=q_ok[:, None] & c_ok[None, :])
    tl.store(DEN + bh * H * W + qy * W + qx, den, mask=q_ok)


@triton.jit
def _sliding_proxy_bwd(
    Q,
    K,
    V,
    T,
    BIAS,
    DO,
    DEN,
    DELTA,
    DQR,
    DK,
    DV,
    DB_PART,
    H,
    W,
    N_WH,
    N_WW,
    HEADS: tl.constexpr,
    D: tl.constexpr,
    WS: tl.constexpr,
    STRIDE: tl.constexpr,
    BQ: tl.constexpr,
    BK: tl.constexpr,
    BD: tl.constexpr,
    NQB: tl.constexpr,
):
    """One program per (batch·head, window row): walks the row's windows in BQ-query blocks.

    Atomically adds dq/t, dk, dv (fp32) at pixels and writes this row's rel_bias gradient partial
    DB_PART[bh, wy] (summed over batch and rows on the host, deterministically)."""
    bh = tl.program_id(0).to(tl.int64)  # flat offsets exceed int32 at large B·heads·d·H·W
    wy = tl.program_id(1)
    head = bh % HEADS
    t = tl.load(T + head).to(tl.float32)
    c = tl.arange(0, BD)
    c_ok = c < D
    j = tl.arange(0, BK)
    k_ok = j < WS * WS
    ky = wy * STRIDE + j // WS
    base = bh * D * H * W
    for qb in tl.static_range(NQB):
        r = qb * BQ + tl.arange(0, BQ)
        r_ok = r < WS * WS
        qy = wy * STRIDE + r // WS
        bias = tl.load(
            BIAS + head * WS * WS * WS * WS + r[:, None] * WS * WS + j[None, :],
            mask=r_ok[:, None] & k_ok[None, :],
            other=0.0,
        ).to(tl.float32)
        d_bias = tl.zeros((BQ, BK), dtype=tl.float32)
        for wx in range(N_WW):
            qx = wx * STRIDE + r % WS
            kx = wx * STRIDE + j % WS
            q_ptrs = base + c[None, :] * H * W + qy[:, None] * W + qx[:, None]
            kv_ptrs = base + c[None, :] * H * W + ky[:, None] * W + kx[:, None]
            q_mask = r_ok[:, None] & c_ok[None, :]
            kv_mask = k_ok[:, None] & c_ok[None, :]
            qt = tl.load(Q + q_ptrs, mask=q_mask, other=0.0).to(tl.float32) * t
            kt = tl.load(K + kv_ptrs, mask=kv_mask, other=0.0).to(tl.float32)
            vt = tl.load(V + kv_ptrs, mask=kv_mask, other=0.0).to(tl.float32)
            g = tl.load(DO + q_ptrs, mask=q_mask, other=0.0).to(tl.float32)
            den = tl.load(DEN + bh * H * W + qy * W + qx, mask=r_ok, other=1.0)
            delta = tl.load(DELTA + bh * H * W + qy * W + qx, mask=r_ok, other=0.0)
            s = tl.dot(qt, tl.trans(kt), input_precision="ieee") + bias
            s = tl.where(k_ok[None, :], s, float("-inf"))
            p = tl.exp(s - tl.max(s, axis=1)[:, None]) / den[:, None]
            p = tl.where(r_ok[:, None], p, 0.0)
            dp = tl.dot(g, tl.trans(vt), input_precision="ieee")
            ds = p * (dp - delta[:, None])
            # d/ds of the window's own max: its whole row sum goes to the argmax key (torch.max semantics)
            arg = tl.argmax(s, axis=1)
            ds = ds - tl.where(j[None, :] == arg[:, None], tl.sum(ds, axis=1)[:, None], 0.0)
            ds = tl.where(r_ok[:, None] & k_ok[None, :], ds, 0.0)
            d_bias += ds
            tl.atomic_add(DQR + q_ptrs, tl.dot(ds, kt, input_precision="ieee"), mask=q_mask)
            tl.atomic_add(DK + kv_ptrs, tl.dot(tl.trans(ds), qt, input_precision="ieee"), mask=kv_mask)
            tl.atomic_add(DV + kv_ptrs, tl.dot(tl.trans(p), g, input_precision="ieee"), mask=kv_mask)
        tl.store(
            DB_PART + (bh * N_WH + wy) * WS * WS * WS * WS + r[:, None] * WS * WS + j[None, :],
            d_bias,
            mask=r_ok[:, None] & k_ok[None, :],
        )


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Every buffer a kernel writes is allocated here (the tests wrap it with guard regions)."""
    return torch.empty(shape, dtype=dtype, device=device)


def _meta(q: Tensor, window_size: int, overlap: int) -> dict:
    stride = window_size - overlap
    return dict(
        HEADS=q.shape[1],
        D=q.shape[2],
        WS=window_size,
        STRIDE=stride,
        BK=triton.next_power_of_2(window_size * window_size),
        BD=max(16, triton.next_power_of_2(q.shape[2])),
    )


def _forward_triton(
    q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, rel_bias: Tensor, window_size: int, overlap: int
) -> tuple[Tensor, Tensor]:
    """Returns out (B, heads, d, H, W) in q's dtype and the merged denominator (B·heads, H, W) fp32."""
    b, heads, d, h, w = q.shape
    meta = _meta(q, window_size, overlap)
    stride = meta["STRIDE"]
    out = _empty(q.shape, q.dtype, q.device)
    den = _empty((b * heads, h, w), torch.float32, q.device)
    n_cw = math.ceil(w / stride)
    grid = (b * heads, math.ceil(h / stride) * n_cw)
    _sliding_proxy_fwd[grid](
        q,
        k,
        v,
        temperature,
        rel_bias,
        out,
        den,
        h,
        w,
        (h - overlap) // stride,
        (w - overlap) // stride,
        n_cw,
        NCOV=math.ceil(window_size / stride),
        BQ=max(16, triton.next_power_of_2(stride * stride)),
        num_warps=8,
        **meta,
    )
    return out, den


def _backward_triton(q, k, v, temperature, rel_bias, out, den, grad_out, window_size, overlap):
    """Gradients (q, k, v, temperature, rel_bias). With P = e^(s−m_w)/D_p, δ_p = g_p·out_p, for window w:

        ∂L/∂s_pj = P_pj (g_p·v_j − δ_p) − [j = argmax_j s_pj] Σ_j' P_pj' (g_p·v_j' − δ_p)

    The second term is the gradient through the window's max m_w: e^(−m_w) scales that window's numerator
    and denominator alike, which cancels inside one window but not in the ratio of sums over windows.
    Then dq_p = t Σ ∂s·k, dk_j = t Σ ∂s·q, dv_j = Σ P·g, dt = Σ_p q_p·(dq_p / t), drel_bias = Σ_{b,w} ∂s.
    """
    b, heads, d, h, w = q.shape
    meta = _meta(q, window_size, overlap)
    stride, area = meta["STRIDE"], window_size * window_size
    n_wh, n_ww = (h - overlap) // stride, (w - overlap) // stride
    grad_out = grad_out.contiguous()
    delta = (grad_out.float() * out.float()).sum(2).reshape(b * heads, h, w)
    dqr, dk, dv = (_empty(q.shape, torch.float32, q.device).zero_() for _ in range(3))
    db_part = _empty((b * heads, n_wh, area, area), torch.float32, q.device)
    bq = 32
    _sliding_proxy_bwd[(b * heads, n_wh)](
        q,
        k,
        v,
        temperature,
        rel_bias,
        grad_out,
        den,
        delta,
        dqr,
        dk,
        dv,
        db_part,
        h,
        w,
        n_wh,
        n_ww,
        BQ=bq,
        NQB=math.ceil(area / bq),
        num_warps=4,
        **meta,
    )
    t = temperature.float().view(1, heads, 1, 1, 1)
    d_t = (q.float() * dqr).sum((0, 2, 3, 4))
    d_bias = db_part.view(b, heads, n_wh, area, area).sum((0, 2))
    return (
        (dqr * t).to(q.dtype),
        dk.to(k.dtype),
        dv.to(v.dtype),
        d_t.to(temperature.dtype).view(temperature.shape),
        d_bias.to(rel_bias.dtype),
    )


class SlidingProxyAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: CUDA (or CPU under TRITON_INTERPRET=1) → Triton kernels; otherwise reference.

    float64 always takes the reference (the Triton kernels accumulate in float32). The Triton path saves
    the merged denominator (fp32, one value per pixel and head) and recomputes scores in backward; the
    reference path recomputes the forward under autograd in backward.
    """

    @staticmethod
    def forward(ctx, q, k, v, temperature, rel_bias, window_size, overlap):  # noqa: D102
        ctx.window_size, ctx.overlap = window_size, overlap
        ctx.triton = use_triton(q, _sliding_proxy_fwd, "sliding_proxy_attention")
        if not ctx.triton:
            ctx.save_for_backward(q, k, v, temperature, rel_bias)
            return sliding_proxy_attention_reference(
                q, k, v, temperature=temperature, rel_bias=rel_bias, window_size=window_size, overlap=overlap
            )
        q, k, v, temperature, rel_bias = (x.contiguous() for x in (q, k, v, temperature, rel_bias))
        out, den = _forward_triton(q, k, v, temperature, rel_bias, window_size, overlap)
        ctx.save_for_backward(q, k, v, temperature, rel_bias, out, den)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        if ctx.triton:
            return (*_backward_triton(*ctx.saved_tensors, grad_out, ctx.window_size, ctx.overlap), None, None)
        inputs = [t.detach().requires_grad_() for t in ctx.saved_tensors]
        with torch.enable_grad():
            q, k, v, temperature, rel_bias = inputs
            out = sliding_proxy_attention_reference(
                q,
                k,
                v,
                temperature=temperature,
                rel_bias=rel_bias,
                window_size=ctx.window_size,
                overlap=ctx.overlap,
            )
            grads = torch.autograd.grad(out, inputs, grad_out)
        return (*grads, None, None)


def sliding_proxy_attention(
    q: Tensor, k: Tensor, v: Tensor, *, temperature: Tensor, rel_bias: Tensor, window_size: int, overlap: int
) -> Tensor:
    """Sliding proxy attention: q, k, v (B, heads, d, H, W), temperature with `heads` elements (any shape),
    rel_bias (heads, w², w²) already gathered → (B, heads, d, H, W). (H − overlap) and (W − overlap) must
    be multiples of window_size − overlap. Differentiable in q, k, v, temperature and rel_bias."""
    _check_inputs(q, k, v, temperature, rel_bias, window_size, overlap)
    return SlidingProxyAttentionFunction.apply(q, k, v, temperature, rel_bias, window_size, overlap)


def macs(b: int, heads: int, d: int, h: int, w: int, window_size: int, overlap: int) -> int:
    """Multiply-accumulates of the two matmuls per window (q·kᵀ and attn·v) as fvcore counts the official
    code: 2 · B · heads · windows · w⁴ · d. exp/sum/div and unfold/fold are not counted (fvcore skips them).
    """
    windows = _window_grid(h, window_size, overlap, "H") * _window_grid(w, window_size, overlap, "W")
    return 2 * b * heads * windows * window_size**4 * d
