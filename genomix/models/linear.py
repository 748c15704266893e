"""A linear layer whose bias gradient is a matrix product instead of a column sum, and GEMM epilogues.

``nn.Linear``'s backward sums the output gradient over all tokens for the bias. PyTorch's reduction
over the leading dimension of a (tokens, features) tensor is slow when there are many tokens and few
features: on an H200, 76 µs for (65,536, 256) in bf16, where ``ones(1, tokens) @ grad`` on the tensor
cores takes 20 µs (38 vs 70 µs at 768 features; ``kernels``-free probe in BENCHMARKS.md, "Monarch Mixer
vs Transformer"). An M2 training step at 64K tokens has such a sum in every projection and MLP layer
with a bias (the implicit filters' small layers, once among them, are now computed by
``genomix.kernels.implicit_filter``). Here the bias gradient is that product, accumulated in fp32 by the GEMM like
the sum it replaces; forward, input and weight gradients are ``F.linear``'s. Under autocast the inputs
are cast to the autocast dtype first, exactly as autocast casts ``F.linear``'s.

Two forward-side fusions (H200, bf16, one million tokens, d = 256; ``BENCHMARKS.md``, "HyenaDNA end to end"):
- a feature-major input (a (1, L, d) view of a (1, d, L) tensor, as a long convolution's output is read) goes
  to one ``addmm`` with the bias in the GEMM's epilogue; ``F.linear`` runs a matmul and then a separate
  broadcast bias add (0.75 ms of such adds per call for HyenaDNA's out-projection);
- :func:`linear_gelu`: without gradients on CUDA, the GELU of an MLP's first layer in cuBLASLt's epilogue
  (1.27 ms against 2.18 ms for the GEMM and a separate GELU over the (tokens, 4d) activation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _LinearFn(torch.autograd.Function):
    """``x @ W.T + b`` with the bias gradient as ``ones @ grad`` (inputs already in the compute dtype)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        return _affine(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad2d = grad.reshape(-1, grad.shape[-1])
        x2d = x.reshape(-1, x.shape[-1])
        dx = None
        if ctx.needs_input_grad[0]:
            if x2d.stride(0) == 1 and x2d.shape[0] > 1:
                # A feature-major input (M2's out_linear reads the (B=1, d, L) convolution output transposed):
                # the gradient comes back in that layout too, as PyTorch's mm backward does, so the
                # convolution's backward reads it without a transposing copy.
                dx = torch.mm(weight.t(), grad2d.t()).t().reshape(x.shape)
            else:
                dx = torch.matmul(grad, weight)
        dw = grad2d.t().mm(x2d) if ctx.needs_input_grad[1] else None
        db = grad2d.new_ones(1, grad2d.shape[0]).mm(grad2d)[0] if ctx.needs_input_grad[2] else None
        return dx, dw, db


def _flat_rows(x: torch.Tensor) -> torch.Tensor | None:
    """x (..., d) as a (tokens, d) view when that needs no copy, else None."""
    try:
        return x.view(-1, x.shape[-1])
    except RuntimeError:
        return None


def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear``, with a non-contiguous input that flattens to (tokens, d) without a copy (feature-major
    rows) computed as one ``addmm``: the bias is then added by the GEMM, not by a separate pass."""
    rows = _flat_rows(x) if bias is not None and x.dim() > 2 and not x.is_contiguous() else None
    if rows is None:
        return F.linear(x, weight, bias)
    return torch.addmm(bias, rows, weight.t()).view(*x.shape[:-1], weight.shape[0])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` with the fast bias gradient whenever a bias gradient will be needed."""
    if bias is None or not (torch.is_grad_enabled() and bias.requires_grad):
        return _affine(x, weight, bias)
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype in (torch.float32, torch.bfloat16, torch.float16):
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False):
            return _LinearFn.apply(x.to(dtype), weight.to(dtype), bias.to(dtype))
    return _LinearFn.apply(x, weight, bias)


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``gelu(linear(x, weight, bias), approximate="tanh")``; without gradients on CUDA one GEMM whose epilogue
    applies the bias and the GELU (cuBLASLt's GELU is the tanh approximation), so the (tokens, out)
    activation is written once and never re-read for the GELU. The GELU is then computed on the fp32
    accumulator before the one rounding to the output dtype. Training calls keep the separate GELU (the
    fused op has no backward)."""
    fused = getattr(torch, "_addmm_activation", None)  # a private op: fall back if a release drops it
    rows = _flat_rows(x) if fused is not None and x.is_cuda and not torch.is_grad_enabled() else None
    if rows is None:
        return F.gelu(linear(x, weight, bias), approximate="tanh")
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else x.dtype
    with torch.autocast("cuda", enabled=False):
        out = fused(bias.to(dtype), rows.to(dtype), weight.to(dtype).t(), use_gelu=True)
    return out.view(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` (same constructor, parameters and state-dict keys) computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


__all__ = ["Linear", "linear", "linear_gelu"]
