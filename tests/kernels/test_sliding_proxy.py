"""Sliding proxy attention: reference vs official-style, Triton (TRITON_INTERPRET=1 on CPU) vs float64."""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from unittest import mock

import pytest
import torch
import triton
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kernels import sliding_proxy
from kernels.sliding_proxy import (
    SlidingProxyAttentionFunction,
    macs,
    sliding_proxy_attention,
    sliding_proxy_attention_official_style,
    sliding_proxy_attention_reference,
)

# Normwise tolerances max|x − ref| / max|ref| against the float64 reference on the same (rounded) inputs,
# one place for all tests. float32 forward: the contract. Gradients sum up to ceil(w/s)² windows × w² terms
# with cancellation (δ_p subtracted, argmax correction), so they get a looser bound. bf16/fp16: the
# probabilities (and dS) are rounded to the input dtype before the tensor-core products (unit roundoff
# 2^-9 and 2^-12), the output to the input dtype; TF32 rounds the dot operands to 10 mantissa bits.
# Measured under the interpreter (B=3, 2 heads, 6×6 windows, overlap 2, d ∈ {3, 10, 12}), worst of the
# forward / the five gradients: bf16 5.4e-3 / 3.2e-2, fp16 3.3e-4 / 2.2e-3 (dtemperature, a sum over all
# pixels, is the largest); the bounds leave 2.5-6x. dtemperature's error is taken relative to the size of
# its terms, not of its value: with cancellation the value can be ~1 % of them (bf16, B=2, d=3, seed 5947:
# 0.128 of the value, 1.4e-3 of the terms).
TOL = {
    "fwd": {torch.float32: 1e-5, "tf32": 5e-3, torch.bfloat16: 1.5e-2, torch.float16: 2e-3},
    "grad": {torch.float32: 1e-4, "tf32": 2e-2, torch.bfloat16: 8e-2, torch.float16: 1e-2},
}

# The interpreter runs every Triton op in Python (~0.1-0.2 s per program), so default examples are few.
FAST = settings(max_examples=4, deadline=None)
SLOW = settings(max_examples=20, deadline=None)


INTERPRETER_READY = not isinstance(sliding_proxy._sliding_proxy_fwd.fn, triton.runtime.JITFunction)
NOT_READY = (
    "not run: the Triton interpreter needs TRITON_INTERPRET=1 set before triton is imported "
    "(run `nox -s kernels` or `TRITON_INTERPRET=1 pytest tests/kernels/test_sliding_proxy.py`)"
)


# The Triton tests run on CUDA when there is a device, else on the CPU through the interpreter.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def triton_interpreter():
    """Tensors on DEVICE take the Triton kernels inside this block (the interpreter on a CPU)."""
    if DEVICE == "cuda":
        yield
        return
    if not INTERPRETER_READY:
        pytest.skip(NOT_READY)
    with mock.patch.dict(os.environ, {"TRITON_INTERPRET": "1"}):
        yield


SENTINEL = {torch.float32: -7777.0, torch.bfloat16: -7777.0, torch.float16: -7777.0, torch.int32: -7777}


@contextmanager
def guarded_buffers():
    """Allocate every kernel-written buffer with a guard region as large as the buffer on each side,
    filled with a sentinel; on exit assert every guard is intact (no out-of-bounds write) and no
    sentinel is left inside a buffer (every element was written)."""
    made = []

    def alloc(shape, dtype, device):
        n = math.prod(shape)
        full = torch.full((3 * n,), SENTINEL[dtype], dtype=dtype, device=device)
        made.append((tuple(shape), full))
        return full[n : 2 * n].view(shape)

    with mock.patch.object(sliding_proxy, "_empty", alloc):
        yield made
    assert made, "no kernel buffer was allocated through sliding_proxy._empty"
    for shape, full in made:
        n = full.numel() // 3
        for where, part in (("before", full[:n]), ("after", full[2 * n :])):
            assert (part == SENTINEL[full.dtype]).all(), f"buffer {shape}: out-of-bounds write {where} it"
        assert (full[n : 2 * n] != SENTINEL[full.dtype]).all(), f"buffer {shape}: elements left unwritten"


def make_inputs(b, heads, d, n_h, n_w, ws, overlap, seed, dtype=torch.float64, scale=1.0):
    """Random q, k, v (B, heads, d, H, W) on an exact window grid, temperature (heads, 1, 1), rel_bias."""
    g = torch.Generator().manual_seed(seed)
    stride = ws - overlap
    h, w = overlap + n_h * stride, overlap + n_w * stride
    q, k, v = (torch.randn(b, heads, d, h, w, generator=g, dtype=dtype) * scale for _ in range(3))
    temperature = torch.rand(heads, 1, 1, generator=g, dtype=dtype) + 0.5
    rel_bias = torch.randn(heads, ws * ws, ws * ws, generator=g, dtype=dtype) * 0.5
    return q, k, v, temperature, rel_bias


def run(fn, inputs, ws, overlap, grad_out=None):
    """Forward (and backward with `grad_out`) of `fn`; returns [out, dq, dk, dv, dtemperature, drel_bias]."""
    leaves = [x.detach().clone().requires_grad_(grad_out is not None) for x in inputs]
    q, k, v, t, rb = leaves
    out = fn(q, k, v, temperature=t, rel_bias=rb, window_size=ws, overlap=overlap)
    if grad_out is None:
        return [out]
    out.backward(grad_out.to(out.dtype))
    return [out.detach(), *(x.grad for x in leaves)]


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def assert_triton_matches_reference(inputs64, ws, overlap, seed, dtype=torch.float32):
    """Triton in `dtype` vs the float64 reference on the same rounded inputs: forward and all five
    gradients, every buffer the kernels write guarded against out-of-bounds writes."""
    g = torch.Generator().manual_seed(seed + 1)
    inputs64 = [x.to(dtype).double() for x in inputs64]
    grad_out = torch.randn(inputs64[0].shape, generator=g, dtype=torch.float64).to(dtype).double()
    ref = run(sliding_proxy_attention_reference, inputs64, ws, overlap, grad_out)
    with triton_interpreter(), guarded_buffers():
        got = run(sliding_proxy_attention, [x.to(dtype).to(DEVICE) for x in inputs64], ws, overlap,
                  grad_out.to(DEVICE))  # fmt: skip
    names = ["out", "dq", "dk", "dv", "dtemperature", "drel_bias"]
    key = "tf32" if dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest" else dtype
    for name, x, r in zip(names, got, ref, strict=True):
        x = x.cpu()
        assert x.shape == r.shape and x.dtype == dtype, name
        tol = TOL["fwd" if name == "out" else "grad"][key]
        if name == "dtemperature":
            # q enters only through q·t, so t_h·dt_h = Σ q_h ⊙ dq_h: a sum over every pixel whose terms can
            # cancel (90× in a seen bf16 case), judged against the size of those terms
            scale = (inputs64[0] * ref[1]).abs().sum(dim=(0, 2, 3, 4)) / inputs64[3].flatten().abs()
            err = ((x.double().flatten() - r.flatten()).abs() / scale).max().item()
        else:
            err = rel_err(x, r)
        assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e}"


window = st.sampled_from([4, 5, 6, 8, 12]).flatmap(lambda ws: st.tuples(st.just(ws), st.integers(0, ws - 1)))
# Interpreter cost grows with windows × w⁴: the fast draw keeps w ≤ 8 and overlap ≤ w/2; SPAN-light's
# 12×12 window runs in test_triton_span_light_window, deeper overlaps in
# test_triton_three_windows_per_side_deep_overlap, and everything in the slow variant.
shallow_window = st.sampled_from([4, 5, 6, 8]).flatmap(
    lambda ws: st.tuples(st.just(ws), st.integers(0, ws // 2))
)


@FAST
@given(
    b=st.integers(1, 4), heads=st.integers(1, 3), d=st.integers(1, 8), n_h=st.integers(1, 3),
    n_w=st.integers(1, 3), win=window, seed=st.integers(0, 2**31 - 1),
)  # fmt: skip
def test_reference_matches_official_style(b, heads, d, n_h, n_w, win, seed):
    ws, overlap = win
    inputs = make_inputs(b, heads, d, n_h, n_w, ws, overlap, seed)
    ref = run(sliding_proxy_attention_reference, inputs, ws, overlap)[0]
    official = run(sliding_proxy_attention_official_style, inputs, ws, overlap)[0]
    torch.testing.assert_close(ref, official, rtol=1e-12, atol=1e-12)


def test_reference_gradcheck():
    inputs = make_inputs(1, 1, 2, 2, 1, 3, 1, seed=7)
    leaves = [x.requires_grad_() for x in inputs]

    def f(q, k, v, t, rb):
        return sliding_proxy_attention_reference(
            q, k, v, temperature=t, rel_bias=rb, window_size=3, overlap=1
        )

    assert torch.autograd.gradcheck(f, leaves, fast_mode=True)


def test_function_reference_path_gradcheck():
    """The reference path's explicit backward (float64 always takes it) against finite differences."""
    inputs = [x.requires_grad_() for x in make_inputs(1, 2, 2, 2, 1, 3, 1, seed=17)]
    assert torch.autograd.gradcheck(
        lambda *x: SlidingProxyAttentionFunction.apply(*x, 3, 1), inputs, fast_mode=True
    )


def test_reference_path_gradients_match_reference():
    """Without the interpreter, CPU tensors take the reference path with its explicit backward."""
    inputs = make_inputs(2, 2, 3, 2, 2, 4, 1, seed=3)
    grad_out = torch.randn(inputs[0].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with mock.patch.dict(os.environ, {"TRITON_INTERPRET": "0"}):
        got = run(sliding_proxy_attention, inputs, 4, 1, grad_out)
    ref = run(sliding_proxy_attention_reference, inputs, 4, 1, grad_out)
    for x, r in zip(got, ref, strict=True):
        torch.testing.assert_close(x, r, rtol=1e-12, atol=1e-12)


@FAST
@given(
    b=st.integers(1, 4), heads=st.integers(1, 2), d=st.integers(1, 8), n_h=st.integers(1, 2),
    n_w=st.integers(1, 2), win=shallow_window, seed=st.integers(0, 2**31 - 1),
)  # fmt: skip
def test_triton_matches_float64_reference(b, heads, d, n_h, n_w, win, seed):
    ws, overlap = win
    assert_triton_matches_reference(make_inputs(b, heads, d, n_h, n_w, ws, overlap, seed), ws, overlap, seed)


@settings(max_examples=1, deadline=None)
@given(b=st.integers(3, 4), seed=st.integers(0, 2**31 - 1))
def test_triton_batch_of_three_or_more_writes_in_bounds(b, seed):
    """Batch ≥ 3 with two heads: every buffer's guard region intact (the soft-threshold kernel once
    wrote past its scratch buffer for batch ≥ 3, which B ∈ {1, 2} never showed)."""
    assert_triton_matches_reference(make_inputs(b, 2, 3, 2, 1, 4, 1, seed), 4, 1, seed)


def test_guard_detects_an_out_of_bounds_write():
    """The guard itself: a write one element past a buffer fails the check."""
    with pytest.raises(AssertionError, match="out-of-bounds write after"), guarded_buffers():
        buf = sliding_proxy._empty((2, 3), torch.float32, "cpu")
        buf.fill_(0.0)
        buf.as_strided((1,), (1,), buf.storage_offset() + buf.numel()).fill_(1.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@settings(max_examples=2, deadline=None)
@given(b=st.integers(1, 3), d=st.sampled_from([3, 10, 12]), seed=st.integers(0, 2**31 - 1))
@example(b=2, d=3, seed=5947)  # dtemperature's value ~1 % of its terms
def test_triton_half_precision_on_tensor_cores(dtype, b, d, seed):
    """bf16/fp16 inputs: tensor-core products with fp32 accumulation, within the dtype's bounds
    (d = 12 takes the tensor-core score product, d = 3 and 10 the exact rank-1 one)."""
    assert_triton_matches_reference(make_inputs(b, 2, d, 2, 1, 4, 1, seed), 4, 1, seed, dtype)


def test_tf32_knob_selects_tf32_dots(monkeypatch):
    """torch.set_float32_matmul_precision("high") turns fp32 dots into TF32; "highest" keeps IEEE fp32;
    half-precision inputs are unaffected. (The interpreter computes both in fp32: the bound is checked on
    CUDA.)"""
    g = sliding_proxy.Geometry(1, 1, 12, 4, 4, 4, 1)
    for setting, expected in (("highest", "ieee"), ("high", "tf32"), ("medium", "tf32")):
        monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda s=setting: s)
        assert g.constexprs(torch.float32, upcast=False)["PRECISION"] == expected
    assert g.constexprs(torch.bfloat16, upcast=False)["PRECISION"] == "tf32"  # ignored for 16-bit dots


@pytest.mark.skipif(DEVICE != "cuda", reason="not run: no CUDA device in this session (TF32 needs one)")
def test_triton_tf32_within_bounds():
    torch.set_float32_matmul_precision("high")
    try:
        assert_triton_matches_reference(make_inputs(3, 2, 12, 3, 3, 12, 3, seed=31), 12, 3, seed=31)
    finally:
        torch.set_float32_matmul_precision("highest")


def test_triton_qkv_slices_of_one_tensor_and_determinism():
    """q, k, v sliced from one qkv tensor (a batch stride, as SPAN-light passes them) run without a copy
    and match the contiguous result; two backward passes give bitwise-equal gradients (no atomics)."""
    b, heads, d, ws, overlap = 3, 2, 3, 4, 1
    qkv = torch.randn(b, 3 * heads * d, 7, 4, generator=torch.Generator().manual_seed(8)).to(DEVICE)
    t = torch.rand(heads, generator=torch.Generator().manual_seed(9)).to(DEVICE) + 0.5
    rb = torch.randn(heads, ws * ws, ws * ws, generator=torch.Generator().manual_seed(10)).to(DEVICE)
    q, k, v = qkv.view(b, 3, heads, d, 7, 4).unbind(1)
    assert sliding_proxy._prepare(q, k, v)[0].data_ptr() == q.data_ptr()
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(11)).to(DEVICE)
    with triton_interpreter():
        sliced = [run(sliding_proxy_attention, [q, k, v, t, rb], ws, overlap, grad_out) for _ in range(2)]
        dense = run(
            sliding_proxy_attention, [x.contiguous() for x in (q, k, v)] + [t, rb], ws, overlap, grad_out
        )
    for a, b_, c in zip(*sliced, dense, strict=True):
        assert torch.equal(a, b_)
        torch.testing.assert_close(a, c, rtol=0, atol=0)


@pytest.mark.parametrize("tiles", sliding_proxy.TILES)
def test_forward_work_within_one_and_a_half_of_useful_at_span_light_shapes(tiles):
    """The launch configuration's executed FLOPs (grid × tile shapes, padding included) stay ≤ 1.5× the
    useful FLOPs at SPAN-light's training and inference shapes, for every autotune candidate."""
    for b, h, w in ((16, 66, 66), (1, 183, 327), (1, 363, 642)):
        model = sliding_proxy.work(sliding_proxy.Geometry(b, 6, 10, h, w, 12, 3), tiles, 4, backward=False)
        assert model.useful_flops == 2 * macs(b, 6, 10, h, w, 12, 3)
        assert 1.0 <= model.flop_ratio <= 1.5, (tiles, model.flop_ratio)


def test_work_model_counts_padding():
    """A 5×5 window (25 pixels) in 16×16 tiles pads to 32 per side; d = 12 pads to 16 channels."""
    model = sliding_proxy.work(
        sliding_proxy.Geometry(1, 1, 12, 5, 5, 5, 0), sliding_proxy.Tiles(16, 16, 1, 1), 4, False
    )
    assert model.executed_flops == 2 * 32 * 32 * (16 + 16)
    assert model.useful_flops == 2 * 2 * 25 * 25 * 12


def test_triton_single_window():
    assert_triton_matches_reference(make_inputs(1, 2, 5, 1, 1, 6, 2, seed=5), 6, 2, seed=5)


@settings(max_examples=1, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_triton_span_light_window(seed):
    """SPAN-light's 12×12 windows with overlap 3 and d = 10 (144 pixels: several key and query blocks
    with a partial last one under the interpreter's 32×32 tiles), two windows side by side."""
    assert_triton_matches_reference(make_inputs(1, 1, 10, 1, 2, 12, 3, seed), 12, 3, seed)


def test_triton_three_windows_per_side_deep_overlap():
    # overlap > stride: up to ceil(w/s)² = 9 windows cover a pixel
    assert_triton_matches_reference(make_inputs(1, 1, 3, 3, 3, 5, 3, seed=9), 5, 3, seed=9)


def test_triton_large_magnitudes():
    """Scores of order 10³: each window's max shift keeps exp finite; float32 score rounding (ulp·|s|)
    bounds the agreement, so the tolerance scales with the largest score."""
    q, k, v, t, rb = make_inputs(1, 2, 4, 2, 2, 4, 1, seed=13, scale=12.0)
    ref = sliding_proxy_attention_reference(q, k, v, temperature=t, rel_bias=rb, window_size=4, overlap=1)
    with triton_interpreter():
        out = sliding_proxy_attention(
            *(x.float().to(DEVICE) for x in (q, k, v)), temperature=t.float().to(DEVICE),
            rel_bias=rb.float().to(DEVICE), window_size=4, overlap=1,
        ).cpu()  # fmt: skip
    max_score = (t.max() * q.abs().max() * k.abs().max() * q.shape[2]).item()
    assert max_score > 1e3
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) <= 1e-5 + 8 * torch.finfo(torch.float32).eps * max_score


@pytest.mark.parametrize("name", ["q", "k", "v", "temperature", "rel_bias"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_raises(name, bad):
    names = ["q", "k", "v", "temperature", "rel_bias"]
    inputs = dict(zip(names, make_inputs(1, 1, 2, 1, 1, 4, 1, seed=0), strict=True))
    inputs[name].view(-1)[0] = bad
    with pytest.raises(ValueError, match=f"{name} contains NaN or Inf"):
        sliding_proxy_attention(
            inputs["q"], inputs["k"], inputs["v"], temperature=inputs["temperature"],
            rel_bias=inputs["rel_bias"], window_size=4, overlap=1,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("hw", "bias_shape", "temp_shape", "match"),
    [
        ((8, 7), (1, 16, 16), (1,), "positive multiple of window_size − overlap"),
        ((2, 7), (1, 16, 16), (1,), "H=2 is not covered"),
        ((7, 7), (1, 9, 9), (1,), "rel_bias must be the gathered"),
        ((7, 7), (1, 16, 16), (2,), "temperature has 2 elements"),
    ],
)
def test_bad_shapes_raise(hw, bias_shape, temp_shape, match):
    q = torch.randn(1, 1, 2, *hw)
    with pytest.raises(ValueError, match=match):
        sliding_proxy_attention(
            q,
            q,
            q,
            temperature=torch.ones(temp_shape),
            rel_bias=torch.zeros(bias_shape),
            window_size=4,
            overlap=1,
        )


def test_macs_match_fvcore_on_official_style():
    """`macs` equals what fvcore counts for the official formulation's two matmuls."""
    fvcore = pytest.importorskip("fvcore.nn")
    ws, overlap = 6, 2
    inputs = [x.float() for x in make_inputs(2, 3, 5, 3, 2, ws, overlap, seed=1)]

    class Official(torch.nn.Module):
        def forward(self, q, k, v, t, rb):
            return sliding_proxy_attention_official_style(q, k, v, temperature=t, rel_bias=rb, window_size=ws,
                                                          overlap=overlap)  # fmt: skip

    counter = fvcore.FlopCountAnalysis(Official(), tuple(inputs)).unsupported_ops_warnings(False)
    counted = counter.by_operator()["matmul"]
    assert counted == macs(*inputs[0].shape, ws, overlap)


def test_late_interpreter_request_is_a_clear_error():
    if INTERPRETER_READY:
        pytest.skip("not run: triton was imported with TRITON_INTERPRET=1, so the interpreter is available")
    q, k, v, t, rb = (x.float() for x in make_inputs(1, 1, 2, 1, 1, 4, 1, seed=0))
    with mock.patch.dict(os.environ, {"TRITON_INTERPRET": "1"}), pytest.raises(RuntimeError, match="before"):
        SlidingProxyAttentionFunction.apply(q, k, v, t, rb, 4, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="not run: no CUDA device in this session")
def test_compiled_triton_on_cuda_matches_reference():
    ws, overlap = 12, 3
    inputs = make_inputs(2, 6, 10, 3, 4, ws, overlap, seed=21)
    grad_out = torch.randn(inputs[0].shape, dtype=torch.float64)
    ref = run(sliding_proxy_attention_reference, inputs, ws, overlap, grad_out)
    got = run(sliding_proxy_attention, [x.float().cuda() for x in inputs], ws, overlap, grad_out.cuda())
    for i, (x, r) in enumerate(zip(got, ref, strict=True)):
        tol = TOL["fwd" if i == 0 else "grad"][torch.float32]
        assert rel_err(x.cpu(), r) <= tol


@pytest.mark.slow
@SLOW
@given(
    b=st.integers(1, 5), heads=st.integers(1, 3), d=st.integers(1, 10), n_h=st.integers(1, 3),
    n_w=st.integers(1, 3), win=window, seed=st.integers(0, 2**31 - 1),
)  # fmt: skip
def test_triton_matches_float64_reference_many(b, heads, d, n_h, n_w, win, seed):
    ws, overlap = win
    assert_triton_matches_reference(make_inputs(b, heads, d, n_h, n_w, ws, overlap, seed), ws, overlap, seed)


@pytest.mark.slow
@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_triton_span_light_shape(seed):
    """SPAN-light's attention: 6 heads of d = 10, 12×12 windows, overlap 3, a 3×3 window grid (30×30)."""
    assert_triton_matches_reference(make_inputs(1, 6, 10, 3, 3, 12, 3, seed), 12, 3, seed)
