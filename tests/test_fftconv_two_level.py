"""The two-level path of the cuFFT convolution (kernels/fftconv/two_level.py): the Triton levels next to
the time domain (first level with the fused pad, last level with the fused epilogue) and the spectral
product in two-level word order run by the CPU interpreter, cuFFT's middle levels by torch.fft, against
the float64 reference. The threshold is lowered so that small lengths take the path (M = 512 … 8192
packed points: 2 … 32 columns of a 256-point Triton level)."""
from __future__ import annotations

import functools
import math
import os

import pytest
import torch
import triton
import triton.language as tl

from genomix.kernels.fftconv import cufft_fused, fftconv_ref, two_level
from genomix.kernels.fftconv.packed_kernels import pair_index
from genomix.kernels.fftconv.cufft_fused import fftconv_cufft


@pytest.fixture
def two_level_on(monkeypatch):
    monkeypatch.setenv(two_level.ENV_SWITCH, "1")


def _inputs(B, H, L, bidirectional, gates, D, dtype, seed, offset=0.0, filter_mean=0.0):
    g = torch.Generator().manual_seed(seed)
    u = (torch.randn(B, H, L, generator=g) + offset).to(dtype)
    k = torch.randn(H, 2 * L if bidirectional else L, generator=g) / L ** 0.5 + filter_mean
    skip = torch.randn(H, generator=g) if D else None
    pre = torch.randn(B, H, L, generator=g).to(dtype) if gates else None
    post = torch.randn(B, H, L, generator=g).to(dtype) if gates else None
    return [u, k, skip, pre, post]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


CASES = [  # B, H, L, bidirectional, gates, D, dtype
    (1, 2, 300, False, False, False, torch.bfloat16),   # M = 512: two outer columns
    (2, 3, 1000, False, True, True, torch.bfloat16),
    (3, 1, 2049, False, False, True, torch.float16),
    (1, 2, 4100, True, True, True, torch.bfloat16),     # M = 8192 bidirectional (combined filter)
    (2, 2, 5000, False, True, False, torch.bfloat16),
]


@pytest.mark.parametrize("case", CASES, ids=[f"B{c[0]}H{c[1]}L{c[2]}{'bi' if c[3] else ''}" for c in CASES])
@pytest.mark.parametrize("wide", [False, True], ids=["square", "wide"])
def test_forward_matches_float64_reference(two_level_on, monkeypatch, case, wide):
    """Forced on, the forward matches float64 with either Triton level (wide: 16 x 32 points from M = 1024)."""
    if wide:
        monkeypatch.setattr(two_level, "WIDE_MIN_POINTS", 1 << 10)
    B, H, L, bidirectional, gates, D, dtype = case
    inputs = _inputs(B, H, L, bidirectional, gates, D, dtype, seed=L)
    assert two_level.applies(cufft_fused._plan(inputs[0], False))
    got = fftconv_cufft(*inputs, bidirectional=bidirectional)
    want = fftconv_ref(*[None if t is None else t.double() for t in inputs], bidirectional=bidirectional)
    assert got.dtype == dtype
    assert _rel(got, want) < 1e-2


@pytest.mark.parametrize("tile,columns,dots,inverse_dots,half_math", [
    (16, 2, 3, 4, False), (16, 16, 3, 1, False), (32, 4, 3, 4, False), (16, 8, 4, 3, False),
    (16, 16, 4, 1, False), (16, 32, 3, 1, False), (32, 8, 4, 3, False), (16, 16, 1, 4, True),
    (16, 32, 1, 3, True), (32, 4, 1, 1, True)])
def test_tile_and_column_blocks(two_level_on, monkeypatch, tile, columns, dots, inverse_dots, half_math):
    """Other inner tiles, column blocks, every form of the complex matrix products (one embedded dot, Gauss's
    three, four chained) and either precision of the work between the dots give the same convolution;
    blocks wider than n1 (16 for tile 16, 4 for tile 32 at this length) take the masked form."""
    monkeypatch.setattr(two_level, "HALF_MATH", half_math)
    monkeypatch.setattr(two_level, "INVERSE_HALF_MATH", half_math)
    monkeypatch.setattr(two_level, "TILE", tile)
    monkeypatch.setattr(two_level, "COLUMNS", columns)
    monkeypatch.setattr(two_level, "INVERSE_COLUMNS", columns)
    monkeypatch.setattr(two_level, "DOTS", dots)
    monkeypatch.setattr(two_level, "INVERSE_DOTS", inverse_dots)
    inputs = _inputs(2, 2, 3000, False, True, True, torch.bfloat16, seed=5)
    want = fftconv_ref(*[None if t is None else t.double() for t in inputs])
    assert _rel(fftconv_cufft(*inputs), want) < 1e-2


@pytest.mark.parametrize("T", [16, 32])
def test_embedded_matrices_multiply_interleaved_parts(T):
    """The one-dot form's table: the interleaved real and imaginary parts of complex rows times the (2T, 2T)
    real matrix of slot 0 (F) and slot 1 (its adjoint) give the complex products, interleaved."""
    g = torch.Generator().manual_seed(T)
    x = torch.complex(*(torch.randn(5, T, generator=g, dtype=torch.float64) for _ in range(2)))
    idx = torch.arange(T, dtype=torch.float64)
    F = torch.exp(-2j * math.pi * torch.outer(idx, idx) / T)
    tables = two_level._matrices(T, torch.device("cpu"), 1).double()
    assert tables.shape == (2, 2 * T, 2 * T)
    for slot, M in enumerate((F, F.conj())):
        interleaved = torch.view_as_real(x).reshape(5, 2 * T) @ tables[slot]
        got = torch.view_as_complex(interleaved.reshape(5, T, 2).contiguous())
        assert torch.allclose(got, x @ M, atol=2e-3 * T)


def test_half_math_costs_little_accuracy(two_level_on, monkeypatch):
    """fp16 twiddle products and Gauss sums in the inner level (``HALF_MATH``, the default) stay close to the
    fp32 ones: their error against float64 grows by less than a fifth (3.40e-3 against 3.38e-3 when written: the
    bf16 output's rounding dominates)."""
    inputs = _inputs(2, 3, 8000, False, True, True, torch.bfloat16, seed=9)
    want = fftconv_ref(*[None if t is None else t.double() for t in inputs])
    monkeypatch.setattr(two_level, "HALF_MATH", False)
    monkeypatch.setattr(two_level, "INVERSE_HALF_MATH", False)
    fp32_math = _rel(fftconv_cufft(*inputs), want)
    monkeypatch.setattr(two_level, "HALF_MATH", True)
    monkeypatch.setattr(two_level, "INVERSE_HALF_MATH", True)
    half_math = _rel(fftconv_cufft(*inputs), want)
    assert half_math < 1.2 * fp32_math and half_math < 5e-3, (fp32_math, half_math)


def test_extreme_ranges(two_level_on):
    """Coherent inputs (offset 2000, filter mean 10) overflow fp16 unless every stage is range-scaled."""
    inputs = _inputs(1, 2, 2500, False, True, True, torch.bfloat16, seed=3, offset=2000.0, filter_mean=10.0)
    want = fftconv_ref(*[None if t is None else t.double() for t in inputs])
    got = fftconv_cufft(*inputs)
    assert torch.isfinite(got).all()
    assert _rel(got, want) < 1e-2


GRAD_CASES = [  # B, H, L, bidirectional, gates, D
    (2, 2, 1500, False, True, True),
    (1, 3, 700, True, True, True),
    (3, 1, 2049, False, False, False),
]


@pytest.mark.parametrize("levels", ["1", "0"], ids=["two_levels", "one_level"])
def test_skip_gradient_sums_exact_gated_products(monkeypatch, levels):
    """dD sums (u * pregate) * (grad * postgate) over time; with the gradient's product rounded to 16 bits
    its error was ~3e-3 / sqrt(L) of the sum of |terms|, which cost up to 2e-2 of dD where the sum cancels
    (GPU check, B = 1, H = 3). With the four factors multiplied in fp32 only the summation rounds, on both
    paths (the one-level path summed against its range-scaled fp16 gradient rows before)."""
    monkeypatch.setenv(two_level.ENV_SWITCH, levels)
    B, H, L = 1, 3, 3000
    inputs = [t.requires_grad_() if t is not None and t.is_floating_point() else t
              for t in _inputs(B, H, L, False, True, True, torch.bfloat16, seed=11)]
    dy = torch.randn(B, H, L, generator=torch.Generator().manual_seed(12)).to(torch.bfloat16)
    fftconv_cufft(*inputs).backward(dy)
    u, _, _, pre, post = (t.detach().double() if t is not None else None for t in inputs)
    terms = u * pre * dy.double() * post
    err = (inputs[2].grad.double() - terms.sum(dim=(0, 2))).abs()
    assert (err <= 1e-6 * terms.abs().sum(dim=(0, 2))).all(), err / terms.abs().sum(dim=(0, 2))


@pytest.mark.parametrize("case", GRAD_CASES, ids=[f"B{c[0]}H{c[1]}L{c[2]}{'bi' if c[3] else ''}" for c in GRAD_CASES])
@pytest.mark.parametrize("wide", [False, True], ids=["square", "wide"])
def test_two_level_backward_matches_float64_reference(two_level_on, monkeypatch, case, wide):
    """Forced on, training calls run both directions on two levels; every gradient against float64."""
    if wide:
        monkeypatch.setattr(two_level, "WIDE_MIN_POINTS", 1 << 10)
    B, H, L, bidirectional, gates, D = case
    inputs = _inputs(B, H, L, bidirectional, gates, D, torch.bfloat16, seed=L)
    grad_out = torch.randn(B, H, L, generator=torch.Generator().manual_seed(1))
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in inputs]
    fftconv_cufft(*leaves, bidirectional=bidirectional).backward(grad_out.to(torch.bfloat16))
    ref_leaves = [None if t is None else t.detach().double().requires_grad_() for t in inputs]
    fftconv_ref(*ref_leaves, bidirectional=bidirectional).backward(grad_out.double())
    for name, got, want in zip(("du", "dk", "dD", "dpre", "dpost"), leaves, ref_leaves):
        if want is not None:
            assert _rel(got.grad, want.grad) < 1e-2, name


def test_two_level_backward_recomputes_or_reuses_the_filter(two_level_on, monkeypatch):
    """The forward keeps the filter's two-level spectrum when it runs in one channel group; with several
    groups the backward recomputes it. Both give the same gradients."""
    inputs = _inputs(2, 4, 1200, False, True, True, torch.bfloat16, seed=8)
    grad_out = torch.randn(2, 4, 1200, generator=torch.Generator().manual_seed(2)).bfloat16()
    transforms = []
    original = two_level._filter_spectrum
    monkeypatch.setattr(two_level, "_filter_spectrum", lambda *a, **kw: transforms.append(1) or original(*a, **kw))

    def grads():
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        fftconv_cufft(*leaves).backward(grad_out)
        return [t.grad for t in leaves]

    kept = grads()
    assert len(transforms) == 1  # forward only
    monkeypatch.setattr(cufft_fused, "TRAINING_FILTER_ELEMENTS_PER_PASS", 2 * 1200)
    transforms.clear()
    recomputed = grads()
    assert len(transforms) == 4  # two groups, forward and backward each
    for a, b in zip(kept, recomputed):
        assert _rel(a, b) < 1e-3


@pytest.mark.parametrize("max_points,two_levels", [(1 << 13, True), (1 << 10, False)])
def test_training_calls_follow_the_length_range(monkeypatch, max_points, two_levels):
    """Without the switch a training call takes the two-level backward inside the default range and the
    one-level one outside it; both give the reference's gradients."""
    monkeypatch.delenv(two_level.ENV_SWITCH, raising=False)
    monkeypatch.setattr(two_level, "MIN_POINTS", 1 << 9)
    monkeypatch.setattr(two_level, "MAX_POINTS", max_points)
    calls = []
    original = two_level.backward_group
    monkeypatch.setattr(two_level, "backward_group", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    inputs = _inputs(2, 2, 1500, False, True, True, torch.bfloat16, seed=9)  # M = 2048
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    fftconv_cufft(*leaves).sum().backward()
    assert calls == ([1] if two_levels else [])
    ref_leaves = [t.detach().double().requires_grad_() for t in inputs]
    fftconv_ref(*ref_leaves).sum().backward()
    for got, want in zip(leaves, ref_leaves):
        assert _rel(got.grad, want.grad) < 1e-2


@pytest.mark.parametrize("wide", [False, True])
def test_first_level_writes_the_spectrum_in_two_level_word_order(monkeypatch, wide):
    """The first level plus cuFFT's level give the packed spectrum of the gated, scaled, zero-padded rows:
    word (c·TB + d)·n1 + k1 holds Z[k2 + n2·k1], k2 = c + TA·d (a 16 x 16 or, wide, 16 x 32 Triton level);
    samples past L are not read (NaN there is ignored)."""
    if wide:
        monkeypatch.setattr(two_level, "WIDE_MIN_POINTS", 1 << 11)
    plan = cufft_fused._Plan(1500, half=True)  # n = 4096: M = 2048 = 8 columns x 256 (4 x 512 wide)
    TA, TB = 16, 32 if wide else 16
    n2 = TA * TB
    n1 = 2048 // n2
    assert two_level._split(plan) == (n1, n2)
    wide_rows = torch.randn(2, 3, 1600).bfloat16()
    wide_rows[..., 1500:] = float("nan")
    u, pre = wide_rows[..., :1500], torch.randn(2, 3, 1500).bfloat16()  # u: rows with a stride past L
    scale = torch.full((2, 3), 4.0)
    got = cufft_fused._fft(two_level.first_level(u, pre, scale, plan), inverse=False)
    assert got.shape == (2, 3, n2, n1) and got.dtype == torch.complex32
    padded = torch.zeros(2, 3, plan.n, dtype=torch.float64)
    padded[..., :1500] = u.double() * pre.double() * 4.0
    want = torch.fft.fft(torch.view_as_complex(padded.unflatten(-1, (-1, 2))))
    k2 = torch.arange(n2)
    p = (k2 % TA) * TB + k2 // TA
    k = k2[:, None] + n2 * torch.arange(n1)[None, :]  # spectrum index at [p of k2, k1]
    words = torch.empty(2, 3, n2, n1, dtype=torch.complex128)
    words[:, :, p] = want[:, :, k]
    assert _rel(torch.view_as_real(got.to(torch.complex64)), torch.view_as_real(words)) < 2e-3


def test_last_level_inverts_the_first():
    """cuFFT's inverse and the last level undo the first level (n_inv = 1 / (M · scale)), and the epilogue's
    gate is applied to the samples of the right times (the skip term rides in the filter, not here)."""
    plan = cufft_fused._Plan(1500, half=True)
    u = torch.randn(2, 3, 1500).bfloat16()
    pre, post = torch.randn(2, 3, 1500).bfloat16(), torch.randn(2, 3, 1500).bfloat16()
    scale = torch.full((2, 3), 4.0)
    spectrum = cufft_fused._fft(two_level.first_level(u, pre, scale, plan), inverse=False)
    rows = cufft_fused._fft(spectrum, inverse=True)
    out, y = torch.empty_like(u), torch.empty(2, 3, 1500)
    two_level.last_level(rows, 1.0 / (plan.n // 2 * scale), post, out, z=y)
    gated = u.double() * pre.double()
    torch.testing.assert_close(y.double(), gated, rtol=2e-2, atol=2e-2)
    assert _rel(out, gated * post.double()) < 1e-2


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("known_sumsq", [False, True], ids=["norm-pass", "sumsq"])
def test_filter_spectrum_folds_the_skip_weight(bidirectional, known_sumsq):
    """With ``skip`` D the filter's spectrum is that of k with D added at lag 0 (index 0 of the combined row,
    the forward filter's first tap), and its norm bounds that filter's norm: conv(x, k) + D·x in one
    product."""
    L, H = 1500, 3
    g = torch.Generator().manual_seed(11)
    k = torch.randn(H, 2 * L if bidirectional else L, generator=g) / L ** 0.5
    D = torch.tensor([2.5, -0.75, 0.0])
    plan = cufft_fused._Plan(L, half=True)
    sumsq = k.square().sum(-1) if known_sumsq else None
    got = two_level._filter_spectrum(k, plan, bidirectional, sumsq, skip=D)
    folded = k.clone()
    folded[:, 0] += D
    want = two_level._filter_spectrum(folded, plan, bidirectional)
    true_norm = folded.double().norm(dim=-1)
    assert torch.all(got.norm[0].double() >= true_norm * (1 - 1e-6))
    assert torch.all(got.norm[0].double() <= k.double().norm(dim=-1) + D.abs().double() + 1e-5)
    spectra = [(s.spectrum.to(torch.complex64) / s.scale[0, :, None, None]) for s in (got, want)]
    assert _rel(torch.view_as_real(spectra[0]), torch.view_as_real(spectra[1])) < 2e-3


def test_dispatch_policy(monkeypatch):
    """By default 16-bit calls at 32K <= M <= 4M take two levels; fp32 spectra and other lengths stay on
    one; the switch forces it off, or on for every length that has two columns of the Triton level."""
    monkeypatch.delenv(two_level.ENV_SWITCH, raising=False)
    plan = functools.partial(cufft_fused._Plan, half=True)
    assert two_level.applies(plan(1 << 20))
    assert two_level.applies(plan(1 << 22))
    assert two_level.applies(plan(20_000))  # M = 2^15
    assert not two_level.applies(plan(10_000))  # M = 2^14
    assert not two_level.applies(plan(5_000_000))  # M = 2^23
    assert not two_level.applies(cufft_fused._Plan(1 << 20, half=False))
    with two_level.switched_on(False):
        assert not two_level.applies(plan(1 << 20))
    with two_level.switched_on():
        assert two_level.applies(plan(1 << 22))
        assert two_level.applies(plan(5000))  # below MIN_POINTS
        assert not two_level.applies(plan(200))  # shorter than two outer columns
    assert two_level.ENV_SWITCH not in os.environ


def test_no_grad_calls_take_two_levels(monkeypatch):
    """Without the switch, a no-grad call in the default range runs the two-level forward (counted)."""
    monkeypatch.delenv(two_level.ENV_SWITCH, raising=False)
    monkeypatch.setattr(two_level, "MIN_POINTS", 1 << 9)
    monkeypatch.setattr(two_level, "MAX_POINTS", 1 << 13)
    calls = []
    original = two_level.forward_group
    monkeypatch.setattr(two_level, "forward_group", lambda *a: calls.append(1) or original(*a))
    inputs = _inputs(1, 2, 3000, False, False, True, torch.bfloat16, seed=2)
    with torch.no_grad():
        got = fftconv_cufft(*inputs)
    assert calls == [1]
    assert _rel(got, fftconv_ref(*[None if t is None else t.double() for t in inputs])) < 1e-2
    monkeypatch.setattr(two_level, "MAX_POINTS", 1 << 10)
    with torch.no_grad():
        fftconv_cufft(*inputs)  # M = 4096 > MAX_POINTS: one level
    assert calls == [1]


def test_channel_groups_and_strided_outputs(two_level_on, monkeypatch):
    """Long calls split into channel groups write channel slices of the output (and of the kept
    pre-postgate output): the transposing epilogue must honour their strides, and gates given as channel
    slices of a wider tensor must be read in place."""
    monkeypatch.setattr(cufft_fused, "INFERENCE_ELEMENTS_PER_PASS", 2 * 2 * 1500)  # two channels (batch 2) per group
    B, H, L = 2, 5, 1500
    inputs = _inputs(B, H, L, False, False, True, torch.bfloat16, seed=4)
    wide = torch.randn(B, 2 * H, L, generator=torch.Generator().manual_seed(6)).bfloat16()
    pre, post = wide[:, :H], wide[:, H:]  # non-contiguous channel slices
    inputs[3], inputs[4] = pre, post
    assert len(cufft_fused._channel_groups(inputs[0])) == 3
    want = fftconv_ref(*[t.double() if t is not None else None for t in inputs])
    assert _rel(fftconv_cufft(*inputs), want) < 1e-2


@triton.jit
def _pair_index_kernel(j_ptr, jm_ptr, k_ptr, M, INNER_A: tl.constexpr, INNER_B: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.arange(0, BLOCK)
    j, jm, k = pair_index(idx, M, INNER_A, INNER_B)
    tl.store(j_ptr + idx, j)
    tl.store(jm_ptr + idx, jm)
    tl.store(k_ptr + idx, k)


@pytest.mark.parametrize("TA,TB,n1", [(16, 16, 2), (16, 16, 8), (32, 32, 4), (16, 32, 4), (16, 32, 2)])
def test_pair_index_owns_every_pair_once(TA, TB, n1):
    """In two-level word order the indices 0 … M/2 own pairs of words that hold Z[k] and Z[M - k] (word
    (c·TB + d)·n1 + k1 holds k = c + TA·d + TA·TB·k1), no pair twice, and together they write every word."""
    n2 = TA * TB
    M = n1 * n2
    j, jm, k = (torch.full((M,), -1, dtype=torch.int32) for _ in range(3))
    _pair_index_kernel[(1,)](j, jm, k, M, INNER_A=TA, INNER_B=TB, BLOCK=M)
    j, jm, k = (t[:M // 2 + 1].long() for t in (j, jm, k))

    def index_of(word):
        p, k1 = word // n1, word % n1
        return p // TB + TA * (p % TB) + n2 * k1
    assert torch.equal(index_of(j), k) and (k <= M // 2).all()
    assert torch.equal((index_of(jm) + k) % M, torch.zeros_like(k))
    assert set(torch.cat([j, jm]).tolist()) == set(range(M))
    assert len({tuple(sorted(x)) for x in zip(j.tolist(), jm.tolist())}) == M // 2 + 1
