"""Launchers and the autograd Function of the Triton GELU-gated linear unit.

:class:`GeluGluFn` computes what :func:`.reference.gelu_glu_ref` does. h is read through its row stride
(a (..., 2D) tensor whose leading dims flatten to one stride, e.g. every other row of a bigger tensor or
a column slice of a wider one, is read in place; otherwise, or when its last dim is not contiguous, it is
copied first). The output is contiguous (..., D) in h's dtype; dh is contiguous (..., 2D) in h's dtype,
written whole by one kernel. Saved for the backward: h only (the gated projection's output, which
autograd keeps alive anyway); gelu is recomputed from it.
"""
from __future__ import annotations

import torch
import triton
from torch.autograd.function import once_differentiable

from ..layer_norm.ops import rows_view
from .triton_kernels import gelu_glu_bwd_kernel, gelu_glu_fwd_kernel

#: Output elements (rows x columns) per program, and warps. 4096 on 4 warps is 32 output elements a
#: thread: 16-byte loads of gate and value in flight without spilling. The backward moves 5 values an
#: element instead of 3, so it runs the same tile on 8 warps. Copied from the LayerNorm kernels'
#: choice, not swept on a GPU (kernels/bench_gelu_glu.py measures it).
FWD_TILE_ELEMENTS, FWD_WARPS = 4096, 4
BWD_TILE_ELEMENTS, BWD_WARPS = 4096, 8


def tile(d: int, elements: int) -> tuple[int, int]:
    """(BLOCK_M rows, BLOCK_D columns) of a program for D = d output columns: about ``elements`` in all,
    whole rows while next_power_of_2(d) fits in ``elements``, else column tiles of ``elements``."""
    block_d = min(triton.next_power_of_2(d), elements)
    return elements // block_d, block_d


def _grid(m: int, d: int, block_m: int, block_d: int) -> tuple[int, int]:
    return triton.cdiv(m, block_m), triton.cdiv(d, block_d)


class GeluGluFn(torch.autograd.Function):
    """``gelu_tanh(gate) * value`` of ``h = [gate, value]`` through the Triton kernels."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, d_inner: int) -> torch.Tensor:  # type: ignore[override]
        h2 = rows_view(h)
        m = h2.shape[0]
        out = torch.empty((m, d_inner), dtype=h.dtype, device=h.device)
        block_m, block_d = tile(d_inner, FWD_TILE_ELEMENTS)
        gelu_glu_fwd_kernel[_grid(m, d_inner, block_m, block_d)](
            h2, out, m, d_inner, h2.stride(0), BLOCK_M=block_m, BLOCK_D=block_d, num_warps=FWD_WARPS,
        )
        ctx.shape = h.shape
        ctx.save_for_backward(h2)
        return out.view(*h.shape[:-1], d_inner)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (h2,) = ctx.saved_tensors
        dout2 = rows_view(dout)
        m, d_inner = dout2.shape
        dh = torch.empty(h2.shape, dtype=h2.dtype, device=h2.device)
        block_m, block_d = tile(d_inner, BWD_TILE_ELEMENTS)
        gelu_glu_bwd_kernel[_grid(m, d_inner, block_m, block_d)](
            h2, dout2, dh, m, d_inner, h2.stride(0), dout2.stride(0), BLOCK_M=block_m, BLOCK_D=block_d,
            num_warps=BWD_WARPS,
        )
        return dh.view(ctx.shape), None
