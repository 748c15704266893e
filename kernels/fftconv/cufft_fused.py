"""The long FFT convolution on cuFFT with its elementwise work fused into Triton kernels.

Same formula, inputs and gradients as :func:`.reference.fftconv_ref`. The size-2L real transforms run as
cuFFT complex transforms of size L on the same buffers viewed as complex ("packed" spectra,
:mod:`.packed_kernels`), which on an H200 take about half the time of torch's real transforms and need
no clone of the inverse's input. Everything around them is fused into Triton passes: the gated,
zero-padded input is written once (:mod:`.epilogue_kernels`); unpacking the spectra, their product (or
the batch-summed cross spectrum of the filter gradient) and repacking for the inverse are one pass; the
inverse runs unnormalised with its 1/n, the skip term and the gates applied by one epilogue pass that
writes the output in its final dtype (forward) or both input gradients (backward); the skip weight's
gradient is summed while the backward pads the gated input.

Between forward and backward it keeps its inputs (and the pre-gate output, when the post-gate needs a
gradient); when the call is small (:data:`SAVE_SPECTRA_MAX_ELEMENTS`) also the packed spectra of the gated
input and the filter, so the backward runs three transforms instead of five.
"""
from __future__ import annotations

import math

import torch
import triton

from .epilogue_kernels import epilogue_kernel, pad_product_kernel
from .packed_kernels import packed_product_kernel
from .reference import _uncombine, combined_filter, records_graph

#: Time steps per program; 4 warps move 1024 fp32 values per program in 16-byte vectors.
BLOCK, NUM_WARPS = 1024, 4
#: Frequency pairs per program of the packed product (each pair: four complex loads per input, two stores).
#: Swept on an H200 at (1, 256, 65536): 99.8 µs at (256, 8), 127 µs at (1024, 4), 532 µs at (2048, 2).
PACKED_BLOCK, PACKED_WARPS = 256, 8


def _unit_time_stride(t: torch.Tensor | None) -> torch.Tensor | None:
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def _bh_strides(t: torch.Tensor | None) -> tuple[int, int]:
    return (0, 0) if t is None else (t.stride(0), t.stride(1))


def _launch_pad_product(a, b, n, other):
    a, b = _unit_time_stride(a), _unit_time_stride(b)
    batch, channels, length = a.shape
    out = torch.empty(batch, channels, n, dtype=torch.float32, device=a.device)
    nblk = triton.cdiv(n, BLOCK)
    dots = torch.empty(batch, channels, nblk, dtype=torch.float32, device=a.device) if other is not None else None
    pad_product_kernel[(batch * channels * nblk,)](
        a, a if b is None else b, out, out if other is None else other, out if dots is None else dots,
        channels, length, n, nblk, *_bh_strides(a), *_bh_strides(b),
        HAS_B=b is not None, HAS_DOT=other is not None, BLOCK=BLOCK, num_warps=NUM_WARPS,
    )
    return out, dots


def pad_product(a: torch.Tensor, b: torch.Tensor | None, n: int) -> torch.Tensor:
    """(B, H, n) fp32: ``a * b`` in the first L = a.shape[-1] steps of each row, zeros after (n >= L)."""
    return _launch_pad_product(a, b, n, None)[0]


def pad_product_dot(a: torch.Tensor, b: torch.Tensor | None, n: int, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pad_product` and, per channel, ``sum over batch and time of a * b * other`` (H,) fp32, where
    ``other`` is a contiguous (B, H, n) fp32 tensor whose first L steps are used."""
    if other.shape != (*a.shape[:2], n) or not other.is_contiguous() or other.dtype != torch.float32:
        raise ValueError(f"pad_product_dot: other must be a contiguous fp32 {(*a.shape[:2], n)} tensor")
    out, dots = _launch_pad_product(a, b, n, other)
    return out, dots.sum(dim=(0, 2))


def epilogue(
    y: torch.Tensor, n_inv: float, a: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor | None,
    m1: torch.Tensor | None, out1: torch.Tensor, m2: torch.Tensor | None = None, out2: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
) -> None:
    """Write ``zv = y[..., :L] * n_inv + a * b * D`` (L = a.shape[-1]) as ``out1 = zv * m1``, and if given
    ``out2 = zv * m2`` and ``z = zv``, each in its own dtype (``b``/``D``/``m1`` None: no factor / no term).

    Outputs are (B, H, L) tensors or channel slices of larger ones, all with the same strides."""
    if not y.is_contiguous():
        raise ValueError("epilogue: y must be a contiguous (B, H, N >= L) tensor (an inverse FFT's output)")
    outputs = [t for t in (out1, out2, z) if t is not None]
    if any(t.stride() != out1.stride() or t.stride(-1) != 1 for t in outputs):
        raise ValueError("epilogue: outputs must share strides, with a unit stride in time")
    a, b, m1, m2 = (_unit_time_stride(t) for t in (a, b, m1, m2))
    batch, channels, length = a.shape
    nblk = triton.cdiv(length, BLOCK)
    epilogue_kernel[(batch * channels * nblk,)](
        y, a, a if b is None else b, a if D is None else D, a if m1 is None else m1, a if m2 is None else m2,
        out1, out1 if out2 is None else out2, out1 if z is None else z,
        channels, length, nblk, n_inv, y.stride(1), *_bh_strides(a), *_bh_strides(b), *_bh_strides(m1),
        *_bh_strides(m2), *_bh_strides(out1), HAS_B=b is not None, HAS_D=D is not None,
        HAS_M1=m1 is not None, HAS_M2=m2 is not None, STORE_Z=z is not None, BLOCK=BLOCK, num_warps=NUM_WARPS,
    )


#: Largest batch x channels x length one pass transforms at once. Longer convolutions run over channel
#: groups, so each of the ~5 transient (B, h, 2L) fp32/complex buffers of a pass stays <= 2 GiB: at
#: L = 4M that is what lets a HyenaDNA training step fit in 80 GB. At L <= 1M with 256 channels (batch 1)
#: nothing is split.
MAX_ELEMENTS_PER_PASS = 1 << 28


def _channel_groups(u: torch.Tensor) -> list[slice]:
    batch, channels, length = u.shape
    step = max(1, min(channels, MAX_ELEMENTS_PER_PASS // max(1, batch * length)))
    return [slice(h, min(h + step, channels)) for h in range(0, channels, step)]


def _rows(t: torch.Tensor | None, group: slice) -> torch.Tensor | None:
    """Channels ``group`` of a (B, H, L) tensor or of an (H, ...) parameter; None stays None."""
    if t is None:
        return None
    return t[group] if t.dim() < 3 else t[:, group]


def real_spectrum(x_padded: torch.Tensor) -> torch.Tensor:
    """Packed spectrum (..., N/2) complex64 of real rows (..., N) fp32, N even: one complex transform of
    half the size on the same buffer viewed as complex (:mod:`.packed_kernels`)."""
    return torch.fft.fft(torch.view_as_complex(x_padded.unflatten(-1, (-1, 2))))


def real_inverse(packed: torch.Tensor) -> torch.Tensor:
    """Real rows (..., N) fp32 of the unnormalised inverse transform of a packed Hermitian spectrum."""
    return torch.view_as_real(torch.fft.ifft(packed, norm="forward")).flatten(-2)


def packed_product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, conj_b: bool = False) -> torch.Tensor:
    """``out`` = packed spectrum of ``unpack(a) * unpack(b)`` (``conj`` of b if ``conj_b``), each (·, h, M).

    ``b`` with batch 1 is broadcast over a's batch (a filter spectrum). ``out`` with batch 1 and a with
    batch B sums the B products (a batch-summed cross spectrum, as the filter gradient needs). ``out``
    may be ``a`` itself (in place) when their batches match."""
    batch, channels, m = a.shape
    n_sum = batch // out.shape[0]
    if out.shape[0] * n_sum != batch or b.shape[0] not in (1, batch) or (n_sum > 1 and b.shape[0] != batch):
        raise ValueError(f"packed_product: batches a {batch}, b {b.shape[0]}, out {out.shape[0]} do not combine")
    if not all(t.stride(-1) == 1 and t.dtype == torch.complex64 for t in (a, b, out)):
        raise ValueError("packed_product: complex64 spectra with a unit stride along frequency")
    ar, br, outr = (torch.view_as_real(t) for t in (a, b, out))
    b_batch_stride = 0 if b.shape[0] == 1 and batch > 1 else br.stride(0)
    nblk = triton.cdiv(m // 2 + 1, PACKED_BLOCK)
    packed_product_kernel[(out.shape[0] * channels * nblk,)](
        ar, br, outr, channels, m, nblk, n_sum, 2 * math.pi / (2 * m), ar.stride(0), ar.stride(1),
        b_batch_stride, br.stride(1), outr.stride(0), outr.stride(1), CONJ_B=conj_b, BLOCK=PACKED_BLOCK,
        num_warps=PACKED_WARPS,
    )
    return out


def _filter_spectrum(k: torch.Tensor, L: int, bidirectional: bool) -> torch.Tensor:
    """Packed spectrum (1, h, L) of the size-2L circular filter; the causal filter is zero-padded by one pass."""
    if bidirectional:
        padded = combined_filter(k.float(), L, 2 * L, True).unsqueeze(0)
    else:
        padded = pad_product(k.unsqueeze(0), None, 2 * L)
    return real_spectrum(padded)


#: Largest batch x channels x length whose two packed spectra (the gated input's and the filter's, 8 bytes
#: per element each at most) the forward keeps for the backward, which then runs two transforms fewer.
#: Above it (e.g. HyenaDNA at L = 1M: 2 GiB each per layer) the backward recomputes them, so long-context
#: training memory does not grow.
SAVE_SPECTRA_MAX_ELEMENTS = 1 << 26


def _forward(u, k, D, pregate, postgate, bidirectional: bool, keep_y: bool, keep_spectra: bool):
    """The output; if ``keep_y`` the pre-postgate output in u's dtype (for the postgate's gradient); if
    ``keep_spectra`` the packed spectra of the gated input and of the filter (one channel group only)."""
    L = u.shape[-1]
    n = 2 * L
    out = torch.empty(u.shape, dtype=u.dtype, device=u.device)
    y = torch.empty(u.shape, dtype=u.dtype, device=u.device) if keep_y else None
    spectra = None
    for g in _channel_groups(u):
        x_spectrum = real_spectrum(pad_product(_rows(u, g), _rows(pregate, g), n))
        k_spectrum = _filter_spectrum(_rows(k, g), L, bidirectional)
        product = torch.empty_like(x_spectrum) if keep_spectra else x_spectrum
        y_full = real_inverse(packed_product(x_spectrum, k_spectrum, product))
        del product
        if keep_spectra:
            spectra = (x_spectrum, k_spectrum)
        del x_spectrum, k_spectrum
        epilogue(y_full, 1.0 / n, _rows(u, g), _rows(pregate, g), _rows(D, g), _rows(postgate, g), _rows(out, g),
                 z=_rows(y, g))
        del y_full
    return out, y, spectra


class FFTConvCuFFTFn(torch.autograd.Function):
    """``postgate * (conv(u*pregate, k) + u*pregate*D)`` with cuFFT transforms and fused elementwise passes."""

    @staticmethod
    def forward(ctx, u, k, D, pregate, postgate, bidirectional):  # type: ignore[override]
        keep_spectra = u.numel() <= SAVE_SPECTRA_MAX_ELEMENTS and len(_channel_groups(u)) == 1
        out, y, spectra = _forward(u, k, D, pregate, postgate, bidirectional,
                                   postgate is not None and ctx.needs_input_grad[4], keep_spectra)
        ctx.bidirectional = bidirectional
        ctx.save_for_backward(u, k, D, pregate, postgate, y, *(spectra or (None, None)))
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        u, k, D, pregate, postgate, y, x_spectrum, k_spectrum = ctx.saved_tensors
        need = ctx.needs_input_grad
        need_dpre = pregate is not None and need[3]
        d_post = None
        if postgate is not None and need[4]:
            d_post = torch.mul(grad, y, out=torch.empty_like(postgate))
        du = torch.empty(u.shape, dtype=u.dtype, device=u.device)
        d_pre = torch.empty(u.shape, dtype=pregate.dtype, device=u.device) if need_dpre else None
        dk = torch.empty_like(k) if need[1] else None
        dD = torch.empty_like(D) if D is not None and need[2] else None
        for g in _channel_groups(u):
            _backward_group(ctx.bidirectional, grad[:, g], *(_rows(t, g) for t in (u, k, D, pregate, postgate)),
                            *(_rows(t, g) for t in (du, dk, dD, d_pre)), x_spectrum, k_spectrum)
        return du, dk, dD, d_pre, d_post, None


def _backward_group(bidirectional: bool, grad, u, k, D, pregate, postgate, du, dk, dD, d_pre,
                    x_spectrum=None, k_spectrum=None) -> None:
    """Gradients of one channel group, written into the given slices (``dk``/``dD``/``d_pre`` None: not
    needed); the forward's packed spectra are used when given, else recomputed."""
    L = u.shape[-1]
    n = 2 * L
    g_padded = pad_product(grad, postgate, n)  # the gradient at the pre-postgate output, zero-padded
    g_spectrum = real_spectrum(g_padded)
    if dD is not None:
        x_padded, dots = pad_product_dot(u, pregate, n, g_padded)
        dD.copy_(dots)
        if dk is not None and x_spectrum is None:
            x_spectrum = real_spectrum(x_padded)
        del x_padded
    elif dk is not None and x_spectrum is None:
        x_spectrum = real_spectrum(pad_product(u, pregate, n))
    if dk is not None:
        cross = packed_product(g_spectrum, x_spectrum, g_spectrum.new_empty((1, *g_spectrum.shape[1:])), conj_b=True)
        del x_spectrum
        torch.mul(_uncombine(real_inverse(cross)[0], L, bidirectional), 1.0 / n, out=dk)
        del cross
    if k_spectrum is None:
        k_spectrum = _filter_spectrum(k, L, bidirectional)
    dx_full = real_inverse(packed_product(g_spectrum, k_spectrum, g_spectrum, conj_b=True))
    del g_spectrum
    epilogue(dx_full, 1.0 / n, g_padded[..., :L], None, D, pregate, du, m2=u if d_pre is not None else None,
             out2=d_pre)


def fftconv_cufft(
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    pregate: torch.Tensor | None = None,
    postgate: torch.Tensor | None = None,
    bidirectional: bool = False,
) -> torch.Tensor:
    """The cuFFT-plus-fused-kernels path of :func:`genomix.kernels.fftconv.fftconv` (fp32/bf16/fp16 inputs).

    Under ``no_grad`` (or with no input needing a gradient) nothing is kept for a backward."""
    inputs = (u, k, D, pregate, postgate)
    if records_graph(*inputs):
        return FFTConvCuFFTFn.apply(*inputs, bool(bidirectional))
    return _forward(*inputs, bool(bidirectional), keep_y=False, keep_spectra=False)[0]
