"""LayerNorm over the last dimension: the dispatch point over a PyTorch reference and Triton kernels.

HyenaDNA normalizes its fp32 residual stream (1M rows x 256 at L = 1M) twice a block; under autocast
``nn.LayerNorm`` runs in fp32, writes fp32 and the next Linear casts that to bf16 with one more copy.
:func:`layer_norm` reads the fp32 rows once and writes ``out_dtype`` (the autocast dtype, from
``genomix.models.norms.LayerNorm``) directly.
"""
from __future__ import annotations

import torch

from ..dispatch import use_triton
from .reference import layer_norm_ref

__all__ = ["MAX_TRITON_N", "layer_norm", "layer_norm_ref", "layer_norm_triton"]

#: Widest row the Triton kernels take: one program holds whole rows in registers (8192 fp32 is 32 KiB).
MAX_TRITON_N = 8192
#: Input dtypes of the Triton path: it computes in fp32, so float64 stays on the (float64) reference.
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> None:
    if x.dim() == 0:
        raise ValueError("layer_norm: x must have a last dimension to normalize over, got a 0-d tensor")
    n = x.shape[-1]
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (n,):
            raise ValueError(f"layer_norm: {name} must be (N,) = ({n},) for x of shape {tuple(x.shape)}, "
                             f"got {tuple(t.shape)}")


def layer_norm_triton(
    x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, eps: float = 1e-5,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The Triton path of :func:`layer_norm` (differentiable in x, weight and bias; x non-empty, N <= MAX_TRITON_N)."""
    from .ops import LayerNormFn  # imports triton: only when this path is taken

    return LayerNormFn.apply(x, weight, bias, eps, out_dtype or x.dtype)


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, eps: float = 1e-5,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``F.layer_norm(x, x.shape[-1:], weight, bias, eps)`` computed in fp32, returned in ``out_dtype``
    (None: x's dtype).

    x: (..., N), any strides (the Triton path copies x first only when its last dim is not contiguous);
    weight, bias: (N,) or None. The Triton path takes fp32/bf16/fp16 x with 0 < N <= MAX_TRITON_N; other
    inputs (float64, wider rows, empty x) take the reference. Output and gradients keep x's shape.
    """
    _check(x, weight, bias)
    if (x.dtype in TRITON_DTYPES and 0 < x.shape[-1] <= MAX_TRITON_N and x.numel() > 0
            and use_triton(x, weight, bias, op="layer_norm")):
        return layer_norm_triton(x, weight, bias, eps, out_dtype)
    return layer_norm_ref(x, weight, bias, eps, out_dtype)
