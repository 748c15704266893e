"""A linear layer whose bias gradient is a matrix product instead of a column sum.

``nn.Linear``'s backward sums the output gradient over all tokens for the bias. PyTorch's reduction
over the leading dimension of a (tokens, features) tensor is slow when there are many tokens and few
features: on an H200, 76 µs for (65,536, 256) in bf16, where ``ones(1, tokens) @ grad`` on the tensor
cores takes 20 µs (38 vs 70 µs at 768 features; ``kernels``-free probe in BENCHMARKS.md, "Monarch Mixer
vs Transformer"). An M2 training step at 64K tokens has such a sum in every projection and MLP layer
with a bias (the implicit filters' small layers, once among them, are now computed by
``genomix.kernels.implicit_filter``). Here the bias gradient is that product, accumulated in fp32 by the GEMM like
the sum it replaces; forward, input and weight gradients are ``F.linear``'s. Under autocast the inputs
are cast to the autocast dtype first, exactly as autocast casts ``F.linear``'s.
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
        return F.linear(x, weight, bias)

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


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` with the fast bias gradient whenever a bias gradient will be needed."""
    if bias is None or not (torch.is_grad_enabled() and bias.requires_grad):
        return F.linear(x, weight, bias)
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype in (torch.float32, torch.bfloat16, torch.float16):
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False):
            return _LinearFn.apply(x.to(dtype), weight.to(dtype), bias.to(dtype))
    return _LinearFn.apply(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same constructor, parameters and state-dict keys) computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


__all__ = ["Linear", "linear"]
