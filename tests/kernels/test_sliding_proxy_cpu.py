"""The CPU path of sliding proxy attention (kernels/sliding_proxy_cpu.py) against the float64 reference."""

from __future__ import annotations

import os
from unittest import mock

import pytest
import torch

from kernels import sliding_proxy_cpu
from kernels.sliding_proxy import (
    SlidingProxyAttentionFunction,
    sliding_proxy_attention,
    sliding_proxy_attention_reference,
)

from .test_sliding_proxy import TOL, make_inputs, rel_err, run

NAMES = ["out", "dq", "dk", "dv", "dtemperature", "drel_bias"]


@pytest.fixture(autouse=True)
def cpu_path():
    """CPU tensors take the CPU path even when the suite runs under the Triton interpreter."""
    with mock.patch.dict(os.environ, {"TRITON_INTERPRET": "0"}):
        yield


@pytest.mark.parametrize(
    ("b", "heads", "d", "n_h", "n_w", "ws", "overlap", "chunk_windows"),
    [
        (2, 2, 10, 2, 3, 12, 3, 4),  # SPAN-light's window, chunks crossing batch items and window rows
        (1, 3, 3, 3, 3, 5, 3, 1),  # overlap > stride: 9 windows cover a pixel; one window per chunk
        (3, 1, 4, 2, 2, 4, 0, 1000),  # no overlap, every window in one chunk
    ],
)
def test_float32_cpu_path_matches_float64_reference(b, heads, d, n_h, n_w, ws, overlap, chunk_windows):
    inputs = make_inputs(b, heads, d, n_h, n_w, ws, overlap, seed=11)
    inputs = [x.float().double() for x in inputs]
    grad_out = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    ref = run(sliding_proxy_attention_reference, inputs, ws, overlap, grad_out)
    chunk_bytes = chunk_windows * ws**4 * 4
    with mock.patch.object(sliding_proxy_cpu, "CHUNK_BYTES", chunk_bytes):
        got = run(sliding_proxy_attention, [x.float() for x in inputs], ws, overlap, grad_out.float())
    for name, x, r in zip(NAMES, got, ref, strict=True):
        assert x.dtype == torch.float32 and x.shape == r.shape, name
        tol = TOL["fwd" if name == "out" else "grad"][torch.float32]
        assert rel_err(x, r) <= tol, f"{name}: relative error {rel_err(x, r):.2e} > {tol:.0e}"


def test_tied_maxima_send_the_max_gradient_to_the_first_key():
    """Rows whose maximal score is reached by several keys (here every score of a window row ties, and
    some rows tie between two keys) route the gradient through the max to the first one, as torch.max
    does in the reference."""
    q, k, v, t, rb = make_inputs(1, 2, 3, 2, 2, 4, 1, seed=21)
    k = torch.zeros_like(k)  # every score is its bias
    rb = torch.randint(0, 3, rb.shape, generator=torch.Generator().manual_seed(22)).double()
    rb[0, :5] = 0.0  # rows 0-4 of head 0: all 16 keys tie
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(23), dtype=torch.float64)
    got = run(sliding_proxy_attention, [q, k, v, t, rb], 4, 1, grad_out)
    ref = run(sliding_proxy_attention_reference, [q, k, v, t, rb], 4, 1, grad_out)
    for name, x, r in zip(NAMES, got, ref, strict=True):
        torch.testing.assert_close(x, r, rtol=1e-12, atol=1e-12, msg=name)


def test_forward_without_gradient_state_gives_the_same_output():
    inputs = [x.float() for x in make_inputs(2, 2, 5, 2, 2, 6, 2, seed=31)]
    q, k, v, t, rb = inputs
    out_keep, saved = sliding_proxy_cpu.forward(q, k, v, t.reshape(2), rb, 6, 2, keep=True)
    out_plain, none = sliding_proxy_cpu.forward(q, k, v, t.reshape(2), rb, 6, 2, keep=False)
    assert saved is not None and none is None
    assert torch.equal(out_keep, out_plain)
    with torch.no_grad():
        assert torch.equal(
            sliding_proxy_attention(q, k, v, temperature=t, rel_bias=rb, window_size=6, overlap=2), out_plain
        )


def test_backward_after_a_forward_without_state_is_a_clear_error():
    q, k, v, t, rb = (x.requires_grad_() for x in make_inputs(1, 1, 2, 1, 1, 4, 1, seed=41))
    out = SlidingProxyAttentionFunction.apply(q, k, v, t, rb, 4, 1, False)
    with pytest.raises(RuntimeError, match="keep=False"):
        out.sum().backward()


def test_windows_and_fold_are_inverse_up_to_coverage():
    """fold(windows(x)) = x × (number of windows covering each pixel), on a grid with deep overlap."""
    x = torch.randn(2, 3, 4, 11, 13, dtype=torch.float64)  # w = 5, overlap 3 → stride 2, 4×5 windows
    ones = torch.ones_like(x)
    w = sliding_proxy_cpu.windows(x, 5, 2)
    assert w.shape == (3, 2 * 4 * 5, 4, 25) and w.is_contiguous()
    coverage = sliding_proxy_cpu.fold(sliding_proxy_cpu.windows(ones, 5, 2), 2, (11, 13), 5, 2)
    torch.testing.assert_close(sliding_proxy_cpu.fold(w, 2, (11, 13), 5, 2), x * coverage)
    assert coverage.max() == 9 and coverage.min() == 1
