"""Backward kernel of the Mamba-1 selective scan with time across the lanes (``bwd_variant="lanes"``).

The ``"seq"`` backward keeps a channel's states in one thread and walks time, so it needs segments, a
summary pass for the adjoint carries, a forward recompute of each chunk and a stash of recomputed states:
~47 warp instructions and 4 ``exp2`` per state and step (kernels/scan/NOTES.md). This kernel takes the
layout of the ``"lanes"`` forward (:mod:`.triton_lanes`) instead. A program owns one channel of one
sequence and walks it in tiles of ``16 * LANES`` steps from the right; thread ``i`` holds steps
``16 i ... 16 i + 15`` of the tile. Per state (a run-time loop):

- ``a_t = 2^(Δ_t A log2 e)`` once, ``b_t = Δ_t u_t B_t``;
- the states h: each thread composes its 16 maps ``h -> a h + b``; an associative scan over the threads, fed
  with the state entering the tile (the forward's chunk-start state: tiles start on chunk boundaries), gives
  the state entering each thread, and a walk forms its 16 states;
- the adjoint: with ``g_t = dL/dh_t = C_t dy_t + x_{t+1}`` and ``x_t = a_t g_t`` (the gradient reaching
  h_{t-1} through step t), each thread's map ``x_in -> x_first`` has the same decay ``2^(A log2 e ΣΔ)`` as
  its forward composite; a reverse scan over the threads, fed with the carry from the tile on the right
  (the returned last state's gradient for the last tile), gives the x entering each thread, and a backward
  walk forms its 16 g;
- then, elementwise over the thread's steps: ``w = a_t h_{t-1} = h_t - b_t``, the sums over states
  ``Σ A g w`` and ``Σ g B`` (for dΔ and du) and ``Σ C h`` (y, for dz), dA's partial ``Σ Δ g w``, and dB_t,
  dC_t = ``g Δ u``, ``h dy``.

dB and dC sum over channels, which no program holds: they are added into fp32 (batch, G, N, L) buffers with
reductions (``tl.atomic_add``, ``REDG.E.ADD.F32x4`` on sm_90), so their summation order, and their last bits,
vary from run to run. Whether the GPU's L2 sustains that rate is what kernels/bench_scan_atomics.py measures.
dA's partials are per thread (no reduction over the threads per state), dD's and the Δ-bias gradient's per
(sequence, channel); only their program touches them. The
adjoint carry between tiles goes through ``carry`` (batch, E, N) fp32: the last state's gradient on entry,
the initial state's on exit.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_lanes import _column, _step
from .triton_scan import _affine_combine, _dt_of, _exp2, _sigmoid

#: ln 2: A = (A log2 e) ln 2, for dΔ's A-term.
_LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _total(X):
    """The sum of a (LANES, 1, 16 / VEC, VEC) tile."""
    return tl.sum(tl.sum(tl.sum(tl.sum(X, axis=3), axis=2), axis=1), axis=0)


@triton.jit
def _add_rows(row_ptr, t0, values, L, LANES: tl.constexpr):
    """``tl.atomic_add`` of a (LANES, 1, 16 / VEC, VEC) tile's fp32 values into steps ``t0 + 16 i ...`` of a
    row, viewed as four 4-element vectors per thread: the reduction's widest form (``REDG.E.ADD.F32x4``) in
    the layout the values already have (the bf16 tiles' 8-element vectors were split over two threads,
    through shuffles; offsets reshaped from them lost their contiguity, and the adds became scalar)."""
    t = t0 + tl.arange(0, LANES)[:, None, None, None] * 16 + (tl.arange(0, 4)[None, None, :, None] * 4
                                                             + tl.arange(0, 4)[None, None, None, :])
    tl.atomic_add(row_ptr + t, tl.reshape(values, (LANES, 1, 4, 4)), mask=t < L, sem="relaxed")


@triton.jit
def _thread_states(a, b, p, h_in, item, col, LANES: tl.constexpr):
    """The state after each of a thread's 16 steps (a (LANES, 1, 16 / VEC, VEC) tensor like ``a``), from the
    steps' maps ``h -> a h + b``, the threads' composite decays ``p`` (LANES,) and ``h_in``, the state entering
    the tile."""
    q = tl.zeros_like(tl.sum(tl.sum(a, axis=3), axis=2))
    for j in tl.static_range(16):  # each thread's composite map h -> p h + q
        pick = item == j
        q = _step(a, pick) * q + _step(b, pick)
    lane = tl.arange(0, LANES)
    qv = _column(q, col)
    qv = tl.where(lane == 0, p * h_in + qv, qv)
    h_end = tl.associative_scan((p, qv), 0, _affine_combine)[1]
    h = tl.where(lane == 0, h_in, tl.gather(h_end, tl.maximum(lane - 1, 0), 0))[:, None]
    H = tl.zeros_like(a)
    for j in tl.static_range(16):
        pick = item == j
        h = _step(a, pick) * h + _step(b, pick)
        H = tl.where(pick, h[:, :, None, None], H)
    return H


@triton.jit
def _thread_adjoints(a, cdy, p, carry_ptr, off, item, col, LANES: tl.constexpr):
    """g = dL/dh after each of a thread's 16 steps, from ``cdy`` = C dy, the decays ``a`` and the threads'
    composite decays ``p`` (LANES,); the adjoint entering the tile from the right is read from
    ``carry_ptr + off``, and the one leaving it to the left is stored there (by the first thread)."""
    x = tl.zeros_like(tl.sum(tl.sum(a, axis=3), axis=2))
    for k in tl.static_range(16):  # each thread's map x_in -> x_first = p x_in + x, from its last step
        pick = item == 15 - k
        x = _step(a, pick) * (_step(cdy, pick) + x)
    lane = tl.arange(0, LANES)
    x_right = tl.load(carry_ptr + off)
    xv = _column(x, col)
    xv = tl.where(lane == LANES - 1, p * x_right + xv, xv)
    x_first = tl.associative_scan((p, xv), 0, _affine_combine, reverse=True)[1]
    x = tl.where(lane == LANES - 1, x_right, tl.gather(x_first, tl.minimum(lane + 1, LANES - 1), 0))[:, None]
    tl.store(carry_ptr + off + lane * 0, x_first, mask=lane == 0)
    G = tl.zeros_like(a)
    for k in tl.static_range(16):
        pick = item == 15 - k
        g = _step(cdy, pick) + x
        x = _step(a, pick) * g
        G = tl.where(pick, g[:, :, None, None], G)
    return G


@triton.jit
def _lanes_bwd_kernel(
    u_ptr, dt_ptr, A2_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, states_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, carry_ptr,
    E, L, G, n_chunks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    ASM: tl.constexpr, N: tl.constexpr, CHUNK: tl.constexpr, LANES: tl.constexpr,
):
    """Channel ``program_id(1)`` of sequence ``program_id(0)``: u, Δ, z, dout, du, dΔ, dz (batch, E, L); A2 =
    A log2(e) (E, N) fp32; B, C (batch, G, N, L) and dB, dC (batch, G, N, L) fp32, added into; ``states``
    (batch, E, n_chunks, N) fp32, the forward's chunk-start states; dA (batch, E, N, LANES) fp32 partials, one
    per thread (added into, so that no state's sum needs a reduction over the threads), dD and dΔ-bias
    (batch, E) fp32 partials, written; ``carry`` as in the module docstring."""
    pid_b = tl.program_id(0).to(tl.int64)
    e = tl.program_id(1)
    VEC: tl.constexpr = 128 // u_ptr.dtype.element_ty.primitive_bitwidth  # elements per 16-byte vector
    item = tl.arange(0, 16 // VEC)[None, None, :, None] * VEC + tl.arange(0, VEC)[None, None, None, :]
    pos = tl.arange(0, LANES)[:, None, None, None] * 16 + item  # (LANES, 1, 16 / VEC, VEC): step in the tile
    col = tl.arange(0, 1)[None, :] == 0
    row = (pid_b * E + e) * L
    bc_row = (pid_b * G + e // (E // G)) * N * L
    state_row = (pid_b * E + e) * N
    bias = tl.load(bias_ptr + e) if HAS_BIAS else 0.0
    Dv = tl.load(D_ptr + e) if HAS_D else 0.0
    dD_sum = tl.zeros((LANES, 1, 16 // VEC, VEC), tl.float32)
    dbias_sum = tl.zeros((LANES, 1, 16 // VEC, VEC), tl.float32)
    n_tiles = tl.cdiv(L, 16 * LANES)
    for i in range(n_tiles):
        t0 = (n_tiles - 1 - i) * (16 * LANES)
        tl.debug_barrier()  # the adjoint carries (stored by the first thread) are visible
        t = t0 + pos
        m = t < L
        u = tl.load(u_ptr + row + t, mask=m, other=0.0).to(tl.float32)
        raw, dt = _dt_of(tl.load(dt_ptr + row + t, mask=m, other=0.0), m, bias, HAS_BIAS, SOFTPLUS, ASM)
        dout = tl.load(dout_ptr + row + t, mask=m, other=0.0).to(tl.float32)
        if HAS_Z:
            zv = tl.load(z_ptr + row + t, mask=m, other=0.0).to(tl.float32)
            sig = _sigmoid(zv, ASM)
            dy = dout * zv * sig  # dL/dy of the ungated y + D u
        else:
            dy = dout
        dtu = dt * u
        dt_sum = tl.sum(tl.sum(dt, axis=3), axis=2)  # (LANES, 1): each thread's ΣΔ
        sum_agw = tl.zeros_like(u)  # Σ_n A2 g w, then dΔ's A-term
        sum_gB = tl.zeros_like(u)
        y = tl.zeros_like(u)
        for n in range(N):
            a2 = tl.load(A2_ptr + e * N + n)
            Bn = tl.load(B_ptr + bc_row + n * L + t, mask=m, other=0.0).to(tl.float32)
            Cn = tl.load(C_ptr + bc_row + n * L + t, mask=m, other=0.0).to(tl.float32)
            a = _exp2(dt * a2, ASM)
            b = dtu * Bn
            h_in = tl.load(states_ptr + ((pid_b * E + e) * n_chunks + t0 // CHUNK) * N + n)
            p = _column(_exp2(dt_sum * a2, ASM), col)  # each thread's composite decay, both directions
            H = _thread_states(a, b, p, h_in, item, col, LANES)
            Gr = _thread_adjoints(a, Cn * dy, p, carry_ptr, state_row + n, item, col, LANES)
            gw = Gr * (H - b)
            sum_agw += a2 * gw
            sum_gB += Gr * Bn
            y += Cn * H
            dA_lanes = dA_ptr + (state_row + n) * LANES + tl.arange(0, LANES)  # each thread's own partial
            tl.store(dA_lanes, tl.load(dA_lanes) + _column(tl.sum(tl.sum(dt * gw, axis=3), axis=2), col))
            _add_rows(dB_ptr + bc_row + n * L, t0, Gr * dtu, L, LANES)
            _add_rows(dC_ptr + bc_row + n * L, t0, H * dy, L, LANES)
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
        tl.store(du_ptr + row + t, du.to(du_ptr.dtype.element_ty), mask=m)
        tl.store(ddt_ptr + row + t, ddt.to(ddt_ptr.dtype.element_ty), mask=m)
        if HAS_Z:
            dz = dout * y * sig * (1.0 + zv * (1.0 - sig))
            tl.store(dz_ptr + row + t, dz.to(dz_ptr.dtype.element_ty), mask=m)
    if HAS_D:
        tl.store(dD_ptr + pid_b * E + e, _total(dD_sum))
    if HAS_BIAS:
        tl.store(dbias_ptr + pid_b * E + e, _total(dbias_sum))
