"""Sequential-step backward kernel of the Mamba-1 selective scan (``Tiling.bwd_variant = "seq"``).

Same inputs as :func:`.triton_scan._scan_bwd_kernel` (the forward's chunk-start states included), laid
out like the ``seq`` forward (:mod:`.triton_seq`): one channel per thread, its N states in that thread's
registers, time walked one step at a time, u/Δ/z/dout read and du/dΔ/dz written as (8, channels) tiles.

Adjoint (per channel, state n; ``a_t = exp(Δ_t A)``, ``dy_t = dout_t silu(z_t)``)::

    g_t  = dL/dh_t          = C_t dy_t + q_{t+1}        q_t = a_t g_t  (= dL/dh_{t-1} through step t)
    w_t  = a_t h_{t-1}      = h_t - Δ_t u_t B_t
    dΔ_t = Σ_n g_t A w_t + u_t Σ_n g_t B_t,   du_t = Δ_t Σ_n g_t B_t + D dy_t
    dA   = Σ_t g_t Δ_t w_t,   dB_t = Σ_e g_t Δ_t u_t,   dC_t = Σ_e h_t dy_t

``q`` flows from the end of the sequence backwards. Pairing ``g_t`` with ``h_t`` needs the forward
states in reverse order: per 8-step sub-tile the states are recomputed from the chunk's saved start
state (the sub-tiles before it without keeping anything, then the sub-tile itself keeping its 8 states:
an (8, N) fp32 stash per thread), and the adjoint walks the sub-tile backwards. A chunk of ``T`` steps
costs T/8 (T/8 + 1)/2 sub-tiles of forward recompute (1.5 T for T = 16, 2.5 T for T = 32).

Segments as in the forward: pass 1 (``SUMMARY``) runs only the ``q`` recurrence of each segment from
zero and stores its ``q`` at the segment start and its total decay ``exp2(A log2 e ΣΔ)``;
:func:`.ops.segment_carries` (reverse) gives every segment the true ``q`` flowing in from its right;
pass 2 computes all gradients. Shared gradients are written as deterministic partials: dB and dC per
(batch, channel block, step, state), dA/dD/dΔ-bias per (batch, segment, channel); the launcher sums them.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_scan import _SEGMENT_ARGS, _load_dt
from .triton_seq import SUB, _load_bc, _row

LN2: tl.constexpr = tl.constexpr(0.6931471805599453)


@triton.jit
def _advance(h, A2, bias, u_ptr, dt_ptr, BC_ptr, row, emask, bc_row, t0, L,
             HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, STASH: tl.constexpr, N: tl.constexpr):
    """The forward recurrence over the ``SUB`` steps from ``t0`` (tiled u/Δ loads, as the forward's
    sub-tile). Returns the state after them and, with ``STASH``, every step's state as a (SUB, N,
    BLOCK_E) tile with time in each thread's registers (otherwise the final state again)."""
    rows = tl.arange(0, SUB)
    t = t0 + rows
    m = (t < L)[:, None] & emask[None, :]
    offs = row[None, :] + t[:, None]
    u = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
    _, dt = _load_dt(dt_ptr, offs, m, bias[None, :], HAS_BIAS, SOFTPLUS)
    dtu = dt * u
    hs = tl.zeros((SUB, 1, 1), dtype=tl.float32) + h[None, :, :] if STASH else h  # rows overwritten below
    for j in tl.static_range(SUB):
        pick = rows[:, None] == j
        Bv, _ = _load_bc(BC_ptr, bc_row, t0 + j, L, N)
        h = tl.exp2(_row(dt, pick)[None, :] * A2) * h + _row(dtu, pick)[None, :] * Bv[:, None]
        if STASH:
            hs = tl.where(pick[:, :, None], h[None, :, :], hs)
    return h, hs


@triton.jit
def _adjoint(q, hs, dA, dD, dbias, dt_sum, A2, bias, Dv, u_ptr, dt_ptr, z_ptr, dout_ptr, BC_ptr,
             du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, row, emask, bc_row, part_row, t0, L,
             HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
             SUMMARY: tl.constexpr, N: tl.constexpr):
    """The adjoint over the ``SUB`` steps from ``t0``, last step first, from ``q`` (dL/dh at the step
    after them). ``SUMMARY``: only ``q`` and the running ΣΔ. Otherwise ``hs`` holds the sub-tile's
    states (:func:`_advance`); writes du, dΔ, dz and the program's dB/dC partials of these steps and
    adds to the dA, dD, dΔ-bias accumulators. Returns q at ``t0``, dA, dD, dΔ-bias and ΣΔ."""
    rows = tl.arange(0, SUB)
    n = tl.arange(0, N)
    t = t0 + rows
    m = (t < L)[:, None] & emask[None, :]
    offs = row[None, :] + t[:, None]
    raw, dt = _load_dt(dt_ptr, offs, m, bias[None, :], HAS_BIAS, SOFTPLUS)
    dout = tl.load(dout_ptr + offs, mask=m, other=0.0).to(tl.float32)
    if HAS_Z:
        zv = tl.load(z_ptr + offs, mask=m, other=0.0).to(tl.float32)
        sig = tl.sigmoid(zv)
        dy = dout * zv * sig
    else:
        dy = dout
    if SUMMARY:
        for jj in tl.static_range(SUB):
            pick = rows[:, None] == SUB - 1 - jj
            _, Cv = _load_bc(BC_ptr, bc_row, t0 + SUB - 1 - jj, L, N)
            q = tl.exp2(_row(dt, pick)[None, :] * A2) * (Cv[:, None] * _row(dy, pick)[None, :] + q)
        dt_sum += tl.sum(dt, axis=0)
    else:
        u = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
        dtu = dt * u
        gB_t = tl.zeros_like(u)  # Σ_n g_t B_t per step, the common factor of du and dΔ
        gwA_t = tl.zeros_like(u)  # Σ_n g_t w_t A log2 e per step
        y = tl.zeros_like(u)
        for jj in tl.static_range(SUB):
            j = SUB - 1 - jj
            pick = rows[:, None] == j
            dt_j = _row(dt, pick)[None, :]
            dtu_j = _row(dtu, pick)[None, :]
            dy_j = _row(dy, pick)[None, :]
            h = _row(hs, pick[:, :, None])
            Bv, Cv = _load_bc(BC_ptr, bc_row, t0 + j, L, N)
            g = Cv[:, None] * dy_j + q
            gw = g * (h - dtu_j * Bv[:, None])
            dA += gw * dt_j
            gB_t = tl.where(pick, tl.sum(g * Bv[:, None], axis=0)[None, :], gB_t)
            gwA_t = tl.where(pick, tl.sum(gw * A2, axis=0)[None, :], gwA_t)
            if HAS_Z:
                y = tl.where(pick, tl.sum(h * Cv[:, None], axis=0)[None, :], y)
            # shared by the program's channels: reduced here, summed over channel blocks by the launcher
            part = part_row + (t0 + j) * N + n
            in_seq = (n * 0 + t0 + j) < L
            tl.store(dB_ptr + part, tl.sum(g * dtu_j, axis=1), mask=in_seq)
            tl.store(dC_ptr + part, tl.sum(h * dy_j, axis=1), mask=in_seq)
            q = tl.exp2(dt_j * A2) * g
        du = gB_t * dt
        ddt = gB_t * u + gwA_t * LN2
        if HAS_D:
            du += Dv[None, :] * dy
            dD += tl.sum(dy * u, axis=0)
        if HAS_Z:
            if HAS_D:
                y += Dv[None, :] * u
            dz = dout * y * sig * (1.0 + zv * (1.0 - sig))
            tl.store(dz_ptr + offs, dz.to(dz_ptr.dtype.element_ty), mask=m)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        ddt = tl.where(m, ddt, 0.0)
        if HAS_BIAS:
            dbias += tl.sum(ddt, axis=0)
        tl.store(du_ptr + offs, du.to(du_ptr.dtype.element_ty), mask=m)
        tl.store(ddt_ptr + offs, ddt.to(ddt_ptr.dtype.element_ty), mask=m)
    return q, dA, dD, dbias, dt_sum


@triton.jit(do_not_specialize=["state_stride", *_SEGMENT_ARGS])
def _seq_bwd_kernel(
    u_ptr, dt_ptr, A2_ptr, BC_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, states_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    seg_a_ptr, seg_q_ptr, carry_ptr,
    E, L, G, n_chunks, chunks_per_seg, n_segs, state_stride,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SUMMARY: tl.constexpr, N: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr,
):
    """Backward over one (sequence, channel block, segment), chunks and their 8-step sub-tiles last to
    first. ``A2``, ``BC`` and ``state_stride`` as in :func:`.triton_seq._seq_fwd_kernel`; ``states``:
    the forward's chunk-start states (batch, E, n_chunks, N) for chunks of ``T`` steps.
    Outputs: du, dΔ, dz like u; dB, dC partials (batch, channel blocks, L, N); dA (batch, n_segs, E, N),
    dD and dΔ-bias (batch, n_segs, E) partials. ``SUMMARY`` (pass 1): store the segment's ``q`` at its
    first step from a zero ``q`` at its end, and its total decay, into ``seg_q``/``seg_a``. Otherwise
    start from ``carry`` (pass 2)."""
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
    bc_row = (pid_b * G + (pid_e * BLOCK_E) // (E // G)) * L  # all channels of a program share a group
    row = pid_b * E * L + e.to(tl.int64) * L
    part_row = (pid_b * tl.num_programs(1) + pid_e) * L * N
    state_off = (pid_b * E + e[None, :].to(tl.int64)) * n_chunks * N + sn
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
    for ci in range(0, c_stop - c_start):
        c = c_stop - 1 - ci
        n_sub = tl.cdiv(tl.minimum(T, L - c * T), SUB)
        for ki in range(0, n_sub):
            k = n_sub - 1 - ki
            hs = q  # unused by the summary pass
            if not SUMMARY:
                h = tl.load(states_ptr + state_off + c * N, mask=emask[None, :], other=0.0)
                for s in range(0, k):
                    h, _ = _advance(h, A2, bias, u_ptr, dt_ptr, BC_ptr, row, emask, bc_row, c * T + s * SUB, L,
                                    HAS_BIAS, SOFTPLUS, False, N)
                _, hs = _advance(h, A2, bias, u_ptr, dt_ptr, BC_ptr, row, emask, bc_row, c * T + k * SUB, L,
                                 HAS_BIAS, SOFTPLUS, True, N)
            q, dA, dD, dbias, dt_sum = _adjoint(
                q, hs, dA, dD, dbias, dt_sum, A2, bias, Dv, u_ptr, dt_ptr, z_ptr, dout_ptr, BC_ptr,
                du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, row, emask, bc_row, part_row, c * T + k * SUB, L,
                HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, SUMMARY, N)
    if SUMMARY:
        tl.store(seg_a_ptr + seg_off, tl.exp2(A2 * dt_sum[None, :]), mask=emask[None, :])
        tl.store(seg_q_ptr + seg_off, q, mask=emask[None, :])
    else:
        par = (pid_b * n_segs + seg) * E
        tl.store(dA_ptr + (par + e[None, :]) * N + sn, dA, mask=emask[None, :])
        if HAS_D:
            tl.store(dD_ptr + par + e, dD, mask=emask)
        if HAS_BIAS:
            tl.store(dbias_ptr + par + e, dbias, mask=emask)
