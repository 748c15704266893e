"""One-pass forward kernel of the Mamba-1 selective scan with time across the lanes (the ``"lanes"`` variant).

The ``"seq"`` forward walks each channel's steps one at a time in one thread, so a single long sequence
has to be cut into segments to fill the GPU, and every segment is scanned twice (a summary pass for the
carries, then the main pass): two ``exp2`` per state and step, which alone is ~4.1 ms at L = 1M on an
H200, the whole 4x-of-HBM budget (kernels/scan/NOTES.md, "Why two passes cannot reach 4x"). This kernel
scans the sequence once, as mamba_ssm's CUDA kernel does:

- A program owns one channel of one sequence and walks it in tiles of ``16 * LANES`` steps
  (``LANES = 32 * num_warps``); thread ``i`` holds the 16 consecutive steps ``16 i ... 16 i + 15`` of the
  tile in registers, loaded as two 8-element vectors ((2, LANES, 8) tiles, see :func:`_step`).
- The states are walked one at a time (a run-time loop: the loop body stays small in the instruction
  cache). For state n, each thread composes its 16 steps' affine maps ``h -> a h + b`` (``a = 2^(Δ A
  log2 e)``, ``b = Δ u B``) into one, whose decay ``2^(A log2 e ΣΔ)`` is a single ``exp2``; an associative
  scan over the threads turns these into the state at the end of each thread's steps; the state
  entering each thread (its predecessor's, :func:`tl.gather`) seeds a second walk over the thread's
  steps that forms h and adds ``C h`` to the output.
- Per state and step that is one ``exp2`` and ~6 FP instructions, plus the thread scan (~35
  instructions per thread and state per tile, i.e. ~2 per step).
- The state entering the tile (the carry) goes through the ``last`` buffer, one fp32 per state, which
  ends up holding the final state; the tile's first thread folds it into its composite before the scan.

Chunk-start states (for the backward) are the states entering threads whose first step is a multiple of
``CHUNK``. Needs N <= 16 (the carry of state n is read as item n of a (2, LANES, 8) tile).
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_scan import _affine_combine, _dt_of, _exp2, _sigmoid


@triton.jit
def _step(X, pick):
    """Step ``j`` of every thread's 16 steps, ``pick`` being the compile-time (2, 1, 8) mask of step
    ``j`` = 8 half + k: both reduced axes are in each thread's registers, so this is a register read
    once the loops are unrolled: -0.0 fills the other steps because x + (-0.0) == x folds away. (A literal
    -0.0 becomes +0.0 in Triton's frontend, which does not fold; hence the bit pattern.)"""
    neg_zero = tl.full(X.shape, -2147483648, tl.int32).to(tl.float32, bitcast=True)
    return tl.sum(tl.sum(tl.where(pick, X, neg_zero), axis=2), axis=1)


@triton.jit
def _lanes_fwd_kernel(
    u_ptr, dt_ptr, A2_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, states_ptr, carry_ptr,
    E, L, G, n_chunks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr, ASM: tl.constexpr, N: tl.constexpr, CHUNK: tl.constexpr, LANES: tl.constexpr,
):
    """One (sequence, channel) per program: u, Δ, z, out (batch, E, L); A2 = A log2(e) (E, N) fp32; B, C
    (batch, G, N, L); ``carry`` (batch, E, N) fp32 holds the initial state on entry and the last state on
    exit; ``states`` (batch, E, n_chunks, N) fp32 receives the state before each ``CHUNK``-step chunk
    (``SAVE_STATES``). ``ASM`` (GPU only): approximate exp2/softplus/sigmoid (:func:`.triton_scan._approx`)."""
    pid_b = tl.program_id(0).to(tl.int64)
    e = tl.program_id(1)
    lane3 = tl.arange(0, LANES)[:, None, None]
    half = tl.arange(0, 2)[None, :, None]
    k = tl.arange(0, 8)[None, None, :]
    item = half * 8 + k  # a thread's step index, 0..15
    pos = lane3 * 16 + item  # (LANES, 2, 8): step within the tile
    lane = tl.arange(0, LANES)
    row = (pid_b * E + e) * L
    bc_row = (pid_b * G + e // (E // G)) * N * L
    cbase = (pid_b * E + e) * N
    bias = tl.load(bias_ptr + e).to(tl.float32)  # disabled features: dummy pointers, values unused
    Dv = tl.load(D_ptr + e).to(tl.float32)
    for t0 in range(0, L, 16 * LANES):
        tl.debug_barrier()  # the previous tile's carries (stored by the last thread) are visible
        t = t0 + pos
        m = t < L
        u = tl.load(u_ptr + row + t, mask=m, other=0.0).to(tl.float32)
        dt = _dt_of(tl.load(dt_ptr + row + t, mask=m, other=0.0), m, bias, HAS_BIAS, SOFTPLUS, ASM)[1]
        dtu = dt * u
        dt_sum = tl.sum(tl.sum(dt, axis=2), axis=1)  # (LANES,): each thread's ΣΔ
        y = tl.zeros_like(u)
        for n in range(N):
            a2 = tl.load(A2_ptr + e * N + n)
            Bn = tl.load(B_ptr + bc_row + n * L + t, mask=m, other=0.0).to(tl.float32)
            Cn = tl.load(C_ptr + bc_row + n * L + t, mask=m, other=0.0).to(tl.float32)
            a = _exp2(dt * a2, ASM)
            b = dtu * Bn
            q = tl.zeros_like(dt_sum)
            for j in tl.static_range(16):  # each thread's composite map: h -> p h + q
                pick = item == j
                q = _step(a, pick) * q + _step(b, pick)
            p = _exp2(dt_sum * a2, ASM)
            c_in = tl.load(carry_ptr + cbase + n)
            q = tl.where(lane == 0, p * c_in + q, q)  # the tile's carry enters through the first thread
            h_end = tl.associative_scan((p, q), 0, _affine_combine)[1]  # state after each thread's steps
            h = tl.where(lane == 0, c_in, tl.gather(h_end, tl.maximum(lane - 1, 0), 0))
            if SAVE_STATES:
                first = t0 + lane * 16
                chunk_off = (cbase // N * n_chunks + first // CHUNK) * N + n
                tl.store(states_ptr + chunk_off, h, mask=(first % CHUNK == 0) & (first < L))
            tl.store(carry_ptr + cbase + n + lane * 0, h_end, mask=lane == LANES - 1)
            for j in tl.static_range(16):
                pick = item == j
                h = _step(a, pick) * h + _step(b, pick)
                y = tl.where(pick, y + (_step(Cn, pick) * h)[:, None, None], y)
        if HAS_D:
            y += Dv * u
        if HAS_Z:
            zv = tl.load(z_ptr + row + t, mask=m, other=0.0).to(tl.float32)
            y = y * zv * _sigmoid(zv, ASM)
        tl.store(out_ptr + row + t, y.to(out_ptr.dtype.element_ty), mask=m)
