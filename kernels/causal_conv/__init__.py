"""Short causal depthwise convolution: the dispatch point over a PyTorch reference and Triton kernels.

HyenaDNA and M2 run their ``short_filter`` (width 3) and Mamba its ``conv1d`` (width 4, SiLU) through
:func:`causal_conv1d`. The input may be any (B, C, L) view, in particular the channels-last output of the
in-projection transposed, which the Triton kernels read in place while writing the channel-major
output the long convolution and the scan read. :func:`causal_conv1d_update` is one new position of it
(Mamba's generation step) on a state of the last K inputs.
"""
from __future__ import annotations

import torch

from ..dispatch import records_graph, use_triton
from .reference import ACTIVATIONS, causal_conv1d_ref, causal_conv1d_update_ref

__all__ = [
    "MAX_TRITON_WIDTH", "causal_conv1d", "causal_conv1d_ref", "causal_conv1d_triton", "causal_conv1d_update",
    "causal_conv1d_update_ref",
]

#: Widest filter the Triton kernels take (they unroll over the taps; the models use 3 and 4).
MAX_TRITON_WIDTH = 8


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str | None) -> None:
    for name, t in (("x", x), ("weight", weight), ("bias", bias)):
        if t is not None and not t.is_floating_point():  # an integer x would come back truncated
            raise TypeError(f"causal_conv1d: {name} must be a floating-point tensor, got {t.dtype}")
    if x.dim() != 3:
        raise ValueError(f"causal_conv1d: x must be (batch, channels, length), got {tuple(x.shape)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1] or weight.shape[1] < 1:
        raise ValueError(
            f"causal_conv1d: weight must be (channels, width) = ({x.shape[1]}, K), got {tuple(weight.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (x.shape[1],):
        raise ValueError(f"causal_conv1d: bias must be ({x.shape[1]},), got {tuple(bias.shape)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"causal_conv1d: activation must be one of {ACTIVATIONS}, got {activation!r}")


def causal_conv1d_triton(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str | None = None
) -> torch.Tensor:
    """The Triton path of :func:`causal_conv1d` (differentiable in x, weight and bias)."""
    from .ops import CausalConv1dFn  # imports triton: only when this path is taken

    return CausalConv1dFn.apply(x, weight, bias, activation == "silu")


def causal_conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str | None = None
) -> torch.Tensor:
    """``act(bias + depthwise causal conv of x with weight)``, i.e. ``nn.Conv1d(C, C, K, groups=C,
    padding=K-1)(x)[..., :L]`` then the activation (None or ``"silu"``).

    x: (B, C, L), any strides; weight: (C, K) (an ``nn.Conv1d`` weight ``squeeze(1)``); bias: (C,).
    Returns (B, C, L) in x's dtype, accumulated in fp32 (contiguous on the Triton path).
    """
    _check(x, weight, bias, activation)
    if weight.shape[1] <= MAX_TRITON_WIDTH and use_triton(x, weight, bias, op="causal_conv1d"):
        return causal_conv1d_triton(x, weight, bias, activation)
    return causal_conv1d_ref(x, weight, bias, activation)


def causal_conv1d_update(
    state: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """One new position of :func:`causal_conv1d`: ``state`` (B, C, K) fp32, the last K inputs oldest first,
    takes ``x`` (B, C) as its newest (in place); returns ``act(bias + <state, weight>)`` (B, C) in x's
    dtype. weight (C, K), bias (C,) as for :func:`causal_conv1d`. Differentiable on every device: where autograd
    records the call, the reference runs (the kernel has no backward)."""
    if state.dim() != 3 or x.shape != state.shape[:2]:
        raise ValueError(f"causal_conv1d_update: state must be (batch, channels, width) and x (batch, channels), "
                         f"got {tuple(state.shape)} and {tuple(x.shape)}")
    if state.dtype != torch.float32:
        raise TypeError(f"causal_conv1d_update: the state must be fp32, got {state.dtype}")
    _check(x.unsqueeze(-1), weight, bias, activation)
    if weight.shape[1] != state.shape[-1]:
        raise ValueError(f"causal_conv1d_update: weight has {weight.shape[1]} taps, the state {state.shape[-1]}")
    inputs = (state, x, weight, bias)
    if use_triton(*inputs, op="causal_conv1d_update") and state.is_contiguous() and not records_graph(*inputs):
        from .step import causal_conv1d_update_triton  # imports triton: only when this path is taken

        return causal_conv1d_update_triton(state, x, weight, bias, activation)
    return causal_conv1d_update_ref(state, x, weight, bias, activation)
