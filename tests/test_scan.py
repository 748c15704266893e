"""Selective scan: reference vs a direct formula; Triton kernels (interpreter on CPU) vs the reference,
forward and backward, fp32 and bf16, ragged lengths and tiles, grouped B/C, with/without z, D, Δ-bias."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genomix.kernels import selective_scan, selective_scan_ref
from genomix.kernels.scan import reference
from genomix.kernels.scan.ops import Tiling, segment_carries, selective_scan_triton


def _inputs(batch=2, E=6, N=4, L=37, groups=None, dtype=torch.float32, z=True, D=True, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, N, L) if groups is None else (batch, groups, N, L)
    return [
        torch.randn(batch, E, L, generator=g).to(dtype),
        (torch.randn(batch, E, L, generator=g) * 0.5).to(dtype),
        -(torch.rand(E, N, generator=g) * 2 + 0.1),
        torch.randn(*shape, generator=g).to(dtype),
        torch.randn(*shape, generator=g).to(dtype),
        torch.randn(E, generator=g) if D else None,
        torch.randn(batch, E, L, generator=g).to(dtype) if z else None,
        torch.rand(E, generator=g) * 0.3 if bias else None,
    ]


def _direct(u, delta, A, B, C, D, z, delta_bias):
    """The scan written out with the full (batch, E, L, N) state: obviously right, memory-hungry."""
    if B.dim() == 4:  # grouped: each channel reads its group's B and C
        B, C = (X.repeat_interleave(u.shape[1] // X.shape[1], dim=1) for X in (B, C))
    else:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    dt = F.softplus(delta + delta_bias[None, :, None])
    decay = torch.exp(dt.unsqueeze(-1) * A[None, :, None, :])
    drive = (dt * u).unsqueeze(-1) * B.transpose(-1, -2)
    h = torch.zeros_like(decay[:, :, 0])
    states = []
    for t in range(u.shape[-1]):
        h = decay[:, :, t] * h + drive[:, :, t]
        states.append(h)
    states = torch.stack(states, dim=2)  # (b, E, L, N)
    y = (states * C.transpose(-1, -2)).sum(-1) + u * D[None, :, None]
    return y * F.silu(z), states[:, :, -1]


@pytest.mark.parametrize("groups", [None, 3])
@pytest.mark.parametrize("tracked", [False, True], ids=["no-grad", "autograd"])
def test_reference_matches_direct_formula(groups, tracked, monkeypatch):
    """The fp32 reference against the full-state formula in float64, over three of its chunks, with shared and
    grouped B/C, on both of its paths: in place without autograd, and step by step under autograd (there
    also every gradient). The bound is 2e-4 of the largest value: the 300-step recurrence with decays near
    1 amplifies exp's rounding, and on the 2-core development machine torch's fp32 exp on a (2, 6, 300, 4)
    tensor was seen, in about one process in ten, ~1e-4 relative off for some elements (float64 and other
    processes: 1e-7). A wrong formula is off by O(1)."""
    args = _inputs(L=300, groups=groups)
    monkeypatch.setattr(reference, "_REF_CHUNK_ELEMENTS", 2 * 6 * 4 * 128)  # (batch, E, N) = (2, 6, 4): 128 steps
    leaves = [a.clone().requires_grad_(tracked) for a in args]
    direct_leaves = [a.double().requires_grad_(tracked) for a in args]
    out, last = selective_scan_ref(*leaves, return_last_state=True)
    ref_out, ref_last = _direct(*direct_leaves)
    assert out.requires_grad == tracked
    assert (out.double() - ref_out).abs().max() <= 2e-4 * ref_out.abs().max()
    assert (last.double() - ref_last).abs().max() <= 2e-4 * ref_last.abs().max()
    if tracked:
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
        (out * grad).sum().backward()
        (ref_out * grad.double()).sum().backward()
        for name, x, y in zip("u delta A B C D z delta_bias".split(), leaves, direct_leaves):
            assert (x.grad.double() - y.grad).abs().max() <= 2e-4 * y.grad.abs().max(), name


def test_reference_output_takes_u_layout():
    """Contiguous (batch, E, L) for a contiguous u, as the Triton kernels return it; a transposed view of
    time-major memory for such a u (Mamba's, whose out-projection then reads it without a copy)."""
    args = _inputs(L=40)
    out = selective_scan_ref(*args)
    assert out.is_contiguous()
    time_major = [a.transpose(1, 2).contiguous().transpose(1, 2) if a is not None and a.dim() == 3 else a
                  for a in args]
    out_tm = selective_scan_ref(*time_major)
    assert out_tm.transpose(1, 2).is_contiguous()
    torch.testing.assert_close(out_tm, out, rtol=1e-6, atol=1e-6)


def _compare(args, tol, **kw):
    leaves = [None if t is None else t.clone().requires_grad_() for t in args]
    ref_leaves = [None if t is None else t.clone().requires_grad_() for t in args]
    out, last = selective_scan_triton(*leaves, return_last_state=True, tiling=Tiling(**kw))
    ref, ref_last = selective_scan_ref(*ref_leaves, return_last_state=True)
    assert out.dtype == args[0].dtype and last.dtype == torch.float32
    scale = ref.float().abs().max()
    assert (out.float() - ref.float()).abs().max() <= tol * scale
    assert (last - ref_last).abs().max() <= tol * ref_last.abs().max()
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(9)).to(out.dtype)
    out.backward(grad)
    ref.backward(grad)
    for name, x, y in zip("u delta A B C D z delta_bias".split(), leaves, ref_leaves):
        if x is None:
            continue
        assert x.grad is not None and x.grad.shape == x.shape and x.grad.dtype == x.dtype, name
        err = (x.grad.float() - y.grad.float()).abs().max() / y.grad.float().abs().max()
        assert err <= tol, (name, err.item())


@pytest.mark.parametrize(
    "case",
    [
        dict(),  # z, D, Δ-bias; L=37 with chunk 16 (ragged); E=6 with 4-channel tiles (ragged)
        dict(z=False, D=False, bias=False),
        dict(groups=2, E=8),
        dict(dtype=torch.bfloat16),
    ],
    ids=["all-features", "bare", "grouped-BC", "bf16"],
)
def test_triton_matches_reference_forward_and_backward(case):
    tol = 2e-2 if case.get("dtype") == torch.bfloat16 else 1e-4
    _compare(_inputs(**case), tol, block_e=4, chunk=16, target_programs=1)


@pytest.mark.parametrize(
    "case,tiling",
    [
        (dict(), dict(block_e=4, chunk=16, target_programs=12, bwd_block_e=2)),  # 3 one-chunk segments
        (dict(L=70, groups=2, E=8, bias=False), dict(block_e=4, chunk=16, target_programs=8)),  # ragged segments
    ],
    ids=["one-chunk-segments", "ragged-segments-grouped"],
)
def test_segmented_scan_matches_reference(case, tiling):
    """The sequence split into segments (two-pass carry) gives the same forward and gradients."""
    _compare(_inputs(**case), 1e-4, **tiling)


@pytest.mark.parametrize(
    "case,tiling",
    [
        (dict(L=24), dict(block_e=4, chunk=16, target_programs=4)),  # z, D, Δ-bias; 2 segments, ragged L and E
        (dict(L=40, groups=2, E=8, z=False, D=False, bias=False), dict(block_e=4, chunk=32, target_programs=1)),
        (dict(L=45, E=6), dict(block_e=4, chunk=16, target_programs=4, tile_io=True)),  # ragged 8-step tiles
        (dict(L=35, groups=2, E=8, z=False, bias=False, dtype=torch.bfloat16),
         dict(block_e=4, chunk=32, target_programs=1, tile_io=True)),
        # 16-step tiles: ragged last tile, two tiles per chunk, three segments
        (dict(L=75, E=6), dict(block_e=4, chunk=32, target_programs=6, tile_io=True, fwd_tile=16)),
        (dict(L=45, groups=2, E=8, dtype=torch.bfloat16),
         dict(block_e=4, chunk=16, target_programs=4, tile_io=True, fwd_tile=16)),
    ],
    ids=["all-features-segmented", "bare-grouped-BC", "tiled-io-segmented", "tiled-io-grouped-bf16",
         "tiled-io16-segmented", "tiled-io16-grouped-bf16"],
)
def test_seq_variant_matches_reference(case, tiling):
    """The sequential-step forward ("seq") gives the reference's outputs, last state and gradients."""
    tol = 2e-2 if case.get("dtype") == torch.bfloat16 else 1e-4
    _compare(_inputs(**case), tol, variant="seq", **tiling)


@pytest.mark.parametrize(
    "case,tiling",
    [
        # the next tile's loads cross chunk and segment ends; ragged L and E; fast-math flag (the
        # interpreter keeps the exact functions, so this checks the plumbing only)
        (dict(L=45, E=6), dict(block_e=4, chunk=16, target_programs=4, fwd_prefetch=True, fwd_fast_math=True)),
        # two channels per thread's worth of block (8 channels, one program); grouped bf16
        (dict(L=35, groups=2, E=16, z=False, bias=False, dtype=torch.bfloat16),
         dict(block_e=8, chunk=16, target_programs=1, fwd_prefetch=True)),
        (dict(L=77, E=6), dict(block_e=4, chunk=32, target_programs=4, fwd_prefetch=True, fwd_tile=16)),
    ],
    ids=["prefetch-segmented", "prefetch-grouped-bf16", "prefetch-tile16-segmented"],
)
def test_seq_prefetch_matches_reference(case, tiling):
    """The tiled seq forward with each tile's loads issued a tile ahead gives the reference's results."""
    tol = 2e-2 if case.get("dtype") == torch.bfloat16 else 1e-4
    _compare(_inputs(**case), tol, variant="seq", tile_io=True, **tiling)


def test_pack_bc_half_holds_the_bf16_bits_of_B_and_C():
    """bf16 B and C packed in one int32 (B low, C high) unpack exactly; padding steps are zero; other
    dtypes keep the int64 fp32 pairs."""
    from genomix.kernels.scan.ops import pack_bc

    B, C = (torch.randn(2, 3, 16, 37).bfloat16() for _ in range(2))
    packed = pack_bc(B, C, multiple=16, half=True)
    assert packed.dtype == torch.int32 and packed.shape == (2, 3, 48, 16)
    low, high = (packed << 16).view(torch.float32), (packed & -65536).view(torch.float32)
    assert torch.equal(low[:, :, :37], B.float().transpose(-1, -2))
    assert torch.equal(high[:, :, :37], C.float().transpose(-1, -2))
    assert not low[:, :, 37:].any() and not high[:, :, 37:].any()
    assert pack_bc(B.float(), C.float(), multiple=16, half=True).dtype == torch.int64


@pytest.mark.parametrize(
    "case,tiling",
    [
        # seq forward and backward on bf16 pairs; grouped B/C, ragged L, segmented
        (dict(L=45, groups=2, E=8, dtype=torch.bfloat16),
         dict(block_e=4, chunk=16, target_programs=4, bwd_block_e=4, bwd_stash=4)),
        # hints are GPU-only prefetch instructions: under the interpreter the flag must change nothing
        (dict(L=37, dtype=torch.bfloat16), dict(block_e=4, chunk=16, target_programs=3, bwd_block_e=32,
                                                 bwd_warps=1, hints=True, fwd_maxnreg=128, bwd_maxnreg=200)),
    ],
    ids=["grouped-segmented", "hints-flags"],
)
def test_seq_kernels_on_bf16_bc_pairs_match_reference(case, tiling):
    """The seq forward and backward read bf16 B/C from 4-byte pairs (``bc16``) and stay right."""
    _compare(_inputs(**case), 2e-2, variant="seq", tile_io=True, bwd_variant="seq", bc16=True, **tiling)


@pytest.mark.parametrize("tiling", [dict(variant="nope"), dict(variant="seq", chunk=24),
                                    dict(variant="seq", tile_io=True, fwd_tile=12),
                                    dict(bwd_variant="nope")],
                         ids=["variant", "chunk", "tile", "bwd-variant"])
def test_bad_tiling_is_refused(tiling):
    with pytest.raises(ValueError):
        selective_scan_triton(*_inputs(L=8), tiling=Tiling(**tiling))


def test_benchmark_tiling_overrides_parse_by_field_type():
    """``bench_scan.py --tiling`` / ``ncu_workloads.py --tiling``: texts become the fields' types; a typo is refused."""
    from genomix.kernels.bench_scan import tiling_with

    tiling = tiling_with(["variant=seq", "block_e=2", "hints=True", "fwd_prefetch=False", "fwd_maxnreg=None",
                          "bwd_maxnreg=128"])
    assert (tiling.variant, tiling.block_e, tiling.hints, tiling.fwd_prefetch, tiling.fwd_maxnreg,
            tiling.bwd_maxnreg) == ("seq", 2, True, False, None, 128)
    for bad in (["blocke=2"], ["block_e"]):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            tiling_with(bad)


def test_benchmark_backward_time_subtracts_the_training_forward(monkeypatch):
    """``bench_scan.time_passes``: the inference forward runs without autograd, the training forward with it, and
    the backward's time is forward+backward minus the training forward (whose kernels differ from inference)."""
    import triton.testing

    from genomix.kernels.bench_scan import time_passes

    seen = []

    def fake_do_bench(fn, warmup=0, rep=0, grad_to_none=None, **_):
        out = fn()
        kind = "fwd+bwd" if out is None else "train" if out.requires_grad else "infer"
        seen.append(kind)
        for t in grad_to_none or ():
            t.grad = None
        return {"infer": 1.0, "train": 1.5, "fwd+bwd": 5.0}[kind]

    monkeypatch.setattr(triton.testing, "do_bench", fake_do_bench)
    inputs = _inputs(L=9)
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    times = time_passes(selective_scan_ref, inputs, leaves, torch.ones_like(inputs[0]))
    assert seen == ["infer", "train", "fwd+bwd"]
    assert times == {"fwd_ms": 1.0, "train_fwd_ms": 1.5, "fwd_bwd_ms": 5.0, "bwd_ms": 3.5}
    assert all(t.grad is None for t in leaves)


@pytest.mark.parametrize(
    "index,bad,error,message",
    [
        (1, torch.randn(2, 6, 36), ValueError, "delta must be"),
        (2, -torch.rand(5, 4), ValueError, "A must be"),
        (3, torch.randn(2, 3, 37), ValueError, "B must be"),
        (3, torch.randn(2, 4, 4, 37), ValueError, "B must be"),  # 4 groups do not divide 6 channels
        (4, torch.randn(2, 2, 4, 37), ValueError, "same shape"),  # grouped C against ungrouped B
        (5, torch.randn(5), ValueError, "D must be"),
        (6, torch.randn(2, 6, 38), ValueError, "z must be"),
        (7, torch.randn(6, 1), ValueError, "delta_bias must be"),
        (0, torch.ones(2, 6, 37, dtype=torch.int32), TypeError, "u must be a floating-point"),
        (0, torch.randn(0, 6, 37), ValueError, r"u must be .* each at least 1"),  # was a ZeroDivisionError
        (2, -torch.rand(6, 0), ValueError, r"A must be \(channels=6, state >= 1\)"),
    ],
    ids=["delta", "A", "B-state", "B-groups", "C-vs-B", "D", "z", "bias", "int-u", "no-batch", "no-state"],
)
def test_bad_arguments_are_refused_by_name(index, bad, error, message):
    """Mismatched shapes and non-float dtypes get an error naming the argument, on the reference path
    (a broadcasting error from torch otherwise) and before any kernel could read past a tensor."""
    args = _inputs()
    args[index] = bad
    with pytest.raises(error, match=message):
        selective_scan(*args)


def test_dispatch_takes_triton_when_forced(monkeypatch):
    args = _inputs(L=20)
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    calls = []
    import genomix.kernels.scan.ops as ops

    original = ops.SelectiveScanFn.apply
    monkeypatch.setattr(ops.SelectiveScanFn, "apply", lambda *a: calls.append(1) or original(*a))
    out = selective_scan(*args)
    assert calls, "selective_scan did not take the Triton path"
    torch.testing.assert_close(out, selective_scan_ref(*args), rtol=1e-4, atol=1e-4)
    monkeypatch.setenv("GENOMIX_FORCE_REFERENCE", "1")
    calls.clear()
    selective_scan(*args)
    assert not calls


# The sequential-step backward ("seq" bwd_variant). Under the interpreter its channel sums use tl.sum and
# its exp2 is tl.exp2; the GPU-only inline PTX of the warp sums is checked by emulating it below.
@pytest.mark.parametrize(
    "case,tiling",
    [
        # z, D, Δ-bias; 3 segments; L=37: ragged chunk and sub-tile; E=6 in a 32-channel block
        (dict(), dict(block_e=4, chunk=16, target_programs=12, bwd_block_e=32, bwd_warps=1, bwd_stash=4)),
        # the seq forward's tiled I/O; grouped B/C with 4-channel blocks; ragged segments; 8-step stash
        (dict(L=70, groups=2, E=8, bias=False), dict(variant="seq", tile_io=True, block_e=4, chunk=32,
                                                     target_programs=6, bwd_block_e=4, bwd_stash=8)),
        (dict(L=29, E=5, z=False, D=False, bias=False, dtype=torch.bfloat16),
         dict(block_e=4, chunk=16, target_programs=1, bwd_block_e=32, bwd_warps=1, bwd_stash=4)),
        # 64-channel blocks of 2 warps: two dB/dC partial rows per program, the second one ragged
        (dict(E=40, L=24, batch=1), dict(block_e=4, chunk=16, target_programs=2, bwd_block_e=64, bwd_warps=2)),
        # a 2-step stash; ragged L (the last sub-tile has one step)
        (dict(L=33, E=6), dict(block_e=4, chunk=16, target_programs=3, bwd_block_e=32, bwd_warps=1, bwd_stash=2)),
        # a chunk that is not a multiple of 16: the summary pass walks 8-step tiles (16-step ones otherwise)
        (dict(L=53, E=6), dict(block_e=4, chunk=8, target_programs=3, bwd_block_e=32, bwd_warps=1, bwd_stash=4)),
    ],
    ids=["all-features-segmented", "grouped-BC-tiled-fwd", "bare-bf16", "two-warp-rows", "stash-2", "chunk-8"],
)
def test_seq_backward_matches_reference(case, tiling):
    """The sequential-step backward gives the reference's gradients of every input."""
    tol = 2e-2 if case.get("dtype") == torch.bfloat16 else 1e-4
    _compare(_inputs(**case), tol, bwd_variant="seq", **tiling)


@pytest.mark.parametrize("tiling", [dict(chunk=12), dict(bwd_stash=3)], ids=["chunk", "stash"])
def test_bad_seq_backward_tiling_is_refused(tiling):
    with pytest.raises(ValueError):
        selective_scan_triton(*_inputs(L=8), tiling=Tiling(bwd_variant="seq", **tiling))


def test_warp_transpose_only_where_its_layout_is_guaranteed():
    """The transpose-reduction PTX needs one channel per lane with its 16 states in order; the compiler
    gives the tiles that layout only for lengths that are multiples of 16 (checked in the TTGIR)."""
    from genomix.kernels.scan.ops import warp_transpose_applies

    assert warp_transpose_applies(16, 32, 1, 1 << 20)
    assert warp_transpose_applies(16, 64, 2, 4112)
    assert not warp_transpose_applies(16, 32, 1, 1000)  # L % 16 != 0: states spread over lanes
    assert not warp_transpose_applies(8, 32, 1, 4096)
    assert not warp_transpose_applies(16, 16, 1, 4096)


def _run_ptx(ptx: str, operands: list[list[float]]) -> list[float]:
    """Emulate the straight-line PTX subset of the warp-sum asm on 32 lanes; returns each lane's $0."""
    import re

    lanes = [dict({f"${i}": v for i, v in enumerate([0.0] * 16 + ops)}, **{"%laneid": lane})
             for lane, ops in enumerate(operands)]
    val = lambda regs, x: regs[x] if x in regs else float(x) if "." in x else int(x, 0)  # noqa: E731
    for line in ptx.splitlines():
        m = re.match(r"(\S+)\s+(.*);$", line.strip())
        if not m or m.group(1) == ".reg":
            continue
        op, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
        if op.startswith("shfl"):
            sent = [regs[args[1]] for regs in lanes]
            for i, regs in enumerate(lanes):
                regs[args[0]] = sent[i ^ int(args[2])]
            continue
        for regs in lanes:
            a = [val(regs, x) if x != "0f00000000" else 0.0 for x in args[1:]]
            regs[args[0]] = {"mov.u32": lambda: a[0], "mov.f32": lambda: a[0], "and.b32": lambda: a[0] & a[1],
                             "setp.ne.u32": lambda: a[0] != a[1], "selp.f32": lambda: a[0] if a[2] else a[1],
                             "add.f32": lambda: a[0] + a[1]}[op]()
    return [regs["$0"] for regs in lanes]


def test_warp_transpose_sum_ptx_gives_lane_pairs_the_warp_totals():
    """Lanes 2i and 2i+1 end with the sum over the 32 lanes of number i (the GPU path of dB/dC)."""
    from genomix.kernels.scan.triton_seq_bwd import _transpose_sum_ptx

    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, 16, generator=g, dtype=torch.float64)
    out = _run_ptx(_transpose_sum_ptx(), x.tolist())
    torch.testing.assert_close(torch.tensor(out, dtype=torch.float64), x.sum(0).repeat_interleave(2))


@pytest.mark.parametrize(
    "tiling",
    [
        dict(block_e=4, chunk=16, target_programs=1),  # one segment: the initial state is the main pass's carry
        dict(block_e=4, chunk=16, target_programs=12, bwd_block_e=2),  # three segments: it enters the carries
        dict(variant="seq", block_e=4, chunk=16, target_programs=8, tile_io=True),  # two segments
    ],
    ids=["one-segment", "segmented", "seq-segmented"],
)
def test_initial_state_continues_a_split_sequence(tiling):
    """Scanning the first part, then the rest from its last state, gives the whole sequence's outputs and
    last state; the gradients of the second part's inputs match the reference's from the same state."""
    args = _inputs(L=45)
    u, delta, A, B, C, D, z, bias = args
    cut = 20
    whole, whole_last = selective_scan_ref(*args, return_last_state=True)
    head = [u[..., :cut], delta[..., :cut], A, B[..., :cut], C[..., :cut], D, z[..., :cut], bias]
    tail = [u[..., cut:], delta[..., cut:], A, B[..., cut:], C[..., cut:], D, z[..., cut:], bias]
    _, mid = selective_scan_triton(*head, return_last_state=True, tiling=Tiling(**tiling))
    leaves = [None if t is None else t.clone().requires_grad_() for t in tail]
    ref_leaves = [None if t is None else t.clone().requires_grad_() for t in tail]
    out, last = selective_scan_triton(*leaves, return_last_state=True, initial_state=mid, tiling=Tiling(**tiling))
    ref, _ = selective_scan_ref(*ref_leaves, return_last_state=True, initial_state=mid)
    torch.testing.assert_close(out, whole[..., cut:], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last, whole_last, rtol=1e-4, atol=1e-4)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    out.backward(grad)
    ref.backward(grad)
    for name, x, y in zip("u delta A B C D z delta_bias".split(), leaves, ref_leaves):
        err = (x.grad - y.grad).abs().max() / y.grad.abs().max()
        assert err <= 1e-4, (name, err.item())


def test_initial_state_is_checked(monkeypatch):
    args = _inputs(L=8)
    with pytest.raises(ValueError, match="initial_state must be"):
        selective_scan(*args, initial_state=torch.zeros(2, 6, 5))
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")  # the dispatch hands it to the kernels
    start = torch.randn(2, 6, 4)
    torch.testing.assert_close(selective_scan(*args, initial_state=start),
                               selective_scan_ref(*args, initial_state=start), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "tiling,uses",
    [
        (dict(block_e=4, chunk=16, target_programs=1), "both"),  # one segment: dlast is the main pass's carry
        (dict(block_e=4, chunk=16, target_programs=12, bwd_block_e=2), "both"),  # three segments
        (dict(variant="seq", tile_io=True, fwd_tile=16, block_e=4, chunk=16, target_programs=8,
              bwd_variant="seq", bwd_block_e=32, bwd_warps=1, bwd_target_programs=3), "both"),
        (dict(variant="seq", tile_io=True, block_e=4, chunk=16, target_programs=1, bwd_variant="seq",
              bwd_block_e=32, bwd_warps=1, bwd_target_programs=1), "both"),
        (dict(bwd_variant="seq", block_e=4, chunk=16, target_programs=8, bwd_block_e=32, bwd_warps=1,
              bwd_target_programs=3), "last"),  # only the last state enters the loss: no output gradient
        (dict(block_e=4, chunk=16, target_programs=12, bwd_block_e=2), "out"),  # no gradient from the last state
    ],
    ids=["assoc-one-segment", "assoc-segmented", "seq-segmented", "seq-one-segment", "seq-last-only",
         "assoc-out-only"],
)
def test_gradients_reach_the_initial_state_and_leave_the_last_state(tiling, uses):
    """A loss on the outputs and on the returned last state gives the reference's gradients of every
    input, the initial state's included, on one segment and across segment carries."""
    args = _inputs(L=45)
    start = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(5))
    leaves = [None if t is None else t.clone().requires_grad_() for t in args + [start]]
    ref_leaves = [None if t is None else t.clone().requires_grad_() for t in args + [start]]
    out, last = selective_scan_triton(*leaves[:8], return_last_state=True, initial_state=leaves[8],
                                      tiling=Tiling(**tiling))
    ref, ref_last = selective_scan_ref(*ref_leaves[:8], return_last_state=True, initial_state=ref_leaves[8])
    g = torch.Generator().manual_seed(11)
    g_out, g_last = torch.randn(out.shape, generator=g), torch.randn(last.shape, generator=g)

    def loss(y, h):
        return ((y * g_out).sum() if uses != "last" else 0) + ((h * g_last).sum() if uses != "out" else 0)

    loss(out, last).backward()
    loss(ref, ref_last).backward()
    for name, x, y in zip("u delta A B C D z delta_bias initial_state".split(), leaves, ref_leaves):
        want = torch.zeros_like(y) if y.grad is None else y.grad  # no path from the loss (z, D: last only)
        got = torch.zeros_like(x) if x.grad is None else x.grad
        err = (got - want).abs().max() / want.abs().max().clamp_min(1e-12)
        assert err <= 1e-4, (name, err.item())


@pytest.mark.parametrize("n_segs,n_state,reverse,initial", [
    (1, 16, False, False), (3, 4, True, True), (64, 16, False, True), (150, 8, True, False), (150, 16, False, False),
], ids=["one", "few-reverse-init", "one-block", "ragged-blocks-reverse", "ragged-blocks"])
def test_segment_carries_match_a_sequential_walk(n_segs, n_state, reverse, initial):
    """The blocked associative scan over segment summaries gives the carries of the plain walk
    x_s = a x + h (from the left, or from the right for adjoints), across block ends and ragged last blocks."""
    g = torch.Generator().manual_seed(n_segs)
    shape = (2, 5, n_segs, n_state)
    seg_a, seg_h = torch.rand(shape, generator=g) * 1.2, torch.randn(shape, generator=g)
    init = torch.randn(2, 5, n_state, generator=g) if initial else None
    x = init.clone() if initial else torch.zeros(2, 5, n_state)
    want = torch.empty(shape)
    for s in (reversed(range(n_segs)) if reverse else range(n_segs)):
        want[:, :, s] = x
        x = seg_a[:, :, s] * x + seg_h[:, :, s]
    got = segment_carries(seg_a, seg_h, reverse=reverse, initial=init)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_plan_segments_fills_the_gpu_or_runs_one_pass():
    """Segments until batch x channel blocks x segments reaches the target (at most one per chunk), and a
    single pass once batch x channel blocks reach ``fill``."""
    from genomix.kernels.scan.ops import plan_segments

    assert plan_segments(1, 16, 8192, 16384) == (8, 1024)  # B = 1, E = 512 at L = 1M
    assert plan_segments(1, 16, 64, 16384) == (1, 64)  # no more segments than chunks
    assert plan_segments(128, 48, 16, 16384) == (6, 3)  # without fill: a summary pass for 3 segments
    assert plan_segments(128, 48, 16, 16384, fill=4096) == (16, 1)  # 6,144 programs already: one pass
    assert plan_segments(64, 48, 16, 16384, fill=4096) == (3, 6)  # 3,072: still segmented


def test_filled_launch_runs_unsegmented_and_matches_reference():
    """A tiling whose fill threshold the launch reaches scans in one pass (where the target alone would
    segment), forward and backward, and stays right."""
    _compare(_inputs(L=45), 1e-4, variant="seq", tile_io=True, fwd_tile=16, block_e=4, chunk=16,
             target_programs=64, fill_programs=4, bwd_variant="seq", bwd_block_e=4, bwd_target_programs=64,
             bwd_fill_programs=4)
