"""Triton forward and backward kernels of the Mamba-1 selective scan (chunked parallel scan).

Layout (kernel convention, channels before length): ``u, delta, z, out``: (batch, E, L); ``A``: (E, N);
``B, C``: (batch, G, N, L); ``D, delta_bias``: (E,).

Forward. One program owns ``BLOCK_E`` channels of one segment of one sequence and walks it in chunks
of ``T`` steps, keeping the (BLOCK_E, N) state in registers. Long sequences are cut into segments so
that a single sequence fills the GPU: pass 1 (``SUMMARY``) scans each segment from a zero state and
keeps only its end state and total decay, :func:`_segment_carry_kernel` chains those into each
segment's true start state, and pass 2 rescans each segment from that state and writes the outputs. Inside a chunk the recurrence
``h_t = a_t h_{t-1} + b_t`` (``a = exp(dt A)``, ``b = dt u B``) is solved with ``tl.associative_scan``
over pairs ``(a, b)`` on a (BLOCK_E, N, T) register tile, so the (batch, E, L, N) state tensor never
exists in memory. Every input element is read once and the output written once. With gradients
required it also stores the state at each chunk start, (batch, E, L/T, N) fp32, which is N/T of one
input's size.

Backward. The same decomposition, right to left (the adjoint flows backwards in time); programs walk
their chunks from last to first: they reload the chunk's inputs and its
start state, recompute the states (recomputation instead of storing them), and solve the adjoint
recurrence ``g_t = C_t dy_t + a_{t+1} g_{t+1}`` with a reverse associative scan, carrying ``g`` across
chunk boundaries. Per-channel gradients (u, delta, z) are written directly; gradients shared across
channels (B, C) and across the batch (A, D, delta_bias) are reduced in the program and accumulated with
fp32 atomics. All state arithmetic is fp32 whatever the input dtype.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _affine_combine(a1, b1, a2, b2):
    # (x -> a1 x + b1) followed by (x -> a2 x + b2)
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _approx(x, OP: tl.constexpr):
    """One MUFU instruction (``OP``: "ex2", "lg2" or "rcp", the ``.approx.ftz.f32`` PTX forms, about
    2^-22 relative error, subnormals flushed; "sin" or "cos": ~2^-20.9 absolute error on [-pi, pi]):
    inline PTX, so GPU only."""
    return tl.inline_asm_elementwise(OP + ".approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32,
                                     is_pure=True, pack=1)


@triton.jit
def _prefetch(ptrs, LEVEL: tl.constexpr):
    """``prefetch.global.L1`` / ``.L2`` of the lines holding ``ptrs`` (a hint: no registers, nothing
    waits on it); inline PTX, so GPU only."""
    tl.inline_asm_elementwise("prefetch.global." + LEVEL + " [$1];", "=r,l", [ptrs], dtype=tl.int32,
                              is_pure=False, pack=1)


@triton.jit
def _opaque(x):
    """``x`` (int32) through a ``mov`` the compiler can neither see through nor move (inline PTX with side
    effects). GPU only."""
    return tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [x], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def _state_offsets(index, stride, INLINE_PTX: tl.constexpr):
    """``index * stride``: the offsets of a state tensor's elements along its state axis (``stride`` being the
    kernels' unspecialised ``state_stride``). ``INLINE_PTX``: through :func:`_opaque`, so that inside a loop
    they are computed where used instead of once before the loop, holding registers all through it."""
    if INLINE_PTX:
        return index * _opaque(stride)
    return index * stride


@triton.jit
def _store_state(ptrs, values, mask, INLINE_PTX: tl.constexpr):
    """Store fp32 ``values`` at ``ptrs`` where ``mask``. ``INLINE_PTX`` (GPU): one ``st.global`` per element
    from the registers that hold it. ``tl.store`` lays a store out by its addresses' contiguity, which the
    unspecialised state stride hides, and first converts the values to that layout through shared memory:
    in the forward's main pass, at every chunk start (250 registers instead of 165 with it, offline)."""
    if INLINE_PTX:
        tl.inline_asm_elementwise("{ .reg .pred %p; setp.ne.b32 %p, $3, 0; @%p st.global.f32 [$1], $2; }",
                                  "=r,l,f,r", [ptrs.to(tl.int64), values, mask.to(tl.int32)], dtype=tl.int32,
                                  is_pure=False, pack=1)
    else:
        tl.store(ptrs, values, mask=mask)


@triton.jit
def _load_state(ptrs, mask, INLINE_PTX: tl.constexpr):
    """fp32 at ``ptrs`` where ``mask``, 0 elsewhere; ``INLINE_PTX``: loaded straight into the registers the
    values will be used in, as :func:`_store_state` stores."""
    if INLINE_PTX:
        return tl.inline_asm_elementwise(
            "{ .reg .pred %p; setp.ne.b32 %p, $2, 0; mov.b32 $0, 0; @%p ld.global.f32 $0, [$1]; }", "=f,l,r",
            [ptrs.to(tl.int64), mask.to(tl.int32)], dtype=tl.float32, is_pure=False, pack=1)
    return tl.load(ptrs, mask=mask, other=0.0)


@triton.jit
def _exp2(x, ASM: tl.constexpr = False):
    """2^x; ``ASM`` (GPU): one ``ex2.approx.ftz`` (``tl.exp2`` lowers to the non-ftz form, a compare
    and two predicated multiplies around each MUFU.EX2)."""
    if ASM:
        return _approx(x, "ex2")
    return tl.exp2(x)


@triton.jit
def _softplus(x, ASM: tl.constexpr = False):
    """log(1 + e^x) (x above 20: x). ``ASM`` (GPU): ex2/lg2 approximations instead of libdevice's
    exp and log (a branchy polynomial each)."""
    if ASM:
        log2_1p_exp = _approx(1.0 + _approx(x * 1.4426950408889634, "ex2"), "lg2")
        return tl.where(x <= 20.0, log2_1p_exp * 0.6931471805599453, x)
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)


@triton.jit
def _sigmoid(x, ASM: tl.constexpr = False):
    """1 / (1 + e^-x); ``ASM`` (GPU): ex2 and rcp approximations instead of an IEEE division."""
    if ASM:
        return _approx(1.0 + _approx(x * -1.4426950408889634, "ex2"), "rcp")
    return tl.sigmoid(x)


@triton.jit
def _gate(y, u, Dv, z_raw, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, ASM: tl.constexpr = False):
    """Mamba's output from the scan's y: (y + D u) silu(z), each term only when enabled (``z_raw`` in any
    dtype, ignored without ``HAS_Z``); ``ASM``: the approximate sigmoid of :func:`_sigmoid`."""
    if HAS_D:
        y += Dv * u
    if HAS_Z:
        zv = z_raw.to(tl.float32)
        y = y * zv * _sigmoid(zv, ASM)
    return y


@triton.jit
def _load_dt(dt_ptr, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, ASM: tl.constexpr = False):
    """Raw Δ (plus the bias, given broadcastable to ``offs``), and Δ after softplus (0 where masked, so
    a = 1 and b = 0 there). ``ASM``: the GPU-only fast softplus."""
    return _dt_of(tl.load(dt_ptr + offs, mask=mask, other=0.0), mask, bias, HAS_BIAS, SOFTPLUS, ASM)


@triton.jit
def _dt_of(raw, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, ASM: tl.constexpr = False):
    """:func:`_load_dt` on already loaded raw Δ (any dtype): for kernels that load a tile ahead."""
    raw = raw.to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw, ASM)
    return raw, tl.where(mask, dt, 0.0)


# The segmentation counts change with L and the tiling; not specialising on them (their divisibility
# never reaches an address: every use is scaled by N or T) lets one compiled kernel serve all lengths.
_SEGMENT_ARGS = ["n_chunks", "chunks_per_seg", "n_segs"]


@triton.jit
def _program_setup(A_ptr, D_ptr, bias_ptr, E, L, G, n_chunks, n_segs, N: tl.constexpr, BLOCK_E: tl.constexpr,
                   T: tl.constexpr):
    """What both ``assoc`` kernels' programs start from: their (batch, segment), channels and mask, state and
    step indices, A (BLOCK_E, N), Δ-bias, D, and the row offsets of B/C, the (batch, E, L) tensors, the
    chunk-start states and the segment summaries."""
    pid_b = tl.program_id(0).to(tl.int64)
    seg = tl.program_id(2)
    e = tl.program_id(1) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    n = tl.arange(0, N)
    steps = tl.arange(0, T)
    A = tl.load(A_ptr + e[:, None] * N + n[None, :], mask=emask[:, None], other=0.0).to(tl.float32)
    # Disabled features get a dummy pointer with at least E elements; their values are never used.
    bias = tl.load(bias_ptr + e, mask=emask, other=0.0).to(tl.float32)
    Dv = tl.load(D_ptr + e, mask=emask, other=0.0).to(tl.float32)
    group = e // (E // G)
    bc_base = pid_b * G * N * L + group[:, None, None].to(tl.int64) * N * L + n[None, :, None] * L
    row = pid_b * E * L + e[:, None].to(tl.int64) * L
    state_row = (pid_b * E + e[:, None].to(tl.int64)) * n_chunks * N + n[None, :]
    seg_row = ((pid_b * E + e[:, None].to(tl.int64)) * n_segs + seg) * N + n[None, :]
    return pid_b, seg, e, emask, n, steps, A, bias, Dv, bc_base, row, state_row, seg_row


@triton.jit(do_not_specialize=_SEGMENT_ARGS)
def _scan_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, states_ptr, last_ptr,
    seg_a_ptr, seg_h_ptr, carry_ptr,
    E, L, G, n_chunks, chunks_per_seg, n_segs,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr, SUMMARY: tl.constexpr,
    N: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr,
):
    """One (sequence, channel block, segment) per program. ``SUMMARY``: scan the segment from a zero
    state and store its end state and total decay (pass 1). Otherwise start from the combined carry
    and write outputs, chunk-start states and the final state (pass 2)."""
    pid_b, seg, e, emask, n, steps, A, bias, Dv, bc_base, row, state_row, seg_row = _program_setup(
        A_ptr, D_ptr, bias_ptr, E, L, G, n_chunks, n_segs, N, BLOCK_E, T)
    if SUMMARY:
        h = tl.zeros((BLOCK_E, N), dtype=tl.float32)
        decay = tl.full((BLOCK_E, N), 1.0, dtype=tl.float32)
    else:
        h = tl.load(carry_ptr + seg_row, mask=emask[:, None], other=0.0)
    c_start = seg * chunks_per_seg
    c_stop = tl.minimum(c_start + chunks_per_seg, n_chunks)
    for c in range(c_start, c_stop):
        t = c * T + steps
        m2 = emask[:, None] & (t < L)[None, :]
        m3 = emask[:, None, None] & (t < L)[None, None, :]
        u = tl.load(u_ptr + row + t[None, :], mask=m2, other=0.0).to(tl.float32)
        _, dt = _load_dt(dt_ptr, row + t[None, :], m2, bias[:, None], HAS_BIAS, SOFTPLUS)
        Bv = tl.load(B_ptr + bc_base + t[None, None, :], mask=m3, other=0.0).to(tl.float32)
        a = tl.exp(dt[:, None, :] * A[:, :, None])
        b = (dt * u)[:, None, :] * Bv
        acc_a, acc_b = tl.associative_scan((a, b), 2, _affine_combine)
        hs = acc_a * h[:, :, None] + acc_b
        if SUMMARY:
            decay = decay * tl.sum(tl.where(steps[None, None, :] == T - 1, acc_a, 0.0), axis=2)
        else:
            if SAVE_STATES:
                tl.store(states_ptr + state_row + c * N, h, mask=emask[:, None])
            Cv = tl.load(C_ptr + bc_base + t[None, None, :], mask=m3, other=0.0).to(tl.float32)
            y = tl.sum(hs * Cv, axis=1)
            if HAS_D:
                y += Dv[:, None] * u
            if HAS_Z:
                zv = tl.load(z_ptr + row + t[None, :], mask=m2, other=0.0).to(tl.float32)
                y = y * zv * tl.sigmoid(zv)
            tl.store(out_ptr + row + t[None, :], y.to(out_ptr.dtype.element_ty), mask=m2)
        h = tl.sum(tl.where(steps[None, None, :] == T - 1, hs, 0.0), axis=2)
    if SUMMARY:
        tl.store(seg_a_ptr + seg_row, decay, mask=emask[:, None])
        tl.store(seg_h_ptr + seg_row, h, mask=emask[:, None])
    else:
        is_last = (tl.zeros((BLOCK_E, N), dtype=tl.int32) + seg) == n_segs - 1
        last_mask = emask[:, None] & is_last
        tl.store(last_ptr + (pid_b * E + e[:, None].to(tl.int64)) * N + n[None, :], h, mask=last_mask)


@triton.jit
def _segment_carry_kernel(
    seg_a_ptr, seg_h_ptr, carry_ptr, init_ptr, rows, n_segs,
    REVERSE: tl.constexpr, HAS_INIT: tl.constexpr, N: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    """Carry of every segment from the segment summaries: ``x_s = a_{s-1} x_{s-1} + h_{s-1}`` from the
    left (forward states), or ``x_s = a_{s+1} x_{s+1} + h_{s+1}`` from the right (adjoints); the first
    carry is ``init`` (rows, N) with HAS_INIT, else zero.

    Position p of the walk (p = s from the left, n_segs - 1 - s from the right) takes the steps of positions
    0 .. p - 1, so an inclusive associative scan over (BLOCK_R, BLOCK_S, N) tiles whose element p holds the
    summary of position p - 1 (the identity at p = 0) gives every carry of a block at once, and a block's
    last composite moves the running carry on: n_segs / BLOCK_S dependent steps instead of n_segs (a
    sequential walk waited on one load's latency per segment, ~0.15 ms at 256 segments on an H200)."""
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    j = tl.arange(0, BLOCK_S)
    n = tl.arange(0, N)
    row_ok = (r < rows)[:, None, None]
    base = r[:, None, None].to(tl.int64) * n_segs * N + n[None, None, :]
    if HAS_INIT:
        x = tl.load(init_ptr + r[:, None].to(tl.int64) * N + n[None, :], mask=(r < rows)[:, None], other=0.0)
    else:
        x = tl.zeros((BLOCK_R, N), dtype=tl.float32)
    for p0 in range(0, n_segs, BLOCK_S):
        p = (p0 + j)[None, :, None]
        src = n_segs - p if REVERSE else p - 1  # the segment at walk position p - 1
        take = row_ok & (p >= 1) & (p <= n_segs)
        a = tl.load(seg_a_ptr + base + src * N, mask=take, other=1.0)
        h = tl.load(seg_h_ptr + base + src * N, mask=take, other=0.0)
        a, h = tl.associative_scan((a, h), axis=1, combine_fn=_affine_combine)
        dst = n_segs - 1 - p if REVERSE else p
        tl.store(carry_ptr + base + dst * N, a * x[:, None, :] + h, mask=row_ok & (p < n_segs))
        last = (j == BLOCK_S - 1)[None, :, None]
        x = tl.sum(tl.where(last, a, 0.0), axis=1) * x + tl.sum(tl.where(last, h, 0.0), axis=1)


@triton.jit(do_not_specialize=_SEGMENT_ARGS)
def _scan_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, states_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, dinit_ptr,
    seg_a_ptr, seg_g_ptr, carry_ptr,
    E, L, G, n_chunks, chunks_per_seg, n_segs,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SUMMARY: tl.constexpr,
    N: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr, HAS_DINIT: tl.constexpr = False,
):
    """Backward over one segment, chunks last to first. ``SUMMARY``: only the adjoint recurrence from a
    zero carry, storing the segment's first-step adjoint and total decay (pass 1). Otherwise start from
    the combined carry (the last segment's: the gradient of the returned last state, or zero) and compute
    every gradient (pass 2); with ``HAS_DINIT`` the first segment's final adjoint, dL/dh_0, times the first
    step's decay is the initial state's gradient ``dinit`` (batch, E, N)."""
    pid_b, seg, e, emask, n, steps, A, bias, Dv, bc_base, row, state_row, seg_row = _program_setup(
        A_ptr, D_ptr, bias_ptr, E, L, G, n_chunks, n_segs, N, BLOCK_E, T)
    if SUMMARY:
        g_next = tl.zeros((BLOCK_E, N), dtype=tl.float32)  # adjoint at the first step of the next chunk
        decay = tl.full((BLOCK_E, N), 1.0, dtype=tl.float32)
    else:
        g_next = tl.load(carry_ptr + seg_row, mask=emask[:, None], other=0.0)
    dA_acc = tl.zeros((BLOCK_E, N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_E,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_E,), dtype=tl.float32)
    c_start = seg * chunks_per_seg
    c_stop = tl.minimum(c_start + chunks_per_seg, n_chunks)
    for ci in range(0, c_stop - c_start):
        c = c_stop - 1 - ci
        t = c * T + steps
        m2 = emask[:, None] & (t < L)[None, :]
        m3 = emask[:, None, None] & (t < L)[None, None, :]
        Cv = tl.load(C_ptr + bc_base + t[None, None, :], mask=m3, other=0.0).to(tl.float32)
        dy = tl.load(dout_ptr + row + t[None, :], mask=m2, other=0.0).to(tl.float32)
        if HAS_Z:
            zv = tl.load(z_ptr + row + t[None, :], mask=m2, other=0.0).to(tl.float32)
            sig = tl.sigmoid(zv)
            dy_gated = dy * zv * sig
        else:
            dy_gated = dy
        # a_{t+1}: the decay that carries g_{t+1} back to step t; 1 from the last step on, so that the last
        # segment's carry (the gradient of the returned last state, or zero) reaches g_{L-1} unchanged
        t1 = t + 1
        m2n = emask[:, None] & (t1 < L)[None, :]
        _, dt_next = _load_dt(dt_ptr, row + t1[None, :], m2n, bias[:, None], HAS_BIAS, SOFTPLUS)
        alpha = tl.where(m2n[:, None, :], tl.exp(dt_next[:, None, :] * A[:, :, None]), 1.0)
        drive = Cv * dy_gated[:, None, :]
        acc_p, acc_g = tl.associative_scan((alpha, drive), 2, _affine_combine, reverse=True)
        gs = acc_g + acc_p * g_next[:, :, None]
        g_next = tl.sum(tl.where(steps[None, None, :] == 0, gs, 0.0), axis=2)
        if SUMMARY:
            decay = decay * tl.sum(tl.where(steps[None, None, :] == 0, acc_p, 0.0), axis=2)
        else:
            u = tl.load(u_ptr + row + t[None, :], mask=m2, other=0.0).to(tl.float32)
            raw, dt = _load_dt(dt_ptr, row + t[None, :], m2, bias[:, None], HAS_BIAS, SOFTPLUS)
            Bv = tl.load(B_ptr + bc_base + t[None, None, :], mask=m3, other=0.0).to(tl.float32)
            h0 = tl.load(states_ptr + state_row + c * N, mask=emask[:, None], other=0.0)
            a = tl.exp(dt[:, None, :] * A[:, :, None])
            b = (dt * u)[:, None, :] * Bv
            acc_a, acc_b = tl.associative_scan((a, b), 2, _affine_combine)
            hs = acc_a * h0[:, :, None] + acc_b
            if HAS_Z:
                y = tl.sum(hs * Cv, axis=1)
                if HAS_D:
                    y += Dv[:, None] * u
                dz = dy * y * sig * (1.0 + zv * (1.0 - sig))
                tl.store(dz_ptr + row + t[None, :], dz.to(dz_ptr.dtype.element_ty), mask=m2)
            dy = dy_gated
            # gradients
            dC = tl.sum(hs * dy[:, None, :], axis=0)  # (N, T)
            g_b = gs * Bv
            d_dtu = tl.sum(g_b, axis=1)  # (BLOCK_E, T)
            dB = tl.sum(gs * (dt * u)[:, None, :], axis=0)
            h_decay = gs * (hs - b)  # g_t * a_t * h_{t-1}
            ddt = d_dtu * u + tl.sum(h_decay * A[:, :, None], axis=1)
            dA_acc += tl.sum(h_decay * dt[:, None, :], axis=2)
            du = d_dtu * dt
            if HAS_D:
                du += dy * Dv[:, None]
                dD_acc += tl.sum(dy * u, axis=1)
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(raw)
            ddt = tl.where(m2, ddt, 0.0)
            if HAS_BIAS:
                dbias_acc += tl.sum(ddt, axis=1)
            tl.store(du_ptr + row + t[None, :], du.to(du_ptr.dtype.element_ty), mask=m2)
            tl.store(ddt_ptr + row + t[None, :], ddt.to(ddt_ptr.dtype.element_ty), mask=m2)
            # B/C gradients are shared by all channels of a group: reduce here, accumulate across programs.
            bc_off = pid_b * G * N * L + (tl.program_id(1) * BLOCK_E // (E // G)).to(tl.int64) * N * L
            bc_ptrs = bc_off + n[:, None] * L + t[None, :]
            tmask = (t < L)[None, :] & (n[:, None] < N)
            tl.atomic_add(dB_ptr + bc_ptrs, dB, mask=tmask)
            tl.atomic_add(dC_ptr + bc_ptrs, dC, mask=tmask)
    if SUMMARY:
        tl.store(seg_a_ptr + seg_row, decay, mask=emask[:, None])
        tl.store(seg_g_ptr + seg_row, g_next, mask=emask[:, None])
    else:
        tl.atomic_add(dA_ptr + e[:, None] * N + n[None, :], dA_acc, mask=emask[:, None])
        if HAS_D:
            tl.atomic_add(dD_ptr + e, dD_acc, mask=emask)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + e, dbias_acc, mask=emask)
        if HAS_DINIT:  # g_next is now dL/dh_0, and the initial state reaches h_0 through a_0
            _, dt0 = _load_dt(dt_ptr, row, emask[:, None], bias[:, None], HAS_BIAS, SOFTPLUS)
            first = (tl.zeros((BLOCK_E, N), dtype=tl.int32) + seg) == 0
            tl.store(dinit_ptr + (pid_b * E + e[:, None].to(tl.int64)) * N + n[None, :],
                     tl.exp(dt0 * A) * g_next, mask=emask[:, None] & first)
