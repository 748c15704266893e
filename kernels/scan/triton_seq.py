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
- Per step all threads load the same N values of B_t and C_t (broadcast loads), packed beforehand into
  one int64 per (step, state), fp32 bits of B low and of C high, rows zero-padded to 16 steps so the
  loads need no mask. u, Δ (and z) are read and outputs written either one strided element per thread
  and step or (``TILE_IO``) as ``SUB``-step tiles, each thread holding its channel's ``SUB`` steps (see
  :func:`_sub_tile`); ``PREFETCH`` issues a tile's loads one tile early.
- Many programs per SM hide latency: the sequence is cut into segments exactly as in the ``assoc``
  kernels (``SUMMARY`` pass, carry combine, main pass). The summary's total decay is
  ``exp2(A log2 e * sum(dt))``: one exp per state per segment instead of one per step.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_scan import _SEGMENT_ARGS, _dt_of, _exp2, _gate, _load_dt, _prefetch, _state_offsets, _store_state


@triton.jit
def _row(X, pick):
    """Row ``j`` of a tile whose first axis is held in each thread's registers, ``pick`` being the
    compile-time mask of that row (broadcastable to ``X``): a register read once the loop is unrolled.
    -0.0 fills the other rows because x + (-0.0) == x folds away. It is built from its bits: Triton's
    frontend turns a literal -0.0 into +0.0, and x + 0.0 does not fold (-0.0 + 0.0 is +0.0), which left one
    FADD per pick (offline sm_90: 16 fewer instructions per forward tile, 96 fewer per backward main-pass
    tile; H100, thirty-sixth session: backward 2 % faster, forward unchanged; kernels/scan/NOTES.md)."""
    neg_zero = tl.full(X.shape, -2147483648, tl.int32).to(tl.float32, bitcast=True)
    return tl.sum(tl.where(pick, X, neg_zero), axis=0)


@triton.jit
def _load_bc(BC_ptr, bc_row, t, N: tl.constexpr):
    """B_t and C_t (N,) in fp32 from the packed B/C (:func:`.ops.pack_bc`), broadcast to every thread:
    int64 elements hold fp32 B (low word) and C (high word); int32 elements hold bf16 B (low half) and
    C (high half), half the bytes and registers per step (bf16 inputs, exact). The rows are zero-padded
    past L (``pack_bc``'s ``multiple``, 16 steps), so a tile's steps past the end read B = C = 0 without
    a mask (a masked load first zeroes its destination registers: ~17 instructions per step)."""
    PAIRS16: tl.constexpr = BC_ptr.dtype.element_ty.primitive_bitwidth == 32
    bc = tl.load(BC_ptr + (bc_row + t) * N + tl.arange(0, N))
    if PAIRS16:  # bf16 -> fp32 is a 16-bit shift of the bits
        B = (bc << 16).to(tl.float32, bitcast=True)
        C = (bc & -65536).to(tl.float32, bitcast=True)
    else:
        B = bc.to(tl.int32).to(tl.float32, bitcast=True)
        C = (bc >> 32).to(tl.int32).to(tl.float32, bitcast=True)
    return B, C


@triton.jit
def _hint_bc(BC_ptr, bc_row, t, L_bc, STEPS: tl.constexpr, LEVEL: tl.constexpr, N: tl.constexpr,
             BLOCK_E: tl.constexpr):
    """Prefetch into ``LEVEL`` ("L1" or "L2") the cache lines of the packed B/C of the ``STEPS`` steps
    from ``t`` (addresses clamped to the group's rows): lane i asks for lines i, i + BLOCK_E, ..., one instruction per
    BLOCK_E lines. GPU only."""
    bits: tl.constexpr = BC_ptr.dtype.element_ty.primitive_bitwidth
    lines: tl.constexpr = (STEPS * N * bits + 1023) // 1024
    start = (bc_row + tl.maximum(t, 0)) * N
    end = (bc_row + L_bc) * N - 1  # this group's last element: addresses never leave its rows
    lane = tl.arange(0, BLOCK_E)
    for i in tl.static_range(0, lines, BLOCK_E):
        _prefetch(BC_ptr + tl.minimum(start + ((lane + i) % lines) * (128 * 8 // bits), end), LEVEL)


@triton.jit
def _hint_rows(x_ptr, row, t, L, STEPS: tl.constexpr):
    """Prefetch into L2 the cache lines holding steps [t, t + STEPS) (clamped to [0, L)) of each
    channel's row of a (batch, E, L) tensor, e.g. the next chunk of a sequential walk. GPU only."""
    per_line: tl.constexpr = 128 * 8 // x_ptr.dtype.element_ty.primitive_bitwidth
    for i in tl.static_range(0, STEPS, per_line):
        _prefetch(x_ptr + row + tl.minimum(tl.maximum(t + i, 0), L - 1), "L2")


@triton.jit
def _tile_offsets(row, emask, t0, L, SUB: tl.constexpr):
    """Offsets and mask of the (SUB, BLOCK_E) tile of the ``SUB`` steps from ``t0`` (time along rows)."""
    t = t0 + tl.arange(0, SUB)
    return row[None, :] + t[:, None], (t < L)[:, None] & emask[None, :]


@triton.jit
def _load_io(u_ptr, dt_ptr, z_ptr, row, emask, t0, L, LOAD_Z: tl.constexpr, SUB: tl.constexpr):
    """The raw u, Δ and (``LOAD_Z``) z tiles of the ``SUB`` steps from ``t0``, in the inputs' dtype
    (u again in place of z otherwise): issued a tile ahead of their use by the ``PREFETCH`` kernel."""
    offs, m = _tile_offsets(row, emask, t0, L, SUB)
    u = tl.load(u_ptr + offs, mask=m, other=0.0)
    z = tl.load(z_ptr + offs, mask=m, other=0.0) if LOAD_Z else u
    return u, tl.load(dt_ptr + offs, mask=m, other=0.0), z


@triton.jit
def _sub_tile(h, dt_sum, A2, bias, Dv, u_raw, dt_raw, z_raw, out_ptr, BC_ptr, row, emask, bc_row, t0, L,
              HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
              SUMMARY: tl.constexpr, N: tl.constexpr, ASM: tl.constexpr, SUB: tl.constexpr):
    """``SUB`` steps from ``t0`` with tiled I/O, on the raw (SUB, BLOCK_E) u, Δ, z tiles of
    :func:`_load_io` (time along the rows); in bf16 a column of 8 or 16 steps is 16 or 32 bytes, which the
    compiler gives to one thread as vector accesses, so each thread holds its own channel's steps (fp32
    tiles straddle threads: correct, but with shuffles). At 16 steps every load and store of a column
    covers one whole 32-byte sector: at 8, each output store wrote half a sector, which cost the main
    pass ~1.2 of its 5.9 ms at L = 1M (H200; kernels/scan/NOTES.md, "Twenty-second session"). Step ``j``
    picks row ``j`` with a compile-time mask (folds to a register read in the unrolled loop) and puts its
    output into row ``j`` of the output tile, stored once per tile. ``ASM`` (GPU): the fast approximate
    exp2, softplus and sigmoid of :mod:`.triton_scan`. Returns the state and the running sum of Δ."""
    rows = tl.arange(0, SUB)
    offs, m = _tile_offsets(row, emask, t0, L, SUB)
    u = u_raw.to(tl.float32)
    _, dt = _dt_of(dt_raw, m, bias[None, :], HAS_BIAS, SOFTPLUS, ASM)  # a = 1, b = 0 past the end
    dtu = dt * u
    y = tl.zeros_like(u)
    for j in tl.static_range(SUB):
        pick = rows[:, None] == j
        Bv, Cv = _load_bc(BC_ptr, bc_row, t0 + j, N)
        h = _exp2(_row(dt, pick)[None, :] * A2, ASM) * h + _row(dtu, pick)[None, :] * Bv[:, None]
        if not SUMMARY:
            y = tl.where(pick, tl.sum(h * Cv[:, None], axis=0)[None, :], y)
    if SUMMARY:
        dt_sum += tl.sum(dt, axis=0)
    else:
        y = _gate(y, u, Dv[None, :], z_raw, HAS_D, HAS_Z, ASM)
        tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=m)
    return h, dt_sum


@triton.jit(do_not_specialize=["state_stride", *_SEGMENT_ARGS])
def _seq_fwd_kernel(
    u_ptr, dt_ptr, A2_ptr, BC_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, states_ptr, last_ptr,
    seg_a_ptr, seg_h_ptr, carry_ptr,
    E, L, L_bc, G, n_chunks, chunks_per_seg, n_segs, state_stride,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr, SUMMARY: tl.constexpr, TILE_IO: tl.constexpr, PREFETCH: tl.constexpr,
    ASM: tl.constexpr, N: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr, HINTS: tl.constexpr = False,
    SUB: tl.constexpr = 8, INLINE_PTX: tl.constexpr = False,
):
    """One (sequence, channel block, segment) per program, arguments as in
    :func:`.triton_scan._scan_fwd_kernel` except ``A2``: A (E, N) scaled by log2(e);
    ``BC``: B and C packed into one int64 per (batch, group, step, state), (batch, G, L_bc, N), with B's
    fp32 bits in the low and C's in the high word, L_bc >= L being L rounded up to 16 steps
    (:func:`.ops.pack_bc`);
    and ``state_stride`` (always 1, the stride of the state axis in A and the state buffers): an
    unspecialised argument, so that the compiler sees no contiguity in those few (N, BLOCK_E) accesses,
    does not pick their layout for the state (N or E spread over lanes and warps, with shuffles and
    barriers in every step), and keeps every thread's N states in its own registers.
    ``SUMMARY``: scan the segment from a zero state and store its end state and total decay (pass 1).
    Otherwise start from the carry and write outputs, chunk-start states and the final state (pass 2).
    ``TILE_IO``: read u, Δ, z and write the output in (``SUB``, BLOCK_E) sub-tiles (:func:`_sub_tile`;
    ``SUB`` 8 or 16, dividing ``T``) instead of one strided element per thread and step.
    ``PREFETCH`` (with ``TILE_IO``): load each tile's u, Δ, z while the previous tile is computed (a
    register double buffer, 3 x ``SUB`` elements per thread), so their HBM latency overlaps a tile's
    arithmetic instead of stalling its first step.
    ``ASM`` (GPU only): fast approximate exp2, softplus and sigmoid (:func:`.triton_scan._approx`).
    ``HINTS`` (GPU only, with ``TILE_IO``): prefetch the next chunk's u, Δ, z and B/C into L2 at each
    chunk start and each tile's B/C into L1 two tiles ahead, so the per-step loads stop waiting on
    L2/HBM latency (Nsight Compute: ~76 % of the summary pass's stalls were such waits).
    ``INLINE_PTX`` (GPU only): ``SAVE_STATES`` stores each chunk-start state from the registers that hold it
    (:func:`.triton_scan._store_state`). With ``tl.store`` it went through shared memory at every chunk, and the
    main pass took 250 registers instead of 165 (offline, triton 3.6): half the warps."""
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
    bc_row = (pid_b * G + group) * L_bc
    row = pid_b * E * L + e.to(tl.int64) * L
    state_row = (pid_b * E + e[None, :].to(tl.int64)) * n_chunks * N  # each channel's chunk-start states
    seg_off = ((pid_b * E + e[None, :].to(tl.int64)) * n_segs + seg) * N + sn
    dt_sum = tl.zeros((BLOCK_E,), dtype=tl.float32)  # the summary pass's total decay exponent
    if SUMMARY:
        h = tl.zeros((N, BLOCK_E), dtype=tl.float32)
    else:
        h = tl.load(carry_ptr + seg_off, mask=emask[None, :], other=0.0)
    c_start = seg * chunks_per_seg
    c_stop = tl.minimum(c_start + chunks_per_seg, n_chunks)
    load_z: tl.constexpr = HAS_Z and not SUMMARY
    if PREFETCH:  # the first tile's loads
        nu, ndt, nz = _load_io(u_ptr, dt_ptr, z_ptr, row, emask, c_start * T, L, load_z, SUB)
    for c in range(c_start, c_stop):
        if not SUMMARY:
            if SAVE_STATES:
                _store_state(states_ptr + state_row + c * N + _state_offsets(n[:, None], state_stride, INLINE_PTX),
                             h, emask[None, :], INLINE_PTX)
        if TILE_IO:
            if HINTS:
                _hint_rows(u_ptr, row, (c + 1) * T, L, T)
                _hint_rows(dt_ptr, row, (c + 1) * T, L, T)
                if load_z:
                    _hint_rows(z_ptr, row, (c + 1) * T, L, T)
                _hint_bc(BC_ptr, bc_row, (c + 1) * T, L_bc, T, "L2", N, BLOCK_E)
            for s in range(0, tl.cdiv(tl.minimum(T, L - c * T), SUB)):
                t0 = c * T + s * SUB
                if HINTS:
                    _hint_bc(BC_ptr, bc_row, t0 + 2 * SUB, L_bc, SUB, "L1", N, BLOCK_E)
                if PREFETCH:  # this tile's loads were issued one tile ago; issue the next tile's now
                    u_raw, dt_raw, z_raw = nu, ndt, nz
                    nu, ndt, nz = _load_io(u_ptr, dt_ptr, z_ptr, row, emask, t0 + SUB, L, load_z, SUB)
                else:
                    u_raw, dt_raw, z_raw = _load_io(u_ptr, dt_ptr, z_ptr, row, emask, t0, L, load_z, SUB)
                h, dt_sum = _sub_tile(h, dt_sum, A2, bias, Dv, u_raw, dt_raw, z_raw, out_ptr, BC_ptr, row, emask,
                                      bc_row, t0, L, HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, SUMMARY, N, ASM, SUB)
        else:
            for t in range(c * T, tl.minimum(c * T + T, L)):
                u = tl.load(u_ptr + row + t, mask=emask, other=0.0).to(tl.float32)
                _, dt = _load_dt(dt_ptr, row + t, emask, bias, HAS_BIAS, SOFTPLUS, ASM)
                Bv, Cv = _load_bc(BC_ptr, bc_row, t, N)  # one 8-byte load per state for B_t and C_t
                h = _exp2(dt[None, :] * A2, ASM) * h + (dt * u)[None, :] * Bv[:, None]
                if SUMMARY:
                    dt_sum += dt
                else:
                    z_raw = tl.load(z_ptr + row + t, mask=emask, other=0.0) if HAS_Z else u
                    y = _gate(tl.sum(h * Cv[:, None], axis=0), u, Dv, z_raw, HAS_D, HAS_Z, ASM)
                    tl.store(out_ptr + row + t, y.to(out_ptr.dtype.element_ty), mask=emask)
    if SUMMARY:
        tl.store(seg_a_ptr + seg_off, tl.exp2(A2 * dt_sum[None, :]), mask=emask[None, :])
        tl.store(seg_h_ptr + seg_off, h, mask=emask[None, :])
    else:
        is_last = (tl.zeros((N, BLOCK_E), dtype=tl.int32) + seg) == n_segs - 1
        last_off = (pid_b * E + e[None, :].to(tl.int64)) * N + sn
        tl.store(last_ptr + last_off, h, mask=emask[None, :] & is_last)
