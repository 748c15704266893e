"""The three-level forward of the cuFFT convolution (kernels/fftconv/three_level.py): batch entries paired as
the real and imaginary parts of one row, all three FFT levels in Triton (run by the CPU interpreter) with
the spectral product inside the middle one, against the float64 reference. Its smallest length is
n = 2^16 (L > 16K): a 256-point level at each end and 256 points in the middle."""
from __future__ import annotations

import math

import pytest
import torch

from genomix.kernels.fftconv import cufft_fused, fftconv_ref, three_level, two_level
from genomix.kernels.fftconv.cufft_fused import fftconv_cufft


def _inputs(B, H, L, bidirectional=False, gates=False, D=True, dtype=torch.bfloat16, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, H, L, generator=g).to(dtype)
    k = torch.randn(H, 2 * L if bidirectional else L, generator=g) / L ** 0.5
    skip = torch.randn(H, generator=g) if D else None
    pre = torch.randn(B, H, L, generator=g).to(dtype) if gates else None
    post = torch.randn(B, H, L, generator=g).to(dtype) if gates else None
    return [u, k, skip, pre, post]


def _want(inputs, bidirectional=False):
    return fftconv_ref(*[None if t is None else t.double() for t in inputs], bidirectional=bidirectional)


def _row_errors(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """Relative L2 error of each (batch, channel) row."""
    return (got.double() - want).norm(dim=-1) / want.norm(dim=-1)


@pytest.fixture
def counted(monkeypatch):
    """The number of three-level channel groups run."""
    calls = []
    original = three_level.forward_group
    monkeypatch.setattr(three_level, "forward_group", lambda *a: calls.append(1) or original(*a))
    return calls


CASES = [  # B, H, L, bidirectional, gates, D, dtype: n = 2^16 (256 x 256), 2^17 (256 x 512), 2^18 (512 x 512)
    (2, 2, 20_000, False, False, True, torch.bfloat16),
    (3, 2, 40_000, False, True, True, torch.float16),   # odd batch: the last pair has no imaginary entry
    (3, 1, 70_000, True, False, True, torch.bfloat16),  # bidirectional (combined filter), wide middle level
]


@pytest.mark.parametrize("case", CASES, ids=[f"B{c[0]}H{c[1]}L{c[2]}{'bi' if c[3] else ''}" for c in CASES])
def test_forward_matches_float64_reference(counted, case):
    B, H, L, bidirectional, gates, D, dtype = case
    inputs = _inputs(B, H, L, bidirectional, gates, D, dtype, seed=L)
    with torch.no_grad():
        got = fftconv_cufft(*inputs, bidirectional=bidirectional)
    assert counted == [1]
    assert got.dtype == dtype
    errors = _row_errors(got, _want(inputs, bidirectional))
    assert errors.max() < 1e-2, errors


def test_paired_rows_keep_their_own_range():
    """Entries paired in one complex row keep their own range scales: a row 1e-20 times smaller than its
    partner, a zero row and a row 3000 times larger (coherent: offset 2000, so unscaled fp16 would
    overflow) each come out with the accuracy they would have alone."""
    inputs = _inputs(4, 2, 20_000, seed=1)
    u = inputs[0].float()
    u[2] *= 1e-20  # paired with entry 0
    u[3] = 0.0  # paired with entry 1
    u[1] = u[1] + 2000.0
    inputs[0] = u.to(torch.bfloat16)
    with torch.no_grad():
        got = fftconv_cufft(*inputs)
    want = _want(inputs)
    assert torch.isfinite(got).all()
    assert (got[3] == 0).all()
    errors = _row_errors(got[:3], want[:3])
    assert errors.max() < 1e-2, errors


def test_filter_spectrum_bin_order():
    """Without a product the middle level leaves the n-point DFT of the range-scaled, zero-padded row (the
    skip weight added at lag 0) with bin k2 + n2·k1 at row c2·TB2 + d2 (k2 = c2 + TA2·d2, as two levels order
    their rows) and word c1·TB1 + d1 (k1 = c1 + TA1·d1) of that row."""
    L, H = 20_000, 2
    k = torch.randn(H, L, generator=torch.Generator().manual_seed(3)) / L ** 0.5
    D = torch.tensor([0.5, -3.0])  # the skip weight, folded in as lag 0
    plan = cufft_fused._Plan(L, half=True)
    kf = three_level._filter_spectrum(k, plan, False, None, skip=D)
    k[:, 0] += D
    n1, n2 = three_level._split(plan.n)
    (ta1, tb1), (ta2, tb2) = two_level._level(n1), two_level._level(n2)
    k1, k2 = torch.arange(n1), torch.arange(n2)
    rows, words = (k2 % ta2) * tb2 + k2 // ta2, (k1 % ta1) * tb1 + k1 // ta1
    got = kf.spectrum[0].to(torch.complex64)[:, rows[:, None], words[None, :]]  # [h, k2, k1]
    scaled = (k.double() * kf.scale[0, :, None].double())
    want = torch.fft.fft(scaled, n=plan.n).reshape(H, n1, n2).transpose(1, 2)  # [h, k2, k1]: bin k2 + n2·k1
    assert ((got - want).abs().max() / want.abs().max()) < 2e-3


def test_dispatch_policy(monkeypatch):
    """Three levels take 16-bit forwards with batch >= 2 and 2^16 <= n <= 2^18; the switch turns them off."""
    monkeypatch.delenv(three_level.ENV_SWITCH, raising=False)
    half = cufft_fused._Plan(32_768, half=True)
    assert three_level.applies(half, 2)
    assert not three_level.applies(half, 1)
    assert not three_level.applies(cufft_fused._Plan(32_768, half=False), 2)
    assert three_level.applies(cufft_fused._Plan(131_072, half=True), 8)
    assert not three_level.applies(cufft_fused._Plan(16_384, half=True), 8)  # n = 2^15
    assert not three_level.applies(cufft_fused._Plan(131_073, half=True), 8)  # n = 2^19
    monkeypatch.setenv(three_level.ENV_SWITCH, "0")
    assert not three_level.applies(half, 2)


def test_batch_one_takes_two_levels(counted):
    """Batch 1 has nothing to pair."""
    with torch.no_grad():
        fftconv_cufft(*_inputs(1, 2, 20_000, seed=4))
    assert counted == []


@pytest.mark.parametrize("groups", [1, 2])
def test_training_forward(counted, monkeypatch, groups):
    """A training forward runs on three levels too (the two-level backward recomputes the filter's spectrum
    rather than keeping it), in one channel group or several, and keeps the pre-postgate output for the
    postgate's gradient; every gradient then matches float64."""
    B, H, L = 2, 2, 20_000
    if groups == 2:
        monkeypatch.setattr(cufft_fused, "TRAINING_FILTER_ELEMENTS_PER_PASS", L)  # one channel per group
    inputs = _inputs(B, H, L, gates=True, seed=6)
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fftconv_cufft(*leaves)
    assert len(counted) == groups
    dy = torch.randn(B, H, L, generator=torch.Generator().manual_seed(7)).to(torch.bfloat16)
    out.backward(dy)
    ref_leaves = [t.detach().double().requires_grad_() for t in inputs]
    ref = fftconv_ref(*ref_leaves)
    ref.backward(dy.double())
    assert _row_errors(out, ref.detach()).max() < 1e-2
    for got, want in zip(leaves, ref_leaves):
        rel = (got.grad.double() - want.grad).norm() / want.grad.norm()
        assert rel < 2e-2, rel


def test_pair_scales_bound_the_product():
    """The product's factor keeps every inverse stage of the pair's product within HALF_RANGE: the bound
    n · g · |z| · |k| with |z| the range-scaled pair's norm, and each entry's n_inv undoes its own scale."""
    plan = cufft_fused._Plan(20_000, half=True)
    norm = torch.tensor([[3.0, 0.0], [5.0, 7.0], [1e-20, 2.0]])
    scale = torch.tensor([[2.0 ** -3, 2.0 ** 100], [2.0 ** -4, 2.0 ** -4], [2.0 ** 60, 2.0 ** -2]])
    x = cufft_fused._Signal(torch.empty(0), scale, norm)
    kf = cufft_fused._Signal(torch.empty(0), torch.tensor([[4.0, 8.0]]), torch.tensor([[0.5, 0.25]]))
    factor, n_inv = three_level._pair_scales(plan, x, kf, pairs=2)
    for p in range(2):
        for h in range(2):
            entries = [b for b in (p, p + 2) if b < 3]
            z = math.sqrt(sum((scale[b, h] * norm[b, h]).item() ** 2 for b in entries))
            g = factor[p, h].item() * kf.scale[0, h].item()
            assert g == 2.0 ** math.floor(math.log2(g))
            if z > 0:
                assert plan.n * g * z * kf.norm[0, h].item() <= cufft_fused.HALF_RANGE / 2
                assert plan.n * 2 * g * z * kf.norm[0, h].item() > cufft_fused.HALF_RANGE / 2
            for b in entries:
                expected = 1 / (plan.n * g * scale[b, h].item()) if norm[b, h] > 0 else 0.0
                assert n_inv[b, h].item() == pytest.approx(expected)
