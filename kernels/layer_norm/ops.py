"""Launchers and the autograd Function of the Triton LayerNorm / RMSNorm and their fused add-norm.

:class:`NormFn` computes what :func:`.reference.layer_norm_ref` / :func:`.reference.rms_norm_ref` do over the
last dim of x, or, given a residual dtype, what :func:`.reference.add_norm_ref` does. x and the residual are
read through their row strides (a (..., N) tensor whose leading dims flatten to one stride, e.g. a column
slice of a wider activation, is read in place; one whose last dim is not contiguous is copied first).
Outputs are contiguous: y in ``out_dtype``, the residual sum in ``residual_dtype``, dx in x's dtype and
the residual's gradient in its dtype. Saved for the backward: the normalized rows (x, or the residual
sum, which is an output anyway), weight, bias and the per-row fp32 rstd (and mean for LayerNorm).
"""
from __future__ import annotations

import torch
import triton

from .triton_kernels import layer_norm_bwd_kernel, layer_norm_fwd_kernel

#: Elements (rows x next_power_of_2(N)) per program: 4096 fp32 on 4 warps is 32 values a thread, enough
#: 16-byte loads in flight for a streaming kernel without spilling; N = 256 gets 16 rows a program, N = 1024
#: 4, N >= 4096 one row (wider rows get 8 warps). Forward measured on an H200 (BENCHMARKS.md, "LayerNorm"):
#: 100 % of the HBM floor at (1M, 256).
FWD_TILE_ELEMENTS, FWD_WARPS = 4096, 4
#: The backward keeps four tiles live (x, dy and the dw/db accumulators). Rows up to 2048 wide take small
#: tiles on 2 warps (4 rows of 256 a program): swept on an H200 at N = 256, the kernel takes 55 µs at 65 K
#: rows and 675 µs at 1M rows, against 112 µs and 729 µs with the wide rows' 4096 elements on 8 warps.
#: Wider rows keep that (unswept) setting: on 2 warps a tile of 8192 would not fit in registers.
BWD_NARROW_MAX_N, BWD_NARROW, BWD_WIDE = 2048, (1024, 2), (4096, 8)
#: Most backward programs: each walks a contiguous run of row tiles and writes one fp32 row of dw/db
#: partials, so the partials stay at most 2048 x N x 4 bytes (2 MiB at N = 256) instead of one row per
#: tile (128 MiB at M = 1M) while 2048 programs still fill an H200's 132 SMs several times over. Fixed,
#: not derived from the SM count, so the reduction order (and dw, db bit for bit) is the same on every GPU.
BWD_MAX_PROGRAMS = 2048


def tile(n: int, elements: int, warps: int) -> tuple[int, int, int]:
    """(BLOCK_M rows, BLOCK_N columns, warps) for rows of n elements: about ``elements`` per program, and
    twice the warps when one row alone is wider than that."""
    block_n = triton.next_power_of_2(n)
    block_m = max(1, elements // block_n)
    return block_m, block_n, warps * 2 if block_n > elements else warps


def rows_view(t: torch.Tensor) -> torch.Tensor:
    """t as (rows, N) with unit column stride: a view where the leading dims allow one, else a copy
    (the row-wise kernels read rows through one row stride; gelu_glu uses it too)."""
    rows = t.reshape(-1, t.shape[-1])
    return rows if rows.stride(-1) == 1 else rows.contiguous()


class NormFn(torch.autograd.Function):
    """LayerNorm (or RMSNorm with ``rms``) over the last dim through the Triton kernels, output in ``out_dtype``.

    With ``residual_dtype`` set it is a pre-norm block's add-norm: ``s = x (+ residual)`` in
    ``residual_dtype`` is normalized and returned as well, ``(y, s)``; otherwise it returns y. ``inplace``
    writes s into the (contiguous) residual (each program reads its rows before it writes them)."""

    @staticmethod
    def forward(ctx, x, residual, weight, bias, eps: float, rms: bool, out_dtype: torch.dtype,
                residual_dtype: torch.dtype | None, inplace: bool = False):  # type: ignore[override]
        x2 = rows_view(x)
        r2 = None if residual is None else rows_view(residual)
        m, n = x2.shape
        y = torch.empty((m, n), dtype=out_dtype, device=x.device)
        if inplace:
            r_out = r2
        else:
            r_out = None if residual_dtype is None else torch.empty((m, n), dtype=residual_dtype, device=x.device)
        rstd = torch.empty(m, dtype=torch.float32, device=x.device)
        mean = None if rms else torch.empty_like(rstd)
        block_m, block_n, warps = tile(n, FWD_TILE_ELEMENTS, FWD_WARPS)
        layer_norm_fwd_kernel[(triton.cdiv(m, block_m),)](
            x2, x2 if r2 is None else r2, x2 if weight is None else weight, x2 if bias is None else bias, y,
            y if r_out is None else r_out, rstd if mean is None else mean, rstd, m, n, x2.stride(0),
            0 if r2 is None else r2.stride(0), eps, HAS_RESIDUAL=r2 is not None, STORE_RESIDUAL=r_out is not None,
            RMS=rms, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, BLOCK_M=block_m, BLOCK_N=block_n,
            num_warps=warps,
        )
        ctx.shape, ctx.rms, ctx.x_dtype = x.shape, rms, x.dtype
        ctx.residual_dtype = None if residual is None else residual.dtype
        ctx.save_for_backward(x2 if r_out is None else r_out, weight, bias, mean, rstd)
        if r_out is None:
            return y.view(x.shape)
        if inplace:
            ctx.mark_dirty(residual)
            return y.view(x.shape), residual
        return y.view(x.shape), r_out.view(x.shape)

    @staticmethod
    def backward(ctx, dy, d_residual_out=None):  # type: ignore[override]
        normed, weight, bias, mean, rstd = ctx.saved_tensors
        dy2 = rows_view(dy)
        dres2 = None if d_residual_out is None else rows_view(d_residual_out)
        m, n = normed.shape
        block_m, block_n, warps = tile(n, *(BWD_NARROW if n <= BWD_NARROW_MAX_N else BWD_WIDE))
        tiles_per_program = triton.cdiv(triton.cdiv(m, block_m), BWD_MAX_PROGRAMS)
        programs = triton.cdiv(m, block_m * tiles_per_program)
        dx = torch.empty((m, n), dtype=ctx.x_dtype, device=normed.device)
        need_dres = ctx.residual_dtype is not None and ctx.needs_input_grad[1]
        d_res = torch.empty((m, n), dtype=ctx.residual_dtype, device=normed.device) if need_dres else None
        dw_part = torch.empty((programs, n), dtype=torch.float32, device=normed.device) if weight is not None else None
        db_part = torch.empty((programs, n), dtype=torch.float32, device=normed.device) if bias is not None else None
        layer_norm_bwd_kernel[(programs,)](
            normed, normed if weight is None else weight, dy2, dy2 if dres2 is None else dres2, dx,
            dx if d_res is None else d_res, rstd if mean is None else mean, rstd,
            rstd if dw_part is None else dw_part, rstd if db_part is None else db_part,
            m, n, normed.stride(0), dy2.stride(0), 0 if dres2 is None else dres2.stride(0), tiles_per_program,
            RMS=ctx.rms, HAS_DRES=dres2 is not None, STORE_DX2=d_res is not None, HAS_WEIGHT=weight is not None,
            HAS_BIAS=bias is not None, BLOCK_M=block_m, BLOCK_N=block_n, num_warps=warps,
        )
        dw = dw_part.sum(0).to(weight.dtype) if dw_part is not None and ctx.needs_input_grad[2] else None
        db = db_part.sum(0).to(bias.dtype) if db_part is not None and ctx.needs_input_grad[3] else None
        return (dx.view(ctx.shape), None if d_res is None else d_res.view(ctx.shape), dw, db, None, None, None,
                None, None)
