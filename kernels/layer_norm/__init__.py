"""LayerNorm and RMSNorm over the last dimension, and a pre-norm block's fused add-norm: the dispatch
points over PyTorch references and Triton kernels.

HyenaDNA normalizes its fp32 residual stream (1M rows x 256 at L = 1M) twice a block; under autocast
``nn.LayerNorm`` runs in fp32, writes fp32 and the next Linear casts that to bf16 with one more copy.
:func:`layer_norm` reads the fp32 rows once and writes ``out_dtype`` (the autocast dtype, from
``genomix.models.norms.LayerNorm``) directly. Mamba and Caduceus blocks add the mixer's output to the fp32
residual stream and RMS-normalize the sum: :func:`add_norm` does both in one pass each way.
"""
from __future__ import annotations

import torch

from ..dispatch import use_triton
from .reference import add_norm_ref, layer_norm_ref, rms_norm_ref

__all__ = [
    "MAX_TRITON_N", "add_norm", "add_norm_ref", "add_norm_triton", "layer_norm", "layer_norm_ref", "layer_norm_triton",
    "rms_norm", "rms_norm_ref",
]

#: Widest row the Triton kernels take: one program holds whole rows in registers (8192 fp32 is 32 KiB).
MAX_TRITON_N = 8192
#: Input dtypes of the Triton path: it computes in fp32, so float64 stays on the (float64) reference.
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, op: str = "layer_norm") -> None:
    if x.dim() == 0:
        raise ValueError(f"{op}: x must have a last dimension to normalize over, got a 0-d tensor")
    n = x.shape[-1]
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (n,):
            raise ValueError(f"{op}: {name} must be (N,) = ({n},) for x of shape {tuple(x.shape)}, "
                             f"got {tuple(t.shape)}")


def _triton_shape(x: torch.Tensor) -> bool:
    """Whether the Triton kernels take x: fp32/bf16/fp16, 0 < N <= MAX_TRITON_N, not empty."""
    return x.dtype in TRITON_DTYPES and 0 < x.shape[-1] <= MAX_TRITON_N and x.numel() > 0


def layer_norm_triton(
    x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, eps: float = 1e-5,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The Triton path of :func:`layer_norm` (differentiable in x, weight and bias; x non-empty, N <= MAX_TRITON_N)."""
    from .ops import NormFn  # imports triton: only when this path is taken

    return NormFn.apply(x, None, weight, bias, eps, False, out_dtype or x.dtype, None)


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
    if _triton_shape(x) and use_triton(x, weight, bias, op="layer_norm"):
        return layer_norm_triton(x, weight, bias, eps, out_dtype)
    return layer_norm_ref(x, weight, bias, eps, out_dtype)


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-5, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """mamba_ssm's RMSNorm, ``x / sqrt(mean(x^2) + eps) * weight`` over the last dim in fp32, returned in
    ``out_dtype`` (None: x's dtype). Same shapes, dtypes and paths as :func:`layer_norm`."""
    _check(x, weight, None, "rms_norm")
    if _triton_shape(x) and use_triton(x, weight, op="layer_norm"):
        from .ops import NormFn

        return NormFn.apply(x, None, weight, None, eps, True, out_dtype or x.dtype, None)
    return rms_norm_ref(x, weight, eps, out_dtype)


def add_norm_triton(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor | None, bias: torch.Tensor | None,
    eps: float, rms: bool, out_dtype: torch.dtype, residual_dtype: torch.dtype, inplace: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton path of :func:`add_norm` (differentiable in x, residual, weight and bias unless ``inplace``)."""
    from .ops import NormFn

    return NormFn.apply(x, residual, weight, bias, eps, rms, out_dtype, residual_dtype, inplace)


def add_norm(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor | None, bias: torch.Tensor | None = None,
    eps: float = 1e-5, rms: bool = False, out_dtype: torch.dtype | None = None,
    residual_dtype: torch.dtype | None = None, inplace: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A pre-norm block's add-norm: ``s = x + residual`` (``x`` alone when ``residual`` is None) in
    ``residual_dtype`` (None: the sum's dtype), returned with ``norm(s)``: RMSNorm with ``rms``, else
    LayerNorm (with ``bias``), computed in fp32 and returned in ``out_dtype`` (None: the norm's input
    dtype, i.e. the weight's). Returns ``(norm(s), s)``; gradients flow to x, residual, weight and bias.

    ``inplace``: s is written into ``residual`` itself and returned as it (inference: a residual stream
    updated block by block needs no second buffer). ``residual`` must be contiguous, already in
    ``residual_dtype``, and no gradient may be recorded.

    x, residual: (..., N) of the same shape, any strides. The Triton path (one read of x and residual,
    one write of s and y; one pass back) takes fp32/bf16/fp16 tensors with 0 < N <= MAX_TRITON_N and a
    weight in fp32 or in the residual's dtype (so that s needs no rounding before the norm); other inputs
    take the reference.
    """
    _check(x, weight, bias, "add_norm")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"add_norm: residual must have x's shape {tuple(x.shape)}, got {tuple(residual.shape)}")
    total_dtype = x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)
    residual_dtype = residual_dtype or total_dtype
    if inplace and (residual is None or residual.dtype != residual_dtype or not residual.is_contiguous()
                    or torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, residual, weight, bias))):
        raise ValueError("add_norm(inplace=True): needs a contiguous residual in the sum's dtype and no gradients")
    norm_dtype = residual_dtype if weight is None else weight.dtype
    if (_triton_shape(x) and residual_dtype in TRITON_DTYPES and norm_dtype in (torch.float32, residual_dtype)
            and (residual is None or residual.dtype in TRITON_DTYPES)
            and use_triton(x, residual, weight, bias, op="add_norm")):
        return add_norm_triton(x, residual, weight, bias, eps, rms, out_dtype or norm_dtype, residual_dtype, inplace)
    y, total = add_norm_ref(x, residual, weight, bias, eps, rms, out_dtype, residual_dtype)
    return (y, residual.copy_(total)) if inplace else (y, total)
