"""The cuFFT path with fused Triton elementwise kernels (kernels/fftconv/cufft_fused.py): forward and every
gradient against the float64 reference, with the Triton kernels run by the CPU interpreter (torch.fft
stands in for cuFFT on the CPU); gates, skip term and bidirectional filters on and off, ragged lengths."""
from __future__ import annotations

import json

import pytest
import torch

from genomix.kernels import dispatch
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
    monkeypatch.setattr(cufft_fused, "INFERENCE_ELEMENTS_PER_PASS", 2 * 2 * 24)  # groups of 2 channels: 2 + 2 + 1
    assert len(cufft_fused._channel_groups(inputs[0])) == 3
    assert len(cufft_fused._channel_groups(inputs[0], training=True)) == 3
    monkeypatch.setattr(cufft_fused, "INFERENCE_ELEMENTS_PER_PASS", 1 << 20)
    monkeypatch.setattr(cufft_fused, "TRAINING_FILTER_ELEMENTS_PER_PASS", 2 * 24)  # training calls alone split
    assert len(cufft_fused._channel_groups(inputs[0])) == 1
    assert len(cufft_fused._channel_groups(inputs[0], training=True)) == 3
    grouped = _run(fftconv_cufft, inputs, bidirectional, grad_out)
    for a, b in zip(grouped, whole):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_dispatch_takes_this_path_when_the_monarch_kernels_are_off(monkeypatch):
    calls = []
    monkeypatch.setattr(cufft_fused, "fftconv_cufft", lambda *args: calls.append(args) or fftconv_ref(*args[:-1]))
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    monkeypatch.setenv("GENOMIX_REFERENCE_OPS", "fftconv,fftconv-short")
    inputs = _inputs(1, 2, 16, False, True, True, torch.float32, seed=0)
    fftconv(*inputs)
    assert len(calls) == 1 and calls[0][-2] is False and calls[0][-1] is None  # fp32_intermediate, k_sumsq
    sumsq = inputs[1].square().sum(dim=1)
    fftconv(*inputs, fp32_intermediate=True, k_sumsq=sumsq)
    assert len(calls) == 2 and calls[1][-2] is True and calls[1][-1] is sumsq
    fftconv(*[None if t is None else t.double() for t in inputs])  # float64 stays on the reference
    assert len(calls) == 2


def test_host_time_script_times_the_reference_and_the_cufft_path(monkeypatch, tmp_path):
    """kernels/bench_fftconv_host.py (small, on the interpreter) issues its calls on both paths and records
    their host and wall time per call."""
    from genomix.kernels import bench_fftconv_host

    calls = []
    real = cufft_fused.fftconv_cufft
    monkeypatch.setattr(cufft_fused, "fftconv_cufft", lambda *args: calls.append(1) or real(*args))
    assert bench_fftconv_host.main(["--device", "cpu", "--small", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "bench_fftconv_host.json").read_text())["rows"]
    assert [r["path"] for r in rows] == ["reference", "cufft"]
    assert all(r["wall_us"] >= r["host_us"] > 0 for r in rows)
    assert len(calls) == 3 + 3  # the cufft path's warm-up and timed calls, none of the reference's


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


@pytest.mark.parametrize("l2_bytes", [0, 1 << 40])  # the spectrum larger / smaller than the L2 share
def test_broadcast_filter_product_over_several_row_groups(monkeypatch, l2_bytes):
    """A filter broadcast over the batch, with rows numbered channel-major (a spectrum larger than the L2
    share) or batch-major: with 3 x 5 rows the programs take 8 and a ragged 7, and in place (out is a) each
    still owns its rows."""
    monkeypatch.setattr(dispatch, "l2_cache_bytes", lambda device: l2_bytes)
    g = torch.Generator().manual_seed(11)
    n = 64
    a, b = torch.randn(3, 5, n, generator=g), torch.randn(1, 5, n, generator=g)
    want = torch.fft.irfft(torch.fft.rfft(a.double()) * torch.fft.rfft(b.double()), n=n).float()
    pa, pb = real_spectrum(a), real_spectrum(b)
    torch.testing.assert_close(real_inverse(packed_product(pa, pb, torch.empty_like(pa))) / n, want,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(real_inverse(packed_product(pa, pb, pa)) / n, want, rtol=1e-5, atol=1e-5)


def test_packed_product_rejects_batches_that_do_not_combine():
    spectra = real_spectrum(torch.randn(4, 2, 16))
    with pytest.raises(ValueError, match="do not combine"):
        packed_product(spectra, spectra[:2], torch.empty_like(spectra))


def test_pad_product_dot_sums_the_gated_input_against_another_row():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(2, 3, 1500, generator=g), torch.randn(2, 3, 1500, generator=g)
    other = torch.randn(2, 3, 3000, generator=g)
    padded, dots = pad_product_dot(a, b, 3000, other[..., :1500])
    torch.testing.assert_close(padded, pad_product(a, b, 3000))
    torch.testing.assert_close(dots, (a * b * other[..., :1500]).sum(dim=2), rtol=1e-5, atol=1e-4)
    scale = torch.tensor([[2.0, 0.5, 4.0], [1.0, 8.0, 0.25]])
    # a gated bf16 channel slice of a wider tensor: read in place, each factor in its own dtype
    wide = torch.randn(2, 5, 1500, generator=g).to(torch.bfloat16)
    gate = torch.randn(2, 3, 1500, generator=g).to(torch.bfloat16)
    half, dots_gated = pad_product_dot(a, b, 3000, wide[:, 1:4], gate, scale, torch.float16)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), (padded * scale[..., None]).half().float(), rtol=1e-3, atol=1e-3)
    want = (a.double() * b.double() * wide[:, 1:4].double() * gate.double()).sum(dim=2)
    torch.testing.assert_close(dots_gated.double(), want, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="must be"):
        pad_product_dot(a, b, 3000, other)


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


@pytest.mark.parametrize("dtype,fp32_intermediate,spectrum,size", [
    (torch.bfloat16, False, torch.complex32, 64),  # L = 37: half spectra need a power-of-two transform
    (torch.float16, False, torch.complex32, 64),
    (torch.bfloat16, True, torch.complex64, 37),
    (torch.float32, False, torch.complex64, 37),
])
def test_spectrum_precision_follows_the_inputs(monkeypatch, dtype, fp32_intermediate, spectrum, size):
    seen = []
    transform = cufft_fused._fft
    monkeypatch.setattr(cufft_fused, "_fft", lambda z, inverse: seen.append((z.dtype, z.shape[-1])) or transform(z, inverse))
    inputs = _inputs(2, 3, 37, False, True, True, dtype, seed=9)
    grad_out = torch.randn(2, 3, 37, generator=torch.Generator().manual_seed(4))
    got = _run(lambda *t, **kw: fftconv_cufft(*t, **kw, fp32_intermediate=fp32_intermediate), inputs, False, grad_out)
    want = _run(fftconv_ref, [None if t is None else t.double() for t in inputs], False, grad_out.double())
    assert seen and set(seen) == {(spectrum, size)}
    for a, b in zip(got, want):
        assert ((a.double() - b).norm() / b.norm()).item() <= (1e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_half_spectra_survive_extreme_ranges(bidirectional):
    """fp16 holds 6e-5 .. 65504. Coherent inputs whose unscaled spectra reach 1e6 and more, and gradients
    of 1e-20 (flushed to zero unscaled), must still give every output and gradient to bf16 accuracy."""
    B, H, L = 2, 3, 300
    g = torch.Generator().manual_seed(11)
    u = (torch.randn(B, H, L, generator=g) * 3e3 + 2e3).bfloat16()
    k = torch.randn(H, 2 * L if bidirectional else L, generator=g) * 50 + 10
    skip = torch.randn(H, generator=g)
    pre = (torch.rand(B, H, L, generator=g) + 0.5).bfloat16()
    post = torch.randn(B, H, L, generator=g).bfloat16()
    inputs = [u, k, skip, pre, post]
    grad_out = torch.randn(B, H, L, generator=g) * 1e-20
    got = _run(fftconv_cufft, inputs, bidirectional, grad_out)
    want = _run(fftconv_ref, [t.double() for t in inputs], bidirectional, grad_out.double())
    for name, a, b in zip(("out", "du", "dk", "dD", "dpregate", "dpostgate"), got, want):
        assert torch.isfinite(a).all(), name
        err = ((a.double() - b).norm() / b.norm()).item()
        assert err <= 1e-2, f"{name}: relative L2 error {err:.2e}"


@pytest.mark.parametrize("taps", [1000, 9000])  # one and three row-norm blocks
def test_row_ranges_are_norms_and_powers_of_two_bounding_the_l1_norm(taps):
    """Row norms of a * b, and the largest powers of two that keep sqrt(taps) |row|_2 within HALF_RANGE;
    zero rows and overflowing ones meet the exponent clamp."""
    g = torch.Generator().manual_seed(taps)
    size = torch.tensor([1e-30, 1e-3, 1.0, 3.0, 1e3, 0.0]).view(1, 6, 1)
    a, b = torch.randn(2, 6, taps, generator=g) * size, torch.randn(2, 6, taps, generator=g)
    norm, scale = cufft_fused._row_range(cufft_fused._Plan(taps, True), a, b)
    torch.testing.assert_close(norm, (a * b).square().sum(dim=2).sqrt(), rtol=1e-5, atol=0.0)
    assert torch.equal(scale, torch.exp2(torch.log2(scale).round()))  # exact powers of two
    bound = taps ** 0.5 * norm * scale  # the L1 bound of a scaled row
    regular = (norm > 1e-20) & (norm < 1e20)
    assert (bound[regular] <= cufft_fused.HALF_RANGE).all() and (bound[regular] > cufft_fused.HALF_RANGE / 2).all()
    assert (scale[:, 0] == 2.0 ** 100).all() and (scale[:, 5] == 2.0 ** 100).all()  # clamped: ~zero rows


@pytest.mark.parametrize("summed,broadcast", [(False, False), (False, True), (True, False)])
def test_half_product_scales(summed, broadcast):
    """Per-row factors and inverse normalisations of a half-precision product against their definition:
    out_scale = pow2_floor(HALF_RANGE / (2n |a| |b|)), summed over the batch for a cross spectrum (whose
    signals both have the full batch), b broadcast over the batch for a filter."""
    g = torch.Generator().manual_seed(3)
    n = 4096
    plan = cufft_fused._Plan(n // 2, True)
    batch, channels = 3, 200  # two channel blocks

    def signal(rows):
        norm = torch.rand(rows, channels, generator=g) * 100 + 1e-3
        return cufft_fused._Signal(torch.empty(rows, channels, 1, dtype=torch.complex64),
                                   torch.exp2(torch.randint(-20, 20, (rows, channels), generator=g).float()), norm)

    a, b = signal(batch), signal(1 if broadcast else batch)
    factor, n_inv = cufft_fused._half_product_scales(plan, a, b, batch_summed=summed)
    bound = a.norm.double() * b.norm.double()
    if summed:
        bound = bound.sum(dim=0, keepdim=True)
    out_scale = torch.exp2(torch.floor(torch.log2(cufft_fused.HALF_RANGE / (2 * plan.n * bound))))
    torch.testing.assert_close(n_inv.double(), 1 / (plan.n * out_scale), rtol=1e-6, atol=0.0)
    torch.testing.assert_close(factor.double(), (out_scale / (a.scale * b.scale)).expand(batch, channels),
                               rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("n", [2, 74, 256])
def test_half_packed_product_with_row_factors(n):
    """complex32 spectra (one int32 word per value in the kernel) and per-row factors, against complex64."""
    g = torch.Generator().manual_seed(n)
    a, b = torch.randn(3, 2, n, generator=g) / 4, torch.randn(1, 2, n, generator=g) / 4  # inside fp16's range
    factor = torch.tensor([[0.5, 2.0], [4.0, 0.25], [1.0, 8.0]])
    pa, pb = real_spectrum(a), real_spectrum(b)
    want = real_inverse(packed_product(pa, pb, torch.empty_like(pa), factor=factor))
    ha, hb = real_spectrum(a.half()), real_spectrum(b.half())
    assert ha.dtype == torch.complex32
    got = real_inverse(packed_product(ha, hb, torch.empty_like(ha), factor=factor))
    assert got.dtype == torch.float16
    assert ((got.float() - want).norm() / want.norm()).item() < 3e-3
    torch.testing.assert_close(want, real_inverse(packed_product(pa * factor[..., None], pb, torch.empty_like(pa))),
                               rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="one dtype"):
        packed_product(ha, pb, torch.empty_like(ha))


@pytest.mark.parametrize("rows", [1, 4, 5])
def test_packed_product_row_chunks(monkeypatch, rows):
    """Programs take several output rows (shared twiddles); a last partial chunk must not write past the end."""
    g = torch.Generator().manual_seed(rows)
    pa, pb = real_spectrum(torch.randn(3, 4, 40, generator=g)), real_spectrum(torch.randn(1, 4, 40, generator=g))
    whole = packed_product(pa, pb, torch.empty_like(pa))
    summed = packed_product(pa, pb.expand(3, -1, -1).contiguous(), pa.new_empty(1, 4, 20))
    monkeypatch.setattr(cufft_fused, "PACKED_ROWS", rows)  # 12 rows: chunks of 1, 4, or 5 + 5 + 2
    out = torch.view_as_complex(torch.full((4, 4, 20, 2), float("nan")))
    packed_product(pa, pb, out[:3])
    torch.testing.assert_close(out[:3], whole)
    assert torch.isnan(torch.view_as_real(out[3])).all()
    torch.testing.assert_close(packed_product(pa, pb.expand(3, -1, -1).contiguous(), pa.new_empty(1, 4, 20)), summed)


@pytest.mark.parametrize("dtype,small,backward_transforms", [
    (torch.float32, True, 3),    # both spectra kept
    (torch.float32, False, 5),   # large fp32 call: nothing kept (the reference's memory)
    (torch.bfloat16, False, 4),  # large 16-bit call: the half-precision filter spectrum kept
])
def test_backward_reuses_the_kept_spectra(monkeypatch, dtype, small, backward_transforms):
    if not small:
        monkeypatch.setattr(cufft_fused, "SAVE_SPECTRA_MAX_ELEMENTS", 0)
    calls = []
    transform = cufft_fused._fft
    monkeypatch.setattr(cufft_fused, "_fft", lambda z, inverse: calls.append(inverse) or transform(z, inverse))
    leaves = [t.requires_grad_() for t in _inputs(2, 3, 40, False, True, True, dtype, seed=6)]
    out = fftconv_cufft(*leaves)
    assert len(calls) == 3
    out.backward(torch.randn_like(out))
    assert len(calls) - 3 == backward_transforms
