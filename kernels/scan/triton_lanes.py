"""One-pass forward kernel of the Mamba-1 selective scan with time across the lanes (the ``"lanes"`` variant).

The ``"seq"`` forward walks each channel's steps one at a time in one thread, so a single long sequence
has to be cut into segments to fill the GPU, and every segment is scanned twice (a summary pass for the
carries, then the main pass): two ``exp2`` per state and step, which alone is ~4.1 ms at L = 1M on an
H200, the whole 4x-of-HBM budget (kernels/scan/NOTES.md, "Why two passes cannot reach 4x"). This kernel
scans the sequence once, as mamba_ssm's CUDA kernel does:

- A program owns ``CPT`` channels (1 or 2) of one sequence and walks them in tiles of ``16 * LANES`` steps
  (``LANES = 32 * num_warps``); thread ``i`` holds the 16 consecutive steps ``16 i ... 16 i + 15`` of the
  tile in registers, loaded as 16-byte vectors per channel ((LANES, CPT, 16 / VEC, VEC) tiles, VEC = 8 in
  bf16 and 4 in fp32, see :func:`_step`).
- The states are walked one at a time (a run-time loop: the loop body stays small in the instruction
  cache). For state n, each thread composes its 16 steps' affine maps ``h -> a h + b`` (``a = 2^(Δ A
  log2 e)``, ``b = Δ u B``) into one, whose decay ``2^(A log2 e ΣΔ)`` is a single ``exp2``; an associative
  scan over the threads turns these into the state at the end of each thread's steps; the state
  entering each thread (its predecessor's, :func:`tl.gather`) seeds a second walk over the thread's
  steps that forms h and adds ``C h`` to the output.
- Per state and step that is one ``exp2`` and 5 FP instructions (Δ·A, Δu·B, the composite, the second
  walk, y += C h), plus the thread scan and the bf16 unpacking of B and C. Offline (triton 3.6, sm_90a, the
  benchmark's flags) a program of 4 warps issues 242 instructions per state and 16 steps at one channel per
  thread (158 registers) and 408 for two (``CPT = 2``, 237 registers: B and C loaded and unpacked once for
  both): 15.1 and 12.8 per state and step, against ~16.6 for the two ``seq`` passes together (Nsight Compute,
  kernels/scan/NOTES.md, "Thirty-second session"; counted with kernels/offline_scan_sass.py).
- The state entering the tile (the carry) goes through the ``carry`` buffer (the returned last state), one
  fp32 per channel and state; the tile's first thread folds it into its composite before the scan.

Chunk-start states (for the backward) are the states entering threads whose first step is a multiple of
``CHUNK``.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_scan import _affine_combine, _dt_of, _exp2, _gate, _neg_zero


@triton.jit
def _step(X, pick):
    """Step ``j`` of every thread's 16 steps of a (LANES, channels, 16 / VEC, VEC) tile, ``pick`` being the
    compile-time (1, 1, 16 / VEC, VEC) mask of step ``j`` = VEC part + k: both reduced axes are in each thread's
    registers, so this is a register read once the loops are unrolled (the other steps are filled with
    :func:`.triton_scan._neg_zero`)."""
    return tl.sum(tl.sum(tl.where(pick, X, _neg_zero(X)), axis=3), axis=2)


@triton.jit
def _column(X, col):
    """Column ``c`` of a (LANES, CPT) tensor, ``col`` its compile-time (1, CPT) mask: a register read."""
    return tl.sum(tl.where(col, X, _neg_zero(X)), axis=1)


@triton.jit
def _thread_scan(p, q, seed, LANES: tl.constexpr, REVERSE: tl.constexpr = False):
    """(value entering each thread, value leaving it) of the threads' affine maps ``v -> p v + q`` (LANES,)
    chained from the first thread (from the last one, ``REVERSE``), with ``seed`` entering the chain: an
    associative scan over the threads, each thread then taking its neighbour's result (:func:`tl.gather`)."""
    lane = tl.arange(0, LANES)
    first = LANES - 1 if REVERSE else 0
    q = tl.where(lane == first, p * seed + q, q)  # the seed enters through the chain's first thread
    leaving = tl.associative_scan((p, q), 0, _affine_combine, reverse=REVERSE)[1]
    neighbour = tl.minimum(lane + 1, LANES - 1) if REVERSE else tl.maximum(lane - 1, 0)
    return tl.where(lane == first, seed, tl.gather(leaving, neighbour, 0)), leaving


@triton.jit
def _enter(p, q, carry_ptr, states_ptr, pid_b, e, n, t0, E, L, n_chunks, SAVE_STATES: tl.constexpr,
           N: tl.constexpr, CHUNK: tl.constexpr, LANES: tl.constexpr):
    """State n of channel e entering each thread's steps, from the threads' composite maps h -> p h + q
    (LANES,) and the carry into the tile: an associative scan over the threads, then each thread takes its
    predecessor's result. Stores the chunk-start states among them (``SAVE_STATES``) and the state after
    the tile as the next tile's carry (by the last thread; every tile starts with a barrier)."""
    lane = tl.arange(0, LANES)
    live = lane * 0 + e < E  # a ragged last program's spare channel reads channel E - 1's carry and stores nothing
    off = (pid_b * E + tl.minimum(e, E - 1)) * N + n
    h, h_end = _thread_scan(p, q, tl.load(carry_ptr + off), LANES)  # the tile's carry enters the first thread
    if SAVE_STATES:
        first = t0 + lane * 16
        chunk_off = ((pid_b * E + e) * n_chunks + first // CHUNK) * N + n
        tl.store(states_ptr + chunk_off, h, mask=(first % CHUNK == 0) & (first < L) & live)
    tl.store(carry_ptr + off + lane * 0, h_end, mask=(lane == LANES - 1) & live)
    return h


@triton.jit
def _lanes_fwd_kernel(
    u_ptr, dt_ptr, A2_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, states_ptr, carry_ptr,
    E, L, G, n_chunks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr, ASM: tl.constexpr, N: tl.constexpr, CHUNK: tl.constexpr, LANES: tl.constexpr,
    CPT: tl.constexpr,
):
    """``CPT`` channels of one sequence per program, all in one B/C group, each thread holding the same 16
    steps of every one of them (so B and C are loaded once for ``CPT`` channels): u, Δ, z, out (batch, E, L);
    A2 = A log2(e) (E, N) fp32; B, C (batch, G, N, L); ``carry`` (batch, E, N) fp32 holds the initial state
    on entry and the last state on exit; ``states`` (batch, E, n_chunks, N) fp32 receives the state before
    each ``CHUNK``-step chunk (``SAVE_STATES``). ``ASM`` (GPU only): approximate exp2/softplus/sigmoid
    (:func:`.triton_scan._approx`). Thread axis first in every tile: the compiler then spreads threads over
    it and keeps the channel and step axes in registers (a (2, LANES, 8) tile got two threads per row)."""
    pid_b = tl.program_id(0).to(tl.int64)
    e0 = tl.program_id(1) * CPT
    chans = e0 + tl.arange(0, CPT)[None, :]  # (1, CPT)
    ch = chans[:, :, None, None]
    VEC: tl.constexpr = 128 // u_ptr.dtype.element_ty.primitive_bitwidth  # elements per 16-byte vector
    item = tl.arange(0, 16 // VEC)[None, None, :, None] * VEC + tl.arange(0, VEC)[None, None, None, :]
    pos = tl.arange(0, LANES)[:, None, None, None] * 16 + item  # (LANES, 1, 16 / VEC, VEC): step in the tile
    emask = chans < E
    rows = (pid_b * E + ch).to(tl.int64) * L
    bc_row = (pid_b * G + e0 // (E // G)) * N * L
    bias = tl.load(bias_ptr + ch, mask=ch < E, other=0.0).to(tl.float32)  # disabled: dummy, values unused
    Dv = tl.load(D_ptr + ch, mask=ch < E, other=0.0).to(tl.float32)
    for t0 in range(0, L, 16 * LANES):
        tl.debug_barrier()  # the previous tile's carries (stored by the last thread) are visible
        t = t0 + pos
        tm = t < L
        m = tm & (ch < E)
        u = tl.load(u_ptr + rows + t, mask=m, other=0.0).to(tl.float32)
        dt = _dt_of(tl.load(dt_ptr + rows + t, mask=m, other=0.0), m, bias, HAS_BIAS, SOFTPLUS, ASM)[1]
        dtu = dt * u
        dt_sum = tl.sum(tl.sum(dt, axis=3), axis=2)  # (LANES, CPT): each thread's ΣΔ
        y = tl.zeros_like(u)
        for n in range(N):
            a2 = tl.load(A2_ptr + chans * N + n, mask=emask, other=0.0)
            Bn = tl.load(B_ptr + bc_row + n * L + t, mask=tm, other=0.0).to(tl.float32)
            Cn = tl.load(C_ptr + bc_row + n * L + t, mask=tm, other=0.0).to(tl.float32)
            a = _exp2(dt * a2[:, :, None, None], ASM)
            b = dtu * Bn
            q = tl.zeros_like(dt_sum)
            for j in tl.static_range(16):  # each thread's composite map: h -> p h + q
                pick = item == j
                q = _step(a, pick) * q + _step(b, pick)
            p = _exp2(dt_sum * a2, ASM)
            h = tl.zeros_like(q)  # the state entering each thread's steps, per channel
            for c in tl.static_range(CPT):  # the thread scan, one channel at a time: (LANES,) vectors
                col = tl.arange(0, CPT)[None, :] == c
                h = tl.where(col, _enter(_column(p, col), _column(q, col), carry_ptr, states_ptr, pid_b, e0 + c,
                                         n, t0, E, L, n_chunks, SAVE_STATES, N, CHUNK, LANES)[:, None], h)
            for j in tl.static_range(16):
                pick = item == j
                h = _step(a, pick) * h + _step(b, pick)
                y = tl.where(pick, y + (_step(Cn, pick) * h)[:, :, None, None], y)
        z_raw = tl.load(z_ptr + rows + t, mask=m, other=0.0) if HAS_Z else u
        y = _gate(y, u, Dv, z_raw, HAS_D, HAS_Z, ASM)
        tl.store(out_ptr + rows + t, y.to(out_ptr.dtype.element_ty), mask=m)
