"""Sequential-step backward kernel of the Mamba-1 selective scan (``Tiling.bwd_variant = "seq"``).

Same inputs as :func:`.triton_scan._scan_bwd_kernel` (the forward's chunk-start states included), laid
out like the ``seq`` forward (:mod:`.triton_seq`): one channel per thread, its N states in that thread's
registers, time walked one step at a time, u/Δ/z/dout read and du/dΔ/dz written as (steps, channels)
tiles (S steps in the main pass; in the summary pass 16, or 8 when the chunk is not a multiple of 16).

Adjoint (per channel, state n; ``a_t = exp(Δ_t A)``, ``dy_t = dout_t silu(z_t)``)::

    g_t  = dL/dh_t          = C_t dy_t + q_{t+1}        q_t = a_t g_t  (= dL/dh_{t-1} through step t)
    w_t  = a_t h_{t-1}      = h_t - Δ_t u_t B_t
    dΔ_t = Σ_n g_t A w_t + u_t Σ_n g_t B_t,   du_t = Δ_t Σ_n g_t B_t + D dy_t
    dA   = Σ_t g_t Δ_t w_t,   dB_t = Σ_e g_t Δ_t u_t,   dC_t = Σ_e h_t dy_t

``q`` flows from the end of the sequence backwards. Pairing ``g_t`` with ``h_t`` needs the forward
states in reverse order. Per chunk, the states are recomputed from the forward's saved chunk-start
state once, keeping the start state of every ``S``-step sub-tile (S = ``Tiling.bwd_stash``, 4 or 8) in
a small per-program scratch buffer (L2-resident); then, last sub-tile first, each sub-tile is
recomputed from its start state keeping its S states in registers (an (S, N) fp32 stash per thread,
which also yields dC and dz), and the adjoint walks it backwards. Forward work: about 2 T per chunk.

Segments as in the forward: pass 1 (``SUMMARY``) runs only the ``q`` recurrence of each segment from
zero and stores its ``q`` at the segment start and its total decay ``exp2(A log2 e ΣΔ)``;
:func:`.ops.segment_carries` (reverse) gives every segment the true ``q`` flowing in from its right;
pass 2 computes all gradients. Shared gradients are written as deterministic partials: dB and dC per
(batch, warp of channels, step, state) (:func:`_store_warp_sums`), dA/dD/dΔ-bias per (batch, segment,
channel); the launcher sums them. Derivation and offline compile report: kernels/scan/NOTES.md.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_scan import _SEGMENT_ARGS, _exp2, _load_dt, _load_state, _sigmoid, _state_offsets, _store_state
from .triton_seq import _hint_bc, _hint_rows, _load_bc, _row

LN2: tl.constexpr = tl.constexpr(0.6931471805599453)


def _transpose_sum_ptx(values: int = 16, lanes: int = 32) -> str:
    """PTX of the warp sums of ``values`` = 16 numbers per lane (operands ``$16..$31``) by recursive
    halving: at the level with lane offset ``o`` a lane keeps the half of its vector selected by bit
    ``o`` of its lane id, sends the other half to lane ``id ^ o`` and adds what it receives; once one
    number is left, the last level is a plain butterfly. Lanes ``2i`` and ``2i + 1`` end with the warp's
    total of number ``i`` in output ``$0`` (outputs ``$1..$15`` are 0): 16 shuffles, against 16 x 5 for
    16 butterfly reductions (``tl.sum``)."""
    lines = ["{", ".reg .pred %up;", ".reg .b32 %lane, %bit;", ".reg .f32 %snd, %keep, %rcv;",
             f".reg .f32 %v<{values}>;", "mov.u32 %lane, %laneid;"]
    lines += [f"mov.f32 %v{i}, ${values + i};" for i in range(values)]
    m, off = values, lanes // 2
    while off >= 1:
        if m == 1:
            lines += [f"shfl.sync.bfly.b32 %rcv, %v0, {off}, 0x1f, 0xffffffff;", "add.f32 %v0, %v0, %rcv;"]
        else:
            m //= 2
            lines += [f"and.b32 %bit, %lane, {off};", "setp.ne.u32 %up, %bit, 0;"]
            for i in range(m):
                lines += [f"selp.f32 %snd, %v{i}, %v{i + m}, %up;", f"selp.f32 %keep, %v{i + m}, %v{i}, %up;",
                          f"shfl.sync.bfly.b32 %rcv, %snd, {off}, 0x1f, 0xffffffff;", f"add.f32 %v{i}, %keep, %rcv;"]
        off //= 2
    lines += ["mov.f32 $0, %v0;"] + [f"mov.f32 ${i}, 0f00000000;" for i in range(1, values)] + ["}"]
    return "\n".join(lines)


_TRANSPOSE_SUM: tl.constexpr = tl.constexpr(_transpose_sum_ptx())
_TRANSPOSE_SUM_CONSTRAINTS: tl.constexpr = tl.constexpr(",".join(["=f"] * 16 + ["f"] * 16))


@triton.jit
def _store_warp_sums(base_ptr, row_stride, x, ok, WARP_ASM: tl.constexpr, N: tl.constexpr,
                     BLOCK_E: tl.constexpr, WARP_E: tl.constexpr):
    """Store the sums of an (N, BLOCK_E) product (a step's dB or dC terms) over each group of
    ``WARP_E`` channels (a warp) as N numbers at ``base_ptr``, one row per group, rows ``row_stride``
    apart; nothing unless ``ok``. ``WARP_ASM`` (GPU, N = 16, one channel per lane): by
    :func:`_transpose_sum_ptx`, the even lanes storing one contiguous 64-byte row. Otherwise
    (interpreter, other shapes): ``tl.sum`` per group."""
    if WARP_ASM:
        e = tl.arange(0, BLOCK_E)
        out = tl.inline_asm_elementwise(_TRANSPOSE_SUM, _TRANSPOSE_SUM_CONSTRAINTS, [x], dtype=tl.float32,
                                        is_pure=True, pack=16)
        mine = _row(out, (tl.arange(0, N) == 0)[:, None])
        lane = e % 32
        tl.store(base_ptr + (e // 32) * row_stride + lane // 2, mine, mask=((lane % 2) == 0) & ok)
    else:
        offs = tl.arange(0, N)[:, None] + tl.arange(0, BLOCK_E // WARP_E)[None, :] * row_stride
        sums = tl.sum(tl.reshape(x, (N, BLOCK_E // WARP_E, WARP_E)), axis=2)
        tl.store(base_ptr + offs, sums, mask=(offs * 0 + ok) != 0)


@triton.jit
def _advance(h, A2, bias, Dv, u_ptr, dt_ptr, z_ptr, dout_ptr, dz_ptr, BC_ptr, dBC_ptr, row, emask, bc_row,
             part_row, t0, L, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
             SOFTPLUS: tl.constexpr, STASH: tl.constexpr, N: tl.constexpr, S: tl.constexpr,
             BLOCK_E: tl.constexpr, WARP_E: tl.constexpr, WARP_ASM: tl.constexpr, ASM: tl.constexpr):
    """The forward recurrence over the ``S`` steps from ``t0`` (u/Δ loaded as (S, BLOCK_E) tiles, as in
    the forward's sub-tile). Returns the state after them and, with ``STASH``, every step's state as an
    (S, N, BLOCK_E) tile with time in each thread's registers (otherwise the final state again).
    ``STASH`` also does the gradients that need only the forward states: dC_t = Σ_e h_t dy_t (the
    warp partials) and dz (from y_t = <h_t, C_t> + D u_t), which keeps them out of the adjoint's
    register budget."""
    rows = tl.arange(0, S)
    t = t0 + rows
    m = (t < L)[:, None] & emask[None, :]
    offs = row[None, :] + t[:, None]
    u = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
    _, dt = _load_dt(dt_ptr, offs, m, bias[None, :], HAS_BIAS, SOFTPLUS, ASM)
    dtu = dt * u
    hs = tl.zeros((S, 1, 1), dtype=tl.float32) + h[None, :, :] if STASH else h  # rows overwritten below
    if STASH:
        dout, zv, sig, dy = _gated_dout(dout_ptr, z_ptr, offs, m, HAS_Z, ASM)
        y = tl.zeros_like(u)
    for j in tl.static_range(S):
        pick = rows[:, None] == j
        Bv, Cv = _load_bc(BC_ptr, bc_row, t0 + j, N)
        h = _exp2(_row(dt, pick)[None, :] * A2, ASM) * h + _row(dtu, pick)[None, :] * Bv[:, None]
        if STASH:
            hs = tl.where(pick[:, :, None], h[None, :, :], hs)
            _store_warp_sums(dBC_ptr + part_row + (t0 + j) * 2 * N + N, L * 2 * N, h * _row(dy, pick)[None, :],
                             t0 + j < L, WARP_ASM, N, BLOCK_E, WARP_E)
            if HAS_Z:
                y = tl.where(pick, tl.sum(h * Cv[:, None], axis=0)[None, :], y)
    if STASH:
        if HAS_Z:
            if HAS_D:
                y += Dv[None, :] * u
            dz = dout * y * sig * (1.0 + zv * (1.0 - sig))
            tl.store(dz_ptr + offs, dz.to(dz_ptr.dtype.element_ty), mask=m)
    return h, hs


@triton.jit
def _gated_dout(dout_ptr, z_ptr, offs, m, HAS_Z: tl.constexpr, ASM: tl.constexpr):
    """dout, z, sigmoid(z) and dL/dy = dout silu(z) on a tile (z terms are dout itself without z)."""
    dout = tl.load(dout_ptr + offs, mask=m, other=0.0).to(tl.float32)
    if HAS_Z:
        zv = tl.load(z_ptr + offs, mask=m, other=0.0).to(tl.float32)
        sig = _sigmoid(zv, ASM)
        return dout, zv, sig, dout * zv * sig
    return dout, dout, dout, dout


@triton.jit
def _adjoint(q, hs, dA, dD, dbias, dt_sum, A2, bias, Dv, u_ptr, dt_ptr, z_ptr, dout_ptr, BC_ptr,
             du_ptr, ddt_ptr, dBC_ptr, row, emask, bc_row, part_row, t0, L,
             HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
             SUMMARY: tl.constexpr, N: tl.constexpr, S: tl.constexpr, BLOCK_E: tl.constexpr,
             WARP_E: tl.constexpr, WARP_ASM: tl.constexpr, ASM: tl.constexpr):
    """The adjoint over the ``S`` steps from ``t0``, last step first, from ``q`` (dL/dh at the step
    after them). ``SUMMARY``: only ``q`` and the running ΣΔ. Otherwise ``hs`` holds the sub-tile's
    states (:func:`_advance`); writes du, dΔ and the warps' dB partials of these steps and adds to
    the dA, dD, dΔ-bias accumulators. Returns q at ``t0``, dA, dD, dΔ-bias and ΣΔ. Register budget:
    the stash (S N) dominates, so only the Δ, u and dL/dy tiles live through the step loop and the
    raw Δ is loaded again after it (an L1 hit)."""
    rows = tl.arange(0, S)
    t = t0 + rows
    m = (t < L)[:, None] & emask[None, :]
    offs = row[None, :] + t[:, None]
    _, dt = _load_dt(dt_ptr, offs, m, bias[None, :], HAS_BIAS, SOFTPLUS, ASM)
    _, _, _, dy = _gated_dout(dout_ptr, z_ptr, offs, m, HAS_Z, ASM)
    if SUMMARY:
        for jj in tl.static_range(S):
            pick = rows[:, None] == S - 1 - jj
            _, Cv = _load_bc(BC_ptr, bc_row, t0 + S - 1 - jj, N)
            q = _exp2(_row(dt, pick)[None, :] * A2, ASM) * (Cv[:, None] * _row(dy, pick)[None, :] + q)
        dt_sum += tl.sum(dt, axis=0)
    else:
        u = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
        du = tl.zeros_like(u)
        ddt = tl.zeros_like(u)
        for jj in tl.static_range(S):
            j = S - 1 - jj
            pick = rows[:, None] == j
            dt_j = _row(dt, pick)
            u_j = _row(u, pick)
            dtu_j = (dt_j * u_j)[None, :]
            h = _row(hs, pick[:, :, None])
            Bv, Cv = _load_bc(BC_ptr, bc_row, t0 + j, N)
            g = Cv[:, None] * _row(dy, pick)[None, :] + q
            gw = g * (h - dtu_j * Bv[:, None])  # g_t a_t h_{t-1}
            dA += gw * dt_j[None, :]
            gB = tl.sum(g * Bv[:, None], axis=0)
            du = tl.where(pick, (gB * dt_j)[None, :], du)
            ddt = tl.where(pick, (gB * u_j + tl.sum(gw * A2, axis=0) * LN2)[None, :], ddt)
            # shared by the program's channels: summed per warp here, over warps by the launcher
            _store_warp_sums(dBC_ptr + part_row + (t0 + j) * 2 * N, L * 2 * N, g * dtu_j, t0 + j < L,
                             WARP_ASM, N, BLOCK_E, WARP_E)
            q = _exp2(dt_j[None, :] * A2, ASM) * g
        if HAS_D:
            du += Dv[None, :] * dy
            dD += tl.sum(dy * u, axis=0)
        if SOFTPLUS:
            raw, _ = _load_dt(dt_ptr, offs, m, bias[None, :], HAS_BIAS, SOFTPLUS, ASM)
            ddt = ddt * _sigmoid(raw, ASM)
        ddt = tl.where(m, ddt, 0.0)
        if HAS_BIAS:
            dbias += tl.sum(ddt, axis=0)
        tl.store(du_ptr + offs, du.to(du_ptr.dtype.element_ty), mask=m)
        tl.store(ddt_ptr + offs, ddt.to(ddt_ptr.dtype.element_ty), mask=m)
    return q, dA, dD, dbias, dt_sum


@triton.jit(do_not_specialize=["state_stride", *_SEGMENT_ARGS])
def _seq_bwd_kernel(
    u_ptr, dt_ptr, A2_ptr, BC_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, states_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dBC_ptr, dD_ptr, dbias_ptr, dinit_ptr,
    seg_a_ptr, seg_q_ptr, carry_ptr, sub_ptr,
    E, L, L_bc, G, n_chunks, chunks_per_seg, n_segs, state_stride,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SUMMARY: tl.constexpr, N: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr, S: tl.constexpr,
    WARP_E: tl.constexpr, WARP_ASM: tl.constexpr, ASM: tl.constexpr, HINTS: tl.constexpr = False,
    HAS_DINIT: tl.constexpr = False, INLINE_PTX: tl.constexpr = False,
):
    """Backward over one (sequence, channel block, segment), chunks and their ``S``-step sub-tiles last
    to first. ``A2``, ``state_stride`` as in :func:`.triton_seq._seq_fwd_kernel`; ``BC`` too, but
    its rows zero-padded to ``L_bc`` (a multiple of 16) steps; ``states``:
    the forward's chunk-start states (batch, E, n_chunks, N) for chunks of ``T`` steps; ``sub``: scratch
    of (T / S) N BLOCK_E fp32 per program for the sub-tiles' start states.
    Outputs: du, dΔ, dz like u; dB and dC partials (batch, warps of channels, L, 2, N); dA
    (batch, n_segs, E, N), dD and dΔ-bias (batch, n_segs, E) partials. ``SUMMARY`` (pass 1): store the
    segment's ``q`` at its first step from a zero ``q`` at its end, and its total decay, into
    ``seg_q``/``seg_a``. Otherwise start from ``carry`` (pass 2; the last segment's carry is the gradient
    of the returned last state, or zero) and, with ``HAS_DINIT``, store the first segment's final ``q``,
    dL/dh before the first step, as the initial state's gradient ``dinit`` (batch, E, N). ``HINTS`` (GPU
    only): at each chunk, prefetch the next chunk to be walked (the one before it) into L2, and B/C two
    sub-tiles ahead of the walk into L1, as in the forward. ``INLINE_PTX`` (GPU only): the chunk-start states and
    the sub-tile scratch move between memory and the registers that use them without a layout conversion through
    shared memory (:func:`.triton_scan._store_state`; offline, spills 88 -> 40 B and 12 fewer shared-memory
    round trips in the kernel)."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_e = tl.program_id(1)
    seg = tl.program_id(2)
    e = pid_e * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    n = tl.arange(0, N)
    sn = n[:, None] * state_stride
    A2 = tl.load(A2_ptr + e[None, :] * N + sn, mask=emask[None, :], other=0.0)  # (N, BLOCK_E)
    # Disabled features get a dummy pointer with at least E elements; their values are never used.
    bias = tl.load(bias_ptr + e, mask=emask, other=0.0).to(tl.float32)
    Dv = tl.load(D_ptr + e, mask=emask, other=0.0).to(tl.float32)
    bc_row = (pid_b * G + (pid_e * BLOCK_E) // (E // G)) * L_bc  # a program's channels share a group
    row = pid_b * E * L + e.to(tl.int64) * L
    part_row = (pid_b * tl.num_programs(1) + pid_e) * (BLOCK_E // WARP_E) * L * 2 * N  # its first warp row
    state_row = (pid_b * E + e[None, :].to(tl.int64)) * n_chunks * N
    seg_off = ((pid_b * E + e[None, :].to(tl.int64)) * n_segs + seg) * N + sn
    if SUMMARY:
        q = tl.zeros((N, BLOCK_E), dtype=tl.float32)
    else:
        q = tl.load(carry_ptr + seg_off, mask=emask[None, :], other=0.0)
    dA = tl.zeros((N, BLOCK_E), dtype=tl.float32)
    dD = tl.zeros((BLOCK_E,), dtype=tl.float32)
    dbias = tl.zeros((BLOCK_E,), dtype=tl.float32)
    dt_sum = tl.zeros((BLOCK_E,), dtype=tl.float32)
    c_start = seg * chunks_per_seg
    c_stop = tl.minimum(c_start + chunks_per_seg, n_chunks)
    # steps per sub-tile: the summary pass keeps no stash, and its 16-step tiles are whole 32-byte sectors of
    # bf16 rows (8-step tiles: 4.24 against 3.68 ms at L = 1M, H200, twenty-second session)
    R: tl.constexpr = (16 if T % 16 == 0 else 8) if SUMMARY else S
    # this program's scratch: the start state of each of a chunk's sub-tiles, (T / S, N, BLOCK_E)
    sub_row = ((pid_b * tl.num_programs(1) + pid_e) * n_segs + seg) * (T // S) * N * BLOCK_E
    sub_index = n[:, None] * BLOCK_E + tl.arange(0, BLOCK_E)[None, :]  # scaled by state_stride: see A2's load
    sub_mask = sub_index >= 0  # every element: the scratch covers the whole block
    for ci in range(0, c_stop - c_start):
        c = c_stop - 1 - ci
        n_sub = tl.cdiv(tl.minimum(T, L - c * T), R)
        if HINTS:
            _hint_rows(dt_ptr, row, (c - 1) * T, L, T)
            _hint_rows(dout_ptr, row, (c - 1) * T, L, T)
            if HAS_Z:
                _hint_rows(z_ptr, row, (c - 1) * T, L, T)
            if not SUMMARY:
                _hint_rows(u_ptr, row, (c - 1) * T, L, T)
            _hint_bc(BC_ptr, bc_row, (c - 1) * T, L_bc, T, "L2", N, BLOCK_E)
        if not SUMMARY:  # forward through the chunk once, keeping every sub-tile's start state
            # The scratch is written and read in the states' layout, each thread its own elements; the
            # barriers only matter if a compiler version gives its stores and loads different layouts.
            tl.debug_barrier()  # the previous chunk's reads are done
            h = _load_state(states_ptr + state_row + c * N + _state_offsets(n[:, None], state_stride, INLINE_PTX),
                            emask[None, :], INLINE_PTX)
            for s in range(0, n_sub - 1):
                if HINTS:
                    _hint_bc(BC_ptr, bc_row, c * T + (s + 2) * R, L_bc, R, "L1", N, BLOCK_E)
                _store_state(sub_ptr + sub_row + s * N * BLOCK_E + _state_offsets(sub_index, state_stride, INLINE_PTX),
                             h, sub_mask, INLINE_PTX)
                h, _ = _advance(h, A2, bias, Dv, u_ptr, dt_ptr, z_ptr, dout_ptr, dz_ptr, BC_ptr, dBC_ptr, row,
                                emask, bc_row, part_row, c * T + s * R, L, HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS,
                                False, N, R, BLOCK_E, WARP_E, WARP_ASM, ASM)
            _store_state(sub_ptr + sub_row + (n_sub - 1) * N * BLOCK_E
                         + _state_offsets(sub_index, state_stride, INLINE_PTX), h, sub_mask, INLINE_PTX)
            tl.debug_barrier()  # the writes are visible to the reads below
        for ki in range(0, n_sub):
            k = n_sub - 1 - ki
            hs = q  # unused by the summary pass
            if HINTS and SUMMARY:
                _hint_bc(BC_ptr, bc_row, c * T + (k - 2) * R, L_bc, R, "L1", N, BLOCK_E)
            if not SUMMARY:
                h = _load_state(sub_ptr + sub_row + k * N * BLOCK_E
                                + _state_offsets(sub_index, state_stride, INLINE_PTX), sub_mask, INLINE_PTX)
                _, hs = _advance(h, A2, bias, Dv, u_ptr, dt_ptr, z_ptr, dout_ptr, dz_ptr, BC_ptr, dBC_ptr, row,
                                 emask, bc_row, part_row, c * T + k * R, L, HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS,
                                 True, N, R, BLOCK_E, WARP_E, WARP_ASM, ASM)
            q, dA, dD, dbias, dt_sum = _adjoint(
                q, hs, dA, dD, dbias, dt_sum, A2, bias, Dv, u_ptr, dt_ptr, z_ptr, dout_ptr, BC_ptr,
                du_ptr, ddt_ptr, dBC_ptr, row, emask, bc_row, part_row, c * T + k * R, L,
                HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, SUMMARY, N, R, BLOCK_E, WARP_E, WARP_ASM, ASM)
    if SUMMARY:
        tl.store(seg_a_ptr + seg_off, _exp2(A2 * dt_sum[None, :], ASM), mask=emask[None, :])
        tl.store(seg_q_ptr + seg_off, q, mask=emask[None, :])
    else:
        par = (pid_b * n_segs + seg) * E
        tl.store(dA_ptr + (par + e[None, :]) * N + sn, dA, mask=emask[None, :])
        if HAS_D:
            tl.store(dD_ptr + par + e, dD, mask=emask)
        if HAS_BIAS:
            tl.store(dbias_ptr + par + e, dbias, mask=emask)
        if HAS_DINIT:
            first = (tl.zeros((N, BLOCK_E), dtype=tl.int32) + seg) == 0
            tl.store(dinit_ptr + (pid_b * E + e[None, :].to(tl.int64)) * N + sn, q, mask=emask[None, :] & first)
