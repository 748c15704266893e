"""Backward kernel of the Mamba-1 selective scan with time across the lanes (``bwd_variant="lanes"``).

The ``"seq"`` backward keeps a channel's states in one thread and walks time, so it needs segments, a
summary pass for the adjoint carries, a forward recompute of each chunk and a stash of recomputed states:
~47 warp instructions and 4 ``exp2`` per state and step (kernels/scan/NOTES.md). This kernel takes the
layout of the ``"lanes"`` forward (:mod:`.triton_lanes`) instead. A program owns ``CPT`` channels (1 or 2)
of one sequence and walks them in tiles of ``STEPS * LANES`` steps from the right; thread ``i`` holds steps
``STEPS i ... STEPS i + STEPS - 1`` of the tile (16, or 8 so that two channels fit in the registers). Per
state (a run-time loop):

- ``a_t = 2^(Δ_t A log2 e)`` once, ``b_t = Δ_t u_t B_t``;
- the states h: each thread composes its maps ``h -> a h + b``; an associative scan over the threads, fed
  with the state entering the tile (the forward's chunk-start state: tiles start on chunk boundaries), gives
  the state entering each thread, and a walk forms its states;
- the adjoint: with ``g_t = dL/dh_t = C_t dy_t + x_{t+1}`` and ``x_t = a_t g_t`` (the gradient reaching
  h_{t-1} through step t), each thread's map ``x_in -> x_first`` has the same decay ``2^(A log2 e ΣΔ)`` as
  its forward composite; a reverse scan over the threads, fed with the carry from the tile on the right
  (the returned last state's gradient for the last tile), gives the x entering each thread, and a backward
  walk forms its g;
- then, elementwise over the thread's steps: ``w = a_t h_{t-1} = h_t - b_t``, the sums over states
  ``Σ A g w`` and ``Σ g B`` (for dΔ and du) and ``Σ C h`` (y, for dz), dA's partial ``Σ Δ g w``, and dB_t,
  dC_t = ``g Δ u``, ``h dy``.

dB and dC sum over channels, which no program holds: summed over the program's channels, they are added into
fp32 (batch, G, N, L) buffers with reductions (``tl.atomic_add``, ``REDG.E.ADD.F32x4`` on sm_90), so their
summation order, and their last bits, vary from run to run. Whether the GPU's L2 sustains that rate is what
kernels/bench_scan_atomics.py measures. dA's partials are per thread (no reduction over the threads per
state), dD's and the Δ-bias gradient's per (sequence, channel); only their program touches them. The adjoint
carry between tiles goes through ``carry`` (batch, E, N) fp32: the last state's gradient on entry, the
initial state's on exit.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_lanes import _column, _step, _thread_scan
from .triton_scan import _dt_of, _exp2, _sigmoid

#: ln 2: A = (A log2 e) ln 2, for dΔ's A-term.
_LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _add_rows(row_ptr, t0, values, L, LANES: tl.constexpr, STEPS: tl.constexpr):
    """``tl.atomic_add`` of a (LANES, 1, STEPS / VEC, VEC) tile's fp32 values into steps ``t0 + STEPS i ...`` of
    a row, viewed as 4-element vectors per thread: the reduction's widest form (``REDG.E.ADD.F32x4``) in the
    layout the values already have (the bf16 tiles' 8-element vectors were split over two threads, through
    shuffles; offsets reshaped from them lost their contiguity, and the adds became scalar)."""
    t = t0 + tl.arange(0, LANES)[:, None, None, None] * STEPS + (tl.arange(0, STEPS // 4)[None, None, :, None] * 4
                                                                + tl.arange(0, 4)[None, None, None, :])
    tl.atomic_add(row_ptr + t, tl.reshape(values, (LANES, 1, STEPS // 4, 4)), mask=t < L, sem="relaxed")


@triton.jit
def _channel(X, c: tl.constexpr, CPT: tl.constexpr):
    """Column ``c`` of a (rows, CPT) tensor as a (rows,) vector (register picks)."""
    return _column(X, tl.arange(0, CPT)[None, :] == c)


@triton.jit
def _thread_states(a, b, p, h_in, item, CPT: tl.constexpr, LANES: tl.constexpr, STEPS: tl.constexpr):
    """The state after each of a thread's steps (a (LANES, CPT, STEPS / VEC, VEC) tensor like ``a``), from the
    steps' maps ``h -> a h + b``, the threads' composite decays ``p`` (LANES, CPT) and ``h_in`` (1, CPT), the
    states entering the tile."""
    q = tl.zeros_like(p)
    for j in tl.static_range(STEPS):  # each thread's composite map h -> p h + q
        pick = item == j
        q = _step(a, pick) * q + _step(b, pick)
    h = tl.zeros_like(p)  # the state entering each thread's steps
    for c in tl.static_range(CPT):  # the thread scan, one channel at a time
        h_c = _thread_scan(_channel(p, c, CPT), _channel(q, c, CPT), _channel(h_in, c, CPT), LANES)[0]
        h = tl.where(tl.arange(0, CPT)[None, :] == c, h_c[:, None], h)
    H = tl.zeros_like(a)
    for j in tl.static_range(STEPS):
        pick = item == j
        h = _step(a, pick) * h + _step(b, pick)
        H = tl.where(pick, h[:, :, None, None], H)
    return H


@triton.jit
def _thread_adjoints(a, cdy, p, carry_ptrs, live, item, CPT: tl.constexpr, LANES: tl.constexpr,
                     STEPS: tl.constexpr):
    """g = dL/dh after each of a thread's steps, from ``cdy`` = C dy, the decays ``a`` and the threads'
    composite decays ``p`` (LANES, CPT); the adjoints entering the tile from the right are read from
    ``carry_ptrs`` (1, CPT), and the ones leaving it to the left are stored there by the first thread (where
    ``live``: a ragged last program's spare channel stores nothing)."""
    x = tl.zeros_like(p)
    for k in tl.static_range(STEPS):  # each thread's map x_in -> x_first = p x_in + x, from its last step
        pick = item == STEPS - 1 - k
        x = _step(a, pick) * (_step(cdy, pick) + x)
    lane = tl.arange(0, LANES)
    x_right = tl.load(carry_ptrs)
    x_in = tl.zeros_like(p)  # the adjoint entering each thread's steps from the right
    x_out = tl.zeros_like(p)  # and the one leaving them to the left
    for c in tl.static_range(CPT):
        in_c, x_first = _thread_scan(_channel(p, c, CPT), _channel(x, c, CPT), _channel(x_right, c, CPT), LANES,
                                     REVERSE=True)
        x_in = tl.where(tl.arange(0, CPT)[None, :] == c, in_c[:, None], x_in)
        x_out = tl.where(tl.arange(0, CPT)[None, :] == c, x_first[:, None], x_out)
    tl.store(carry_ptrs + lane[:, None] * 0, x_out, mask=(lane[:, None] == 0) & live)
    x = x_in
    G = tl.zeros_like(a)
    for k in tl.static_range(STEPS):
        pick = item == STEPS - 1 - k
        g = _step(cdy, pick) + x
        x = _step(a, pick) * g
        G = tl.where(pick, g[:, :, None, None], G)
    return G


@triton.jit
def _per_channel(X):
    """The per-channel sums (CPT,) of a (LANES, CPT, STEPS / VEC, VEC) tile."""
    return tl.sum(tl.sum(tl.sum(X, axis=3), axis=2), axis=0)


@triton.jit
def _lanes_bwd_kernel(
    u_ptr, dt_ptr, A2_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, states_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, carry_ptr,
    E, L, G, n_chunks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    ASM: tl.constexpr, N: tl.constexpr, CHUNK: tl.constexpr, LANES: tl.constexpr, CPT: tl.constexpr,
    STEPS: tl.constexpr,
):
    """``CPT`` channels (of one B/C group) of sequence ``program_id(0)``, each thread holding the same
    ``STEPS`` steps of each (B and C loaded once for them, and dB/dC summed over them before the reductions):
    u, Δ, z, dout, du, dΔ, dz (batch, E, L); A2 = A log2(e) (E, N) fp32; B, C (batch, G, N, L) and dB, dC
    (batch, G, N, L) fp32, added into; ``states`` (batch, E, n_chunks, N) fp32, the forward's chunk-start
    states; dA (batch, E, N, LANES) fp32 partials, one per thread (added into, so that no state's sum needs a
    reduction over the threads), dD and dΔ-bias (batch, E) fp32 partials, written; ``carry`` as in the module
    docstring. A ragged last program's spare channel reads channel E - 1's states and carries, masked to
    zero inputs, and writes nothing."""
    pid_b = tl.program_id(0).to(tl.int64)
    e0 = tl.program_id(1) * CPT
    chans = e0 + tl.arange(0, CPT)[None, :]  # (1, CPT)
    live = chans < E
    chan = tl.minimum(chans, E - 1)  # what a spare channel reads
    chan_rows = (pid_b * E + chan) * N  # (1, CPT): each channel's state row
    ch = chans[:, :, None, None]
    VEC: tl.constexpr = 128 // u_ptr.dtype.element_ty.primitive_bitwidth  # elements per 16-byte vector
    item = tl.arange(0, STEPS // VEC)[None, None, :, None] * VEC + tl.arange(0, VEC)[None, None, None, :]
    pos = tl.arange(0, LANES)[:, None, None, None] * STEPS + item  # (LANES, 1, STEPS / VEC, VEC): step in the tile
    rows = (pid_b * E + ch).to(tl.int64) * L
    bc_row = (pid_b * G + e0 // (E // G)) * N * L
    lane_slots = tl.arange(0, LANES)[:, None]  # each thread's dA partial
    bias = tl.load(bias_ptr + ch, mask=ch < E, other=0.0).to(tl.float32)  # disabled: dummy, values unused
    Dv = tl.load(D_ptr + ch, mask=ch < E, other=0.0).to(tl.float32)
    dD_sum = tl.zeros((LANES, CPT, STEPS // VEC, VEC), tl.float32)
    dbias_sum = tl.zeros((LANES, CPT, STEPS // VEC, VEC), tl.float32)
    n_tiles = tl.cdiv(L, STEPS * LANES)
    for i in range(n_tiles):
        t0 = (n_tiles - 1 - i) * (STEPS * LANES)
        tl.debug_barrier()  # the adjoint carries (stored by the first thread) are visible
        t = t0 + pos
        tm = t < L
        m = tm & (ch < E)
        u = tl.load(u_ptr + rows + t, mask=m, other=0.0).to(tl.float32)
        raw, dt = _dt_of(tl.load(dt_ptr + rows + t, mask=m, other=0.0), m, bias, HAS_BIAS, SOFTPLUS, ASM)
        dout = tl.load(dout_ptr + rows + t, mask=m, other=0.0).to(tl.float32)
        if HAS_Z:
            zv = tl.load(z_ptr + rows + t, mask=m, other=0.0).to(tl.float32)
            sig = _sigmoid(zv, ASM)
            dy = dout * zv * sig  # dL/dy of the ungated y + D u
        else:
            dy = dout
        dtu = dt * u
        dt_sum = tl.sum(tl.sum(dt, axis=3), axis=2)  # (LANES, CPT): each thread's ΣΔ
        sum_agw = tl.zeros_like(u)  # Σ_n A2 g w, then dΔ's A-term
        sum_gB = tl.zeros_like(u)
        y = tl.zeros_like(u)
        for n in range(N):
            a2 = tl.load(A2_ptr + chan * N + n)
            Bn = tl.load(B_ptr + bc_row + n * L + t, mask=tm, other=0.0).to(tl.float32)
            Cn = tl.load(C_ptr + bc_row + n * L + t, mask=tm, other=0.0).to(tl.float32)
            a = _exp2(dt * a2[:, :, None, None], ASM)
            b = dtu * Bn
            h_in = tl.load(states_ptr + ((pid_b * E + chan) * n_chunks + t0 // CHUNK) * N + n)
            p = _exp2(dt_sum * a2, ASM)  # each thread's composite decay, both directions
            H = _thread_states(a, b, p, h_in, item, CPT, LANES, STEPS)
            Gr = _thread_adjoints(a, Cn * dy, p, carry_ptr + chan_rows + n, live, item, CPT, LANES, STEPS)
            gw = Gr * (H - b)
            sum_agw += a2[:, :, None, None] * gw
            sum_gB += Gr * Bn
            y += Cn * H
            dA_slots = dA_ptr + (chan_rows + n) * LANES + lane_slots  # (LANES, CPT): each thread's own
            dA_part = tl.load(dA_slots, mask=live, other=0.0) + tl.sum(tl.sum(dt * gw, axis=3), axis=2)
            tl.store(dA_slots, dA_part, mask=live)
            _add_rows(dB_ptr + bc_row + n * L, t0, tl.sum(Gr * dtu, axis=1, keep_dims=True), L, LANES, STEPS)
            _add_rows(dC_ptr + bc_row + n * L, t0, tl.sum(H * dy, axis=1, keep_dims=True), L, LANES, STEPS)
        ddt = sum_agw * _LN2 + u * sum_gB
        du = dt * sum_gB
        if HAS_D:
            du += Dv * dy
            dD_sum += dy * u
            y += Dv * u
        if SOFTPLUS:
            ddt = ddt * _sigmoid(raw, ASM)
        ddt = tl.where(m, ddt, 0.0)
        dbias_sum += ddt
        tl.store(du_ptr + rows + t, du.to(du_ptr.dtype.element_ty), mask=m)
        tl.store(ddt_ptr + rows + t, ddt.to(ddt_ptr.dtype.element_ty), mask=m)
        if HAS_Z:
            dz = dout * y * sig * (1.0 + zv * (1.0 - sig))
            tl.store(dz_ptr + rows + t, dz.to(dz_ptr.dtype.element_ty), mask=m)
    out = pid_b * E + e0 + tl.arange(0, CPT)
    if HAS_D:
        tl.store(dD_ptr + out, _per_channel(dD_sum), mask=e0 + tl.arange(0, CPT) < E)
    if HAS_BIAS:
        tl.store(dbias_ptr + out, _per_channel(dbias_sum), mask=e0 + tl.arange(0, CPT) < E)
