"""The cuFFT path with fused Triton elementwise kernels (kernels/fftconv/cufft_fused.py): forward and every
gradient against the float64 reference, with the Triton kernels run by the CPU interpreter (torch.fft
stands in for cuFFT on the CPU); gates, skip term and bidirectional filters on and off, ragged lengths."""
from __future__ import annotations

import pytest
import torch

from genomix.kernels.fftconv import cufft_fused, fftconv, fftconv_ref
from genomix.kernels.fftconv.cufft_fused import (
    epilogue,
    fftconv_cufft,
    packed_product,
    pad_product,
    pad_product_dot,
    real_inverse,
    real_spectrum,
)


def _inputs(B, H, L, bidirectional, gates, D, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, H, L, generator=g).to(dtype)
    k = torch.randn(H, 2 * L if bidirectional else L, generator=g) / L ** 0.5  # white: no decay
    skip = torch.randn(H, generator=g) if D else None
    pre = torch.randn(B, H, L, generator=g).to(dtype) if gates else None
    post = torch.randn(B, H, L, generator=g).to(dtype) if gates else None
    return [u, k, skip, pre, post]


def _run(fn, inputs, bidirectional, grad_out):
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves, bidirectional=bidirectional)
    out.backward(grad_out.to(out.dtype))
    return [out] + [None if t is None else t.grad for t in leaves]


CASES = [  # B, H, L, bidirectional, gates, D
    (2, 3, 37, False, True, True),
    (1, 4, 64, True, True, True),
    (3, 2, 1, False, False, True),
    (2, 5, 50, False, True, False),
    (1, 3, 33, True, False, False),
]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("case", CASES, ids=[f"B{c[0]}H{c[1]}L{c[2]}{'bi' if c[3] else ''}" for c in CASES])
def test_matches_float64_reference(case, dtype, tol):
    B, H, L, bidirectional, gates, D = case
    inputs = _inputs(B, H, L, bidirectional, gates, D, dtype, seed=L)
    grad_out = torch.randn(B, H, L, generator=torch.Generator().manual_seed(1))
    got = _run(fftconv_cufft, inputs, bidirectional, grad_out)
    want = _run(fftconv_ref, [None if t is None else t.double() for t in inputs], bidirectional, grad_out.double())
    assert got[0].dtype == dtype
    for name, a, b in zip(("out", "du", "dk", "dD", "dpregate", "dpostgate"), got, want):
        if b is None:
            assert a is None, name
            continue
        err = ((a.double() - b).norm() / b.norm().clamp_min(1e-30)).item()
        assert err <= tol, f"{name}: relative L2 error {err:.2e} > {tol:.0e}"


def test_no_grad_keeps_nothing_and_matches():
    inputs = _inputs(2, 3, 40, False, True, True, torch.float32, seed=3)
    with torch.no_grad():
        out = fftconv_cufft(*inputs)
    assert out.grad_fn is None
    torch.testing.assert_close(out, fftconv_ref(*inputs), rtol=1e-5, atol=1e-5)


def test_fused_passes_on_strided_rows():
    """Rows with channel strides (a split of a wider projection), zero padding and every epilogue output."""
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(2, 9, 21, generator=g)
    a, b, m = wide[:, 0:3], wide[:, 3:6], wide[:, 6:9]  # (2, 3, 21) views with channel stride 21, batch 189
    padded = pad_product(a, b, 48)
    torch.testing.assert_close(padded[..., :21], a * b)
    assert (padded[..., 21:] == 0).all()
    y = torch.randn(2, 3, 48, generator=g)
    D = torch.randn(3, generator=g)
    full = torch.zeros(2, 5, 21, dtype=torch.bfloat16), torch.zeros(2, 5, 21), torch.zeros(2, 5, 21)
    out1, out2, z = (t[:, 1:4] for t in full)  # channel slices: written in place, neighbours untouched
    epilogue(y, 0.5, a, b, D, m, out1, m2=a, out2=out2, z=z)
    want = y[..., :21] * 0.5 + a * b * D[:, None]
    torch.testing.assert_close(z, want)
    torch.testing.assert_close(out1, (want * m).to(torch.bfloat16))
    torch.testing.assert_close(out2, want * a)
    assert all((t[:, 0] == 0).all() and (t[:, 4] == 0).all() for t in full)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_channel_groups_match_one_pass(monkeypatch, bidirectional):
    """Long convolutions run over channel groups (bounded transient memory); the result must not change."""
    inputs = _inputs(2, 5, 24, bidirectional, True, True, torch.float32, seed=5)
    grad_out = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(2))
    whole = _run(fftconv_cufft, inputs, bidirectional, grad_out)
    monkeypatch.setattr(cufft_fused, "MAX_ELEMENTS_PER_PASS", 2 * 2 * 24)  # groups of 2 channels: 2 + 2 + 1
    assert len(cufft_fused._channel_groups(inputs[0])) == 3
    grouped = _run(fftconv_cufft, inputs, bidirectional, grad_out)
    for a, b in zip(grouped, whole):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_dispatch_takes_this_path_when_the_monarch_kernels_are_off(monkeypatch):
    calls = []
    monkeypatch.setattr(cufft_fused, "fftconv_cufft", lambda *args: calls.append(args) or fftconv_ref(*args))
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    monkeypatch.setenv("GENOMIX_REFERENCE_OPS", "fftconv,fftconv-short")
    inputs = _inputs(1, 2, 16, False, True, True, torch.float32, seed=0)
    fftconv(*inputs)
    assert len(calls) == 1
    fftconv(*[None if t is None else t.double() for t in inputs])  # float64 stays on the reference
    assert len(calls) == 1


@pytest.mark.parametrize("n", [2, 8, 74, 130])  # half-lengths 1, 4 (even), 37, 65 (odd)
@pytest.mark.parametrize("conj_b", [False, True])
def test_packed_product_equals_the_real_transform_product(n, conj_b):
    """unpack → product → repack → inverse equals irfft(rfft(a) · rfft(b)) (unnormalised), for products
    per batch entry, a filter broadcast over the batch, and a batch-summed cross spectrum."""
    g = torch.Generator().manual_seed(n)
    a, b = torch.randn(3, 2, n, generator=g), torch.randn(3, 2, n, generator=g)
    fa, fb = torch.fft.rfft(a.double()), torch.fft.rfft(b.double())
    fb = fb.conj() if conj_b else fb

    def inverse(spectrum):  # normalised here, and the packed results below, so one tolerance fits every n
        return torch.fft.irfft(spectrum, n=n).float()

    pa, pb = real_spectrum(a), real_spectrum(b)
    torch.testing.assert_close(real_inverse(pa) / (n // 2), a, rtol=1e-5, atol=1e-5)  # size-n/2 transforms
    per_entry = real_inverse(packed_product(pa, pb, torch.empty_like(pa), conj_b)) / n
    torch.testing.assert_close(per_entry, inverse(fa * fb), rtol=1e-5, atol=1e-5)
    broadcast = real_inverse(packed_product(pa, pb[1:2], torch.empty_like(pa), conj_b)) / n
    torch.testing.assert_close(broadcast, inverse(fa * fb[1:2]), rtol=1e-5, atol=1e-5)
    summed = real_inverse(packed_product(pa, pb, pa.new_empty(1, 2, n // 2), conj_b)) / n
    torch.testing.assert_close(summed, inverse((fa * fb).sum(0, keepdim=True)), rtol=1e-5, atol=1e-5)
    in_place = real_inverse(packed_product(pa, pb, pa, conj_b)) / n  # out is a: each program owns its pairs
    torch.testing.assert_close(in_place, per_entry, rtol=1e-6, atol=1e-6)


def test_packed_product_rejects_batches_that_do_not_combine():
    spectra = real_spectrum(torch.randn(4, 2, 16))
    with pytest.raises(ValueError, match="do not combine"):
        packed_product(spectra, spectra[:2], torch.empty_like(spectra))


def test_pad_product_dot_sums_the_gated_input_against_another_row():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(2, 3, 1500, generator=g), torch.randn(2, 3, 1500, generator=g)
    other = torch.randn(2, 3, 3000, generator=g)
    padded, dots = pad_product_dot(a, b, 3000, other)
    torch.testing.assert_close(padded, pad_product(a, b, 3000))
    torch.testing.assert_close(dots, (a * b * other[..., :1500]).sum(dim=(0, 2)), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_kept_and_recomputed_spectra_give_the_same_gradients(monkeypatch, bidirectional):
    """Small calls keep the forward's packed spectra for the backward; larger ones recompute them."""
    inputs = _inputs(3, 4, 29, bidirectional, True, True, torch.float32, seed=7)
    grad_out = torch.randn(3, 4, 29, generator=torch.Generator().manual_seed(3))
    kept = _run(fftconv_cufft, inputs, bidirectional, grad_out)
    monkeypatch.setattr(cufft_fused, "SAVE_SPECTRA_MAX_ELEMENTS", 0)
    recomputed = _run(fftconv_cufft, inputs, bidirectional, grad_out)
    for a, b in zip(kept, recomputed):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
