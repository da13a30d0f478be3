"""CPU path of sliding proxy attention: contiguous window batches, explicit backward.

Same semantics as `kernels.sliding_proxy` (each window subtracts its own row max; outputs are the ratio of
the window sums). The windows of q·t, k and [v; 1] are copied once into contiguous (channels, w²) blocks,
then one head at a time and a few windows at a time (the chunk's score matrices stay in cache):

    sᵀ = bias'ᵀ + kᵀ (q·t')           one baddbmm, keys along rows, queries along columns
    m = max over keys (amax, no indices);  e = 2^(sᵀ − m);  [N; D]_w = [v; 1] e

with t' = t·log₂e and bias' = bias·log₂e, so `exp2` (several times faster than `exp` on the CPU) gives
e^(s − m) up to rounding. Every product has the window (w² = 144 pixels) as its long side and the channels
(d = 10) as its short one, the shapes the CPU BLAS runs fastest; the window batches are folded back with
`F.fold`. The backward recomputes the scores chunk by chunk from the saved row max (as the Triton path
does), so it holds a chunk of score matrices, never all of them.

The gradient through each window's max goes to the key the max came from. Its index comes from an exact
comparison (sᵀ − m == 0, an elementwise pass) summed against the key positions by one small product, with
torch's first-index rule applied only to the rare rows with ties; `torch.max` with indices (a slow,
unvectorised reduction on the CPU) stays off the hot path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOG2E = 1.4426950408889634
CHUNK_BYTES = 1 << 20  # score matrices per chunk: about the size of one core's L2


def windows(x: Tensor, window_size: int, stride: int) -> Tensor:
    """(B, heads, c, H, W) → (heads, B·L, c, w²) contiguous, L windows row-major, pixels row-major."""
    b, heads, c = x.shape[:3]
    view = x.unfold(3, window_size, stride).unfold(4, window_size, stride)  # B, h, c, nH, nW, w, w
    view = view.permute(1, 0, 3, 4, 2, 5, 6)
    return view.reshape(heads, b * view.shape[2] * view.shape[3], c, window_size * window_size)


def fold(parts: Tensor, b: int, size: tuple[int, int], window_size: int, stride: int) -> Tensor:
    """Sum of window blocks (n, heads, B·L, c, w²) at their pixels → (n, B, heads, c, H, W)."""
    n, heads, _, c, area = parts.shape
    cols = parts.view(n, heads, b, -1, c, area).permute(0, 2, 1, 4, 5, 3).reshape(n * b, heads * c * area, -1)
    return F.fold(cols, size, window_size, stride=stride).view(n, b, heads, c, *size)


def _chunk(area: int, element_size: int) -> int:
    return max(1, CHUNK_BYTES // (area * area * element_size))


def _argmax_keys(shifted: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
    """Key index of each query's max, (C, w²) int64, from sᵀ − m (C, keys, queries) that is 0 exactly
    at the max: the sum of the positions where it is 0 and their count in one product; rows with several
    maxima take the first (torch.max's rule)."""
    torch.eq(shifted, 0, out=mask)
    found = torch.bmm(positions.expand(len(mask), -1, -1), mask)  # (C, 2, queries): Σ index, count
    index = found[:, 0].long()
    ties = found[:, 1] != 1
    if ties.any():
        index = torch.where(ties, mask.argmax(1), index)
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
    scale = (temperature.to(q.dtype) * LOG2E).view(1, heads, 1, 1, 1)
    qt = windows(q * scale, ws, stride)
    kw = windows(k, ws, stride)
    v1 = windows(torch.cat([v, v.new_ones(b, heads, 1, h, w)], 2), ws, stride)
    bias_t = (rel_bias.to(q.dtype) * LOG2E).transpose(1, 2).contiguous()  # (heads, keys, queries)
    n = qt.shape[1]
    step = _chunk(area, q.element_size())
    parts = q.new_empty(1, heads, n, d + 1, area)
    row_max = q.new_empty(heads, n, 1, area)
    arg = torch.empty(heads, n, area, dtype=torch.long) if keep else None
    scores = q.new_empty(min(step, n), area, area)
    mask = torch.empty_like(scores) if keep else None
    positions = torch.stack([torch.arange(area, dtype=q.dtype), torch.ones(area, dtype=q.dtype)])[None]
    for head in range(heads):
        for c0 in range(0, n, step):
            c1 = min(c0 + step, n)
            s = scores[: c1 - c0]
            torch.baddbmm(bias_t[head], kw[head, c0:c1].transpose(1, 2), qt[head, c0:c1], out=s)
            m = torch.amax(s, 1, keepdim=True, out=row_max[head, c0:c1])
            s.sub_(m)
            if keep:
                arg[head, c0:c1] = _argmax_keys(s, mask[: c1 - c0], positions)
            torch.bmm(v1[head, c0:c1], s.exp2_(), out=parts[0, head, c0:c1])
    acc = fold(parts, b, (h, w), ws, stride)[0]
    num, den = acc.split([d, 1], 2)
    out = num / den
    if not keep:
        return out, None
    saved = dict(qt=qt, kw=kw, v1=v1, bias_t=bias_t, parts=parts[0], row_max=row_max, arg=arg, den=den)
    return out, saved


def backward(
    saved: dict[str, Tensor],
    q: Tensor,
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
    qt, kw, v1, bias_t = saved["qt"], saved["kw"], saved["v1"], saved["bias_t"]
    den = saved["den"]
    delta = (grad_out * out).sum(2, keepdim=True)
    gd = windows(torch.cat([grad_out, -delta], 2), ws, stride)  # [g; −δ]: v1ᵀ gd = v·g − δ
    den_w = windows(den, ws, stride)  # (heads, n, 1, w²)
    shift = saved["row_max"] + den_w.log2()
    # the max's share, −Σ_j ∂s_pj, at index (window, argmax key, query) of the flattened (keys, queries)
    rsum = (gd * saved["parts"]).sum(2) / den_w[:, :, 0]
    n = qt.shape[1]
    flat = saved["arg"] * area + torch.arange(area)
    step = _chunk(area, q.element_size())
    grads = q.new_empty(3, heads, n, d, area)  # (dq/t', dk/t', dv) window blocks
    d_bias_t = q.new_zeros(heads, area, area)
    scores = q.new_empty(min(step, n), area, area)
    offsets = torch.arange(min(step, n))[:, None] * area * area
    for head in range(heads):
        for c0 in range(0, n, step):
            c1 = min(c0 + step, n)
            p = scores[: c1 - c0]
            torch.baddbmm(bias_t[head], kw[head, c0:c1].transpose(1, 2), qt[head, c0:c1], out=p)
            p.sub_(shift[head, c0:c1]).exp2_()
            ds = torch.bmm(v1[head, c0:c1].transpose(1, 2), gd[head, c0:c1]).mul_(p)
            ds.view(-1).index_add_(
                0, (flat[head, c0:c1] + offsets[: c1 - c0]).view(-1), rsum[head, c0:c1].view(-1), alpha=-1
            )
            d_bias_t[head] += ds.sum(0)
            torch.bmm(kw[head, c0:c1], ds, out=grads[0, head, c0:c1])
            torch.bmm(qt[head, c0:c1], ds.transpose(1, 2), out=grads[1, head, c0:c1])
            torch.bmm(gd[head, c0:c1, :d], p.transpose(1, 2), out=grads[2, head, c0:c1])
    dqt, dkt, dv = fold(grads, b, (h, w), ws, stride).unbind(0)
    t = temperature.reshape(heads).to(q.dtype).view(1, heads, 1, 1, 1)
    d_t = (q * dqt).sum((0, 2, 3, 4))
    return (
        dqt * t,
        dkt / LOG2E,
        dv,
        d_t.view(temperature.shape).to(temperature.dtype),
        d_bias_t.transpose(1, 2).to(q.dtype),
    )
