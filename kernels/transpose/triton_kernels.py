"""The tiled relayout kernel behind :func:`genomix.kernels.transpose.channel_major`."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def relayout_kernel(src_ptr, out_ptr, E, L, s_b, s_e, s_l, o_b, o_e, o_l,
                    BLOCK_L: tl.constexpr, BLOCK_E: tl.constexpr):
    """Copy one (BLOCK_L, BLOCK_E) tile of a (batch, E, L) tensor between two layouts given by strides.

    A stride equal to 1 is specialised by Triton, so the load is coalesced along the source's contiguous
    axis and the store along the output's; the compiler moves the tile between the two register layouts
    through shared memory. Offsets are 64-bit (a (1, 2048, 2^22) tensor has 2^33 elements)."""
    b = tl.program_id(2).to(tl.int64)
    t = (tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)).to(tl.int64)[:, None]
    e = (tl.program_id(1) * BLOCK_E + tl.arange(0, BLOCK_E)).to(tl.int64)[None, :]
    mask = (t < L) & (e < E)
    tile = tl.load(src_ptr + b * s_b + e * s_e + t * s_l, mask=mask)
    tl.store(out_ptr + b * o_b + e * o_e + t * o_l, tile, mask=mask)
