"""Long FFT convolution: the reference's semantics and the Triton kernels (interpreter on CPU).

Every check compares against a float64 computation by relative L2 error: <= 1e-4 for fp32 inputs,
<= 1e-2 for bf16. The Triton path runs through ``fftconv_triton`` under ``TRITON_INTERPRET=1`` (set by
conftest.py without a GPU), so shapes stay small; the multi-pass (long) path is forced by lowering the
on-chip row size. The GPU counterpart at real shapes is kernels/gpu_check_fftconv.py.
"""
from __future__ import annotations

import dataclasses
import functools
import sys

import pytest
import torch

from genomix.kernels import fftconv, fftconv_ref
from genomix.kernels.fftconv import fftconv_triton
from genomix.kernels.fftconv import plan as plan_mod
from genomix.kernels.fftconv.ops import filter_spectrum_triton, spectrum_peak

TOL = {torch.float32: 1e-4, torch.bfloat16: 1e-2}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def direct(u, k, D, pre, post, bidirectional):
    """O(L^2) float64 definition, independent of any FFT (the spec's sums written out)."""
    u, k = u.double(), k.double()
    x = u if pre is None else u * pre.double()
    L = u.shape[-1]
    t = torch.arange(L)
    lag = t[:, None] - t[None, :]  # t - s
    causal = k[:, :L][:, lag.clamp(min=0)] * (lag >= 0)
    mat = causal
    if bidirectional:
        mat = mat + k[:, L:][:, (-lag - 1).clamp(min=0)] * (lag < 0)
    y = torch.einsum("hts,bhs->bht", mat, x)
    if D is not None:
        y = y + x * D.double()[:, None]
    if post is not None:
        y = y * post.double()
    return y


def make(B, H, L, bidirectional, gates, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, H, L, generator=g).to(dtype)
    k = torch.randn(H, 2 * L if bidirectional else L, generator=g) / L ** 0.5  # white: no decay
    D = torch.randn(H, generator=g)
    pre = torch.randn(B, H, L, generator=g).to(dtype) if gates else None
    post = torch.randn(B, H, L, generator=g).to(dtype) if gates else None
    return [u, k, D, pre, post]


@pytest.mark.parametrize("L,bidirectional", [(1, False), (9, True), (50, False), (33, True)])
def test_reference_matches_direct_sum(L, bidirectional):
    ts = make(2, 3, L, bidirectional, gates=True, dtype=torch.float64)
    assert rel(fftconv_ref(*ts, bidirectional=bidirectional), direct(*ts, bidirectional)) < 1e-12


def test_bidirectional_uses_reversed_filter_for_future_positions():
    u = torch.zeros(1, 1, 4, dtype=torch.float64)
    u[0, 0, 2] = 1.0  # impulse at s = 2
    k = torch.tensor([[1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0]], dtype=torch.float64)
    y = fftconv_ref(u, k, bidirectional=True)[0, 0]
    # t >= s: k_fwd[t - s]; t < s: k_rev[s - t - 1]
    assert torch.allclose(y, torch.tensor([20.0, 10.0, 1.0, 2.0], dtype=torch.float64))


def test_shape_errors_are_clear():
    u = torch.randn(1, 2, 8)
    with pytest.raises(ValueError, match=r"\(H, 2L\)"):
        fftconv(u, torch.randn(2, 8), bidirectional=True)
    with pytest.raises(ValueError, match="pregate"):
        fftconv(u, torch.randn(2, 8), pregate=torch.randn(1, 2, 7))
    with pytest.raises(TypeError, match="u must be a floating-point tensor"):
        fftconv(torch.ones(1, 2, 8, dtype=torch.int64), torch.randn(2, 8))
    with pytest.raises(ValueError, match="each at least 1"):  # an empty batch was an MKL configuration error
        fftconv(torch.randn(0, 2, 8), torch.randn(2, 8))


def test_dispatch_takes_reference_on_cpu(monkeypatch):
    monkeypatch.delenv("GENOMIX_FORCE_TRITON", raising=False)
    ts = make(1, 2, 20, False, gates=False)
    assert torch.equal(fftconv(*ts), fftconv_ref(*ts))


def test_force_triton_routes_to_kernels(monkeypatch):
    """GENOMIX_FORCE_TRITON=1 sends the dispatch point through the Triton kernels (interpreted here)."""
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    calls = []
    mod = sys.modules["genomix.kernels.fftconv"]  # the package attribute is the function of that name

    real = mod.fftconv_triton
    monkeypatch.setattr(mod, "fftconv_triton", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    ts = make(1, 2, 20, False, gates=True)
    y = fftconv(*ts)
    assert calls and rel(y, direct(*ts, False)) <= TOL[torch.float32]


def _grads(fn, ts, dy, bidirectional, wide):
    leaves = [None if t is None else (t.double() if wide else t.clone()).requires_grad_() for t in ts]
    y = fn(*leaves, bidirectional=bidirectional)
    y.backward(dy.double() if wide else dy)
    return y, [None if t is None else t.grad for t in leaves]


# (B, H, L, bidirectional, gates): odd and non-power-of-two lengths, B*H > 1, both filter forms.
FORWARD_CASES = [(2, 3, 1, False, True), (1, 2, 37, True, False), (2, 2, 130, False, True), (1, 3, 700, True, True)]


@pytest.mark.parametrize("B,H,L,bidirectional,gates", FORWARD_CASES)
def test_triton_forward_fp32(B, H, L, bidirectional, gates):
    ts = make(B, H, L, bidirectional, gates, seed=L)
    y = fftconv_triton(*ts, bidirectional=bidirectional)
    assert y.dtype == torch.float32 and y.shape == (B, H, L)
    assert rel(y, direct(*ts, bidirectional)) <= TOL[torch.float32]


@pytest.mark.parametrize("B,H,L,bidirectional,gates", [(2, 2, 45, False, True), (1, 2, 200, True, True)])
def test_triton_forward_backward(B, H, L, bidirectional, gates):
    for dtype in (torch.float32, torch.bfloat16):
        ts = make(B, H, L, bidirectional, gates, dtype, seed=L + 1)
        dy = torch.randn(B, H, L).to(dtype)
        y, grads = _grads(fftconv_triton, ts, dy, bidirectional, wide=False)
        r, ref_grads = _grads(fftconv_ref, ts, dy, bidirectional, wide=True)
        assert y.dtype == dtype
        assert rel(y, r) <= TOL[dtype], dtype
        for name, g, gr in zip(("du", "dk", "dD", "dpre", "dpost"), grads, ref_grads):
            if gr is not None:
                assert g is not None and g.shape == gr.shape, name
                assert rel(g, gr) <= TOL[dtype], (name, dtype, rel(g, gr))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_triton_multipass_path(monkeypatch, bidirectional):
    """Force the column/row/column path (FFT 8192 = 32 x 256) at a small, odd length."""
    monkeypatch.setattr(plan_mod, "MAX_ROW", 256)
    L = 301
    assert not plan_mod.make_plan(L).short
    ts = make(2, 1, L, bidirectional, gates=True, seed=7)
    dy = torch.randn(2, 1, L)
    y, grads = _grads(fftconv_triton, ts, dy, bidirectional, wide=False)
    r, ref_grads = _grads(fftconv_ref, ts, dy, bidirectional, wide=True)
    assert rel(y, r) <= 1e-4
    for g, gr in zip(grads, ref_grads):
        assert rel(g, gr) <= 1e-4


def test_plan_orders_are_permutations():
    for L in (1, 200, 3000, 70_000):
        p = plan_mod.make_plan(L)
        order = plan_mod.spectrum_order(p)
        assert p.n >= 2 * L and p.n == p.n2 * p.n1 == p.n2 * p.a * p.bd
        assert torch.equal(order.sort().values, torch.arange(p.n))


# v2 (plan.VARIANTS["v2"]): fp16 tensor-core operands for 16-bit inputs (emulated by rounding in the
# interpreter), Triton filter spectrum, two-step column DFT. The two-step kernels only engage at
# n2 >= 256 (L > 512K) by default; here the threshold is lowered to reach them at a small size.
V2_SMALL = dataclasses.replace(plan_mod.VARIANTS["v2"], two_level_min_n2=32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_v2_short_path_forward_backward(dtype):
    B, H, L, bid = 2, 2, 200, True
    ts = make(B, H, L, bid, gates=True, dtype=dtype, seed=5)
    dy = torch.randn(B, H, L).to(dtype)
    y, grads = _grads(functools.partial(fftconv_triton, tuning="v2"), ts, dy, bid, wide=False)
    r, ref_grads = _grads(fftconv_ref, ts, dy, bid, wide=True)
    assert y.dtype == dtype and rel(y, r) <= TOL[dtype]
    for name, g, gr in zip(("du", "dk", "dD", "dpre", "dpost"), grads, ref_grads):
        assert rel(g, gr) <= TOL[dtype], (name, dtype, rel(g, gr))


# v3: v2's short path with the zero half of the first and last DFT steps skipped (tiles of 32 rows
# or more: L = 600 gives a 32 x 64 tile, L = 200 a 16 x 32 one, which keeps its whole tile) and batch
# elements convolved in pairs (B = 3: one pair and one lone sequence; B = 1: no pairing).
@pytest.mark.parametrize("B,L,bidirectional,dtype", [
    (3, 600, False, torch.float32), (3, 200, True, torch.bfloat16), (1, 600, True, torch.bfloat16),
    (2, 600, True, torch.float32)])
def test_v3_short_path_forward_backward(B, L, bidirectional, dtype):
    ts = make(B, 2, L, bidirectional, gates=True, dtype=dtype, seed=B + L)
    dy = torch.randn(B, 2, L).to(dtype)
    y, grads = _grads(functools.partial(fftconv_triton, tuning="v3"), ts, dy, bidirectional, wide=False)
    r, ref_grads = _grads(fftconv_ref, ts, dy, bidirectional, wide=True)
    assert y.dtype == dtype and rel(y, r) <= TOL[dtype]
    for name, g, gr in zip(("du", "dk", "dD", "dpre", "dpost"), grads, ref_grads):
        assert rel(g, gr) <= TOL[dtype], (name, dtype, rel(g, gr))


# Activations of a trained model reach magnitudes where fp16 dot operands overflow (65504): a pretrained
# HyenaDNA fine-tuned in bf16 went to NaN through the short path (2026-12-04). Each on-chip row transform
# scales its tile by a power of two into fp16's range and back, so large (and tiny) inputs stay exact; the
# on-chip inverse step scales by a bound from the filter's spectral peak instead (large and tiny filters).
@pytest.mark.parametrize("tuning,L,scale,k_scale",
                         [("v3", 70, 3e4, 50.0), ("v3", 200, 1e-6, 50.0), ("v2", 600, 1e5, 50.0),
                          ("v3", 300, 1e3, 1e-9), ("v2", 129, 1e-3, 1e6)])
def test_16bit_dot_operands_survive_large_and_tiny_magnitudes(tuning, L, scale, k_scale):
    B, bid = 2, False
    ts = make(B, 2, L, bid, gates=True, dtype=torch.bfloat16, seed=L)
    ts[0] = (ts[0].float() * scale).to(torch.bfloat16)
    ts[1] = ts[1] * k_scale  # large taps, as trained implicit filters have, or tiny ones
    ts[2] = None  # no skip term: it would hide the convolution's error under a tiny filter
    dy = (torch.randn(B, 2, L) * scale).to(torch.bfloat16)
    y, grads = _grads(functools.partial(fftconv_triton, tuning=tuning), ts, dy, bid, wide=False)
    r, ref_grads = _grads(fftconv_ref, ts, dy, bid, wide=True)
    assert torch.isfinite(y).all() and rel(y, r) <= TOL[torch.bfloat16]
    for name, g, gr in zip(("du", "dk", "dpre", "dpost"), grads[:2] + grads[3:], ref_grads[:2] + ref_grads[3:]):
        assert torch.isfinite(g).all() and rel(g, gr) <= TOL[torch.bfloat16], (name, rel(g, gr))


def test_hermitian_part_keeps_the_real_signal():
    """The paired cross spectrum carries i*T (T the spectrum of a real signal); hermitian_part drops it."""
    plan = plan_mod.make_plan(300)
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(2, plan.n, generator=g, dtype=torch.float64)
    order = plan_mod.spectrum_order(plan)
    S, T = torch.fft.fft(s)[order], torch.fft.fft(t)[order]
    W = S + 1j * T
    hr, hi = plan_mod.hermitian_part(W.real[None], W.imag[None], plan)
    assert torch.allclose(hr[0], S.real, atol=1e-9) and torch.allclose(hi[0], S.imag, atol=1e-9)


@pytest.mark.parametrize("dtype,bidirectional,H", [(torch.float32, False, 1), (torch.bfloat16, True, 1)])
def test_v2_two_level_multipass(monkeypatch, dtype, bidirectional, H):
    """Column pass as two on-chip steps (n2 = 32 = 4 x 8), row pass, inverse two-step column pass."""
    monkeypatch.setattr(plan_mod, "MAX_ROW", 256)
    L = 301
    ts = make(1, H, L, bidirectional, gates=True, dtype=dtype, seed=11)
    dy = torch.randn(1, H, L).to(dtype)
    y, grads = _grads(functools.partial(fftconv_triton, tuning=V2_SMALL), ts, dy, bidirectional, wide=False)
    r, ref_grads = _grads(fftconv_ref, ts, dy, bidirectional, wide=True)
    assert rel(y, r) <= TOL[dtype]
    for name, g, gr in zip(("du", "dk", "dD", "dpre", "dpost"), grads, ref_grads):
        assert rel(g, gr) <= TOL[dtype], (name, dtype, rel(g, gr))


@pytest.mark.parametrize("L,max_row,bidirectional", [(200, 4096, False), (200, 4096, True), (301, 256, True)])
def test_triton_filter_spectrum_matches_torch_order(monkeypatch, L, max_row, bidirectional):
    """The kernels' own filter transform lands in the stored order that v1 reaches by gathers."""
    monkeypatch.setattr(plan_mod, "MAX_ROW", max_row)
    plan = plan_mod.make_plan(L)
    k = torch.randn(3, 2 * L if bidirectional else L, generator=torch.Generator().manual_seed(3))
    want = plan_mod.filter_spectrum(k, plan, bidirectional, conj=True)
    peak = torch.full((3,), float("nan")) if plan.short else None  # the on-chip path's bound, same pass
    got = filter_spectrum_triton(k, plan, bidirectional, "tf32x3", V2_SMALL, conj=True, peak=peak)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-6 * float(b.abs().max()))
    if peak is not None:
        assert torch.allclose(peak, spectrum_peak(*want), rtol=1e-5)


def test_v2_short_path_at_8192_points():
    """With 16-bit operands v2 keeps an 8192-point FFT (L <= 4096) on chip as one 128x64 tile."""
    L = 3000
    v2 = plan_mod.VARIANTS["v2"]
    plan = plan_mod.plan_for(L, v2, "tf32")
    assert plan.short and (plan.n, plan.a, plan.bd) == (8192, 128, 64)
    assert not plan_mod.plan_for(L, v2, "tf32x3").short  # fp32 operands: 4096 at most
    ts = make(1, 1, L, False, gates=True, dtype=torch.bfloat16, seed=13)
    dy = torch.randn(1, 1, L).to(torch.bfloat16)
    y, grads = _grads(functools.partial(fftconv_triton, tuning="v2"), ts, dy, False, wide=False)
    r, ref_grads = _grads(fftconv_ref, ts, dy, False, wide=True)
    assert rel(y, r) <= TOL[torch.bfloat16]
    for name, g, gr in zip(("du", "dk", "dD", "dpre", "dpost"), grads, ref_grads):
        assert rel(g, gr) <= TOL[torch.bfloat16], (name, rel(g, gr))
