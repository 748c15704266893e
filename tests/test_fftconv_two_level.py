"""The opt-in two-level forward of the cuFFT path (kernels/fftconv/two_level.py): cuFFT's outer level on
transposed packed rows, the Triton row pass (inner level, spectral product, inner inverse level) run by
the CPU interpreter, against the float64 reference. The threshold is lowered so that small lengths take
the path (M = 512 … 8192 packed points: 2 … 32 outer columns of a 256-point inner level)."""
from __future__ import annotations

import functools
import os

import pytest
import torch

from genomix.kernels.fftconv import cufft_fused, fftconv_ref, two_level
from genomix.kernels.fftconv.cufft_fused import fftconv_cufft


@pytest.fixture
def two_level_on(monkeypatch):
    monkeypatch.setattr(two_level, "MIN_POINTS", 1 << 9)
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
def test_forward_matches_float64_reference(two_level_on, case):
    B, H, L, bidirectional, gates, D, dtype = case
    inputs = _inputs(B, H, L, bidirectional, gates, D, dtype, seed=L)
    assert two_level.applies(cufft_fused._plan(inputs[0], False))
    got = fftconv_cufft(*inputs, bidirectional=bidirectional)
    want = fftconv_ref(*[None if t is None else t.double() for t in inputs], bidirectional=bidirectional)
    assert got.dtype == dtype
    assert _rel(got, want) < 1e-2


@pytest.mark.parametrize("tile,columns,gauss,half_math", [(16, 2, True, False), (16, 16, True, False),
                                                          (32, 4, True, False), (16, 8, False, False),
                                                          (16, 16, False, False), (16, 32, True, False),
                                                          (32, 8, False, False), (16, 16, False, True),
                                                          (16, 32, True, True)])
def test_tile_and_column_blocks(two_level_on, monkeypatch, tile, columns, gauss, half_math):
    """Other inner tiles, column blocks, either form of the complex matrix products and either precision of
    the work between the dots give the same convolution; blocks wider than n1 (16 for tile 16, 4 for tile
    32 at this length) take the masked form."""
    monkeypatch.setattr(two_level, "HALF_MATH", half_math)
    monkeypatch.setattr(two_level, "INVERSE_HALF_MATH", half_math)
    monkeypatch.setattr(two_level, "TILE", tile)
    monkeypatch.setattr(two_level, "COLUMNS", columns)
    monkeypatch.setattr(two_level, "INVERSE_COLUMNS", columns)
    monkeypatch.setattr(two_level, "GAUSS", gauss)  # the inverse takes the other form
    monkeypatch.setattr(two_level, "INVERSE_GAUSS", not gauss)
    inputs = _inputs(2, 2, 3000, False, True, True, torch.bfloat16, seed=5)
    want = fftconv_ref(*[None if t is None else t.double() for t in inputs])
    assert _rel(fftconv_cufft(*inputs), want) < 1e-2


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


@pytest.mark.parametrize("case", GRAD_CASES, ids=[f"B{c[0]}H{c[1]}L{c[2]}{'bi' if c[3] else ''}" for c in GRAD_CASES])
def test_two_level_backward_matches_float64_reference(two_level_on, case):
    """Forced on, training calls run both directions on two levels; every gradient against float64."""
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
    original = two_level._transposed_filter
    monkeypatch.setattr(two_level, "_transposed_filter", lambda *a: transforms.append(1) or original(*a))

    def grads():
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        fftconv_cufft(*leaves).backward(grad_out)
        return [t.grad for t in leaves]

    kept = grads()
    assert len(transforms) == 1  # forward only
    monkeypatch.setattr(cufft_fused, "MAX_ELEMENTS_PER_PASS", 2 * 2 * 1200)
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


def test_transposed_pad_and_epilogue_are_inverse_layouts():
    """Padding into the transposed packed layout and reading it back with the epilogue (no transform in
    between, n_inv = 1 / scale) returns the gated input: both kernels agree on where each time step lives."""
    plan = cufft_fused._Plan(1500, half=True)  # n = 4096: M = 2048 = 8 outer x 256 inner
    u = torch.randn(2, 3, 1500).bfloat16()
    pre = torch.randn(2, 3, 1500).bfloat16()
    scale = torch.full((2, 3), 4.0)
    rows = two_level.pad_transposed(u, pre, scale, plan)
    assert rows.shape == (2, 3, 256, 8) and rows.dtype == torch.complex32
    out = torch.empty_like(u)
    two_level.epilogue_transposed(rows, 1.0 / scale, u, None, None, None, out)
    torch.testing.assert_close(out.float(), (u.float() * pre.float()).bfloat16().float(), rtol=1e-2, atol=1e-2)
    # word m = j1 * 256 + j2 holds times 2m, 2m + 1 at [j2, j1]
    words = torch.view_as_real(rows.to(torch.complex64))
    gated = (u.float() * pre.float() * 4.0)
    m = 2 * 256 + 7
    assert torch.allclose(words[1, 2, 7, 2], gated[1, 2, 2 * m:2 * m + 2], rtol=1e-3)
    assert (words[:, :, :, 3:] == 0).all()  # times >= 2 * 3 * 256 = 1536 > L are zero padding


def test_dispatch_policy(monkeypatch):
    """By default 16-bit calls at 256K <= M <= 1M take two levels; fp32 spectra and other lengths stay on
    one; the switch forces it off, or on for every length."""
    monkeypatch.delenv(two_level.ENV_SWITCH, raising=False)
    plan = functools.partial(cufft_fused._Plan, half=True)
    assert two_level.applies(plan(1 << 20))
    assert two_level.applies(plan(200_000))  # M = 2^18
    assert not two_level.applies(plan(100_000))  # M = 2^17
    assert not two_level.applies(plan(1 << 22))
    assert not two_level.applies(cufft_fused._Plan(1 << 20, half=False))
    with two_level.switched_on(False):
        assert not two_level.applies(plan(1 << 20))
    with two_level.switched_on():
        assert two_level.applies(plan(1 << 22))
        monkeypatch.setattr(two_level, "MIN_POINTS", 1 << 9)
        assert two_level.applies(plan(5000))
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
    monkeypatch.setattr(cufft_fused, "MAX_ELEMENTS_PER_PASS", 2 * 2 * 1500)  # two channels (batch 2) per group
    B, H, L = 2, 5, 1500
    inputs = _inputs(B, H, L, False, False, True, torch.bfloat16, seed=4)
    wide = torch.randn(B, 2 * H, L, generator=torch.Generator().manual_seed(6)).bfloat16()
    pre, post = wide[:, :H], wide[:, H:]  # non-contiguous channel slices
    inputs[3], inputs[4] = pre, post
    assert len(cufft_fused._channel_groups(inputs[0])) == 3
    want = fftconv_ref(*[t.double() if t is not None else None for t in inputs])
    assert _rel(fftconv_cufft(*inputs), want) < 1e-2


def test_pair_index_owns_every_pair_once():
    """In two-level word order every word is either the owner of its (k, M - k) pair or the partner of
    exactly one owner, and the mapped spectrum indices of a pair add up to M (mod M)."""
    import numpy as np
    T, n1 = 16, 4
    M, n2 = n1 * T * T, T * T
    idx = np.arange(M // 2 + n2 // 2)
    j = np.where(idx <= M // 2, idx, (idx - M // 2 + n2 // 2) * n1)
    k1, p = j % n1, j // n1
    k2 = p // T + T * (p % T)
    k2p = (n2 - k2) % n2
    jm = np.where(k1 == 0, ((k2p % T) * T + k2p // T) * n1, M - j)
    owner = (k1 > 0) | (k2 <= n2 // 2)
    touched = np.concatenate([j[owner], jm[owner]])
    assert set(touched.tolist()) == set(range(M))  # every word written
    pairs = {tuple(sorted(x)) for x in zip(j[owner].tolist(), jm[owner].tolist())}
    assert len(pairs) == int(owner.sum())  # no pair owned twice
    k = k1 + n1 * k2
    km = (jm % n1) + n1 * (((jm // n1) // T) + T * ((jm // n1) % T))
    assert ((k + km) % M == 0)[owner].all()
