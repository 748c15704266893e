"""Launchers and the autograd Function around the Triton selective-scan kernels.

:func:`selective_scan_triton` has the signature and semantics of :func:`selective_scan_ref`; outputs and
input gradients come back in the inputs' dtypes, ``A``/``D``/``delta_bias``/``B``/``C`` gradients are
accumulated in fp32 and cast to their parameter's dtype.
"""
from __future__ import annotations

import dataclasses

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .. import dispatch
from ..transpose import channel_major


@dataclasses.dataclass(frozen=True)
class Tiling:
    """How the kernels cut the work (tuned on an H100 with kernels/gpu_check_scan.py's sweep).

    ``block_e`` channels x ``chunk`` time steps per register tile; the sequence is split into segments
    until batch x channel blocks x segments reaches ``target_programs`` (so one long sequence still fills
    the GPU). The backward may use wider channel blocks (``bwd_block_e``: fewer atomic adds for the B/C
    gradients, which all channels share); the chunk length is common to both, since the backward reads
    the forward's chunk-start states.

    ``variant`` picks the forward kernel: ``"assoc"`` (:mod:`.triton_scan`, associative scan over
    (channels, N, steps) register tiles) or ``"seq"`` (:mod:`.triton_seq`, one step at a time with the
    (N, channels) state in registers, one channel per thread: use ``block_e = 32 * fwd_warps`` and a
    ``chunk`` that is a multiple of 16). Both share the segment driver and the backward kernel; the
    backward's segmentation target is ``bwd_target_programs`` (default: ``target_programs``).
    ``tile_io`` ("seq" only): read u, Δ, z and write outputs in ``fwd_tile``-step tiles (8 or 16; vector
    loads/stores, each thread holding its channel's steps) instead of one strided element per thread and
    step.
    ``bwd_variant`` picks the backward kernel: ``"assoc"`` (:func:`.triton_scan._scan_bwd_kernel`),
    ``"seq"`` (:mod:`.triton_seq_bwd`: one channel per thread, use ``bwd_block_e = 32 * bwd_warps`` and
    a ``chunk`` that is a multiple of 8; ``bwd_stash`` (2, 4 or 8) is how many steps of states it
    recomputes and keeps per thread at a time).
    ``fwd_fast_math`` ("seq" forward, GPU only; the interpreter keeps the exact functions): exp2,
    softplus and sigmoid as the backward computes them (``ex2``/``lg2``/``rcp.approx.ftz`` inline PTX,
    ~2^-22 relative error). ``fwd_prefetch`` ("seq" with ``tile_io``): issue each tile's u, Δ, z
    loads while the previous tile is computed.
    ``hints`` ("seq" kernels, GPU only): cache prefetch instructions (L2 a chunk ahead, L1 for B/C two
    tiles ahead). ``bc16``: bf16 B and C packed as int32 pairs (exact). ``fwd_maxnreg`` /
    ``fwd_summary_maxnreg`` / ``bwd_maxnreg``: register caps of the "seq" forward's main pass, of its
    summary pass, and of both backward passes (None: the compiler's choice).
    ``fill_programs`` / ``bwd_fill_programs``: a forward / backward whose batch x channel blocks reach this
    many programs runs unsegmented (one pass, no summary pass or carries), whatever the targets (None: the
    targets alone decide).
    """

    block_e: int = 4
    chunk: int = 128
    target_programs: int = 8192
    bwd_block_e: int | None = None
    fwd_warps: int = 4
    bwd_warps: int = 4
    variant: str = "assoc"
    bwd_target_programs: int | None = None
    tile_io: bool = False
    bwd_variant: str = "assoc"
    bwd_stash: int = 4
    fwd_fast_math: bool = False
    fwd_prefetch: bool = False
    hints: bool = False
    bc16: bool = False
    fwd_maxnreg: int | None = None
    bwd_maxnreg: int | None = None
    fwd_tile: int = 8
    fwd_summary_maxnreg: int | None = None
    fill_programs: int | None = None
    bwd_fill_programs: int | None = None


#: The sequential-step forward at the setting that measured best on an H200 (2026-12-01,
#: kernels/gpu_scan_variants.py: 0.99 ms at L=64K and 14.3 ms at 1M for B=1, E=512, N=16 bf16, against
#: 1.52 / 24.1 ms for the "assoc" tiling): one channel per thread, 2 warps, tiled I/O. Its backward is the
#: "assoc" tiling's (same kernel, tile and segmentation), which the variant run kept unchanged.
SEQ_TILING = Tiling(block_e=64, chunk=128, target_programs=2048, bwd_block_e=4, fwd_warps=2, bwd_warps=4,
                    variant="seq", bwd_target_programs=8192, tile_io=True)

#: The sequential-step backward (:mod:`.triton_seq_bwd`) at the setting measured on an H200 (2026-12-02,
#: kernels/gpu_scan_variants.py, B=1, E=512, N=16, bf16): :data:`SEQ_TILING`'s forward (same 128-step
#: chunks) with one warp of 32 channels per backward program, a 4-step state stash (offline sm_90 compile:
#: 255 registers, no spills in the step loops) and 2048 programs. Backward 50.5 ms at L=1M and 3.19 ms at
#: 64K, against 159.1 / 9.81 ms for the "assoc" backward (28x the HBM floor, from 88x); gradients within
#: 4e-3 of it. Its neighbours (4096 / 1024 programs, 2 warps, an 8-step stash) were within 1-13 %.
SEQ_BWD_TILING = dataclasses.replace(SEQ_TILING, bwd_variant="seq", bwd_block_e=32, bwd_warps=1, bwd_stash=4,
                                     bwd_target_programs=2048)

#: The fast-math forward of :data:`SEQ_BWD_TILING` on one warp of 32 channels and 4096 programs (H200,
#: 2026-12-02: 0.905 ms at L=64K, 12.99 ms at 1M, against 1.024 / 14.83 ms with exact math).
FAST_FWD_TILING = dataclasses.replace(SEQ_BWD_TILING, fwd_fast_math=True, block_e=32, fwd_warps=1,
                                      target_programs=4096)

#: The default from the sixth to the twenty-first session: :data:`FAST_FWD_TILING` with prefetch hints, bf16
#: B/C pairs and both forward passes capped at 128 registers, the fastest in a comparison on an H200
#: (2026-12-02, sixth session, kernels/gpu_scan_variants.py, B=1, E=512, N=16, bf16): forward 9.36 ms at
#: L=1M and 0.692 ms at 64K,
#: backward 45.8 / 2.82 ms, against 13.02 / 0.907 and 50.1 / 3.14 ms for FAST_FWD_TILING in the same
#: run; outputs and gradients identical to it (the hints change no arithmetic; bf16 pairs are exact).
SIXTH_SESSION_TILING = dataclasses.replace(FAST_FWD_TILING, hints=True, bc16=True, fwd_maxnreg=128,
                                           fwd_summary_maxnreg=128)

#: The twenty-second session's first step: :data:`SIXTH_SESSION_TILING` with 16-step I/O tiles, so that every
#: load and store of a channel's steps covers whole 32-byte sectors (at 8 steps each output store wrote
#: half a sector: ~1.2 of the main pass's 5.9 ms at L=1M), and the main pass left uncapped (165 registers,
#: none spilled; at the 128 cap it spilled 22 B), the summary pass kept at 128. H200, twenty-second
#: session (kernels/scan/NOTES.md; B=1, E=512, N=16, bf16): forward 7.76 ms at L=1M and 0.518 ms at 64K
#: (kernels/bench_scan.py, with that session's carry kernel), against 9.37 / 0.682 ms for the code before it
#: in the same call.
TILE16_TILING = dataclasses.replace(SIXTH_SESSION_TILING, fwd_tile=16, fwd_maxnreg=None)

#: The tiling used when none is given: :data:`TILE16_TILING` cut into finer segments (16,384 forward and
#: 4,096 backward programs at B=1, E=512), which the blocked carry kernel made cheap. H200, twenty-second
#: session, alternated twice in one call: forward 7.97 -> 7.71 ms at L=1M (p16384 alone) and 0.547 -> 0.536
#: ms at 64K; forward+backward at 1M 52.7 -> 51.6 ms with 4,096 backward programs alone. Launches that the
#: old targets (4,096 / 2,048) ran unsegmented still do (``fill_programs``): there, segments would only add
#: the summary pass (not measured on the GPU). Since the thirtieth session each 16-step tile's u, Δ, z loads
#: are issued a tile early (``fwd_prefetch``): Nsight Compute showed the main pass waiting on its global loads,
#: two thirds of which miss L1; forward 7.34 -> 7.14 ms at 1M and 0.525 -> 0.515 ms at 64K in one call, outputs
#: bit-identical (kernels/gpu_scan_variants.py; pipelines/results/h200-2026-12-04-s30/). Since the thirty-ninth
#: session no prefetch hints (``hints``, on since the sixth): on the H100 every pass was as fast or faster without
#: them, the no-grad forward's main pass 4.48 -> 3.84 ms at 1M and the backward's summary pass 3.60 -> 3.41 ms,
#: six runs of each alternated in three calls (forward 7.49 -> 6.86 ms at 1M, 0.526 -> 0.506 ms at 64K; BENCHMARKS.md).
DEFAULT_TILING = dataclasses.replace(TILE16_TILING, target_programs=16384, bwd_target_programs=4096,
                                     fill_programs=4096, bwd_fill_programs=2048, fwd_prefetch=True, hints=False)


def plan_segments(batch: int, channel_blocks: int, n_chunks: int, target: int,
                  fill: int | None = None) -> tuple[int, int]:
    """(chunks per segment, number of segments) for the two-pass segmented scan: enough segments for
    ``target`` programs, or one segment (a single pass) once batch x channel blocks reach ``fill``."""
    import triton

    if fill is not None and batch * channel_blocks >= fill:
        return n_chunks, 1
    wanted = max(1, min(n_chunks, triton.cdiv(target, batch * channel_blocks)))
    per_seg = triton.cdiv(n_chunks, wanted)
    return per_seg, triton.cdiv(n_chunks, per_seg)


def segment_carries(seg_a: torch.Tensor, seg_h: torch.Tensor, reverse: bool,
                    initial: torch.Tensor | None = None) -> torch.Tensor:
    """Carry into each segment from per-segment (decay, local result) summaries (batch, E, S, N), the first
    one ``initial`` (batch, E, N) fp32 (zero when None)."""
    import triton

    from .triton_scan import _segment_carry_kernel

    batch, channels, n_segs, n_state = seg_a.shape
    carry = torch.empty_like(seg_a)
    rows = batch * channels
    block_s = min(64, triton.next_power_of_2(n_segs))
    block_r = max(1, 1024 // (block_s * n_state))  # ~1K elements per tile
    _segment_carry_kernel[(triton.cdiv(rows, block_r),)](
        seg_a, seg_h, carry, seg_a if initial is None else initial, rows, n_segs, REVERSE=reverse,
        HAS_INIT=initial is not None, N=n_state, BLOCK_R=block_r, BLOCK_S=block_s,
    )
    return carry


def pack_bc(B: torch.Tensor, C: torch.Tensor, multiple: int = 1, half: bool = False) -> torch.Tensor:
    """(batch, G, N, L) B and C -> one tensor (batch, G, L', N) for the "seq" kernels' per-step loads;
    L' is L rounded up to ``multiple``, the extra steps zero. Default: int64, B's fp32 bits low and C's
    high. ``half`` with bf16 B and C: int32, B's bf16 bits low and C's high (half the bytes, exact).

    Built as (B, C) pairs of the value dtype that are then viewed as one integer (little-endian: the
    first of a pair is the low half): two strided copies, where shifting and masking integer views took
    eight kernels and ~6x the memory traffic (~0.3 ms of a 1M forward)."""
    half = half and B.dtype == C.dtype == torch.bfloat16
    batch, groups, n_state, length = B.shape
    padded = length + -length % multiple
    pairs = B.new_empty((batch, groups, padded, n_state, 2), dtype=torch.bfloat16 if half else torch.float32)
    pairs[:, :, :length, :, 0] = B.transpose(-1, -2)
    pairs[:, :, :length, :, 1] = C.transpose(-1, -2)
    if padded > length:
        pairs[:, :, length:] = 0
    return pairs.view(torch.int32 if half else torch.int64).squeeze(-1)


def _tile(channels: int, groups: int, block_e: int) -> int:
    """Largest power of two <= ``block_e`` such that a program's channels share one B/C group."""
    per_group = channels // groups
    while block_e > 1 and groups > 1 and per_group % block_e:
        block_e //= 2
    return block_e


def _as_groups(X: torch.Tensor) -> torch.Tensor:
    return (X.unsqueeze(1) if X.dim() == 3 else X).contiguous()


def _flags(D, z, delta_bias, delta_softplus) -> dict:
    return dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus))


def _check_tiling(tiling: Tiling) -> None:
    """Refuse variants and chunk lengths the kernels do not implement (before anything runs)."""
    for name, value in (("variant", tiling.variant), ("bwd_variant", tiling.bwd_variant)):
        if value not in ("assoc", "seq"):
            raise ValueError(f"unknown selective-scan {name} {value!r} (expected 'assoc' or 'seq')")
    if tiling.variant == "seq" and tiling.chunk % 16:
        raise ValueError(f"the 'seq' variant needs a chunk that is a multiple of 16, got {tiling.chunk}")
    if tiling.fwd_tile not in (8, 16):
        raise ValueError(f"the 'seq' forward's I/O tiles are 8 or 16 steps, got {tiling.fwd_tile}")
    if tiling.bwd_variant == "seq" and (tiling.chunk % 8 or tiling.bwd_stash not in (2, 4, 8)):
        raise ValueError(f"the 'seq' backward needs a chunk that is a multiple of 8 (got {tiling.chunk}) "
                         f"and a stash of 2, 4 or 8 steps (got {tiling.bwd_stash})")


def _reg_cap(maxnreg: int | None) -> dict:
    """The launch option capping registers per thread (compiled code only: the interpreter has none)."""
    return {} if maxnreg is None or dispatch.interpreting() else {"maxnreg": maxnreg}


def _log2e_scaled(A: torch.Tensor) -> torch.Tensor:
    """A times log2(e) in fp32: the "seq" kernels compute exp(Δ A) as exp2(Δ · A log2 e)."""
    return (A.float() * 1.4426950408889634).contiguous()


def _run_segmented(launch, like: torch.Tensor, n_state: int, n_segs: int, reverse: bool,
                   dummy: torch.Tensor, initial: torch.Tensor | None = None) -> None:
    """The two-pass segmented scan: ``launch(summary, seg_a, seg_x, carry)`` runs one pass of a kernel.
    One segment: the main pass from the ``initial`` (batch, E, N) fp32 carry, or zero. Otherwise the
    summary pass (per-segment decay and local result), :func:`segment_carries` (from the right for
    adjoints), then the main pass."""
    batch, channels = like.shape[:2]
    if n_segs == 1:
        carry = (like.new_zeros((batch, channels, 1, n_state), dtype=torch.float32) if initial is None
                 else initial.reshape(batch, channels, 1, n_state))
    else:
        seg_a = like.new_empty((batch, channels, n_segs, n_state), dtype=torch.float32)
        seg_x = torch.empty_like(seg_a)
        launch(True, seg_a, seg_x, dummy)
        carry = segment_carries(seg_a, seg_x, reverse=reverse, initial=initial)
    launch(False, dummy, dummy, carry)


def _launch_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_states, tiling: Tiling,
                initial: torch.Tensor | None = None):
    import triton

    from .triton_scan import _scan_fwd_kernel
    from .triton_seq import _seq_fwd_kernel

    _check_tiling(tiling)
    if tiling.variant == "seq":  # A times log2(e); B and C packed (and their padded length); state stride 1
        A_k = _log2e_scaled(A)
        gpu = not dispatch.interpreting()  # inline PTX: not in the interpreter
        flags = dict(TILE_IO=tiling.tile_io, PREFETCH=tiling.fwd_prefetch and tiling.tile_io,
                     ASM=tiling.fwd_fast_math and gpu, HINTS=tiling.hints and tiling.tile_io and gpu,
                     SUB=tiling.fwd_tile, INLINE_PTX=gpu)
        BC = pack_bc(B, C, multiple=16, half=tiling.bc16)  # rows zero-padded: unmasked loads
        kernel, BC_k, lengths, extra = _seq_fwd_kernel, (BC,), (u.shape[2], BC.shape[2]), (1,)
    else:
        kernel, A_k, BC_k, lengths, extra, flags = _scan_fwd_kernel, A, (B, C), (u.shape[2],), (), {}
    batch, channels, length = u.shape
    groups, n_state = B.shape[1], B.shape[2]
    block_e, chunk = _tile(channels, groups, tiling.block_e), tiling.chunk
    n_chunks = triton.cdiv(length, chunk)
    per_seg, n_segs = plan_segments(batch, triton.cdiv(channels, block_e), n_chunks, tiling.target_programs,
                                    tiling.fill_programs)
    out = torch.empty_like(u)
    states = u.new_empty((batch, channels, n_chunks, n_state), dtype=torch.float32) if save_states else None
    last = u.new_empty((batch, channels, n_state), dtype=torch.float32)
    dummy = A  # any tensor with >= E elements: pointer arguments of disabled features are never used
    grid = (batch, triton.cdiv(channels, block_e), n_segs)

    def launch(summary, seg_a, seg_h, carry):
        kernel[grid](
            u, delta, A_k, *BC_k, D if D is not None else dummy, z if z is not None else dummy,
            delta_bias if delta_bias is not None else dummy, out, states if save_states else dummy, last,
            seg_a, seg_h, carry, channels, *lengths, groups, n_chunks, per_seg, n_segs, *extra,
            SAVE_STATES=save_states, SUMMARY=summary, N=n_state, BLOCK_E=block_e, T=chunk,
            num_warps=tiling.fwd_warps, **flags, **_flags(D, z, delta_bias, delta_softplus),
            **_reg_cap(tiling.fwd_summary_maxnreg if summary else tiling.fwd_maxnreg),
        )

    _run_segmented(launch, u, n_state, n_segs, reverse=False, dummy=dummy, initial=initial)
    return out, states, last


def _launch_bwd_assoc(u, delta, A, B, C, D, z, delta_bias, delta_softplus, states, dout, tiling: Tiling,
                      dlast: torch.Tensor | None, want_dinit: bool):
    """Gradients through :func:`.triton_scan._scan_bwd_kernel` (fp32 atomics for the shared ones); see
    :func:`_launch_bwd_seq` for ``dlast`` and ``want_dinit``."""
    import triton

    from .triton_scan import _scan_bwd_kernel

    batch, channels, length = u.shape
    groups, n_state = B.shape[1], B.shape[2]
    block_e = _tile(channels, groups, tiling.bwd_block_e or tiling.block_e)
    n_chunks = states.shape[2]
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dA = torch.zeros_like(A, dtype=torch.float32)
    dB = torch.zeros_like(B, dtype=torch.float32)
    dC = torch.zeros_like(C, dtype=torch.float32)
    dD = torch.zeros_like(D, dtype=torch.float32) if D is not None else None
    dbias = torch.zeros_like(delta_bias, dtype=torch.float32) if delta_bias is not None else None
    dinit = u.new_empty((batch, channels, n_state), dtype=torch.float32) if want_dinit else None
    dummy = dA
    per_seg, n_segs = plan_segments(batch, triton.cdiv(channels, block_e), n_chunks,
                                    tiling.bwd_target_programs or tiling.target_programs, tiling.bwd_fill_programs)
    grid = (batch, triton.cdiv(channels, block_e), n_segs)

    def launch(summary, seg_a, seg_g, carry):
        _scan_bwd_kernel[grid](
            u, delta, A, B, C, D if D is not None else dummy, z if z is not None else dummy,
            delta_bias if delta_bias is not None else dummy, dout, states,
            du, ddelta, dz if dz is not None else dummy, dA, dB, dC,
            dD if dD is not None else dummy, dbias if dbias is not None else dummy,
            dinit if want_dinit else dummy,
            seg_a, seg_g, carry, channels, length, groups, n_chunks, per_seg, n_segs,
            SUMMARY=summary, N=n_state, BLOCK_E=block_e, T=tiling.chunk, HAS_DINIT=want_dinit,
            num_warps=tiling.bwd_warps, **_flags(D, z, delta_bias, delta_softplus),
        )

    _run_segmented(launch, u, n_state, n_segs, reverse=True, dummy=dummy, initial=dlast)
    return du, ddelta, dA, dB, dC, dD, dz, dbias, dinit


def warp_transpose_applies(n_state: int, block_e: int, warps: int, length: int) -> bool:
    """Whether the seq backward may sum dB/dC over a warp with the transpose-reduction PTX, which
    assumes each lane holds one channel's N = 16 values in state order. The compiler picks that layout
    for the (N, channels) tiles only when it knows L is a multiple of 16 (Triton specialises integer
    arguments on divisibility by 16): otherwise it spreads the states over 4 lanes (seen in the TTGIR
    with triton 3.6), and the sums came out wrong on the GPU (E = 70, L = 1000). Other lengths take
    the ``tl.sum`` path, which is correct for any layout. ``tests/test_scan_layout.py`` compiles the
    kernel offline and checks the layout the PTX relies on."""
    return n_state == 16 and block_e == 32 * warps and length % 16 == 0


def _launch_bwd_seq(u, delta, A, B, C, D, z, delta_bias, delta_softplus, states, dout, tiling: Tiling,
                    dlast: torch.Tensor | None, want_dinit: bool):
    """Gradients through :func:`.triton_seq_bwd._seq_bwd_kernel`; its deterministic partials of the
    shared gradients (dB/dC per warp of channels, dA/dD/dΔ-bias per segment) are summed here. On a GPU,
    where :func:`warp_transpose_applies`, the per-step channel sums use the warp transpose-reduction;
    otherwise ``tl.sum``. ``dlast`` (batch, E, N) fp32: the gradient of the returned last state, which seeds
    the adjoint at the sequence's end (None: zero); ``want_dinit``: also return the initial state's
    gradient (the adjoint before the first step), else None in its place."""
    import triton

    from .triton_seq_bwd import _seq_bwd_kernel

    batch, channels, length = u.shape
    groups, n_state = B.shape[1], B.shape[2]
    block_e = _tile(channels, groups, tiling.bwd_block_e or tiling.block_e)
    warp_e = min(block_e, 32)
    asm = not dispatch.interpreting()  # inline PTX: not in the CPU interpreter
    warp_asm = asm and warp_transpose_applies(n_state, block_e, tiling.bwd_warps, length)
    n_blocks, n_chunks = triton.cdiv(channels, block_e), states.shape[2]
    n_rows = n_blocks * (block_e // warp_e)  # one dB/dC partial row per warp of channels
    per_seg, n_segs = plan_segments(batch, n_blocks, n_chunks, tiling.bwd_target_programs or tiling.target_programs,
                                    tiling.bwd_fill_programs)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    f32 = dict(dtype=torch.float32, device=u.device)
    dBC_part = torch.empty((batch, n_rows, length, 2, n_state), **f32)
    dA_part = torch.empty((batch, n_segs, channels, n_state), **f32)
    dD_part = torch.empty((batch, n_segs, channels), **f32) if D is not None else None
    dbias_part = torch.empty((batch, n_segs, channels), **f32) if delta_bias is not None else None
    dinit = torch.empty((batch, channels, n_state), **f32) if want_dinit else None
    A2, BC, dummy = _log2e_scaled(A), pack_bc(B, C, multiple=16, half=tiling.bc16), dA_part
    grid = (batch, n_blocks, n_segs)
    sub_states = torch.empty((batch * n_blocks * n_segs, tiling.chunk // tiling.bwd_stash, n_state, block_e), **f32)

    def launch(summary, seg_a, seg_q, carry):
        _seq_bwd_kernel[grid](
            u, delta, A2, BC, D if D is not None else dummy, z if z is not None else dummy,
            delta_bias if delta_bias is not None else dummy, dout, states,
            du, ddelta, dz if dz is not None else dummy, dA_part, dBC_part,
            dD_part if D is not None else dummy, dbias_part if delta_bias is not None else dummy,
            dinit if want_dinit else dummy,
            seg_a, seg_q, carry, sub_states, channels, length, BC.shape[2], groups, n_chunks, per_seg, n_segs, 1,
            SUMMARY=summary, N=n_state, BLOCK_E=block_e, T=tiling.chunk, S=tiling.bwd_stash, WARP_E=warp_e,
            WARP_ASM=warp_asm, ASM=asm, HINTS=tiling.hints and asm, HAS_DINIT=want_dinit, INLINE_PTX=asm,
            num_warps=tiling.bwd_warps, **_flags(D, z, delta_bias, delta_softplus), **_reg_cap(tiling.bwd_maxnreg),
        )

    _run_segmented(launch, u, n_state, n_segs, reverse=True, dummy=dummy, initial=dlast)
    # (batch, rows, L, 2, N) -> dB, dC (batch, G, N, L): a group's channels are whole warps of channels
    dB, dC = dBC_part.view(batch, groups, n_rows // groups, length, 2, n_state).sum(2).permute(3, 0, 1, 4, 2)
    total = lambda part: None if part is None else part.sum((0, 1))  # noqa: E731
    return du, ddelta, total(dA_part), dB, dC, total(dD_part), dz, total(dbias_part), dinit


#: Tilings the forward op has seen, by index: a custom op's arguments are tensors and scalars, so the
#: op takes the tiling's index here (tests and tuning pass their own tilings).
_TILINGS: list[Tiling] = []


def _tiling_index(tiling: Tiling) -> int:
    if tiling not in _TILINGS:
        _TILINGS.append(tiling)
    return _TILINGS.index(tiling)


@torch.library.custom_op("genomix::selective_scan_fwd", mutates_args=())
def selective_scan_fwd(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None,
    z: torch.Tensor | None, delta_bias: torch.Tensor | None, delta_softplus: bool, save_states: bool, tiling: int,
    initial: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Triton forward as one dispatcher op: (output, chunk-start states (empty unless ``save_states``),
    last state). Being one op is what lets activation checkpointing keep its outputs instead of running
    it again in the backward (:func:`checkpoint_keeps_scan`). :class:`SelectiveScanFn` calls it only under
    a dispatch mode (selective checkpointing, tracing): the dispatcher costs ~30 µs of host time a call,
    15 % of a (1, 512, 4096) forward on an H200, which is launch-bound."""
    out, states, last = _launch_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_states,
                                    _TILINGS[tiling], initial)
    return out, states if states is not None else u.new_empty(0, dtype=torch.float32), last


@selective_scan_fwd.register_fake
def _selective_scan_fwd_shapes(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_states, tiling,
                               initial=None):
    batch, channels, length = u.shape
    n_state, chunk = A.shape[1], _TILINGS[tiling].chunk
    states_shape = (batch, channels, -(-length // chunk), n_state) if save_states else (0,)
    return (torch.empty_like(u), u.new_empty(states_shape, dtype=torch.float32),
            u.new_empty((batch, channels, n_state), dtype=torch.float32))


def _keep_scan_policy(ctx, op, *args, **kwargs):
    from torch.utils.checkpoint import CheckpointPolicy

    keep = op is torch.ops.genomix.selective_scan_fwd.default
    return CheckpointPolicy.MUST_SAVE if keep else CheckpointPolicy.PREFER_RECOMPUTE


def checkpoint_keeps_scan():
    """``context_fn`` for :func:`torch.utils.checkpoint.checkpoint` (non-reentrant): everything in the
    checkpointed block is recomputed in the backward except the Triton scan's forward, whose output and
    chunk-start states are kept. In a checkpointed Mamba block the scan's forward is ~20 % of a training
    step's kernel time at L = 1M; keeping it costs its output (u's size) and states (4 N / chunk bytes per
    element) per block."""
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(_keep_scan_policy)


class SelectiveScanFn(torch.autograd.Function):
    """Forward saves inputs and chunk-start states only; backward recomputes the rest. Gradients reach
    the initial state, and flow back from the returned last state."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, tiling, initial):
        save = any(ctx.needs_input_grad[:8]) or ctx.needs_input_grad[10]  # chunk-start states: a backward's
        if _get_current_dispatch_mode() is None:  # nothing to intercept the op: skip its ~30 µs of dispatch
            out, states, last = _launch_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save, tiling,
                                            initial)
        else:  # e.g. selective checkpointing (checkpoint_keeps_scan) or tracing: one op the mode can see
            out, states, last = torch.ops.genomix.selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias,
                                                                     delta_softplus, save, _tiling_index(tiling),
                                                                     initial)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states if save else None)
        ctx.delta_softplus, ctx.tiling = delta_softplus, tiling
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None, not a tensor of zeros
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        launch = _launch_bwd_seq if ctx.tiling.bwd_variant == "seq" else _launch_bwd_assoc
        dout = torch.zeros_like(u) if dout is None else channel_major(dout)
        dlast = None if dlast is None else dlast.float().contiguous()
        du, ddelta, dA, dB, dC, dD, dz, dbias, dinit = launch(
            u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, states, dout, ctx.tiling, dlast,
            ctx.needs_input_grad[10])
        cast = lambda g, ref: None if g is None else g.to(ref.dtype)  # noqa: E731
        return (du, ddelta, cast(dA, A), cast(dB, B), cast(dC, C), cast(dD, D), dz, cast(dbias, delta_bias),
                None, None, dinit)


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    tiling: Tiling | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan through the Triton kernels (same contract as ``selective_scan_ref``, gradients of
    ``initial_state`` and through the returned last state included).

    ``tiling`` overrides :data:`DEFAULT_TILING` (tests and tuning)."""
    if A.dim() != 2 or A.shape[1] & (A.shape[1] - 1):
        raise ValueError(f"A must be (E, N) with N a power of two for the Triton scan, got {tuple(A.shape)}")
    Bg, Cg = _as_groups(B), _as_groups(C)
    if u.shape[1] % Bg.shape[1]:
        raise ValueError(f"channels ({u.shape[1]}) must be divisible by the number of B/C groups ({Bg.shape[1]})")
    out, last = SelectiveScanFn.apply(
        channel_major(u), channel_major(delta), A.contiguous(), Bg, Cg,
        None if D is None else D.contiguous(), None if z is None else channel_major(z),
        None if delta_bias is None else delta_bias.contiguous(), delta_softplus, tiling or DEFAULT_TILING,
        None if initial_state is None else initial_state.float().contiguous(),
    )
    return (out, last) if return_last_state else out


def triton_supported(A: torch.Tensor) -> bool:
    """Whether the Triton kernels take these shapes (the state size must be a power of two)."""
    n = A.shape[-1]
    return dispatch.triton_available() and n > 0 and not n & (n - 1)
