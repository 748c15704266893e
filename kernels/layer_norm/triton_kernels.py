"""Triton kernels of LayerNorm and RMSNorm over the last dimension, optionally fused with the residual add
of a pre-norm block (forward and backward).

One program owns a tile of BLOCK_M whole rows (BLOCK_N = next_power_of_2(N) columns, masked), so a row's
statistics come from registers: the forward reads x once and writes y once, in whatever dtype the caller
asks (the autocast dtype, so the next Linear does not cast it again). LayerNorm's variance is the
two-pass ``mean((x - mean)^2)`` over the tile in registers, as accurate as PyTorch's Welford; RMSNorm
(``RMS``) skips the centring. Row offsets are int64: M * N passes 2^31 at L = 1M with N >= 2048, or batch
8 at N = 256.

With ``HAS_RESIDUAL`` / ``STORE_RESIDUAL`` the forward is a pre-norm block's add-norm: it reads the
sub-layer output x and the residual stream, writes their sum (rounded to the residual's dtype, which is
what gets normalized) and normalizes it, so the sum is never re-read. Mamba's blocks did this as ~8
PyTorch kernels over (L, d_model) each way.

The backward reads the normalized rows, dy and the forward's per-row statistics, writes dx (plus, with
``HAS_DRES``, the gradient already flowing into the residual output, and with ``STORE_DX2`` the same
gradient a second time in another dtype: the residual stream's and the sub-layer output's), and leaves
per-program fp32 partial sums of the weight and bias gradients (each program walks a contiguous run of
row tiles, so there are few partials) for a final sum in PyTorch: no atomics, deterministic.
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
def _store_rows(ptr, rows, cols, N, values, mask):
    """Store an fp32 tile into contiguous (M, N) rows, in the pointer's dtype."""
    tl.store(ptr + rows[:, None].to(tl.int64) * N + cols[None, :], values.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def layer_norm_fwd_kernel(
    x_ptr, r_ptr, w_ptr, b_ptr, y_ptr, rout_ptr, mean_ptr, rstd_ptr, M, N, sxm, srm, eps,
    HAS_RESIDUAL: tl.constexpr, STORE_RESIDUAL: tl.constexpr, RMS: tl.constexpr,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """y = norm(s) * w + b for BLOCK_M rows, in y's dtype, where s = x (+ r with HAS_RESIDUAL), rounded to
    rout's dtype and stored there with STORE_RESIDUAL; rstd (and, for LayerNorm, mean) stored per row, fp32."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    x, mask = _load_rows(x_ptr, rows, cols, M, N, sxm)
    if HAS_RESIDUAL:
        x += _load_rows(r_ptr, rows, cols, M, N, srm)[0]
    if STORE_RESIDUAL:
        x = x.to(rout_ptr.dtype.element_ty)
        _store_rows(rout_ptr, rows, cols, N, x, mask)
        x = x.to(tl.float32)
    if RMS:
        xc = x
    else:
        mean = tl.sum(x, axis=1) / N
        xc = tl.where(mask, x - mean[:, None], 0.0)
        tl.store(mean_ptr + rows, mean, mask=rows < M)
    rstd = tl.rsqrt(tl.sum(xc * xc, axis=1) / N + eps)
    y = xc * rstd[:, None]
    if HAS_WEIGHT:
        y = y * tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        y = y + tl.load(b_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    _store_rows(y_ptr, rows, cols, N, y, mask)
    tl.store(rstd_ptr + rows, rstd, mask=rows < M)


@triton.jit
def layer_norm_bwd_kernel(
    x_ptr, w_ptr, dy_ptr, dres_ptr, dx_ptr, dx2_ptr, mean_ptr, rstd_ptr, dw_part_ptr, db_part_ptr,
    M, N, sxm, sdym, sdrm, tiles_per_program,
    RMS: tl.constexpr, HAS_DRES: tl.constexpr, STORE_DX2: tl.constexpr,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dx = rstd * (w*dy - mean(w*dy) - xhat * mean(w*dy*xhat)) per row (RMS: without the mean(w*dy) term),
    plus dres (rows of stride ``sdrm``) with HAS_DRES, written to dx and, with STORE_DX2, to dx2; for
    ``tiles_per_program`` consecutive row tiles. This program's sums over its rows of dy*xhat and dy go to
    row ``pid`` of ``dw_part`` and ``db_part`` (programs, N), fp32."""
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
        rstd = tl.load(rstd_ptr + rows, mask=rows < M, other=0.0)
        if RMS:
            xhat = x * rstd[:, None]
        else:
            mean = tl.load(mean_ptr + rows, mask=rows < M, other=0.0)
            xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
        wdy = dy * w[None, :]
        c_xhat = tl.sum(wdy * xhat, axis=1) / N
        if RMS:
            dx = (wdy - xhat * c_xhat[:, None]) * rstd[:, None]
        else:
            c_one = tl.sum(wdy, axis=1) / N
            dx = (wdy - xhat * c_xhat[:, None] - c_one[:, None]) * rstd[:, None]
        if HAS_DRES:
            dx += _load_rows(dres_ptr, rows, cols, M, N, sdrm)[0]
        _store_rows(dx_ptr, rows, cols, N, dx, mask)
        if STORE_DX2:
            _store_rows(dx2_ptr, rows, cols, N, dx, mask)
        if HAS_WEIGHT:
            dw_acc += dy * xhat
        if HAS_BIAS:
            db_acc += dy
    if HAS_WEIGHT:
        tl.store(dw_part_ptr + pid * N + cols, tl.sum(dw_acc, axis=0), mask=cols < N)
    if HAS_BIAS:
        tl.store(db_part_ptr + pid * N + cols, tl.sum(db_acc, axis=0), mask=cols < N)
