"""Soft-threshold (sparsemax) attention: float64 reference vs the official top-k formulation, gradcheck,
and the Triton kernels (run on CPU tensors through the Triton interpreter) vs the float64 reference."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels import soft_threshold as st_mod
from kernels.soft_threshold import (
    SoftThresholdAttentionFunction,
    macs,
    michelot_threshold,
    reference_forward,
    soft_threshold_attention,
    sparsemax_threshold,
)
from tests.kernels.official_style import official_style_attention

# Error bounds per precision, all in one place. Error = max |got - want| / scale (forward: scale max |v|;
# gradients: the larger of max |want| and the size of one summed term, see _grad_term_scales), against the
# float64 reference on the same (rounded) inputs. Allowed: RTOL + C * EPS_DOT * score_abs, where
# score_abs = max_ij sum_d |q_id k_jd| and EPS_DOT the unit roundoff of the score dot products' inputs
# (fp32 2^-24; TF32 2^-11; bf16/fp16 inputs are exact in fp32 products, so 2^-24): a dot product is only
# good to ~EPS_DOT * score_abs, whoever computes it. RTOL covers the rest: fp32 accumulation for fp32, and
# for bf16/fp16 the rounding of probabilities, gradients and outputs to the input dtype before and after
# their matmuls (unit roundoff 2^-9 bf16, 2^-12 fp16, 2^-12 TF32 for p @ v). Gradients sum over the support
# twice (mean, then dS), so their bounds are looser. The interpreter rounds bf16/fp16 values as a GPU does
# but computes "TF32" dot products in full fp32, so TF32's own rounding is only exercised on a GPU.
EPS32 = 2.0**-24
EPS_DOT = {"fp32": EPS32, "tf32": 2.0**-11, "bf16": EPS32, "fp16": EPS32}
TOL = {
    "fp32": {"forward": (1e-5, 2.0), "grad": (1e-4, 8.0)},
    "tf32": {"forward": (2e-3, 2.0), "grad": (1e-2, 8.0)},
    "bf16": {"forward": (1e-2, 2.0), "grad": (2e-2, 8.0)},
    "fp16": {"forward": (1.5e-3, 2.0), "grad": (2e-3, 8.0)},
}
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


INTERPRETER_READY = not isinstance(st_mod._fwd_kernel, triton.runtime.JITFunction)
NOT_READY = (
    "not run: no CUDA device, and the Triton interpreter needs TRITON_INTERPRET=1 set before triton is "
    "imported (run `nox -s kernels` or `TRITON_INTERPRET=1 pytest tests/kernels/test_soft_threshold.py`)"
)


def _use_backend(monkeypatch, backend: str) -> torch.device:
    """The device whose tensors take `backend`: the reference on the CPU; Triton on CUDA when there is one
    (and the interpreter is off), else on CPU tensors through the interpreter."""
    if backend == "reference":
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        return torch.device("cpu")
    if torch.cuda.is_available() and not INTERPRETER_READY:
        return torch.device("cuda")
    if not INTERPRETER_READY:
        pytest.skip(NOT_READY)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    return torch.device("cpu")


@pytest.fixture
def triton_device(monkeypatch) -> torch.device:
    return _use_backend(monkeypatch, "triton")


def _inputs(b, n, m, d, dv, magnitude, seed, dtype=torch.float32, device="cpu"):
    """Random q, k, v whose scores have standard deviation about `magnitude`."""
    g = torch.Generator().manual_seed(seed)
    scale = math.sqrt(magnitude / math.sqrt(d))
    q = torch.randn(b, n, d, generator=g, dtype=torch.float64) * scale
    k = torch.randn(b, m, d, generator=g, dtype=torch.float64) * scale
    v = torch.randn(b, m, dv, generator=g, dtype=torch.float64)
    return tuple(t.to(device=device, dtype=dtype) for t in (q, k, v))


def _run(q, k, v, dout, tf32=None):
    """Output and (dq, dk, dv) of soft_threshold_attention at these inputs."""
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = soft_threshold_attention(q, k, v, tf32=tf32)
    out.backward(dout)
    return out.detach(), (q.grad, k.grad, v.grad)


def _assert_close(got, want, tol, score_abs, scale=None, what=""):
    (rtol, c), eps = tol
    scale = want.abs().max().item() if scale is None else scale
    err = (got.double() - want.double()).abs().max().item()
    bound = max(scale, 1e-30) * (rtol + c * eps * score_abs)
    assert err <= bound, f"{what}: error {err:.3e} > bound {bound:.3e} (scale {scale:.3e})"


def _check_triton_vs_reference(q, k, v, seed=0, precision="fp32"):
    """Triton at `precision` against the float64 reference on the same inputs, forward and gradients."""
    dtype = DTYPES[precision]
    q, k, v = (t.to(dtype) for t in (q, k, v))
    g = torch.Generator().manual_seed(seed)
    dout = torch.randn(q.shape[0], q.shape[1], v.shape[2], generator=g).to(device=q.device, dtype=dtype)
    out, grads = _run(q, k, v, dout, tf32=precision == "tf32")
    out64, grads64 = _run(q.double(), k.double(), v.double(), dout.double())
    assert out.dtype == dtype and all(t.dtype == dtype for t in grads)
    score_abs = (q.double().abs() @ k.double().abs().transpose(1, 2)).max().item()
    eps = EPS_DOT[precision]
    tol = TOL[precision]
    _assert_close(out, out64, (tol["forward"], eps), score_abs, scale=v.abs().max().item(), what="out")
    for name, g, g64, term in zip("qkv", grads, grads64, _grad_term_scales(q, k, v, dout), strict=True):
        scale = max(g64.abs().max().item(), term)
        _assert_close(g, g64, (tol["grad"], eps), score_abs, scale=scale, what=f"d{name}")


def _grad_term_scales(q, k, v, dout):
    """Size of the terms each gradient sums (|dO||v||k|, |dO||v||q|, |dO|): the scale of a zero gradient."""
    mq, mk, mv, md = (t.abs().max().item() for t in (q, k, v, dout))
    return md * mv * mk, md * mv * mq, md


def test_reference_is_exact_sparsemax_with_bounded_row_blocks(monkeypatch):
    _use_backend(monkeypatch, "reference")
    monkeypatch.setattr(st_mod, "ROW_BLOCK", 7)
    q, k, v = _inputs(2, 30, 40, 8, 5, magnitude=3.0, seed=1, dtype=torch.float64)
    out, tau, support = reference_forward(q, k, v)
    p = torch.clamp(q @ k.transpose(1, 2) - tau[..., None], min=0)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 30, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal((p > 0).sum(-1).to(torch.int32), support)
    torch.testing.assert_close(out, p @ v, rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", [5, 300])
def test_reference_matches_official_topk_formulation(m):
    # M=5: top-k covers the row (official sorts it); M=300: topk=8 forces the widening 8 -> 16 -> ...
    q, k, v = _inputs(2, 20, m, 6, 4, magnitude=0.05, seed=2, dtype=torch.float64)
    dout = torch.randn(2, 20, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    s = q @ k.transpose(1, 2)
    assert m < 8 or (sparsemax_threshold(s)[1] > 8).any(), "inputs must exercise the official widening"
    out, grads = _run(q, k, v, dout)
    for topk in (8, 128):
        qo, ko, vo = (t.clone().requires_grad_() for t in (q, k, v))
        want = official_style_attention(qo, ko, vo, topk=topk)
        want.backward(dout)
        torch.testing.assert_close(out, want.detach(), rtol=0, atol=1e-12)
        for g, t in zip(grads, (qo, ko, vo), strict=True):
            torch.testing.assert_close(g, t.grad, rtol=0, atol=1e-11)


@pytest.mark.parametrize("max_iters", [32, 1])
def test_michelot_threshold_equals_the_sorted_search(max_iters):
    """Rows with supports from 1 key to all 600 (past top-k 128, so the sorted search widens), tied
    maxima and all-equal rows: the same threshold and support as `sparsemax_threshold`; with one pass
    allowed, the unsettled rows take the sorted search."""
    g = torch.Generator().manual_seed(41)
    spread = torch.logspace(-4, 1.5, 60, dtype=torch.float64)[:, None]
    s = torch.randn(60, 600, generator=g, dtype=torch.float64) * spread
    s[0] = 0.0  # all equal
    s[1, :3] = s[1].max() + 1.0  # three tied maxima
    s = s - s.amax(-1, keepdim=True)
    tau, support = michelot_threshold(s, max_iters=max_iters)
    want_tau, want_support = sparsemax_threshold(s)
    assert torch.equal(support, want_support)
    torch.testing.assert_close(tau, want_tau, rtol=0, atol=1e-13)
    assert support.max() == 600 and support.min() == 1 and (support > 128).sum() > 10
    assert support[1] == 3


def test_reference_gradcheck_float64():
    q, k, v = _inputs(1, 6, 9, 4, 3, magnitude=2.0, seed=4, dtype=torch.float64)
    s = q @ k.transpose(1, 2)
    tau, _ = sparsemax_threshold(s)
    margin = (s - tau).abs().min().item()
    # gradcheck's finite differences (eps 1e-6) must not cross a support boundary (a kink of sparsemax).
    assert margin > 1e-3, f"inputs lie {margin:.1e} from a support boundary; pick another seed"
    assert ((s - tau) > 0).sum(-1).max() > 1, "inputs must give supports of several keys"
    inputs = tuple(t.requires_grad_() for t in (q, k, v))
    assert torch.autograd.gradcheck(SoftThresholdAttentionFunction.apply, inputs, eps=1e-6, atol=1e-7)


def _edge_case(name):
    """(q, k, v, expected out) of a hand-made case, expected computed independently of sparsemax code."""
    v = torch.arange(12.0).view(1, 4, 3)
    k = torch.eye(4).view(1, 4, 4)
    if name == "all_equal":
        q = torch.zeros(1, 2, 4)
        return q, k, v, v.mean(1, keepdim=True).expand(1, 2, 3)
    if name == "single_dominant":
        q = torch.tensor([[[0.0, 5.0, 0.2, -1.0]]])
        return q, k, v, v[:, 1:2]
    if name == "tie_of_two":
        q = torch.tensor([[[3.0, -4.0, 3.0, 1.5]]])
        return q, k, v, (v[:, 0:1] + v[:, 2:3]) / 2
    if name == "large_magnitude":
        # Two scores 0.5 apart at 1e3 (exact in fp32): p = (0.75, 0.25); the rest is 1e3 below.
        q = torch.tensor([[[1000.0, 999.5, 0.0, -1000.0]]])
        return q, k, v, 0.75 * v[:, 0:1] + 0.25 * v[:, 1:2]
    if name == "single_key":
        q = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(5)) * 100
        return q, k[:, :1], v[:, :1], v[:, :1].expand(1, 3, 3)
    raise ValueError(name)


EDGE_CASES = ["all_equal", "single_dominant", "tie_of_two", "large_magnitude", "single_key"]


@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_cases(name, backend, monkeypatch):
    device = _use_backend(monkeypatch, backend)
    q, k, v, want = (t.to(device) for t in _edge_case(name))
    torch.testing.assert_close(soft_threshold_attention(q, k, v), want, rtol=1e-6, atol=1e-6)


def test_triton_exact_at_large_integer_scores(triton_device):
    # Integer q, k: every score (|s| up to ~1e3) is exact in fp32, with many ties, so only the
    # threshold search can err: it must meet the plain 1e-5 bound with no score-rounding term.
    g = torch.Generator().manual_seed(6)
    q = torch.randint(-8, 9, (3, 70, 64), generator=g).float()
    k = torch.randint(-8, 9, (3, 130, 64), generator=g).float()
    v = torch.randn(3, 130, 8, generator=g)
    dout = torch.randn(3, 70, 8, generator=g)
    q, k, v, dout = (t.to(triton_device) for t in (q, k, v, dout))
    out, grads = _run(q, k, v, dout, tf32=False)
    out64, grads64 = _run(q.double(), k.double(), v.double(), dout.double())
    assert (q @ k.transpose(1, 2)).abs().max() > 500
    tol = TOL["fp32"]
    _assert_close(out, out64, (tol["forward"], 0.0), 0.0, scale=v.abs().max().item(), what="out")
    for name, g32, g64, term in zip("qkv", grads, grads64, _grad_term_scales(q, k, v, dout), strict=True):
        scale = max(g64.abs().max().item(), term)
        _assert_close(g32, g64, (tol["grad"], 0.0), 0.0, scale=scale, what=f"d{name}")


GUARD = 4096
SENTINEL = 12345


def test_triton_writes_stay_inside_their_buffers(triton_device, monkeypatch):
    # Batch >= 3 with several query blocks: a wrong per-batch offset writes past the end of a buffer.
    guarded = []

    def empty_with_guard(*shape, dtype, device):
        numel = math.prod(shape)
        whole = torch.full((numel + GUARD,), SENTINEL, dtype=dtype, device=device)
        guarded.append(whole[numel:])
        return whole[:numel].view(shape)

    monkeypatch.setattr(st_mod, "_empty", empty_with_guard)
    # D = Dv = 40 run split in 32 + 16 columns: the second part's masks are checked too.
    _check_triton_vs_reference(*_inputs(4, 128, 128, 40, 40, magnitude=3.0, seed=10, device=triton_device))
    assert len(guarded) >= 10, "the kernels' buffers must come from st_mod._empty"
    for guard in guarded:
        assert (guard == SENTINEL).all(), "a kernel wrote past the end of one of its buffers"


@pytest.mark.parametrize("max_iters", [0, 1])
def test_triton_fallback_finishes_unconverged_blocks(triton_device, monkeypatch, max_iters):
    # With the main kernel's Michelot passes capped at 0 or 1, (some) blocks leave it unconverged and
    # the fallback launch must finish them exactly.
    monkeypatch.setattr(st_mod, "MAX_ITERS", max_iters)
    calls = []
    real = st_mod.triton_forward

    def spy(*a, **kw):
        out, state = real(*a, **kw)
        calls.append(state)
        return out, state

    monkeypatch.setattr(st_mod, "triton_forward", spy)
    _check_triton_vs_reference(*_inputs(3, 70, 100, 8, 6, magnitude=30.0, seed=11, device=triton_device))
    assert calls, "the Triton path must have run"


def test_triton_skips_dead_tiles(triton_device, monkeypatch):
    # Four clusters of 64 tokens, queries and keys in the same order: each query block's support lies in
    # its own cluster's keys, so most key tiles are dead and must drop out of the lists without changing
    # the results (forward, and dk/dv through the transposed lists).
    states = []
    real = st_mod.triton_forward

    def spy(*a, **kw):
        out, state = real(*a, **kw)
        states.append(state)
        return out, state

    monkeypatch.setattr(st_mod, "triton_forward", spy)
    g = torch.Generator().manual_seed(15)
    centres = torch.eye(8)[torch.arange(256) // 64] * 6.0
    q = centres + 0.3 * torch.randn(3, 256, 8, generator=g)
    k = centres + 0.3 * torch.randn(3, 256, 8, generator=g)
    v = torch.randn(3, 256, 5, generator=g)
    _check_triton_vs_reference(*(t.to(triton_device) for t in (q, k, v)), seed=15)
    state = states[-1]
    bm, bn = state["block"]
    n_qb, n_kb = -(-256 // bm), -(-256 // bn)
    listed = state["n_live"][:, :n_qb].sum().item()
    # A block meets max(1, bm / 64) clusters, each spanning ceil(64 / bn) key tiles.
    assert listed <= 3 * n_qb * max(1, bm // 64) * -(-64 // bn) < 3 * n_qb * n_kb, f"{listed} live tiles"


def test_no_grad_forward_skips_the_backward_state(triton_device, monkeypatch):
    # Inference (no grad) must not compute vsum, the second value-sized matmul kept for the backward.
    seen = []
    real = st_mod.triton_forward
    monkeypatch.setattr(
        st_mod, "triton_forward", lambda *a, **kw: seen.append(kw["need_backward"]) or real(*a, **kw)
    )
    q, k, v = (t.requires_grad_() for t in _inputs(3, 20, 30, 4, 5, 3.0, seed=12, device=triton_device))
    with torch.no_grad():
        out = soft_threshold_attention(q, k, v)
    soft_threshold_attention(q, k, v).sum().backward()
    assert seen == [False, True]
    torch.testing.assert_close(out, soft_threshold_attention(q, k, v).detach())


@pytest.mark.parametrize("precision", ["tf32", "bf16", "fp16"])
def test_triton_low_precision_bounds(triton_device, precision):
    # Scores of HSPAN's spread (std 30) and a small one, several tiles, batch 3.
    for magnitude, seed in ((30.0, 13), (0.1, 14)):
        q, k, v = _inputs(3, 45, 70, 40, 40, magnitude, seed, device=triton_device)
        _check_triton_vs_reference(q, k, v, seed=seed, precision=precision)


def test_triton_spans_several_tiles(triton_device):
    n, m = 2 * st_mod.MIN_BLOCK_M + 13, 3 * st_mod.MIN_BLOCK_N + 5
    _check_triton_vs_reference(*_inputs(3, n, m, 96, 20, magnitude=30.0, seed=7, device=triton_device))


SHAPES = dict(
    b=st.integers(1, 4),
    n=st.integers(1, 150),
    m=st.integers(1, 150),
    d=st.integers(1, 48),
    dv=st.integers(1, 48),
    log_magnitude=st.floats(-2.0, 3.0),
    seed=st.integers(0, 2**31 - 1),
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**SHAPES)
def test_triton_matches_float64_reference(triton_device, b, n, m, d, dv, log_magnitude, seed):
    q, k, v = _inputs(b, n, m, d, dv, 10**log_magnitude, seed, device=triton_device)
    _check_triton_vs_reference(q, k, v, seed=seed)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    **SHAPES
    | dict(n=st.integers(1, 400), m=st.integers(1, 600), d=st.integers(1, 96), dv=st.integers(1, 64)),
    precision=st.sampled_from(list(DTYPES)),
)
def test_triton_matches_float64_reference_many(triton_device, b, n, m, d, dv, log_magnitude, seed, precision):
    q, k, v = _inputs(b, n, m, d, dv, 10**log_magnitude, seed, device=triton_device)
    _check_triton_vs_reference(q, k, v, seed=seed, precision=precision)


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_dispatch(backend, monkeypatch):
    device = _use_backend(monkeypatch, backend)
    calls = []
    for name in ("reference_forward", "triton_forward"):
        real = getattr(st_mod, name)
        monkeypatch.setattr(st_mod, name, lambda *a, _n=name, _r=real, **kw: calls.append(_n) or _r(*a, **kw))
    soft_threshold_attention(*_inputs(1, 3, 4, 2, 2, magnitude=1.0, seed=8, device=device))
    assert calls == [f"{backend}_forward"]


def test_interpreter_requested_too_late_is_an_error(monkeypatch):
    if INTERPRETER_READY:
        pytest.skip("not run: triton was imported with TRITON_INTERPRET=1, so the interpreter is available")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(RuntimeError, match="set it before Python starts"):
        soft_threshold_attention(*_inputs(1, 3, 4, 2, 2, magnitude=1.0, seed=8))


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((2, 3), (1, 4, 2), (1, 4, 2)), "must be 3-D"),
        (((2, 3, 2), (1, 4, 2), (1, 4, 2)), "batch sizes differ"),
        (((1, 3, 2), (1, 4, 5), (1, 4, 2)), "q has D=2 but k has D=5"),
        (((1, 3, 2), (1, 4, 2), (1, 5, 2)), "k has M=4 keys but v has 5"),
        (((1, 3, 2), (1, 0, 2), (1, 0, 2)), "at least one key"),
    ],
)
def test_shape_errors(shapes, message):
    with pytest.raises(ValueError, match=message):
        soft_threshold_attention(*(torch.zeros(s) for s in shapes))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy sees the NaN too
@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input(bad, backend, monkeypatch):
    # The reference always checks; the Triton path checks in debug mode only (a check is a host sync)
    # and otherwise gives NaN rows.
    device = _use_backend(monkeypatch, backend)
    q, k, v = _inputs(1, 3, 4, 2, 2, magnitude=1.0, seed=9, device=device)
    k[0, 1, 0] = bad
    with torch.autograd.set_detect_anomaly(backend == "triton"):
        with pytest.raises(ValueError, match="k holds NaN or Inf"):
            soft_threshold_attention(q, k, v)
    if backend == "triton":
        assert soft_threshold_attention(q, k, v).isnan().any()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy sees the overflow too
@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_overflowing_scores_raise_a_clear_error(backend, monkeypatch):
    # Promised on the reference path always, on the Triton path in debug mode (see the module docstring).
    device = _use_backend(monkeypatch, backend)
    q = torch.full((1, 2, 4), 1e20, device=device)
    with torch.autograd.set_detect_anomaly(backend == "triton"):
        with pytest.raises(FloatingPointError, match="overflows"):
            soft_threshold_attention(q, q.clone(), torch.ones(1, 2, 3, device=device))


@pytest.mark.slow
def test_kernels_compile_for_cuda():
    # The interpreter misses GPU-only compile errors; Triton's bundled ptxas needs no GPU.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root)
    script = root / "tests" / "kernels" / "compile_for_cuda.py"
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("shared") == 16, done.stdout


def test_macs_counts_both_matmuls():
    assert macs(16, 2304, 2304, 96, 192) == 16 * 2304 * 2304 * (96 + 192)
