"""Short causal depthwise convolution: the dispatch point over a PyTorch reference and Triton kernels.

HyenaDNA and M2 run their ``short_filter`` (width 3) and Mamba its ``conv1d`` (width 4, SiLU) through
:func:`causal_conv1d`. The input may be any (B, C, L) view, in particular the channels-last output of the
in-projection transposed, which the Triton kernels read in place while writing the channel-major
output the long convolution and the scan read.
"""
from __future__ import annotations

import torch

from ..dispatch import use_triton
from .reference import ACTIVATIONS, causal_conv1d_ref

__all__ = ["MAX_TRITON_WIDTH", "causal_conv1d", "causal_conv1d_ref", "causal_conv1d_triton"]

#: Widest filter the Triton kernels take (they unroll over the taps; the models use 3 and 4).
MAX_TRITON_WIDTH = 8


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str | None) -> None:
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
