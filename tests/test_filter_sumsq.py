"""The implicit filter's per-channel sums of squares, computed by the filter kernel as it writes the filter,
and their use by the half-precision FFT convolution (``fftconv(k_sumsq=...)``) in place of its own pass over
the filter: the same sums, the same convolution, and the HyenaDNA forward passing them through. CPU, with
the Triton kernels in the interpreter."""
from __future__ import annotations

import pytest
import torch

from genomix.kernels.fftconv import fftconv, two_level
from genomix.kernels.gpu_check_implicit_filter import FilterCase, make_inputs
from genomix.kernels.implicit_filter import implicit_filter_with_sumsq
from genomix.models import build
from genomix.models import hyena


@pytest.fixture
def cufft_path(monkeypatch):
    """Every Triton path on, the long convolution on its cuFFT path (not the Monarch kernels)."""
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    monkeypatch.setenv("GENOMIX_REFERENCE_OPS", "fftconv,fftconv-short")


def test_filter_kernel_sums_each_channels_squares(monkeypatch):
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    z, t, layers, out_weight, rates = make_inputs(FilterCase(300, 40, order=16), "cpu", torch.Generator().manual_seed(1))
    k, sumsq = implicit_filter_with_sumsq(z, t, layers, out_weight, rates)
    assert sumsq.shape == (40,) and not sumsq.requires_grad
    torch.testing.assert_close(sumsq, k.detach().square().sum(dim=1), rtol=1e-5, atol=0)
    k.sum().backward()  # the filter keeps its gradients
    assert out_weight.grad is not None
    assert implicit_filter_with_sumsq(z, t, layers, out_weight, rates, want_sumsq=False)[1] is None


def test_reference_filter_gives_no_sums():
    z, t, layers, out_weight, rates = make_inputs(FilterCase(50, 8, order=16), "cpu", torch.Generator().manual_seed(2))
    k, sumsq = implicit_filter_with_sumsq(z, t, layers, out_weight, rates)
    assert sumsq is None and k.shape == (8, 50)


@pytest.mark.parametrize("length,two_levels", [(3000, False), (3000, True), (700, False)])
def test_given_sums_leave_the_convolution_unchanged(cufft_path, monkeypatch, length, two_levels):
    """The range scale is a power of two from the filter's norm: given sums give the same output and
    gradients as the convolution's own pass (one and two levels, inference and training)."""
    monkeypatch.setenv(two_level.ENV_SWITCH, "1" if two_levels else "0")
    g = torch.Generator().manual_seed(length)
    B, H = 2, 3
    u, pre, post = (torch.randn(B, H, length, generator=g).bfloat16() for _ in range(3))
    k = torch.randn(H, length, generator=g) / length ** 0.5
    D = torch.randn(H, generator=g)
    sumsq = k.square().sum(dim=1)
    with torch.no_grad():
        torch.testing.assert_close(fftconv(u, k, D, pre, post, k_sumsq=sumsq), fftconv(u, k, D, pre, post),
                                   rtol=0, atol=0)
    grads = []
    for given in (sumsq, None):
        leaves = [t.detach().clone().requires_grad_() for t in (u, k, D)]
        fftconv(*leaves, pre, post, k_sumsq=given).float().square().sum().backward()
        grads.append([t.grad for t in leaves])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_sums_are_rejected():
    u, k = torch.randn(1, 3, 10), torch.randn(3, 10)
    with pytest.raises(ValueError, match="k_sumsq"):
        fftconv(u, k, k_sumsq=torch.ones(4))
    with pytest.raises(ValueError, match="k_sumsq"):
        fftconv(u, k, k_sumsq=torch.ones(3, dtype=torch.float64))


def test_hyena_inference_hands_the_sums_to_the_convolution(cufft_path, monkeypatch):
    """Without gradients each layer's filter comes with its sums, the convolution gets them, and the
    logits are those of a forward whose convolutions compute the sums themselves (under bf16 autocast:
    half-precision spectra, which use them)."""
    model = build("hyenadna-tiny-1k", task="causal-lm").eval()
    ids = torch.randint(7, 11, (2, 200), generator=torch.Generator().manual_seed(3))
    seen = []
    real = hyena.fftconv
    monkeypatch.setattr(hyena, "fftconv", lambda *a, **kw: seen.append(kw.get("k_sumsq")) or real(*a, **kw))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        given = model(ids).logits
    assert seen and all(s is not None for s in seen)
    monkeypatch.setattr(hyena.HyenaFilter, "filter_and_sumsq", lambda self, length: (self.filter(length), None))
    seen.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        own = model(ids).logits
    assert all(s is None for s in seen)
    torch.testing.assert_close(given, own, rtol=0, atol=0)
