"""PyTorch reference of the implicit long-convolution filter (Hyena's and M2's), differentiable by autograd.

The filter of ``C`` channels at ``L`` positions is a sine MLP of per-position features followed by a
bias-free projection onto the channels and a per-channel exponential decay:

    h_0 = z                                         (L, E) positional features
    h_i = sin(f_i * (h_{i-1} @ W_i^T + b_i))        i = 1..n, (L, R) each
    k   = (W_out @ h_n^T) * (exp(-rate_c * t_l) + shift)     (C, L)

The decay factor is dropped when ``decay_rates`` is None (an unmodulated filter).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .tf32_matmul import filter_projection

#: One sine layer: (weight (R, K), bias (R,), frequency (R,) or (1, R)).
SineLayer = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def decay_factor(decay_rates: torch.Tensor, t: torch.Tensor, shift: float) -> torch.Tensor:
    """``exp(-rate_c t_l) + shift`` as a (C, L) tensor."""
    decay = torch.exp(torch.outer(decay_rates.neg(), t))
    return decay + shift if shift else decay


def implicit_filter_ref(z: torch.Tensor, t: torch.Tensor, layers: Sequence[SineLayer], out_weight: torch.Tensor,
                        decay_rates: torch.Tensor | None, shift: float = 0.0, tf32: bool = False) -> torch.Tensor:
    """The (C, L) filter, contiguous and channel-major as the FFT convolution reads it.

    ``tf32`` puts the last projection on TF32 tensor cores on CUDA (see :mod:`.tf32_matmul`); the sine
    layers always run in plain fp32: their outputs are phases, where TF32's rounding would be amplified.
    """
    hidden = z
    for weight, bias, freq in layers:
        hidden = torch.sin(freq * F.linear(hidden, weight, bias))
    projected = filter_projection(out_weight, hidden, tf32)
    if decay_rates is None:
        return projected
    return projected * decay_factor(decay_rates, t, shift)
