"""Triton kernels of LayerNorm over the last dimension (forward and backward).

One program owns a tile of BLOCK_M whole rows (BLOCK_N = next_power_of_2(N) columns, masked), so a row's
mean and variance come from registers: the forward reads x once and writes y once, in whatever dtype
the caller asks (the autocast dtype, so the next Linear does not cast it again). The variance is the
two-pass ``mean((x - mean)^2)`` over the tile in registers, as accurate as PyTorch's Welford. Row
offsets are int64: M * N passes 2^31 at L = 1M with N >= 2048, or batch 8 at N = 256.

The backward reads x, dy and the forward's per-row mean and rstd, writes dx, and leaves per-program
fp32 partial sums of the weight and bias gradients (each program walks a contiguous run of row tiles, so
there are few partials) for a final sum in PyTorch: no atomics, deterministic.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _load_rows(ptr, rows, cols, M, N, row_stride):
    """fp32 (BLOCK_M, BLOCK_N) tile of rows ``rows`` (zero outside M x N) and its mask."""
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    tile = tl.load(ptr + rows[:, None].to(tl.int64) * row_stride + cols[None, :], mask=mask, other=0.0)
    return tile.to(tl.float32), mask


@triton.jit
def layer_norm_fwd_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, M, N, sxm, eps,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """y = (x - mean) * rstd * w + b for BLOCK_M rows, in y's dtype; mean and rstd (fp32) stored per row."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    x, mask = _load_rows(x_ptr, rows, cols, M, N, sxm)
    mean = tl.sum(x, axis=1) / N
    xc = tl.where(mask, x - mean[:, None], 0.0)
    rstd = tl.rsqrt(tl.sum(xc * xc, axis=1) / N + eps)
    y = xc * rstd[:, None]
    if HAS_WEIGHT:
        y = y * tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        y = y + tl.load(b_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + rows[:, None].to(tl.int64) * N + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(mean_ptr + rows, mean, mask=rows < M)
    tl.store(rstd_ptr + rows, rstd, mask=rows < M)


@triton.jit
def layer_norm_bwd_kernel(
    x_ptr, w_ptr, dy_ptr, dx_ptr, mean_ptr, rstd_ptr, dw_part_ptr, db_part_ptr, M, N, sxm, sdym, tiles_per_program,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dx = rstd * (w*dy - mean(w*dy) - xhat * mean(w*dy*xhat)) per row, for ``tiles_per_program`` consecutive
    row tiles; this program's sums over its rows of dy*xhat and dy go to row ``pid`` of ``dw_part`` and
    ``db_part`` (programs, N), fp32."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    w = tl.full([BLOCK_N], 1.0, tl.float32)
    if HAS_WEIGHT:
        w = tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    db_acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for t in range(tiles_per_program):
        rows = (pid * tiles_per_program + t) * BLOCK_M + tl.arange(0, BLOCK_M)
        x, mask = _load_rows(x_ptr, rows, cols, M, N, sxm)
        dy, _ = _load_rows(dy_ptr, rows, cols, M, N, sdym)
        mean = tl.load(mean_ptr + rows, mask=rows < M, other=0.0)
        rstd = tl.load(rstd_ptr + rows, mask=rows < M, other=0.0)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
        wdy = dy * w[None, :]
        c_xhat = tl.sum(wdy * xhat, axis=1) / N
        c_one = tl.sum(wdy, axis=1) / N
        dx = (wdy - xhat * c_xhat[:, None] - c_one[:, None]) * rstd[:, None]
        tl.store(dx_ptr + rows[:, None].to(tl.int64) * N + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)
        if HAS_WEIGHT:
            dw_acc += dy * xhat
        if HAS_BIAS:
            db_acc += dy
    if HAS_WEIGHT:
        tl.store(dw_part_ptr + pid * N + cols, tl.sum(dw_acc, axis=0), mask=cols < N)
    if HAS_BIAS:
        tl.store(db_part_ptr + pid * N + cols, tl.sum(db_acc, axis=0), mask=cols < N)
