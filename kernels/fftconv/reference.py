"""PyTorch reference of the long FFT convolution (HyenaDNA/safari and M2 semantics).

This is the ground truth the Triton kernels are tested against and the path taken on CPU. It computes
in fp32 (or in the input's precision when that is wider, so float64 inputs give a float64 reference).
Shapes are (batch, channels, length).
"""
from __future__ import annotations

import torch


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


class _FFTConvRef(torch.autograd.Function):
    """The reference with a hand-written backward that keeps only the inputs (and the pre-gate output in
    the input's precision) between forward and backward, instead of autograd's four fp32/complex
    intermediates of size (B, H, 2L): at L = 1M, H = 256 that is ~0.5 GiB saved instead of ~13 GiB per
    call, paid for with two more FFTs in the backward (the spectra of x and k are recomputed)."""

    @staticmethod
    def forward(ctx, u, k, D, pregate, postgate, bidirectional):  # noqa: D102 - see fftconv_ref
        L, wide = u.shape[-1], torch.promote_types(u.dtype, torch.float32)
        x = u.to(wide) if pregate is None else u.to(wide) * pregate.to(wide)
        n = 2 * L
        kc = combined_filter(k.to(wide), L, n, bidirectional)
        y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(kc, n=n), n=n)[..., :L]
        if D is not None:
            y = y + x * D.to(wide).unsqueeze(-1)
        out = y if postgate is None else y * postgate.to(wide)
        ctx.bidirectional = bidirectional
        ctx.save_for_backward(u, k, D, pregate, postgate, y.to(u.dtype) if postgate is not None else None)
        return out.to(u.dtype)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102 - gradients of fftconv_ref's formula
        u, k, D, pregate, postgate, y = ctx.saved_tensors
        L, wide, n = u.shape[-1], torch.promote_types(u.dtype, torch.float32), 2 * u.shape[-1]
        g = grad.to(wide)
        need_dk, need_dD = ctx.needs_input_grad[1], D is not None and ctx.needs_input_grad[2]
        x = None  # the gated input, rebuilt only for the gradients that read it
        if need_dk or need_dD:
            x = u.to(wide) if pregate is None else u.to(wide) * pregate.to(wide)
        d_post = (g * y.to(wide)).to(postgate.dtype) if postgate is not None and ctx.needs_input_grad[4] else None
        gy = g if postgate is None else g * postgate.to(wide)
        gf = torch.fft.rfft(gy, n=n)
        kf = torch.fft.rfft(combined_filter(k.to(wide), L, n, ctx.bidirectional), n=n)
        dx = torch.fft.irfft(gf * kf.conj(), n=n)[..., :L]
        del kf
        dk = None
        if need_dk:
            dkc = torch.fft.irfft(gf * torch.fft.rfft(x, n=n).conj(), n=n).sum(dim=0)
            dk = _uncombine(dkc, L, ctx.bidirectional).to(k.dtype)
        dD = None
        if D is not None:
            dx = dx + gy * D.to(wide).unsqueeze(-1)
            dD = (gy * x).sum(dim=(0, 2)).to(D.dtype) if need_dD else None
        du = (dx if pregate is None else dx * pregate.to(wide)).to(u.dtype)
        d_pre = (dx * u.to(wide)).to(pregate.dtype) if pregate is not None and ctx.needs_input_grad[3] else None
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
    return _FFTConvRef.apply(u, k, D, pregate, postgate, bidirectional)
