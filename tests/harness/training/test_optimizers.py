"""AdamTF1 against TensorFlow 1's Adam formula computed here in float64, resumed through a saved state
dict, and reachable from every optimiser type a recipe may name."""

from __future__ import annotations

import io
import typing

import numpy as np
import pytest
import torch

from harness.recipes import SCHEMA
from harness.training import plan
from harness.training.optimizers import AdamTF1

LR = [1e-3, 1e-3, 5e-4, 5e-4, 5e-4]  # a schedule halving the rate before the third update
BETAS, EPS = (0.9, 0.999), 1e-8
SHAPES = [(4, 3, 3, 3), (4,)]


def gradients(step: int) -> list[np.ndarray]:
    """Update ``step``'s gradients: normal values, elements at 1e-9 (where TF1's and PyTorch's ε
    conventions part) and exact zeros."""
    rng = np.random.default_rng(step)
    grads = []
    for shape in SHAPES:
        g = rng.standard_normal(shape)
        g.flat[::3] *= 1e-9
        g.flat[1::5] = 0.0
        grads.append(g)
    return grads


def reference(theta: list[np.ndarray], tf1: bool = True) -> list[np.ndarray]:
    """Adam in float64 over the LR schedule. ``tf1``: TF1's documented ``AdamOptimizer`` update
    (tensorflow/python/training/adam.py): lr_t = lr·√(1−β2^t)/(1−β1^t), θ −= lr_t·m/(√v + ε); otherwise
    PyTorch's: θ −= lr·m̂/(√v̂ + ε), m̂ = m/(1−β1^t), v̂ = v/(1−β2^t). Both: m = β1·m + (1−β1)·g,
    v = β2·v + (1−β2)·g²."""
    beta1, beta2 = BETAS
    theta = [t.copy() for t in theta]
    m = [np.zeros_like(t) for t in theta]
    v = [np.zeros_like(t) for t in theta]
    for step, lr in enumerate(LR):
        t = step + 1
        for i, g in enumerate(gradients(step)):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            if tf1:
                theta[i] -= lr * np.sqrt(1 - beta2**t) / (1 - beta1**t) * m[i] / (np.sqrt(v[i]) + EPS)
            else:
                theta[i] -= lr * (m[i] / (1 - beta1**t)) / (np.sqrt(v[i] / (1 - beta2**t)) + EPS)
    return theta


def run(optimizer_class, theta: list[np.ndarray], steps: range, state: dict | None = None):
    """``theta`` as float64 parameters updated by ``optimizer_class`` for ``steps`` (indices into LR);
    returns the parameters and the optimiser."""
    params = [torch.tensor(t, requires_grad=True) for t in theta]
    opt = optimizer_class(params, lr=LR[0], betas=BETAS, eps=EPS)
    if state is not None:
        opt.load_state_dict(state)
    for step in steps:
        opt.param_groups[0]["lr"] = LR[step]
        for p, g in zip(params, gradients(step), strict=True):
            p.grad = torch.from_numpy(g)
        opt.step()
    return [p.detach().numpy() for p in params], opt


@pytest.fixture
def theta() -> list[np.ndarray]:
    rng = np.random.default_rng(100)
    return [rng.standard_normal(shape) for shape in SHAPES]


def agree(ours: list[np.ndarray], want: list[np.ndarray], start: list[np.ndarray]) -> bool:
    """The updates agree to float64 rounding (relative 1e-9 of each element's total update)."""
    return all(
        np.allclose(o - s, w - s, rtol=1e-9, atol=1e-18) for o, w, s in zip(ours, want, start, strict=True)
    )


def test_adam_tf1_follows_the_tf1_formula(theta):
    """The class computes m + (g − m)(1 − β1) and (m·lr_t)/(√v + ε) in the ApplyAdam kernel's order; the
    documented form agrees to float64 rounding, PyTorch's ε convention does not (the 1e-9 gradients)."""
    ours, opt = run(AdamTF1, theta, range(len(LR)))
    assert agree(ours, reference(theta), theta)
    assert not agree(ours, reference(theta, tf1=False), theta)
    assert all(s["step"] == len(LR) for s in opt.state.values())


def test_adam_tf1_resumes_bit_exactly_from_its_saved_state(theta):
    straight, _ = run(AdamTF1, theta, range(len(LR)))
    first, opt = run(AdamTF1, theta, range(2))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed, _ = run(AdamTF1, first, range(2, len(LR)), state=saved)
    for a, b in zip(straight, resumed, strict=True):
        assert np.array_equal(a, b)


def test_every_optimiser_a_recipe_may_name_is_built_by_the_loop():
    assert set(typing.get_args(SCHEMA["optim"]["type"])) == set(plan.OPTIMIZERS)
