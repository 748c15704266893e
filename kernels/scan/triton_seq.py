"""Sequential-step forward kernel of the Mamba-1 selective scan (the ``"seq"`` variant).

Same contract and memory layout as :func:`.triton_scan._scan_fwd_kernel` (it writes the same outputs,
chunk-start states and segment summaries, so the segmented two-pass driver and the backward kernel are
shared), but the work inside a chunk is organised the other way round:

- A program owns ``BLOCK_E`` channels (one per thread at ``BLOCK_E = 32 * num_warps``) and keeps the
  (N, BLOCK_E) state in registers, so each thread holds all N states of its channel.
- Time is walked one step at a time: per step and state one ``exp2`` and two FMAs
  (``h = exp2(dt * A log2 e) * h + dt u B``, ``y += h C``); the contraction over N stays inside the
  thread. The associative scan's log2(T) combine levels, its shuffles and its O(T) extraction of the
  chunk's last state disappear.
- Per step each thread loads its channel's u, Δ (and z) and stores its output (strided across threads,
  but consecutive steps hit the same L1 lines), and all threads load the same N values of B_t and C_t
  (broadcast loads). B and C are packed beforehand into one int64 per (step, state), fp32 bits of B
  low and of C high, which halves those load instructions and drops the bf16 conversions.
- Inputs are read in sub-tiles of ``SUB = 16`` steps (32 bytes per channel row in bf16: one sector per
  thread), softplus/bias are applied on the whole sub-tile, and the tile is cut into per-step columns in
  registers (reshape/permute/split halving, statically unrolled); the 16 per-step outputs are put back
  together with ``tl.join`` for one store. B and C sub-tiles (N, 16) are shared by the program.
- Many programs per SM hide latency: the sequence is cut into segments exactly as in the ``assoc``
  kernels (``SUMMARY`` pass, carry combine, main pass). The summary's total decay is
  ``exp2(A log2 e * sum(dt))``: one exp per state per segment instead of one per step.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_scan import _SEGMENT_ARGS, _load_dt

SUB: tl.constexpr = tl.constexpr(8)


@triton.jit
def _row(X, pick):
    """Row ``j`` of a tile whose first axis is held in each thread's registers, ``pick`` being the
    compile-time mask of that row (broadcastable to ``X``): a register read once the loop is unrolled.
    -0.0 fills the other rows because x + (-0.0) == x folds away."""
    return tl.sum(tl.where(pick, X, -0.0), axis=0)


@triton.jit
def _load_bc(BC_ptr, bc_row, t, L, N: tl.constexpr, MASK: tl.constexpr = True):
    """B_t and C_t (N,) in fp32 from the packed int64 (:func:`.ops.pack_bc`), broadcast to every thread;
    0 past the end of the sequence. ``MASK=False``: the rows are zero-padded past L (``pack_bc``'s
    ``multiple``), so the load needs no mask (a masked load first zeroes its 2N destination registers)."""
    n = tl.arange(0, N)
    if MASK:
        bc = tl.load(BC_ptr + (bc_row + t) * N + n, mask=(n * 0 + t) < L, other=0)
    else:
        bc = tl.load(BC_ptr + (bc_row + t) * N + n)
    return bc.to(tl.int32).to(tl.float32, bitcast=True), (bc >> 32).to(tl.int32).to(tl.float32, bitcast=True)


@triton.jit
def _sub_tile(h, dt_sum, A2, bias, Dv, u_ptr, dt_ptr, z_ptr, out_ptr, BC_ptr, row, emask, bc_row, t0, L,
              HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
              SUMMARY: tl.constexpr, N: tl.constexpr):
    """``SUB`` = 8 steps from ``t0`` with tiled I/O: u, Δ (and z) are loaded as (SUB, BLOCK_E) tiles with
    time along the rows; in bf16 a column is 16 bytes, which the compiler gives to one thread as one
    vector load, so each thread holds its own channel's steps (fp32 tiles straddle two threads: correct,
    but with shuffles). Step ``j`` picks row ``j`` with a compile-time mask (folds to a register read in
    the unrolled loop) and puts its output into row ``j`` of the output tile, stored once per tile.
    Returns the state and the running sum of Δ."""
    rows = tl.arange(0, SUB)
    t = t0 + rows
    m = (t < L)[:, None] & emask[None, :]
    offs = row[None, :] + t[:, None]
    u = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
    _, dt = _load_dt(dt_ptr, offs, m, bias[None, :], HAS_BIAS, SOFTPLUS)  # a = 1, b = 0 past the end
    dtu = dt * u
    y = tl.zeros_like(u)
    for j in tl.static_range(SUB):
        pick = rows[:, None] == j
        Bv, Cv = _load_bc(BC_ptr, bc_row, t0 + j, L, N)
        h = tl.exp2(_row(dt, pick)[None, :] * A2) * h + _row(dtu, pick)[None, :] * Bv[:, None]
        if not SUMMARY:
            y = tl.where(pick, tl.sum(h * Cv[:, None], axis=0)[None, :], y)
    if SUMMARY:
        dt_sum += tl.sum(dt, axis=0)
    else:
        if HAS_D:
            y += Dv[None, :] * u
        if HAS_Z:
            zv = tl.load(z_ptr + offs, mask=m, other=0.0).to(tl.float32)
            y = y * zv * tl.sigmoid(zv)
        tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=m)
    return h, dt_sum


@triton.jit(do_not_specialize=["state_stride", *_SEGMENT_ARGS])
def _seq_fwd_kernel(
    u_ptr, dt_ptr, A2_ptr, BC_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, states_ptr, last_ptr,
    seg_a_ptr, seg_h_ptr, carry_ptr,
    E, L, G, n_chunks, chunks_per_seg, n_segs, state_stride,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr, SUMMARY: tl.constexpr, TILE_IO: tl.constexpr,
    N: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr,
):
    """One (sequence, channel block, segment) per program, arguments as in
    :func:`.triton_scan._scan_fwd_kernel` except ``A2``: A (E, N) scaled by log2(e);
    ``BC``: B and C packed into one int64 per (batch, group, step, state), (batch, G, L, N), with B's
    fp32 bits in the low and C's in the high word (:func:`.ops.pack_bc`);
    and ``state_stride`` (always 1, the stride of the state axis in A and the state buffers): an
    unspecialised argument, so that the compiler sees no contiguity in those few (N, BLOCK_E) accesses,
    does not pick their layout for the state (N or E spread over lanes and warps, with shuffles and
    barriers in every step), and keeps every thread's N states in its own registers.
    ``SUMMARY``: scan the segment from a zero state and store its end state and total decay (pass 1).
    Otherwise start from the carry and write outputs, chunk-start states and the final state (pass 2).
    ``TILE_IO``: read u, Δ, z and write the output in (8, BLOCK_E) sub-tiles (:func:`_sub_tile`)
    instead of one strided element per thread and step."""
    pid_b = tl.program_id(0).to(tl.int64)
    seg = tl.program_id(2)
    e = tl.program_id(1) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    n = tl.arange(0, N)
    sn = n[:, None] * state_stride
    A2 = tl.load(A2_ptr + e[None, :] * N + sn, mask=emask[None, :], other=0.0)  # (N, BLOCK_E)
    # Disabled features get a dummy pointer with at least E elements; their values are never used.
    bias = tl.load(bias_ptr + e, mask=emask, other=0.0).to(tl.float32)
    Dv = tl.load(D_ptr + e, mask=emask, other=0.0).to(tl.float32)
    group = (tl.program_id(1) * BLOCK_E) // (E // G)  # all channels of a program share a group
    bc_row = (pid_b * G + group) * L
    row = pid_b * E * L + e.to(tl.int64) * L
    state_off = (pid_b * E + e[None, :].to(tl.int64)) * n_chunks * N + sn
    seg_off = ((pid_b * E + e[None, :].to(tl.int64)) * n_segs + seg) * N + sn
    dt_sum = tl.zeros((BLOCK_E,), dtype=tl.float32)  # the summary pass's total decay exponent
    if SUMMARY:
        h = tl.zeros((N, BLOCK_E), dtype=tl.float32)
    else:
        h = tl.load(carry_ptr + seg_off, mask=emask[None, :], other=0.0)
    c_start = seg * chunks_per_seg
    c_stop = tl.minimum(c_start + chunks_per_seg, n_chunks)
    for c in range(c_start, c_stop):
        if not SUMMARY:
            if SAVE_STATES:
                tl.store(states_ptr + state_off + c * N, h, mask=emask[None, :])
        if TILE_IO:
            for s in range(0, tl.cdiv(tl.minimum(T, L - c * T), SUB)):
                h, dt_sum = _sub_tile(h, dt_sum, A2, bias, Dv, u_ptr, dt_ptr, z_ptr, out_ptr, BC_ptr, row, emask,
                                      bc_row, c * T + s * SUB, L, HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, SUMMARY, N)
        else:
            for t in range(c * T, tl.minimum(c * T + T, L)):
                u = tl.load(u_ptr + row + t, mask=emask, other=0.0).to(tl.float32)
                _, dt = _load_dt(dt_ptr, row + t, emask, bias, HAS_BIAS, SOFTPLUS)
                Bv, Cv = _load_bc(BC_ptr, bc_row, t, L, N)  # one 8-byte load per state for B_t and C_t
                h = tl.exp2(dt[None, :] * A2) * h + (dt * u)[None, :] * Bv[:, None]
                if SUMMARY:
                    dt_sum += dt
                else:
                    y = tl.sum(h * Cv[:, None], axis=0)
                    if HAS_D:
                        y += Dv * u
                    if HAS_Z:
                        zv = tl.load(z_ptr + row + t, mask=emask, other=0.0).to(tl.float32)
                        y = y * zv * tl.sigmoid(zv)
                    tl.store(out_ptr + row + t, y.to(out_ptr.dtype.element_ty), mask=emask)
    if SUMMARY:
        tl.store(seg_a_ptr + seg_off, tl.exp2(A2 * dt_sum[None, :]), mask=emask[None, :])
        tl.store(seg_h_ptr + seg_off, h, mask=emask[None, :])
    else:
        is_last = (tl.zeros((N, BLOCK_E), dtype=tl.int32) + seg) == n_segs - 1
        last_off = (pid_b * E + e[None, :].to(tl.int64)) * N + sn
        tl.store(last_ptr + last_off, h, mask=emask[None, :] & is_last)
