"""PyTorch reference of the long FFT convolution (HyenaDNA/safari and M2 semantics).

This is the ground truth the Triton kernels are tested against and the path taken on CPU. It computes
in fp32 (or in the input's precision when that is wider, so float64 inputs give a float64 reference).
Shapes are (batch, channels, length).
"""
from __future__ import annotations

import torch

from ..dispatch import records_graph


def combined_filter(k: torch.Tensor, L: int, n: int, bidirectional: bool) -> torch.Tensor:
    """The length-``n`` circular filter whose first ``L`` outputs give the requested convolution.

    Causal: ``k`` (H, L) zero-padded to ``n``. Bidirectional: ``k`` (H, 2L) = concat(k_fwd, k_rev);
    lag ``+j`` sits at index ``j`` and lag ``-m`` (m = 1..L) at index ``n - m``, so with ``n >= 2L`` no
    lag used by the first ``L`` outputs aliases another.
    """
    if bidirectional:
        if k.shape[-1] != 2 * L:
            raise ValueError(f"bidirectional fftconv needs k of shape (H, 2L) = (H, {2 * L}), got {tuple(k.shape)}")
        kc = k.new_zeros(*k.shape[:-1], n)
        kc[..., :L] = k[..., :L]
        kc[..., n - L:] = k[..., L:].flip(-1)
        return kc
    if k.shape[-1] != L:
        raise ValueError(f"causal fftconv needs k of shape (H, L) = (H, {L}), got {tuple(k.shape)}")
    return torch.nn.functional.pad(k, (0, n - L))


def _uncombine(dkc: torch.Tensor, L: int, bidirectional: bool) -> torch.Tensor:
    """Adjoint of :func:`combined_filter`: the gradient of the circular filter back onto ``k``."""
    if bidirectional:
        return torch.cat([dkc[..., :L], dkc[..., dkc.shape[-1] - L:].flip(-1)], dim=-1)
    return dkc[..., :L]


def _gated(u: torch.Tensor, pregate: torch.Tensor | None, wide: torch.dtype) -> torch.Tensor:
    """``u * pregate`` in ``wide`` precision (the 16-bit gate is promoted inside the multiply, not copied)."""
    return u.to(wide) if pregate is None else u.to(wide) * pregate


def _filter_spectrum(k: torch.Tensor, L: int, bidirectional: bool, wide: torch.dtype) -> torch.Tensor:
    """rfft of the circular filter of size 2L in ``wide`` precision (rfft zero-pads the causal filter itself)."""
    k = k.to(wide)
    return torch.fft.rfft(combined_filter(k, L, 2 * L, True) if bidirectional else k, n=2 * L)


def reference_filter_spectrum(k: torch.Tensor, dtype: torch.dtype, bidirectional: bool = False) -> torch.Tensor:
    """The filter's spectrum (H, L + 1) that the reference forward of inputs in ``dtype`` multiplies by, made
    once for repeated inference calls (:func:`forward_with_spectrum`)."""
    L = k.shape[-1] // 2 if bidirectional else k.shape[-1]
    with torch.no_grad():
        return _filter_spectrum(k, L, bidirectional, torch.promote_types(dtype, torch.float32))


def forward_with_spectrum(u, k_spectrum, D, pregate, postgate) -> torch.Tensor:
    """The reference's inference forward with the filter's spectrum from :func:`reference_filter_spectrum`."""
    return _forward(u, None, D, pregate, postgate, False, keep_y=False, k_spectrum=k_spectrum)[0]


def _forward(u, k, D, pregate, postgate, bidirectional: bool, keep_y: bool,
             k_spectrum: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output, and (if ``keep_y``) the pre-postgate output in u's dtype for the postgate's gradient;
    ``k_spectrum``: the filter's spectrum already made, instead of transforming ``k``.

    Mixed-dtype elementwise ops promote to fp32 on the fly, so 16-bit inputs are never copied to fp32
    first, and the output is cast as it is written: each (B, H, L) pass costs ~1 ms at L = 1M, H = 256."""
    L, wide = u.shape[-1], torch.promote_types(u.dtype, torch.float32)
    x = _gated(u, pregate, wide)
    if k_spectrum is None:
        k_spectrum = _filter_spectrum(k, L, bidirectional, wide)
    # The product is taken in place: one (B, H, L+1) complex tensor (2 GiB at L = 1M, H = 256) less.
    spectrum = torch.fft.rfft(x, n=2 * L).mul_(k_spectrum)
    y = torch.fft.irfft(spectrum, n=2 * L)[..., :L]
    del spectrum
    if D is not None:
        y = torch.addcmul(y, x, D.to(wide).unsqueeze(-1))
    out = y.to(u.dtype) if postgate is None else torch.mul(y, postgate, out=torch.empty_like(u))
    return out, y.to(u.dtype) if keep_y else None


class _FFTConvRef(torch.autograd.Function):
    """The reference with a hand-written backward that keeps only the inputs (and the pre-gate output in
    the input's precision) between forward and backward, instead of autograd's four fp32/complex
    intermediates of size (B, H, 2L): at L = 1M, H = 256 that is ~0.5 GiB saved instead of ~13 GiB per
    call, paid for with two more FFTs in the backward (the spectra of x and k are recomputed)."""

    @staticmethod
    def forward(ctx, u, k, D, pregate, postgate, bidirectional):  # noqa: D102 - see fftconv_ref
        keep_y = postgate is not None and ctx.needs_input_grad[4]
        out, y = _forward(u, k, D, pregate, postgate, bidirectional, keep_y)
        ctx.bidirectional = bidirectional
        ctx.save_for_backward(u, k, D, pregate, postgate, y)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102 - gradients of fftconv_ref's formula
        u, k, D, pregate, postgate, y = ctx.saved_tensors
        L, wide, n = u.shape[-1], torch.promote_types(u.dtype, torch.float32), 2 * u.shape[-1]
        g = grad.to(wide)
        need_dk, need_dD = ctx.needs_input_grad[1], D is not None and ctx.needs_input_grad[2]
        x = None  # the gated input, rebuilt only for the gradients that read it
        if need_dk or need_dD:
            x = _gated(u, pregate, wide)
        d_post = None
        if postgate is not None and ctx.needs_input_grad[4]:
            d_post = torch.mul(g, y, out=torch.empty_like(postgate))
        gy = g if postgate is None else g * postgate
        # Spectra are multiplied in place and dropped as soon as they are used: at most three (B, H, L+1)
        # complex tensors live at once (the backward's peak is the training step's peak at L = 1M).
        gf = torch.fft.rfft(gy, n=n)
        dk = None
        if need_dk:
            cross = torch.fft.rfft(x, n=n).conj_physical_().mul_(gf)
            dkc = torch.fft.irfft(cross, n=n).sum(dim=0)
            del cross
            dk = _uncombine(dkc, L, ctx.bidirectional).to(k.dtype)
        dx = torch.fft.irfft(gf.mul_(_filter_spectrum(k, L, ctx.bidirectional, wide).conj_physical_()), n=n)[..., :L]
        del gf
        dD = None
        if D is not None:
            dx = torch.addcmul(dx, gy, D.to(wide).unsqueeze(-1))
            dD = (gy * x).sum(dim=(0, 2)).to(D.dtype) if need_dD else None
        du = dx.to(u.dtype) if pregate is None else torch.mul(dx, pregate, out=torch.empty_like(u))
        d_pre = None
        if pregate is not None and ctx.needs_input_grad[3]:
            d_pre = torch.mul(dx, u, out=torch.empty_like(pregate))
        return du, dk, dD, d_pre, d_post, None


def fftconv_ref(
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    pregate: torch.Tensor | None = None,
    postgate: torch.Tensor | None = None,
    bidirectional: bool = False,
    fp32_intermediate: bool = False,
) -> torch.Tensor:
    """``postgate * (conv(u*pregate, k) + u*pregate*D)`` through FFTs of size 2L.

    u, pregate, postgate: (B, H, L); k: (H, L) causal or (H, 2L) bidirectional = concat(k_fwd, k_rev)
    with ``y[t] = sum_{s<=t} k_fwd[t-s] x[s] + sum_{s>t} k_rev[s-t-1] x[s]``; D: (H,). Output has u's
    dtype. ``fp32_intermediate`` is accepted for API parity; this path is always at least fp32.
    Gradients come from a hand-written backward that stores no (B, H, 2L) intermediates.
    """
    del fp32_intermediate
    inputs = (u, k, D, pregate, postgate)
    if records_graph(*inputs):
        return _FFTConvRef.apply(*inputs, bidirectional)
    return _forward(*inputs, bidirectional, keep_y=False)[0]  # inference: nothing kept for a backward
