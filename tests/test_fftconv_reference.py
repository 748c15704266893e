"""The reference fftconv's hand-written backward: exact gradients, and no (B, H, 2L) tensors kept for it."""
from __future__ import annotations

import itertools

import pytest
import torch

from genomix.kernels import fftconv_ref
from genomix.kernels.fftconv.reference import combined_filter


def autograd_formula(u, k, D, pre, post, bidirectional):
    """The same formula left to autograd (what the hand-written backward must equal)."""
    L = u.shape[-1]
    x = u if pre is None else u * pre
    y = torch.fft.irfft(torch.fft.rfft(x, n=2 * L) * torch.fft.rfft(combined_filter(k, L, 2 * L, bidirectional), n=2 * L),
                        n=2 * L)[..., :L]
    y = y if D is None else y + x * D[:, None]
    return y if post is None else y * post


def inputs(L, bidirectional, gates, skip, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()

    return [leaf(2, 3, L), leaf(3, 2 * L if bidirectional else L), leaf(3) if skip else None,
            leaf(2, 3, L) if gates else None, leaf(2, 3, L) if gates else None]


@pytest.mark.parametrize("L,bidirectional,gates,skip", list(itertools.product([1, 7, 24], [False, True], [False, True], [False, True])))
def test_gradcheck(L, bidirectional, gates, skip):
    ins = inputs(L, bidirectional, gates, skip)
    assert torch.autograd.gradcheck(lambda *a: fftconv_ref(*a, bidirectional=bidirectional), tuple(ins))


def test_bf16_gradients_match_float64():
    ins = inputs(40, False, True, True, dtype=torch.bfloat16, seed=3)
    ins[1] = ins[1].detach().float().requires_grad_()
    ins[2] = ins[2].detach().float().requires_grad_()
    grad = torch.randn(2, 3, 40, dtype=torch.float64)
    fftconv_ref(*ins).backward(grad.to(torch.bfloat16))
    wide = [t.detach().double().requires_grad_() for t in ins]
    autograd_formula(*wide, False).backward(grad)
    for low, high in zip(ins, wide):
        assert low.grad.dtype == low.dtype
        assert float((low.grad.double() - high.grad).norm() / high.grad.norm()) < 1e-2


def test_keeps_no_double_length_intermediates():
    L = 64
    ins = inputs(L, False, True, True, dtype=torch.float32)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fftconv_ref(*ins).sum().backward()
    assert shapes and all(s[-1] <= L for s in shapes), shapes
    assert all(t.grad is not None for t in ins)
