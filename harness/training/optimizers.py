"""Optimisers of official trainers that ``torch.optim`` does not provide: TensorFlow 1's Adam (DRSAN)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class AdamTF1(torch.optim.Optimizer):
    """TensorFlow 1's ``tf.train.AdamOptimizer`` (its ``ApplyAdam`` kernel, ``core/kernels/training_ops.cc``),
    in the kernel's own order of operations; at the t-th update of a parameter θ with gradient g::

        m ← m + (g − m)(1 − β1)        v ← v + (g² − v)(1 − β2)
        θ ← θ − (m · lr·√(1 − β2^t)/(1 − β1^t)) / (√v + ε)

    ε is added to √v before v's bias correction: this is ``torch.optim.Adam`` with ε_t = ε/√(1 − β2^t)
    (3.2e-7 at t = 1 for ε = 1e-8, β2 = 0.999, → ε after a few thousand updates), so the first updates of
    weights whose gradients are near zero differ from PyTorch's. TF1's Adam has no weight decay.

    State per parameter (``state_dict`` saves and restores it): ``step`` (t, an int), ``exp_avg`` (m),
    ``exp_avg_sq`` (v). TF1 counts t per optimiser, not per parameter: the same when every parameter gets
    a gradient at every update. Hyper-parameters are Python floats (TF1 holds them and β^t in float32):
    results agree with TF1 to float32 rounding.
    """

    def __init__(self, params: Iterable[Tensor], lr: float, betas: tuple[float, float], eps: float):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            states = [self._state(p) for p in params]
            m = [s["exp_avg"] for s in states]
            v = [s["exp_avg_sq"] for s in states]
            grads = [p.grad for p in params]
            # one kernel per operation for all tensors (torch.optim.Adam's foreach path); lerp with a
            # weight below ½ computes start + weight·(end − start), the kernel's m + (g − m)(1 − β1)
            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), 1 - beta2)
            alphas = []
            for s in states:
                s["step"] += 1
                alphas.append(group["lr"] * math.sqrt(1 - beta2 ** s["step"]) / (1 - beta1 ** s["step"]))
            update = torch._foreach_mul(m, alphas)
            denominator = torch._foreach_sqrt(v)
            torch._foreach_add_(denominator, group["eps"])
            torch._foreach_div_(update, denominator)
            torch._foreach_sub_(params, update)
        return loss

    def _state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        return state
