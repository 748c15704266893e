"""Launchers and the autograd Function of the Triton short causal convolution.

:class:`CausalConv1dFn` computes what :func:`.reference.causal_conv1d_ref` does. The
output is contiguous (B, C, L) in x's dtype; dx comes back in x's layout when x is a permuted dense
tensor (a channels-last linear output viewed as (B, C, L)), so no gradient is re-laid either. Only the
inputs are saved for the backward.
"""
from __future__ import annotations

import torch
import triton

from .triton_kernels import causal_conv_bwd_kernel, causal_conv_fwd_kernel

#: (channels, steps, warps) per program. 64 channels keep channels-last reads at 128-byte rows in bf16 and
#: 128 steps do the same for channel-major ones. Swept on an H200 at L = 1M (BENCHMARKS.md, "Short causal
#: convolution"): forward 0.91 ms (HyenaDNA, C = 768) and 1.63 ms (Mamba, C = 1024); the linear backward
#: is fastest at (64, 128, 4) (5.69 ms on 8 warps). The SiLU backward's first pass (da) is the forward kernel
#: and takes its tile.
FWD_CONFIG = (64, 128, 4)
BWD_CONFIG = (64, 128, 4)


def _grid(x: torch.Tensor, config: tuple[int, int, int]) -> tuple[int, int, int]:
    batch, channels, length = x.shape
    return (triton.cdiv(length, config[1]), triton.cdiv(channels, config[0]), batch)


def _launch_fwd(x, weight, bias, out, silu: bool, dout=None) -> None:
    """The forward kernel into ``out``: act(conv(x) + bias), or with ``dout`` the SiLU backward's da."""
    block_c, block_l, warps = FWD_CONFIG
    causal_conv_fwd_kernel[_grid(x, FWD_CONFIG)](
        x, weight, bias if bias is not None else weight, dout if dout is not None else out, out,
        x.shape[1], x.shape[2], *x.stride(), K=weight.shape[1], HAS_BIAS=bias is not None, SILU=silu,
        GRAD=dout is not None, BLOCK_C=block_c, BLOCK_L=block_l, num_warps=warps,
    )


class CausalConv1dFn(torch.autograd.Function):
    """act(conv(x, weight) + bias), causal and depthwise, through the Triton kernels."""

    @staticmethod
    def forward(ctx, x, weight, bias, silu: bool):  # type: ignore[override]
        weight = weight.contiguous()
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        _launch_fwd(x, weight, bias, out, silu)
        ctx.silu = silu
        ctx.save_for_backward(x, weight, bias)
        return out

    @staticmethod
    def backward(ctx, dout):  # type: ignore[override]
        x, weight, bias = ctx.saved_tensors
        da = dout.contiguous()
        if ctx.silu:  # first pass: da = dout * silu'(a), the pre-activation recomputed once per step
            da = torch.empty(x.shape, dtype=torch.float32, device=x.device)
            _launch_fwd(x, weight, bias, da, True, dout.contiguous())
        block_c, block_l, warps = BWD_CONFIG
        grid = _grid(x, BWD_CONFIG)
        tiles = grid[0] * grid[2]
        dx = torch.empty_like(x)  # x's layout when x is dense in any dim order, else contiguous
        dw_part = torch.empty(tiles, *weight.shape, dtype=torch.float32, device=x.device)
        db_part = torch.empty(tiles, weight.shape[0], dtype=torch.float32, device=x.device)
        causal_conv_bwd_kernel[grid](
            x, weight, da, dx, dw_part, db_part, x.shape[1], x.shape[2], *x.stride(), *dx.stride(),
            K=weight.shape[1], BLOCK_C=block_c, BLOCK_L=block_l, num_warps=warps,
        )
        dw = dw_part.sum(0).to(weight.dtype) if ctx.needs_input_grad[1] else None
        db = db_part.sum(0).to(bias.dtype) if bias is not None and ctx.needs_input_grad[2] else None
        return dx, dw, db, None
