"""GELU-gated linear unit ``gelu_tanh(gate) * value``: the dispatch point over a PyTorch reference and
Triton kernels.

M2's MLP (``MonarchGLU``) splits its gated projection ``h`` into gate and value and multiplies
``F.gelu(gate, approximate="tanh")`` by value. In PyTorch that is a gelu, a multiply, their two backward
kernels and the ``torch.cat`` of the two gradient halves (split's backward): about 1 ms a layer at
65536 tokens x d_inner 1024 on an H200, several passes over the activations. :func:`gelu_glu` reads h
once forward and h and dout once backward, writing dh whole, with the math in fp32.
"""
from __future__ import annotations

import torch

from ..dispatch import use_triton
from .reference import gelu_glu_ref

__all__ = ["gelu_glu", "gelu_glu_ref", "gelu_glu_triton"]

#: Input dtypes of the Triton path: it computes in fp32, so float64 stays on the (float64) reference.
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _d_inner(h: torch.Tensor, d_inner: int | None) -> int:
    """d_inner checked against h's last dim (half of it when None)."""
    if h.dim() == 0:
        raise ValueError("gelu_glu: h must have a last dimension [gate, value], got a 0-d tensor")
    width = h.shape[-1]
    if d_inner is None:
        d_inner = width // 2
    if width != 2 * d_inner or width == 0:
        raise ValueError(f"gelu_glu: h's last dim must be 2 * d_inner > 0 (gate, then value), got h of shape "
                         f"{tuple(h.shape)} with d_inner={d_inner}")
    return d_inner


def gelu_glu_triton(h: torch.Tensor, d_inner: int | None = None) -> torch.Tensor:
    """The Triton path of :func:`gelu_glu` (differentiable in h; h non-empty, fp32/bf16/fp16)."""
    from .ops import GeluGluFn  # imports triton: only when this path is taken

    return GeluGluFn.apply(h, _d_inner(h, d_inner))


def gelu_glu(h: torch.Tensor, d_inner: int | None = None) -> torch.Tensor:
    """``F.gelu(gate, approximate="tanh") * value`` with ``gate, value = h.split(d_inner, dim=-1)``, computed
    in fp32 and returned in h's dtype.

    h: (..., 2 * d_inner) (d_inner None: half of h's last dim), any strides (the Triton path copies h first
    only when its leading dims do not flatten to one row stride or its last dim is not contiguous).
    Returns (..., d_inner). The Triton path takes non-empty fp32/bf16/fp16 h; float64 and empty h take
    the reference. The gradient of h has h's shape and dtype.
    """
    d_inner = _d_inner(h, d_inner)
    if h.dtype in TRITON_DTYPES and h.numel() > 0 and use_triton(h, op="gelu_glu"):
        return gelu_glu_triton(h, d_inner)
    return gelu_glu_ref(h, d_inner)
