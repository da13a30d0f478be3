"""Sliding proxy attention of SPAN-light (zononhzy/SPAN, `SPAB.forward`).

Layout: q, k, v are (B, heads, d, H, W). Windows are w×w with stride s = w − overlap, placed at
(i·s, j·s) for i < nH = (H − overlap) / s, j < nW = (W − overlap) / s (what `F.unfold` with that
stride visits). For a window and a query pixel p inside it, with t = temperature[head]:

    s_pj = (t·q_p) · k_j + rel_bias[head, p_local, j_local]     over the window's keys j
    m = max_j s_pj,  N_p += Σ_j e^(s_pj − m) v_j,  D_p += Σ_j e^(s_pj − m)

and out_p = N_p / D_p summed over every window covering p. Each window subtracts its own max, so this is
not a softmax over the union of the windows; it is what the official code computes and is kept exactly.

Backends (`kernels.dispatch.use_triton`): CUDA tensors run the Triton kernels, CPU tensors (float64
always) the CPU path of `kernels.sliding_proxy_cpu` (contiguous window batches, explicit backward). The
autograd reference of the tests, `sliding_proxy_attention_reference`, runs a row of windows at a time.

Triton layout: one program per (batch·head, window, block of BQ window pixels). The forward writes each
window's partial numerator and denominator; a fold kernel sums the ≤ ⌈w/s⌉² windows covering each pixel in
a fixed order (no atomics). The backward has separate dq, dk/dv and rel_bias kernels, each writing
per-window (or per-group) partials that are folded or summed in a fixed order, so it is deterministic.

Precision: bf16/fp16 inputs go to tensor cores (fp32 accumulation; probabilities are rounded to the input
dtype before the value product, as flash attention does). fp32 inputs use IEEE fp32 dots unless
``torch.set_float32_matmul_precision("high")`` (or "medium") is set, which selects TF32. Products whose inner
or outer dimension is d use tensor cores only when padding d to the tile (≥ 16) costs at most 1.5×;
otherwise (SPAN-light: d = 10) the d-deep score products q·k and dO·v run as d exact rank-1 updates in fp32
on the CUDA cores, which keeps executed work within 1.5× of the useful work (`work`).

Input checks: shapes and dtypes are always checked. NaN/Inf inputs raise ValueError for CPU tensors; on CUDA
the check would cost a device→host synchronisation per call, so it runs only in the debug mode of
``kernels.dispatch.device_checks`` (anomaly mode or REPROSR_KERNEL_CHECKS=1); otherwise non-finite inputs
propagate to a non-finite output.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from kernels import sliding_proxy_cpu
from kernels.dispatch import device_checks, use_triton

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


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
    """Validate shapes/dtypes; return temperature flattened to (heads,) and the window grid (nH, nW)."""
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
    return temperature.reshape(heads), n_h, n_w


def _check_finite(**tensors: Tensor) -> None:
    """ValueError naming the first non-finite input. Runs for CPU tensors; on CUDA (a host sync per
    tensor) only in the debug mode of :func:`device_checks`."""
    for name, t in tensors.items():
        if t.is_cuda and not device_checks():
            continue
        # a finite sum (one fast pass) proves every element finite; otherwise check element by element,
        # since a sum of finite values can overflow
        if not torch.isfinite(t.sum()) and not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or Inf: sliding proxy attention needs finite inputs")


# ---------------------------------------------------------------------------------------------------------
# PyTorch reference (CPU path, float64 reference of the tests)


def _row_windows(x: Tensor, y0: int, window_size: int, stride: int, n_w: int) -> Tensor:
    """Windows of one row: (B, heads, c, H, W) → (B, heads, nW, w², c), pixels row-major like F.unfold."""
    b, heads, c = x.shape[:3]
    strip = x[:, :, :, y0 : y0 + window_size].unfold(4, window_size, stride)  # B, heads, c, w, nW, w
    return strip.permute(0, 1, 4, 3, 5, 2).reshape(b, heads, n_w, window_size * window_size, c)


def _add_row_windows(target: Tensor, parts: Tensor, y0: int, window_size: int, cols: Tensor) -> None:
    """target[:, :, :, y0 : y0 + w] += the row's windows `parts` (B, heads, nW, w², c) at their pixels."""
    b, heads, n_w, _, c = parts.shape
    parts = parts.reshape(b, heads, n_w, window_size, window_size, c).permute(0, 1, 5, 3, 2, 4)
    strip = parts.new_zeros(b, heads, c, window_size, target.shape[4])
    strip.index_add_(4, cols, parts.reshape(b, heads, c, window_size, -1))
    target[:, :, :, y0 : y0 + window_size] += strip


def _window_columns(n_w: int, window_size: int, stride: int, device: torch.device) -> Tensor:
    """Image column of each (window, column-in-window) of a row, flattened in `_add_row_windows` order."""
    return (
        torch.arange(n_w, device=device)[:, None] * stride + torch.arange(window_size, device=device)
    ).flatten()


def _reference_forward(
    q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, rel_bias: Tensor, window_size: int, overlap: int
) -> Tensor:
    """Output, one row of windows at a time on strided views; differentiable through autograd."""
    temperature, n_h, n_w = _check_inputs(q, k, v, temperature, rel_bias, window_size, overlap)
    b, heads, d, h, w = q.shape
    ws, stride = window_size, window_size - overlap
    cols = _window_columns(n_w, ws, stride, q.device)
    t = temperature.to(q.dtype).view(1, heads, 1, 1, 1)
    bias = rel_bias.to(q.dtype)[None, :, None]
    # values with a ones channel: one product gives the numerator and the denominator
    v1 = torch.cat([v, v.new_ones(b, heads, 1, h, w)], 2)
    acc = q.new_zeros(b, heads, d + 1, h, w)
    for i in range(n_h):
        y0 = i * stride
        qw, kw, vw = (_row_windows(x, y0, ws, stride, n_w) for x in (q, k, v1))
        scores = (qw * t) @ kw.transpose(-2, -1) + bias
        e = torch.exp(scores - torch.max(scores, dim=-1, keepdim=True)[0])
        _add_row_windows(acc, e @ vw, y0, ws, cols)
    num, den = acc.split([d, 1], 2)
    return num / den


def sliding_proxy_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, *, temperature: Tensor, rel_bias: Tensor, window_size: int, overlap: int
) -> Tensor:
    """PyTorch reference (any float dtype, differentiable through autograd), one row of windows at a time.

    Peak extra memory is one row of window attention matrices, (B, heads, nW, w², w²). Gradients follow
    `torch.max`, as in the official code: the max shift does not cancel across windows, so the argmax
    key of every window row receives a gradient through m.
    """
    return _reference_forward(q, k, v, temperature, rel_bias, window_size, overlap)


def sliding_proxy_attention_official_style(
    q: Tensor, k: Tensor, v: Tensor, *, temperature: Tensor, rel_bias: Tensor, window_size: int, overlap: int
) -> Tensor:
    """The official formulation: unfold every window, full (w², w²) attention per window, fold back.

    Independent of `sliding_proxy_attention_reference` (used to cross-check it); it materialises all
    windows' attention matrices at once, like `SPAB.forward`.
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


# ---------------------------------------------------------------------------------------------------------
# Triton kernels


@dataclass(frozen=True)
class Tiles:
    """One launch configuration of the window kernels: BQ query pixels × BK key pixels per tile."""

    bq: int
    bk: int
    num_warps: int
    num_stages: int


# Autotuned on CUDA. Each keeps the padding of a w = 12 window (144 pixels) to ≤ 160 per side and the
# product of both paddings ≤ 1.11×, so `work` stays ≤ 1.5× at SPAN-light's shapes for every choice.
TILES = [
    Tiles(16, 16, 1, 2),
    Tiles(16, 16, 2, 3),
    Tiles(32, 16, 2, 2),
    Tiles(32, 16, 4, 3),
    Tiles(16, 32, 2, 2),
    Tiles(16, 32, 4, 3),
]
# The interpreter runs one configuration (autotuning there would only multiply test time), with larger
# tiles: it runs programs one after another at a cost per operation, not per element.
INTERPRETER_TILES = Tiles(32, 32, 1, 1)
FOLD_PIXELS = [(64, 2), (128, 4), (256, 4)]
INTERPRETER_FOLD_PIXELS = (128, 1)


def _tile_configs() -> list[triton.Config]:
    tiles = [INTERPRETER_TILES] if INTERPRET else TILES
    return [
        triton.Config({"BQ": t.bq, "BK": t.bk}, num_warps=t.num_warps, num_stages=t.num_stages) for t in tiles
    ]


def _fold_configs() -> list[triton.Config]:
    choices = [INTERPRETER_FOLD_PIXELS] if INTERPRET else FOLD_PIXELS
    return [triton.Config({"BP": bp}, num_warps=nw) for bp, nw in choices]


_KEY = ["D", "WS", "STRIDE", "QK_TC"]


@triton.jit
def _mma(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b with fp32 accumulation. UPCAST (the interpreter only, whose bf16 dot multiplies raw bits)
    computes the same products exactly in fp32."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _channel_dot(
    A,
    a_off,
    a_ok,
    B,
    b_off,
    b_ok,
    HW,
    D: tl.constexpr,
    BD: tl.constexpr,
    M: tl.constexpr,
    N: tl.constexpr,
    ON_TC: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """(M, N) fp32: Σ_c A[a_off + c·HW] · B[b_off + c·HW] over the D channels of two pixel lists.

    ON_TC: one tensor-core dot with the channels padded to BD; else D rank-1 updates (exact work)."""
    if ON_TC:
        c = tl.arange(0, BD)
        c_ok = c < D
        a = tl.load(A + a_off[:, None] + c[None, :] * HW, mask=a_ok[:, None] & c_ok[None, :], other=0.0)
        b = tl.load(B + b_off[None, :] + c[:, None] * HW, mask=c_ok[:, None] & b_ok[None, :], other=0.0)
        acc = _mma(a, b, PRECISION, UPCAST)
    else:
        acc = tl.zeros((M, N), dtype=tl.float32)
        for ch in tl.static_range(D):
            a = tl.load(A + a_off + ch * HW, mask=a_ok, other=0.0).to(tl.float32)
            b = tl.load(B + b_off + ch * HW, mask=b_ok, other=0.0).to(tl.float32)
            acc += a[:, None] * b[None, :]
    return acc


@triton.jit
def _load_pixels(X, off, ok, HW, D: tl.constexpr, BD: tl.constexpr):
    """(len(off), BD) tile of X at pixels `off`, channels along the second axis (zero padded)."""
    c = tl.arange(0, BD)
    return tl.load(X + off[:, None] + c[None, :] * HW, mask=ok[:, None] & (c < D)[None, :], other=0.0)


@triton.jit
def _store_partial(P, part, idx, ok, x, D: tl.constexpr, BD: tl.constexpr, A: tl.constexpr):
    """x (len(idx), BD) into the (D, A) partial block of one window at window pixels idx."""
    c = tl.arange(0, BD)
    tl.store(P + part * D + c[None, :] * A + idx[:, None], x, mask=ok[:, None] & (c < D)[None, :])


@triton.jit
def _window_pixels(base, win, N_WW, idx, W, WS: tl.constexpr, STRIDE: tl.constexpr):
    """Flat offsets of window `win`'s pixels idx (row-major inside the window) in one (H, W) plane."""
    return base + ((win // N_WW) * STRIDE + idx // WS) * W + (win % N_WW) * STRIDE + idx % WS


@triton.jit
def _probs(
    Q, K, BIAS, q_off, r, r_ok, k_off, j, k_ok, m, den, t, head, HW,
    D: tl.constexpr, BD: tl.constexpr, A: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr,
    QK_TC: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    """P = e^(s − m) / den for a (BQ, BK) tile of one window (zero outside it), with the forward's m."""
    s = _channel_dot(Q, q_off, r_ok, K, k_off, k_ok, HW, D, BD, BQ, BK, QK_TC, PRECISION, UPCAST) * t
    ok = r_ok[:, None] & k_ok[None, :]
    s += tl.load(BIAS + head * A * A + r[:, None] * A + j[None, :], mask=ok, other=0.0).to(tl.float32)
    return tl.where(ok, tl.exp(s - m[:, None]) / den[:, None], 0.0)


@triton.autotune(configs=_tile_configs(), key=_KEY)
@triton.jit
def _sliding_proxy_fwd(
    Q, K, V, T, BIAS, NUM, DEN, MAX, ARG, SB, H, W, N_WW, N_WIN,
    HEADS: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, WS: tl.constexpr, STRIDE: tl.constexpr,
    QK_TC: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """Program (batch·head, window, query block): online max over the window's key blocks, then the
    window's partial numerator (D, w²) and denominator, and its row max and argmax for the backward."""
    A: tl.constexpr = WS * WS
    bh = tl.program_id(0).to(tl.int64)  # flat offsets exceed int32 at large B·heads·d·H·W
    win = tl.program_id(1)
    head = bh % HEADS
    base = (bh // HEADS) * SB + head * D * H * W
    t = tl.load(T + head).to(tl.float32)
    r = tl.program_id(2) * BQ + tl.arange(0, BQ)
    r_ok = r < A
    q_off = _window_pixels(base, win, N_WW, r, W, WS, STRIDE)
    m_i = tl.full((BQ,), float("-inf"), dtype=tl.float32)
    arg_i = tl.zeros((BQ,), dtype=tl.int32)
    l_i = tl.zeros((BQ,), dtype=tl.float32)
    acc = tl.zeros((BQ, BD), dtype=tl.float32)
    for kb in range(0, tl.cdiv(A, BK)):
        j = kb * BK + tl.arange(0, BK)
        k_ok = j < A
        k_off = _window_pixels(base, win, N_WW, j, W, WS, STRIDE)
        s = _channel_dot(Q, q_off, r_ok, K, k_off, k_ok, H * W, D, BD, BQ, BK, QK_TC, PRECISION, UPCAST) * t
        s += tl.load(
            BIAS + head * A * A + r[:, None] * A + j[None, :], mask=r_ok[:, None] & k_ok[None, :], other=0.0
        ).to(tl.float32)
        s = tl.where(k_ok[None, :], s, float("-inf"))
        blk_max = tl.max(s, axis=1)
        # strict > keeps the first maximal key, as torch.max does
        arg_i = tl.where(blk_max > m_i, tl.argmax(s, axis=1).to(tl.int32) + kb * BK, arg_i)
        m_new = tl.maximum(m_i, blk_max)
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = _load_pixels(V, k_off, k_ok, H * W, D, BD)
        acc = acc * alpha[:, None] + _mma(p.to(V.dtype.element_ty), v, PRECISION, UPCAST)
        m_i = m_new
    part = (bh * N_WIN + win) * A
    _store_partial(NUM, part, r, r_ok, acc, D, BD, A)
    tl.store(DEN + part + r, l_i, mask=r_ok)
    tl.store(MAX + part + r, m_i, mask=r_ok)
    tl.store(ARG + part + r, arg_i, mask=r_ok)


@triton.autotune(configs=_fold_configs(), key=_KEY[:3])
@triton.jit
def _sliding_proxy_fold(
    PART, PART_DEN, OUT, DEN_OUT, H, W, N_WH, N_WW, N_WIN,
    D: tl.constexpr, BD: tl.constexpr, WS: tl.constexpr, STRIDE: tl.constexpr, NCOV: tl.constexpr,
    DIVIDE: tl.constexpr, BP: tl.constexpr,
):  # fmt: skip
    """Program (plane, BP pixels): sums the (D, w²) window partials covering each pixel in a fixed order
    into OUT (planes, D, H, W); DIVIDE also sums the partial denominators, writes them to DEN_OUT
    (planes, H, W) and divides."""
    A: tl.constexpr = WS * WS
    plane = tl.program_id(0).to(tl.int64)
    pix = tl.program_id(1) * BP + tl.arange(0, BP)
    ok = pix < H * W
    y = pix // W
    x = pix % W
    c = tl.arange(0, BD)
    c_ok = c < D
    acc = tl.zeros((BP, BD), dtype=tl.float32)
    den = tl.zeros((BP,), dtype=tl.float32)
    for a in tl.static_range(NCOV):
        wy = y // STRIDE - a
        ly = y - wy * STRIDE
        in_y = ok & (wy >= 0) & (wy < N_WH) & (ly < WS)
        for b in tl.static_range(NCOV):
            wx = x // STRIDE - b
            lx = x - wx * STRIDE
            inside = in_y & (wx >= 0) & (wx < N_WW) & (lx < WS)
            part = (plane * N_WIN + wy * N_WW + wx) * A
            idx = ly * WS + lx
            acc += tl.load(
                PART + (part * D + idx)[:, None] + c[None, :] * A,
                mask=inside[:, None] & c_ok[None, :],
                other=0.0,
            )
            if DIVIDE:
                den += tl.load(PART_DEN + part + idx, mask=inside, other=0.0)
    if DIVIDE:
        acc = acc / tl.where(ok, den, 1.0)[:, None]
        tl.store(DEN_OUT + plane * H * W + pix, den, mask=ok)
    tl.store(
        OUT + plane * D * H * W + c[None, :] * H * W + pix[:, None],
        acc.to(OUT.dtype.element_ty),
        mask=ok[:, None] & c_ok[None, :],
    )


@triton.autotune(configs=_tile_configs(), key=_KEY)
@triton.jit
def _sliding_proxy_bwd_dq(
    Q, K, V, T, BIAS, G, DEN, DELTA, MAX, ARG, DQ, RSUM, SB, H, W, N_WW, N_WIN,
    HEADS: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, WS: tl.constexpr, STRIDE: tl.constexpr,
    QK_TC: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """Program (batch·head, window, query block): the window's partial dq/t (D, w²) and, per query,
    rsum = Σ_j P_pj (dP_pj − δ_p), the gradient that the window's max sends to its argmax key."""
    A: tl.constexpr = WS * WS
    bh = tl.program_id(0).to(tl.int64)
    win = tl.program_id(1)
    head = bh % HEADS
    base = (bh // HEADS) * SB + head * D * H * W
    t = tl.load(T + head).to(tl.float32)
    r = tl.program_id(2) * BQ + tl.arange(0, BQ)
    r_ok = r < A
    pix = _window_pixels(0, win, N_WW, r, W, WS, STRIDE)
    q_off = base + pix
    g_off = bh * D * H * W + pix
    part = (bh * N_WIN + win) * A
    m = tl.load(MAX + part + r, mask=r_ok, other=0.0)
    arg = tl.load(ARG + part + r, mask=r_ok, other=0)
    den = tl.load(DEN + bh * H * W + pix, mask=r_ok, other=1.0)
    delta = tl.load(DELTA + bh * H * W + pix, mask=r_ok, other=0.0)
    rsum = tl.zeros((BQ,), dtype=tl.float32)
    dq = tl.zeros((BQ, BD), dtype=tl.float32)
    for kb in range(0, tl.cdiv(A, BK)):
        j = kb * BK + tl.arange(0, BK)
        k_ok = j < A
        k_off = _window_pixels(base, win, N_WW, j, W, WS, STRIDE)
        p = _probs(Q, K, BIAS, q_off, r, r_ok, k_off, j, k_ok, m, den, t, head, H * W,
                   D, BD, A, BQ, BK, QK_TC, PRECISION, UPCAST)  # fmt: skip
        dp = _channel_dot(G, g_off, r_ok, V, k_off, k_ok, H * W, D, BD, BQ, BK, QK_TC, PRECISION, UPCAST)
        ds = p * (dp - delta[:, None])
        rsum += tl.sum(ds, axis=1)
        dq += _mma(ds.to(K.dtype.element_ty), _load_pixels(K, k_off, k_ok, H * W, D, BD), PRECISION, UPCAST)
    k_arg = _load_pixels(K, _window_pixels(base, win, N_WW, arg, W, WS, STRIDE), r_ok, H * W, D, BD)
    _store_partial(DQ, part, r, r_ok, dq - rsum[:, None] * k_arg.to(tl.float32), D, BD, A)
    tl.store(RSUM + part + r, rsum, mask=r_ok)


@triton.jit
def _score_grads(
    Q, K, V, G, BIAS, DEN, DELTA, MAX, ARG, RSUM, bh, head, base, win, r, j, k_off, k_ok, t,
    H, W, N_WW, N_WIN,
    D: tl.constexpr, BD: tl.constexpr, WS: tl.constexpr, STRIDE: tl.constexpr, BQ: tl.constexpr,
    BK: tl.constexpr, QK_TC: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    """(P, ∂L/∂s) of a (BQ, BK) tile of window `win` for query pixels r, the argmax correction included."""
    A: tl.constexpr = WS * WS
    r_ok = r < A
    pix = _window_pixels(0, win, N_WW, r, W, WS, STRIDE)
    part = (bh * N_WIN + win) * A
    m = tl.load(MAX + part + r, mask=r_ok, other=0.0)
    arg = tl.load(ARG + part + r, mask=r_ok, other=0)
    rsum = tl.load(RSUM + part + r, mask=r_ok, other=0.0)
    den = tl.load(DEN + bh * H * W + pix, mask=r_ok, other=1.0)
    delta = tl.load(DELTA + bh * H * W + pix, mask=r_ok, other=0.0)
    p = _probs(Q, K, BIAS, base + pix, r, r_ok, k_off, j, k_ok, m, den, t, head, H * W,
               D, BD, A, BQ, BK, QK_TC, PRECISION, UPCAST)  # fmt: skip
    dp = _channel_dot(
        G, bh * D * H * W + pix, r_ok, V, k_off, k_ok, H * W, D, BD, BQ, BK, QK_TC, PRECISION, UPCAST
    )
    ds = p * (dp - delta[:, None]) - tl.where(j[None, :] == arg[:, None], rsum[:, None], 0.0)
    return p, tl.where(r_ok[:, None] & k_ok[None, :], ds, 0.0)


@triton.autotune(configs=_tile_configs(), key=_KEY)
@triton.jit
def _sliding_proxy_bwd_dkdv(
    Q, K, V, T, BIAS, G, DEN, DELTA, MAX, ARG, RSUM, DK, DV, SB, H, W, N_WW, N_WIN,
    HEADS: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, WS: tl.constexpr, STRIDE: tl.constexpr,
    QK_TC: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """Program (batch·head, window, key block): the window's partial dk and dv (D, w²) over its queries."""
    A: tl.constexpr = WS * WS
    bh = tl.program_id(0).to(tl.int64)
    win = tl.program_id(1)
    head = bh % HEADS
    base = (bh // HEADS) * SB + head * D * H * W
    t = tl.load(T + head).to(tl.float32)
    j = tl.program_id(2) * BK + tl.arange(0, BK)
    k_ok = j < A
    k_off = _window_pixels(base, win, N_WW, j, W, WS, STRIDE)
    dk = tl.zeros((BK, BD), dtype=tl.float32)
    dv = tl.zeros((BK, BD), dtype=tl.float32)
    for qb in range(0, tl.cdiv(A, BQ)):
        r = qb * BQ + tl.arange(0, BQ)
        p, ds = _score_grads(Q, K, V, G, BIAS, DEN, DELTA, MAX, ARG, RSUM, bh, head, base, win, r, j, k_off,
                             k_ok, t, H, W, N_WW, N_WIN, D, BD, WS, STRIDE, BQ, BK, QK_TC, PRECISION,
                             UPCAST)  # fmt: skip
        pix = _window_pixels(0, win, N_WW, r, W, WS, STRIDE)
        g = _load_pixels(G, bh * D * H * W + pix, r < A, H * W, D, BD)
        q = _load_pixels(Q, base + pix, r < A, H * W, D, BD)
        dv += _mma(tl.trans(p.to(G.dtype.element_ty)), g, PRECISION, UPCAST)
        dk += _mma(tl.trans(ds.to(Q.dtype.element_ty)), q, PRECISION, UPCAST)
    part = (bh * N_WIN + win) * A
    _store_partial(DK, part, j, k_ok, dk * t, D, BD, A)
    _store_partial(DV, part, j, k_ok, dv, D, BD, A)


@triton.autotune(configs=_tile_configs(), key=_KEY)
@triton.jit
def _sliding_proxy_bwd_dbias(
    Q, K, V, T, BIAS, G, DEN, DELTA, MAX, ARG, RSUM, DBIAS, SB, H, W, N_WW, N_WIN, N_BW, GROUPS,
    HEADS: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, WS: tl.constexpr, STRIDE: tl.constexpr,
    QK_TC: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """Program (head, (query block, key block) tile, group): the tile's rel_bias gradient summed over the
    group's (batch, window) pairs, i = group, group + GROUPS, … < N_BW = B·windows."""
    A: tl.constexpr = WS * WS
    head = tl.program_id(0)
    n_kb = tl.cdiv(A, BK)
    r = (tl.program_id(1) // n_kb) * BQ + tl.arange(0, BQ)
    j = (tl.program_id(1) % n_kb) * BK + tl.arange(0, BK)
    k_ok = j < A
    group = tl.program_id(2)
    t = tl.load(T + head).to(tl.float32)
    acc = tl.zeros((BQ, BK), dtype=tl.float32)
    for i in range(group, N_BW, GROUPS):
        b = i // N_WIN
        win = i % N_WIN
        bh = (b * HEADS + head).to(tl.int64)
        base = b.to(tl.int64) * SB + head * D * H * W
        k_off = _window_pixels(base, win, N_WW, j, W, WS, STRIDE)
        _, ds = _score_grads(Q, K, V, G, BIAS, DEN, DELTA, MAX, ARG, RSUM, bh, head, base, win, r, j, k_off,
                             k_ok, t, H, W, N_WW, N_WIN, D, BD, WS, STRIDE, BQ, BK, QK_TC, PRECISION,
                             UPCAST)  # fmt: skip
        acc += ds
    tl.store(
        DBIAS + ((head * GROUPS + group) * A + r[:, None]) * A + j[None, :],
        acc,
        mask=(r < A)[:, None] & k_ok[None, :],
    )


# ---------------------------------------------------------------------------------------------------------
# Launch configuration, work model and host wrappers


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Every buffer a kernel writes is allocated here (the tests wrap it with guard regions)."""
    return torch.empty(shape, dtype=dtype, device=device)


def _block_d(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


def _qk_on_tensor_cores(d: int) -> bool:
    """Whether the d-deep products go to tensor cores: only when padding d to the tile costs ≤ 1.5×."""
    return 2 * _block_d(d) <= 3 * d


@dataclass(frozen=True)
class Geometry:
    """Launch geometry of one call (sizes in window pixels: A = w²)."""

    b: int
    heads: int
    d: int
    h: int
    w: int
    window_size: int
    overlap: int

    @property
    def stride(self) -> int:
        return self.window_size - self.overlap

    @property
    def n_wh(self) -> int:
        return _window_grid(self.h, self.window_size, self.overlap, "H")

    @property
    def n_ww(self) -> int:
        return _window_grid(self.w, self.window_size, self.overlap, "W")

    @property
    def windows(self) -> int:
        return self.n_wh * self.n_ww

    @property
    def area(self) -> int:
        return self.window_size**2

    @property
    def ncov(self) -> int:
        return math.ceil(self.window_size / self.stride)

    def constexprs(self, dtype: torch.dtype, upcast: bool) -> dict:
        fp32_precision = "tf32" if torch.get_float32_matmul_precision() != "highest" else "ieee"
        return dict(
            HEADS=self.heads,
            D=self.d,
            BD=_block_d(self.d),
            WS=self.window_size,
            STRIDE=self.stride,
            QK_TC=_qk_on_tensor_cores(self.d),
            PRECISION=fp32_precision if dtype == torch.float32 else "tf32",
            UPCAST=upcast,
        )


def dbias_groups(g: Geometry) -> int:
    """Groups of (batch, window) pairs the rel_bias kernel splits over: ~1000 programs in all on a GPU, at
    most 2 under the interpreter (which runs programs one after another)."""
    tiles = g.heads * math.ceil(g.area / 16) ** 2
    return max(1, min(g.b * g.windows, 2 if INTERPRET else math.ceil(1024 / tiles)))


@dataclass(frozen=True)
class Work:
    """Executed (from the launch grid and tile shapes) vs useful FLOPs and bytes of one call."""

    executed_flops: int
    useful_flops: int
    executed_bytes: int
    useful_bytes: int

    @property
    def flop_ratio(self) -> float:
        return self.executed_flops / self.useful_flops

    @property
    def byte_ratio(self) -> float:
        return self.executed_bytes / self.useful_bytes


def work(g: Geometry, tiles: Tiles, element_size: int, backward: bool) -> Work:
    """Work model of the Triton path with `tiles`: FLOPs = 2 per multiply-accumulate of every dot and
    rank-1 update as launched (masked tile rows and padded channels count as executed); bytes = every tile
    load and store of every program (hits in cache included). Useful: 2·`macs` (the two forward products,
    ×3.5 with the backward's five), inputs read and output written once (×3 with backward)."""
    a, d, bd = g.area, g.d, _block_d(g.d)
    bh, e = g.b * g.heads, element_size
    rows, cols = math.ceil(a / tiles.bq) * tiles.bq, math.ceil(a / tiles.bk) * tiles.bk
    depth = bd if _qk_on_tensor_cores(d) else d  # the d-deep products (q·k, dO·v)
    pairs = bh * g.windows * rows * cols  # (query, key) tile elements over all window programs
    plane = g.h * g.w
    # loads per (query block, key block) tile: q (or dO) and k (or v) at d channels, the bias tile
    qk_bytes = (tiles.bq + tiles.bk) * bd * e if _qk_on_tensor_cores(d) else (tiles.bq + tiles.bk) * d * e
    tiles_n = bh * g.windows * (rows // tiles.bq) * (cols // tiles.bk)
    bias_bytes = tiles.bq * tiles.bk * 4
    partial_bytes = bh * g.windows * a * (bd * 4 + 12)  # partial numerator, den, max, argmax
    fold_bytes = bh * g.windows * a * (bd * 4 + 4) + bh * plane * (bd * e + 4)
    flops = 2 * pairs * (depth + bd)
    nbytes = tiles_n * (qk_bytes + bias_bytes + tiles.bk * bd * e) + partial_bytes + fold_bytes
    useful_flops = 2 * macs(g.b, g.heads, g.d, g.h, g.w, g.window_size, g.overlap)
    useful_bytes = 4 * bh * d * plane * e
    if backward:
        # dq: P (q·k) and dP (dO·v) at `depth`, dS·k; dk/dv: P, dP again, dSᵀq and Pᵀ dO; rel_bias: P, dP.
        flops += 2 * pairs * (2 * depth + bd) + 2 * pairs * (2 * depth + 2 * bd)
        flops += 2 * g.heads * rows * cols * g.b * g.windows * 2 * depth
        per_tile = 2 * qk_bytes + bias_bytes + tiles.bq * 16  # + row statistics
        nbytes += 3 * tiles_n * per_tile + tiles_n * 2 * (tiles.bq + tiles.bk) * bd * e
        nbytes += 3 * bh * g.windows * a * bd * 4 + 3 * fold_bytes  # dq, dk, dv partials and their fold
        useful_flops = useful_flops * 7 // 2
        useful_bytes *= 3
    return Work(flops, useful_flops, nbytes, useful_bytes)


def launch_tiles(kernel: triton.runtime.Autotuner) -> Tiles:
    """Tile configuration the autotuner chose for `kernel` (the first candidate before any call)."""
    config = kernel.best_config if getattr(kernel, "best_config", None) else kernel.configs[0]
    return Tiles(config.kwargs["BQ"], config.kwargs["BK"], config.num_warps, config.num_stages)


def _forward_triton(q, k, v, sb: int, temperature, rel_bias, g: Geometry):
    """(out (B, heads, d, H, W) in q's dtype, merged den (B·heads, H, W) fp32, row max, argmax)."""
    meta = g.constexprs(q.dtype, upcast=not q.is_cuda)
    bh, a, dev = g.b * g.heads, g.area, q.device
    num = _empty((bh, g.windows, g.d, a), torch.float32, dev)
    part_den, row_max = (_empty((bh, g.windows, a), torch.float32, dev) for _ in range(2))
    row_arg = _empty((bh, g.windows, a), torch.int32, dev)
    _sliding_proxy_fwd[lambda c: (bh, g.windows, triton.cdiv(a, c["BQ"]))](
        q,
        k,
        v,
        temperature,
        rel_bias,
        num,
        part_den,
        row_max,
        row_arg,
        sb,
        g.h,
        g.w,
        g.n_ww,
        g.windows,
        **meta,
    )
    out = _empty((g.b, g.heads, g.d, g.h, g.w), q.dtype, dev)
    den = _empty((bh, g.h, g.w), torch.float32, dev)
    _fold(num, part_den, out, den, bh, g)
    return out, den, row_max, row_arg


def _fold(part: Tensor, part_den: Tensor | None, out: Tensor, den: Tensor | None, planes: int, g: Geometry):
    divide = part_den is not None
    _sliding_proxy_fold[lambda c: (planes, triton.cdiv(g.h * g.w, c["BP"]))](
        part, part_den if divide else part, out, den if divide else out, g.h, g.w, g.n_wh, g.n_ww, g.windows,
        D=g.d, BD=_block_d(g.d), WS=g.window_size, STRIDE=g.stride, NCOV=g.ncov, DIVIDE=divide,
    )  # fmt: skip


def _backward_triton(
    q, k, v, temperature, rel_bias, out, den, row_max, row_arg, grad_out, sb: int, g: Geometry
):
    """Gradients (q, k, v, temperature, rel_bias). With P = e^(s−m_w)/D_p, δ_p = g_p·out_p, for window w:

        ∂L/∂s_pj = P_pj (g_p·v_j − δ_p) − [j = argmax_j s_pj] Σ_j' P_pj' (g_p·v_j' − δ_p)

    The second term is the gradient through the window's max m_w: e^(−m_w) scales that window's numerator
    and denominator alike, which cancels inside one window but not in the ratio of sums over windows.
    Then dq_p = t Σ ∂s·k, dk_j = t Σ ∂s·q, dv_j = Σ P·g, dt = Σ_p q_p·(dq_p / t), drel_bias = Σ_{b,w} ∂s.
    """
    meta = g.constexprs(q.dtype, upcast=not q.is_cuda)
    bh, a, dev = g.b * g.heads, g.area, q.device
    grad_out = grad_out.contiguous()
    delta = (grad_out.float() * out.float()).sum(2).reshape(bh, g.h, g.w)
    grads = _empty((3, bh, g.windows, g.d, a), torch.float32, dev)  # dq/t, dk, dv per window
    rsum = _empty((bh, g.windows, a), torch.float32, dev)
    common = (q, k, v, temperature, rel_bias, grad_out, den, delta, row_max, row_arg)
    _sliding_proxy_bwd_dq[lambda c: (bh, g.windows, triton.cdiv(a, c["BQ"]))](
        *common, grads[0], rsum, sb, g.h, g.w, g.n_ww, g.windows, **meta
    )
    _sliding_proxy_bwd_dkdv[lambda c: (bh, g.windows, triton.cdiv(a, c["BK"]))](
        *common, rsum, grads[1], grads[2], sb, g.h, g.w, g.n_ww, g.windows, **meta
    )
    groups = dbias_groups(g)
    d_bias = _empty((g.heads, groups, a, a), torch.float32, dev)
    _sliding_proxy_bwd_dbias[lambda c: (g.heads, triton.cdiv(a, c["BQ"]) * triton.cdiv(a, c["BK"]), groups)](
        *common, rsum, d_bias, sb, g.h, g.w, g.n_ww, g.windows, g.b * g.windows, groups, **meta
    )
    folded = _empty((3, g.b, g.heads, g.d, g.h, g.w), torch.float32, dev)
    _fold(grads, None, folded, None, 3 * bh, g)
    dqr, dk, dv = folded.unbind(0)
    t = temperature.float().view(1, g.heads, 1, 1, 1)
    d_t = (q.float() * dqr).sum((0, 2, 3, 4))
    return (
        (dqr * t).to(q.dtype),
        dk.to(k.dtype),
        dv.to(v.dtype),
        d_t.to(temperature.dtype).view(temperature.shape),
        d_bias.sum(1).to(rel_bias.dtype),
    )


def _prepare(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor, int]:
    """(q, k, v, batch stride): (heads, d, H, W) contiguous with one batch stride shared by the three
    (no copy for the usual q, k, v = qkv.view(B, 3, heads, d, H, W).unbind(1))."""
    xs = (q, k, v)
    strides = {x.stride(0) for x in xs}
    if len(strides) != 1 or not all(x[0].is_contiguous() for x in xs) or q.stride(0) < q[0].numel():
        xs = tuple(x.contiguous() for x in xs)
    return (*xs, xs[0].stride(0))


class SlidingProxyAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: CUDA (or CPU under TRITON_INTERPRET=1) → Triton kernels; otherwise the CPU path
    (`kernels.sliding_proxy_cpu`, float64 always). Both save the output, the merged denominator and each
    window's row max and argmax key, and recompute the scores in the backward. `keep=False` (a forward
    that will not be differentiated) lets the CPU path skip what only its backward needs."""

    @staticmethod
    def forward(ctx, q, k, v, temperature, rel_bias, window_size, overlap, keep=True):  # noqa: D102
        ctx.geometry = Geometry(*q.shape, window_size, overlap)
        ctx.triton = use_triton(q, _sliding_proxy_fwd.fn, "sliding_proxy_attention")
        if not ctx.triton:
            heads = q.shape[1]
            out, ctx.cpu = sliding_proxy_cpu.forward(
                q, k, v, temperature.reshape(heads), rel_bias, window_size, overlap, keep
            )
            ctx.save_for_backward(q, k, v, temperature, out)
            return out
        q, k, v, ctx.batch_stride = _prepare(q, k, v)
        temperature, rel_bias = temperature.contiguous(), rel_bias.contiguous()
        out, den, row_max, row_arg = _forward_triton(
            q, k, v, ctx.batch_stride, temperature, rel_bias, ctx.geometry
        )
        ctx.save_for_backward(q, k, v, temperature, rel_bias, out, den, row_max, row_arg)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        if ctx.triton:
            grads = _backward_triton(*ctx.saved_tensors, grad_out, ctx.batch_stride, ctx.geometry)
            return (*grads, None, None, None)
        g = ctx.geometry
        q, k, v, temperature, out = ctx.saved_tensors
        if ctx.cpu is None:
            raise RuntimeError("sliding_proxy_attention: backward of a CPU forward run with keep=False")
        grads = sliding_proxy_cpu.backward(
            ctx.cpu, q, k, v, temperature, out, grad_out, g.window_size, g.overlap
        )
        return (*grads, None, None, None)


def sliding_proxy_attention(
    q: Tensor, k: Tensor, v: Tensor, *, temperature: Tensor, rel_bias: Tensor, window_size: int, overlap: int
) -> Tensor:
    """Sliding proxy attention: q, k, v (B, heads, d, H, W), temperature with `heads` elements (any shape),
    rel_bias (heads, w², w²) already gathered → (B, heads, d, H, W). (H − overlap) and (W − overlap) must
    be multiples of window_size − overlap. Differentiable in q, k, v, temperature and rel_bias."""
    _check_inputs(q, k, v, temperature, rel_bias, window_size, overlap)
    _check_finite(q=q, k=k, v=v, temperature=temperature, rel_bias=rel_bias)
    # what the backward needs beyond the inputs is kept only when a gradient can be asked for
    keep = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v, temperature, rel_bias))
    return SlidingProxyAttentionFunction.apply(q, k, v, temperature, rel_bias, window_size, overlap, keep)


def macs(b: int, heads: int, d: int, h: int, w: int, window_size: int, overlap: int) -> int:
    """Multiply-accumulates of the two matmuls per window (q·kᵀ and attn·v) as fvcore counts the official
    code: 2 · B · heads · windows · w⁴ · d. exp/sum/div and unfold/fold are not counted (fvcore skips them).
    """
    windows = _window_grid(h, window_size, overlap, "H") * _window_grid(w, window_size, overlap, "W")
    return 2 * b * heads * windows * window_size**4 * d
