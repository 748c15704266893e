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

from .triton_scan import _SEGMENT_ARGS


@triton.jit
def _softplus(x):
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)


@triton.jit(do_not_specialize=["state_stride", *_SEGMENT_ARGS])
def _seq_fwd_kernel(
    u_ptr, dt_ptr, At_ptr, BC_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, states_ptr, last_ptr,
    seg_a_ptr, seg_h_ptr, carry_ptr,
    E, L, G, n_chunks, chunks_per_seg, n_segs, state_stride,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr, SUMMARY: tl.constexpr,
    N: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr,
):
    """One (sequence, channel block, segment) per program, arguments as in
    :func:`.triton_scan._scan_fwd_kernel` except ``At``: A transposed to (N, E) and scaled by log2(e);
    ``BC``: B and C packed into one int64 per (batch, group, step, state), (batch, G, L, N), with B's
    fp32 bits in the low and C's in the high word (:func:`.ops.pack_bc`);
    and ``state_stride`` (always 1, the stride of the state axis in the state buffers): an unspecialised
    argument, so that the compiler does not lay the (N, BLOCK_E) state out along N for those few
    accesses and keeps every thread's N states in its own registers in the step loop.
    ``SUMMARY``: scan the segment from a zero state and store its end state and total decay (pass 1).
    Otherwise start from the carry and write outputs, chunk-start states and the final state (pass 2)."""
    pid_b = tl.program_id(0).to(tl.int64)
    seg = tl.program_id(2)
    e = tl.program_id(1) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    n = tl.arange(0, N)
    A2 = tl.load(At_ptr + n[:, None] * E + e[None, :], mask=emask[None, :], other=0.0)  # (N, BLOCK_E)
    # Disabled features get a dummy pointer with at least E elements; their values are never used.
    bias = tl.load(bias_ptr + e, mask=emask, other=0.0).to(tl.float32)
    Dv = tl.load(D_ptr + e, mask=emask, other=0.0).to(tl.float32)
    group = (tl.program_id(1) * BLOCK_E) // (E // G)  # all channels of a program share a group
    bc_row = (pid_b * G + group) * L
    row = pid_b * E * L + e.to(tl.int64) * L
    sn = n[:, None] * state_stride
    state_off = (pid_b * E + e[None, :].to(tl.int64)) * n_chunks * N + sn
    seg_off = ((pid_b * E + e[None, :].to(tl.int64)) * n_segs + seg) * N + sn
    if SUMMARY:
        h = tl.zeros((N, BLOCK_E), dtype=tl.float32)
        dt_sum = tl.zeros((BLOCK_E,), dtype=tl.float32)
    else:
        h = tl.load(carry_ptr + seg_off, mask=emask[None, :], other=0.0)
    c_start = seg * chunks_per_seg
    c_stop = tl.minimum(c_start + chunks_per_seg, n_chunks)
    for c in range(c_start, c_stop):
        if not SUMMARY:
            if SAVE_STATES:
                tl.store(states_ptr + state_off + c * N, h, mask=emask[None, :])
        for t in range(c * T, tl.minimum(c * T + T, L)):
            u = tl.load(u_ptr + row + t, mask=emask, other=0.0).to(tl.float32)
            dt = tl.load(dt_ptr + row + t, mask=emask, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dt = dt + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            bc = tl.load(BC_ptr + (bc_row + t) * N + n)  # one 8-byte load per state for B_t and C_t
            Bv = bc.to(tl.int32).to(tl.float32, bitcast=True)
            h = tl.exp2(dt[None, :] * A2) * h + (dt * u)[None, :] * Bv[:, None]
            if SUMMARY:
                dt_sum += dt
            else:
                Cv = (bc >> 32).to(tl.int32).to(tl.float32, bitcast=True)
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
