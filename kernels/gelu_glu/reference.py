"""PyTorch reference of the GELU-gated linear unit ``gelu_tanh(gate) * value``.

The input is the gated projection's output ``h = [gate, value]`` (..., 2 * d_inner). The math runs in
fp32 (float64 for float64 inputs) with autocast off and the product is cast back to h's dtype once, as
the Triton kernels do. On fp32 inputs it is exactly what ``F.gelu(gate, approximate="tanh") * value``
returns, and autograd through it gives the reference gradient of h.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gelu_glu_ref(h: torch.Tensor, d_inner: int) -> torch.Tensor:
    """``gelu_tanh(h[..., :d_inner]) * h[..., d_inner:]`` computed in fp32 (or wider), returned in h's dtype."""
    wide = torch.promote_types(h.dtype, torch.float32)
    with torch.autocast(h.device.type, enabled=False):
        gate, value = h.to(wide).split(d_inner, dim=-1)
        out = F.gelu(gate, approximate="tanh") * value
    return out.to(h.dtype)
