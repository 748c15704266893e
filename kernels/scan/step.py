"""One token of the Mamba-1 recurrence: the SSM state update and the gated output in one kernel.

Generation advances each layer's state by one step per token. In PyTorch that step is about fifteen tiny
elementwise kernels per layer (softplus, the decays, the state update, the readout, the skip term, the
gate), which dominate a token's time even when the whole step is replayed from a CUDA graph. Here it is
one pass over the state. Semantics are mamba_ssm's ``selective_state_update`` for one token::

    Δ = softplus(dt + dt_bias)            (batch, dim)
    state = exp(Δ A) state + (Δ x) B      (batch, dim, dstate), fp32, in place
    y = <state, C> + D x,  y *= silu(z)   (batch, dim), in x's dtype

:func:`.reference.selective_state_update_ref` is the PyTorch reference (the CPU path) and the definition.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..transpose import unit_stride_rows
from .triton_scan import _sigmoid, _softplus

#: Channels per program.
BLOCK_DIM = 32


@triton.jit
def _state_update_kernel(state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
                         dim, dstate, sxb, sdtb, szb, sbb, scb, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                         HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK: tl.constexpr, NP: tl.constexpr):
    """One program: ``BLOCK`` channels of one sequence, their (BLOCK, dstate) state in registers. The
    state, A and the output are contiguous; x, dt, z, B and C are rows with unit stride, ``s*b`` apart
    (views into the projections' outputs, read in place); ``NP`` is dstate rounded up to a power of two."""
    b = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    n = tl.arange(0, NP)
    dmask, nmask = d < dim, n < dstate
    mask = dmask[:, None] & nmask[None, :]
    row = b * dim + d
    x = tl.load(x_ptr + b * sxb + d, mask=dmask, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + b * sdtb + d, mask=dmask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + d, mask=dmask, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = _softplus(dt)
    A = tl.load(A_ptr + d[:, None] * dstate + n[None, :], mask=mask, other=0.0).to(tl.float32)
    Bv = tl.load(B_ptr + b * sbb + n, mask=nmask, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + b * scb + n, mask=nmask, other=0.0).to(tl.float32)
    offs = row[:, None] * dstate + n[None, :]
    h = tl.load(state_ptr + offs, mask=mask, other=0.0)
    h = tl.exp(dt[:, None] * A) * h + (dt * x)[:, None] * Bv[None, :]
    tl.store(state_ptr + offs, h, mask=mask)
    y = tl.sum(h * Cv[None, :], axis=1)
    if HAS_D:
        y += tl.load(D_ptr + d, mask=dmask, other=0.0).to(tl.float32) * x
    if HAS_Z:
        z = tl.load(z_ptr + b * szb + d, mask=dmask, other=0.0).to(tl.float32)
        y *= z * _sigmoid(z)
    tl.store(out_ptr + row, y.to(out_ptr.dtype.element_ty), mask=dmask)


def selective_state_update_triton(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                                  B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                                  z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                                  dt_softplus: bool = True) -> torch.Tensor:
    """The Triton path of :func:`selective_state_update` (no autograd: a generation step)."""
    if not state.is_contiguous():
        raise ValueError("selective_state_update: the state must be contiguous (it is updated in place)")
    batch, dim, dstate = state.shape
    x, dt, z, B, C = (unit_stride_rows(t) for t in (x, dt, z, B, C))
    A, D, dt_bias = (None if t is None else t.contiguous() for t in (A, D, dt_bias))
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _state_update_kernel[(batch, triton.cdiv(dim, BLOCK_DIM))](
        state, x, dt, A, B, C, x if D is None else D, x if z is None else z, x if dt_bias is None else dt_bias, out,
        dim, dstate, x.stride(0), dt.stride(0), x.stride(0) if z is None else z.stride(0), B.stride(0), C.stride(0),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None,
        SOFTPLUS=dt_softplus, BLOCK=BLOCK_DIM, NP=triton.next_power_of_2(dstate), num_warps=1,
    )
    return out


__all__ = ["selective_state_update_triton"]
