"""Official-style HSPAN soft thresholding, own code after laoyangui/HSPAN src/model/attention.py.

Materialises the (B, N, M) scores, shifts each row by its max, finds the threshold among the top-k scores
(k = 128) and doubles k while the support fills all k; its backward is the official hand-written one.
Used to check the reference and as the benchmark baseline; not part of the product.
"""

from __future__ import annotations

import torch


def _threshold_topk(s: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tau, support_size) of rows s (R, M), each (R, 1), by top-k widened until the support fits."""
    tau = s.new_empty(s.shape[0], 1)
    support = torch.empty(s.shape[0], 1, dtype=torch.long, device=s.device)
    rows = torch.arange(s.shape[0], device=s.device)
    k = topk
    while rows.numel():
        kk = min(k, s.shape[-1])
        z = s[rows].topk(kk, dim=-1).values
        cs = z.cumsum(-1) - 1
        rank = torch.arange(1, kk + 1, device=s.device, dtype=s.dtype)
        sup = (rank * z > cs).sum(-1, keepdim=True)
        tau[rows] = cs.gather(-1, sup - 1) / sup.to(s.dtype)
        support[rows] = sup
        rows = rows[(sup.squeeze(-1) == kk) & (kk < s.shape[-1])]
        k *= 2
    return tau, support


class OfficialSoftThreshold(torch.autograd.Function):
    """sparsemax over the last dim of (B, N, M) scores, official top-k formulation and backward."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, topk: int) -> torch.Tensor:
        s = s - s.amax(-1, keepdim=True)
        tau, support = _threshold_topk(s.reshape(-1, s.shape[-1]), topk)
        out = torch.clamp(s - tau.view(*s.shape[:-1], 1), min=0)
        ctx.save_for_backward(support.view(*s.shape[:-1], 1), out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        support, out = ctx.saved_tensors
        grad = torch.where(out != 0, grad, 0)
        mean = grad.sum(-1, keepdim=True) / support.to(out.dtype)
        return torch.where(out != 0, grad - mean, grad), None


def official_style_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: int = 128
) -> torch.Tensor:
    """q (B,N,D), k (B,M,D), v (B,M,Dv) -> (B,N,Dv), as HSPA computes it (scores materialised)."""
    return OfficialSoftThreshold.apply(q @ k.transpose(1, 2), topk) @ v
