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
    """
    del fp32_intermediate
    L = u.shape[-1]
    wide = torch.promote_types(u.dtype, torch.float32)
    x = u.to(wide) if pregate is None else u.to(wide) * pregate.to(wide)
    n = 2 * L
    kc = combined_filter(k.to(wide), L, n, bidirectional)
    y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(kc, n=n), n=n)[..., :L]
    if D is not None:
        y = y + x * D.to(wide).unsqueeze(-1)
    if postgate is not None:
        y = y * postgate.to(wide)
    return y.to(u.dtype)
