"""CPU path of sliding proxy attention: contiguous window batches, explicit backward.

Same semantics as `kernels.sliding_proxy` (each window subtracts its own row max; outputs are the ratio of
the window sums). One head at a time, the windows of q·t, k and [v; 1] are copied into contiguous
(channels, w²) blocks, then a few windows at a time (the chunk's score matrices stay in cache):

    sᵀ = bias'ᵀ + kᵀ (q·t')           one baddbmm, keys along rows, queries along columns
    m = max over keys (amax, no indices);  e = 2^(sᵀ − m);  [N; D]_w = [v; 1] e

with t' = t·log₂e and bias' = bias·log₂e, so `exp2` (several times faster than `exp` on the CPU) gives
e^(s − m) up to rounding. Every product has the window (w² = 144 pixels) as its long side and the channels
(d = 10) as its short one, the shapes the CPU BLAS runs fastest; the window batches are folded back with
`fold`. The backward rebuilds the head's window blocks and recomputes the scores chunk by chunk from the
saved row max (as the Triton path does), so it holds one head's blocks and a chunk of score matrices.

The gradient through each window's max goes to the key the max came from. Its index comes from the sign
of sᵀ − m (0 exactly at the max, −1 elsewhere; one elementwise pass, only when a backward will follow)
summed against the key positions by one small product, with torch's first-index rule applied only to the
rare rows with ties; `torch.max` with indices (a slow reduction on the CPU) stays off the hot path.
"""

from __future__ import annotations

import torch
from torch import Tensor

LOG2E = 1.4426950408889634
CHUNK_BYTES = 1 << 20  # score matrices per chunk: about the size of one core's L2


def windows(
    x: Tensor, window_size: int, stride: int, scale: Tensor | None = None, ones: bool = False
) -> Tensor:
    """(B, heads, c, H, W) → (heads, B·L, c, w²) contiguous, L windows row-major, pixels row-major; each
    head times scale[head] if given; with `ones`, c + 1 channels, the last all ones."""
    b, heads, c, h, w = x.shape
    n_h, n_w = (h - window_size) // stride + 1, (w - window_size) // stride + 1
    out = x.new_empty(heads, b, n_h, n_w, c + ones, window_size, window_size)
    if ones:
        out[:, :, :, :, c] = 1
    cols = x.transpose(0, 1).unfold(4, window_size, stride)  # heads, B, c, H, nW, w
    for i in range(n_h):  # one copy per row of windows (a 7-d strided copy is several times slower)
        row = cols[:, :, :, i * stride : i * stride + window_size].permute(0, 1, 4, 2, 3, 5)
        target = out[:, :, i, :, :c]
        if scale is None:
            target.copy_(row)
        else:
            torch.mul(row, scale.view(heads, 1, 1, 1, 1, 1), out=target)
    return out.view(heads, b * n_h * n_w, c + ones, window_size * window_size)


def fold(
    parts: Tensor, b: int, size: tuple[int, int], window_size: int, stride: int, out: Tensor | None = None
) -> Tensor:
    """Sum of window blocks (heads, B·L, c, w²) at their pixels → (B, heads, c, H, W), added into `out` if
    given: per row of windows, ⌈w/s⌉ in-place adds, each of windows that do not overlap (a strided view of
    the row's strip)."""
    heads, _, c, _ = parts.shape
    h, w = size
    n_h, n_w = (h - window_size) // stride + 1, (w - window_size) // stride + 1
    ncov = -(-window_size // stride)
    blocks = parts.view(heads, b, n_h, n_w, c, window_size, window_size).permute(1, 0, 4, 2, 5, 3, 6)
    out = parts.new_zeros(b, heads, c, h, w) if out is None else out
    for i in range(n_h):
        strip = out[:, :, :, i * stride : i * stride + window_size]
        for r in range(min(ncov, n_w)):
            count = len(range(r, n_w, ncov))
            view = strip[..., r * stride :].unfold(4, window_size, ncov * stride)[..., :count, :]
            view.add_(blocks[:, :, :, i, :, r::ncov])
    return out


def _chunk(area: int, element_size: int) -> int:
    return max(1, CHUNK_BYTES // (area * area * element_size))


def _argmax_keys(shifted: Tensor, sign: Tensor, positions: Tensor) -> Tensor:
    """Key index of each query's max, (C, w²) int64, from sᵀ − m (C, keys, queries), which is 0 exactly at
    the max and negative elsewhere: its sign (−1 or 0) summed against [key index; 1] in one product gives
    Σ index and count of the non-maxima, hence of the maxima; rows with several maxima take the first
    (torch.max's rule)."""
    area = shifted.shape[1]
    torch.sign(shifted, out=sign)
    found = torch.bmm(positions.expand(len(sign), -1, -1), sign)  # −(Σ, count) over the non-maxima
    index = (found[:, 0] + area * (area - 1) // 2).long()
    ties = found[:, 1] != 1 - area
    if ties.any():
        index = torch.where(ties, (sign == 0).to(torch.uint8).argmax(1), index)
    return index


def forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    temperature: Tensor,
    rel_bias: Tensor,
    window_size: int,
    overlap: int,
    keep: bool,
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """(out (B, heads, d, H, W), and with `keep` what `backward` needs). temperature is (heads,)."""
    b, heads, d, h, w = q.shape
    ws, stride, area = window_size, window_size - overlap, window_size * window_size
    scale = temperature.to(q.dtype) * LOG2E
    bias_t = (rel_bias.to(q.dtype) * LOG2E).transpose(1, 2).contiguous()  # (heads, keys, queries)
    n = b * _window_grid(h, w, ws, stride)
    step = _chunk(area, q.element_size())
    parts = q.new_empty(heads, n, d + 1, area)
    row_max = q.new_empty(heads, n, 1, area)
    arg = torch.empty(heads, n, area, dtype=torch.int32) if keep else None
    scores = q.new_empty(min(step, n), area, area)
    sign = torch.empty_like(scores) if keep else None
    positions = torch.stack([torch.arange(area, dtype=q.dtype), torch.ones(area, dtype=q.dtype)])[None]
    for head in range(heads):
        qt, kw, v1 = _head_windows(q, k, v, scale, head, ws, stride)
        for c0 in range(0, n, step):
            c1 = min(c0 + step, n)
            s = scores[: c1 - c0]
            torch.baddbmm(bias_t[head], kw[c0:c1].transpose(1, 2), qt[c0:c1], out=s)
            m = torch.amax(s, 1, keepdim=True, out=row_max[head, c0:c1])
            s.sub_(m)
            if keep:
                arg[head, c0:c1] = _argmax_keys(s, sign[: c1 - c0], positions)
            torch.bmm(v1[c0:c1], s.exp2_(), out=parts[head, c0:c1])
    acc = fold(parts, b, (h, w), ws, stride)
    out = acc[:, :, :d] / acc[:, :, d:]
    if not keep:
        return out, None
    saved = dict(bias_t=bias_t, parts=parts, row_max=row_max, arg=arg, den=acc[:, :, d:].clone())
    return out, saved


def _window_grid(h: int, w: int, window_size: int, stride: int) -> int:
    return ((h - window_size) // stride + 1) * ((w - window_size) // stride + 1)


def _head_windows(
    q: Tensor, k: Tensor, v: Tensor, scale: Tensor, head: int, window_size: int, stride: int
) -> tuple[Tensor, Tensor, Tensor]:
    """One head's window blocks (B·L, c, w²): q·scale[head], k, and v with a row of ones. Built per head,
    in the forward and again in the backward, so that at most one head's copies exist at a time."""
    one = slice(head, head + 1)
    qt = windows(q[:, one], window_size, stride, scale=scale[one])[0]
    kw = windows(k[:, one], window_size, stride)[0]
    v1 = windows(v[:, one], window_size, stride, ones=True)[0]
    return qt, kw, v1


def backward(
    saved: dict[str, Tensor],
    q: Tensor,
    k: Tensor,
    v: Tensor,
    temperature: Tensor,
    out: Tensor,
    grad_out: Tensor,
    window_size: int,
    overlap: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients (q, k, v, temperature, rel_bias) of `forward`. With p = e^(s − m_w)/D (D: the merged
    denominator) and δ = g·out per pixel: ∂s_pj = p_pj (g_p·v_j − δ_p), minus Σ_j ∂s_pj at the window's
    argmax key (the gradient through m_w; that sum is (g_p·N_w,p − δ_p D_w,p)/D_p from the forward's
    window sums); dq = t Σ ∂s k, dk = t Σ ∂s q, dv = Σ p g, drel_bias = Σ over batch and windows of ∂s."""
    b, heads, d, h, w = q.shape
    ws, stride, area = window_size, window_size - overlap, window_size * window_size
    bias_t = saved["bias_t"]
    scale = temperature.reshape(heads).to(q.dtype) * LOG2E
    delta = (grad_out * out).sum(2, keepdim=True)
    n = b * _window_grid(h, w, ws, stride)
    step = _chunk(area, q.element_size())
    offsets = torch.arange(min(step, n))[:, None] * area * area
    scores, ds_buf = (q.new_empty(min(step, n), area, area) for _ in range(2))
    dqt, dkt, dv = (q.new_zeros(b, heads, d, h, w) for _ in range(3))  # dq/t, dk·log₂e, dv
    d_bias_t = q.new_zeros(heads, area, area)
    for head in range(heads):  # one head's window blocks at a time: the backward's memory is one head's
        one = slice(head, head + 1)
        qt, kw, v1 = _head_windows(q, k, v, scale, head, ws, stride)
        flat = saved["arg"][head].long() * area + torch.arange(area)
        gd = windows(torch.cat([grad_out[:, one], -delta[:, one]], 2), ws, stride)[0]  # [g; −δ]
        den = windows(saved["den"][:, one], ws, stride)[0]  # merged denominators, (n, 1, w²)
        shift = saved["row_max"][head] + den.log2()
        # the max's share Σ_j ∂s_pj, subtracted at (window, argmax key, query) of the flat (keys, queries)
        rsum = (gd * saved["parts"][head]).sum(1) / den[:, 0]
        grads = q.new_empty(3, n, d, area)
        for c0 in range(0, n, step):
            c1 = min(c0 + step, n)
            p, ds = scores[: c1 - c0], ds_buf[: c1 - c0]
            torch.baddbmm(bias_t[head], kw[c0:c1].transpose(1, 2), qt[c0:c1], out=p)
            p.sub_(shift[c0:c1]).exp2_()
            torch.bmm(v1[c0:c1].transpose(1, 2), gd[c0:c1], out=ds).mul_(p)  # p (v·g − δ)
            index = (flat[c0:c1] + offsets[: c1 - c0]).view(-1)
            ds.view(-1).index_add_(0, index, rsum[c0:c1].view(-1), alpha=-1)
            d_bias_t[head] += ds.sum(0)
            torch.bmm(kw[c0:c1], ds, out=grads[0, c0:c1])
            torch.bmm(qt[c0:c1], ds.transpose(1, 2), out=grads[1, c0:c1])
            torch.bmm(gd[c0:c1, :d], p.transpose(1, 2), out=grads[2, c0:c1])
        for part, total in zip(grads, (dqt, dkt, dv), strict=True):
            fold(part[None], b, (h, w), ws, stride, out=total[:, one])
    t = temperature.reshape(heads).to(q.dtype).view(1, heads, 1, 1, 1)
    d_t = torch.einsum("bhdyx,bhdyx->h", q, dqt)
    return (
        dqt.mul_(t),
        dkt.div_(LOG2E),
        dv,
        d_t.view(temperature.shape).to(temperature.dtype),
        d_bias_t.transpose(1, 2).to(q.dtype),
    )
