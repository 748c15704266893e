"""Triton kernels of the GELU-gated linear unit ``out = gelu_tanh(gate) * value`` (forward and backward).

``h`` is (M, 2D) with unit column stride and any row stride: gate is columns [0, D), value [D, 2D). One
program owns a (BLOCK_M, BLOCK_D) tile of output columns and reads the matching gate and value tiles, so
the forward reads h once and writes out once, and the backward reads h and dout once and writes both
halves of dh itself (no gradient halves concatenated afterwards). gelu is recomputed in the backward
from h, so nothing but h is kept between the two. All math is fp32; loads and stores are in the tensors'
dtypes. Row offsets are int64: M * 2D reaches 2^31 at 1M rows of 2 x 1024.

gelu_tanh(g) = g * sigmoid(2u) with u = sqrt(2/pi) * (g + 0.044715 g^3), the same function as
``0.5 g (1 + tanh(u))`` (since 0.5 (1 + tanh(u)) = sigmoid(2u)), and finite for every finite g. With
s = sigmoid(2u): gelu'(g) = s + 2 g s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 g^2).
"""
from __future__ import annotations

import triton
import triton.language as tl

# Constants stay right of the tensors they scale: in the interpreter ``constexpr * tensor`` fails.
SQRT_2_OVER_PI = tl.constexpr(0.7978845608028654)
CUBIC = tl.constexpr(0.044715)


@triton.jit
def _tile(M, D, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's rows as int64 (BLOCK_M, 1), columns (1, BLOCK_D) and the in-bounds mask."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = (rows < M)[:, None] & (cols < D)[None, :]
    return rows.to(tl.int64)[:, None], cols[None, :], mask


@triton.jit
def _gelu_sigmoid(g):
    """(gelu_tanh(g), sigmoid(2u)) in fp32 for fp32 g."""
    s = tl.sigmoid((g + g * g * g * CUBIC) * (2.0 * SQRT_2_OVER_PI))
    return g * s, s


@triton.jit
def gelu_glu_fwd_kernel(h_ptr, out_ptr, M, D, shm, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """out[r, c] = gelu_tanh(h[r, c]) * h[r, D + c] for one tile; out is contiguous (M, D)."""
    rows, cols, mask = _tile(M, D, BLOCK_M, BLOCK_D)
    gate_ptrs = h_ptr + rows * shm + cols
    gate = tl.load(gate_ptrs, mask=mask, other=0.0).to(tl.float32)
    value = tl.load(gate_ptrs + D, mask=mask, other=0.0).to(tl.float32)
    gelu, _ = _gelu_sigmoid(gate)
    tl.store(out_ptr + rows * D + cols, (gelu * value).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def gelu_glu_bwd_kernel(
    h_ptr, dout_ptr, dh_ptr, M, D, shm, sdm, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """dh[r, c] = dout * value * gelu'(gate) and dh[r, D + c] = dout * gelu(gate) for one tile; dh is
    contiguous (M, 2D), dout (M, D) is read through its row stride ``sdm``."""
    rows, cols, mask = _tile(M, D, BLOCK_M, BLOCK_D)
    gate_ptrs = h_ptr + rows * shm + cols
    gate = tl.load(gate_ptrs, mask=mask, other=0.0).to(tl.float32)
    value = tl.load(gate_ptrs + D, mask=mask, other=0.0).to(tl.float32)
    dout = tl.load(dout_ptr + rows * sdm + cols, mask=mask, other=0.0).to(tl.float32)
    gelu, s = _gelu_sigmoid(gate)
    dgelu = s + gate * s * (1.0 - s) * (1.0 + gate * gate * (3.0 * CUBIC)) * (2.0 * SQRT_2_OVER_PI)
    dgate_ptrs = dh_ptr + rows * (2 * D) + cols
    tl.store(dgate_ptrs, (dout * value * dgelu).to(dh_ptr.dtype.element_ty), mask=mask)
    tl.store(dgate_ptrs + D, (dout * gelu).to(dh_ptr.dtype.element_ty), mask=mask)
