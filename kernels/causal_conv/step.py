"""One new position of the short causal convolution (generation): the state shift, the taps' dot product,
bias and SiLU in one kernel instead of six small PyTorch ones. Semantics and the CPU path:
:func:`.reference.causal_conv1d_update_ref`."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..transpose import unit_stride_rows

#: Channels per program.
BLOCK_CHANNELS = 64


@triton.jit
def _conv_update_kernel(state_ptr, x_ptr, w_ptr, bias_ptr, out_ptr, channels, width, sxb, HAS_BIAS: tl.constexpr,
                        SILU: tl.constexpr, BLOCK: tl.constexpr, KP: tl.constexpr):
    """One program: ``BLOCK`` channels of one sequence, their (BLOCK, width) state (oldest tap first) read,
    shifted by one with x as the newest tap, written back; ``KP`` is width rounded up to a power of two.
    x's rows have unit stride, ``sxb`` apart (the in-projection's output, read in place); every other
    tensor is contiguous."""
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    j = tl.arange(0, KP)
    cmask = c < channels
    row = b * channels + c
    taps = row[:, None] * width + j[None, :]
    older = tl.load(state_ptr + taps + 1, mask=cmask[:, None] & (j[None, :] + 1 < width), other=0.0)
    x = tl.load(x_ptr + b * sxb + c, mask=cmask, other=0.0).to(tl.float32)
    state = tl.where(j[None, :] == width - 1, x[:, None], older)
    mask = cmask[:, None] & (j[None, :] < width)
    tl.store(state_ptr + taps, state, mask=mask)
    w = tl.load(w_ptr + c[:, None] * width + j[None, :], mask=mask, other=0.0).to(tl.float32)
    out = tl.sum(state * w, axis=1)
    if HAS_BIAS:
        out += tl.load(bias_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    if SILU:
        out = out * tl.sigmoid(out)
    tl.store(out_ptr + row, out.to(out_ptr.dtype.element_ty), mask=cmask)


def causal_conv1d_update_triton(state: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                                bias: torch.Tensor | None = None, activation: str | None = None) -> torch.Tensor:
    """The Triton path of :func:`causal_conv1d_update` (no autograd: a generation step)."""
    if not state.is_contiguous() or state.dtype != torch.float32:
        raise ValueError("causal_conv1d_update: the state must be a contiguous fp32 tensor (it is updated in place)")
    batch, channels, width = state.shape
    x, weight = unit_stride_rows(x), weight.contiguous()
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _conv_update_kernel[(batch, triton.cdiv(channels, BLOCK_CHANNELS))](
        state, x, weight, x if bias is None else bias.contiguous(), out, channels, width, x.stride(0),
        HAS_BIAS=bias is not None, SILU=activation == "silu", BLOCK=BLOCK_CHANNELS,
        KP=triton.next_power_of_2(width), num_warps=2,
    )
    return out


__all__ = ["causal_conv1d_update_triton"]
