"""PyTorch reference of the long FFT convolution (HyenaDNA/safari semantics)."""
from __future__ import annotations

import torch


def fftconv_ref(
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    pregate: torch.Tensor | None = None,
    postgate: torch.Tensor | None = None,
    bidirectional: bool = False,
) -> torch.Tensor:
    """``postgate * (causal_conv(u*pregate, k) + u*pregate*D)`` through fp32 FFTs of size 2L.

    u: (B, H, L); k: (H, L); D: (H,). Output has u's dtype. Shapes are (batch, channels, length).
    """
    if bidirectional:
        raise NotImplementedError("bidirectional fftconv arrives with the Triton fftconv module")
    L = u.shape[-1]
    x = u if pregate is None else u * pregate
    n = 2 * L
    k_f = torch.fft.rfft(k.float(), n=n)
    y = torch.fft.irfft(torch.fft.rfft(x.float(), n=n) * k_f, n=n)[..., :L]
    if D is not None:
        y = y + x.float() * D.float().unsqueeze(-1)
    if postgate is not None:
        y = y * postgate.float()
    return y.to(u.dtype)
