"""What do the selective scan's exps cost on their own? A measured bound under the issue's speed targets.

Every pass of the scan that walks the recurrence evaluates one decay 2^(Δ_t A_n log2 e) per channel, state and
step: E x N x L of them, 8.6 G at E = 512, N = 16, L = 1M. The forward has two such passes (summary and main,
``kernels/scan/triton_seq.py``), the backward four (summary, the chunk walk, the stash walk, the adjoint:
``triton_seq_bwd.py``). On sm_90 each decay is one ``MUFU.EX2``, and the special-function unit finishes 16 of
them per SM and clock. ``kernels/scan/NOTES.md`` counted from that rate that the forward's two passes need
4.66 ms at 1M on an H100 for their exps alone, against 5.8 ms for the whole forward at 4x the HBM floor.

This benchmark measures the bound instead of counting it. Its kernel reads Δ once (bf16, as the passes do) and
does nothing else per state and step than the decay and one fused multiply-add into a sum (an FMA, not a
recurrence: nothing waits on the previous step), at the occupancy its few registers allow, so its time is what
one pass's exps cost at best on the GPU it runs on. The table sets two such passes against the forward's 4x
target and four against the backward's 10x, beside the scan itself (forward, backward, and each forward kernel)
timed in the same process. ``--warps-per-sm`` also times one pass at a fixed occupancy (one wave of that many
warps on every SM), to see how much of the rate is left at the warps per SM the scan's passes hold.

    PYTHONPATH=. python kernels/bench_scan_exp_bound.py --out DIR   # prints a table, writes scan_exp_bound.json
    PYTHONPATH=. python kernels/bench_scan_exp_bound.py --lengths 1048576 --warps-per-sm 8 12 16 32 64 --out DIR
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import triton
import triton.language as tl

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.bench_scan import bench_length, copy_bandwidth, write_json
from genomix.kernels.scan.triton_scan import _exp2

#: Steps per program, each timed: fewer steps give more programs (at E = 512 and 128 channels per program, 256
#: steps are 1,024 programs at 64K, about half the warps an H100 holds at this kernel's 48 registers).
SEGMENTS = (64, 128, 256, 512)
#: Passes that evaluate one decay per channel, state and step.
FORWARD_PASSES, BACKWARD_PASSES = 2, 4
LOG2E = 1.4426950408889634


@triton.jit
def _decay_sums_kernel(dt_ptr, a2_ptr, out_ptr, E, L, SEGMENT: tl.constexpr, N: tl.constexpr,
                       BLOCK_E: tl.constexpr, ASM: tl.constexpr):
    """Program (c, s): ``out[s, e] = Σ_t Σ_n 2^(Δ[e, t] A2[e, n])`` over the channels ``e`` of block c and the
    steps ``t`` of segment s (``A2`` = A log2 e); one exp2 per channel, state and step, as a scan pass."""
    e = tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)
    seg = tl.program_id(1)
    emask = e < E
    a2 = tl.load(a2_ptr + e[None, :] * N + tl.arange(0, N)[:, None], mask=emask[None, :], other=0.0)
    acc = tl.zeros((N, BLOCK_E), tl.float32)
    # (1, BLOCK_E) rather than (BLOCK_E,): loaded in the layout of the (N, BLOCK_E) sums, a 1-D load is
    # converted to it through shared memory and a barrier at every step
    row = dt_ptr + e[None, :].to(tl.int64) * L
    t0 = seg * SEGMENT
    for j in range(SEGMENT):
        t = t0 + j + tl.zeros((1, BLOCK_E), tl.int32)  # a tensor, as the interpreter's masks must be
        live = emask[None, :] & (t < L)
        dt = tl.load(row + t, mask=live, other=0.0).to(tl.float32)
        acc += _exp2(dt * a2, ASM) * live.to(tl.float32)
    tl.store(out_ptr + seg * E + e, tl.sum(acc, axis=0), mask=emask)


def decay_sums(dt: torch.Tensor, a2: torch.Tensor, segment: int = 256, block_e: int = 128, warps: int = 4,
               fill: float | None = None) -> torch.Tensor:
    """(segments, E) fp32: each ``segment``-step segment's Σ_t Σ_n 2^(Δ A2) per channel, for Δ of shape (E, L)
    and ``a2`` (E, N) fp32. The GPU's exps are ``ex2.approx.ftz`` (the scan's), the interpreter's ``tl.exp2``.
    ``fill``: the output's value before the kernel writes it (NaN for a check that every element is written)."""
    channels, length = dt.shape
    n_state = a2.shape[1]
    segments = triton.cdiv(length, segment)
    out = torch.empty(segments, channels, device=dt.device, dtype=torch.float32)
    if fill is not None:
        out.fill_(fill)
    grid = (triton.cdiv(channels, block_e), segments)
    _decay_sums_kernel[grid](dt, a2, out, channels, length, SEGMENT=segment, N=n_state, BLOCK_E=block_e,
                             ASM=dt.is_cuda, num_warps=warps)
    return out


def decay_sums_reference(dt: torch.Tensor, a2: torch.Tensor, segment: int = 256) -> torch.Tensor:
    """:func:`decay_sums` in PyTorch (fp32; memory E x N x L)."""
    channels, length = dt.shape
    per_step = torch.exp2(dt.float()[:, None, :] * a2[:, :, None]).sum(1)  # (E, L)
    padded = torch.nn.functional.pad(per_step, (0, -length % segment))
    return padded.view(channels, -1, segment).sum(-1).T.contiguous()


def decay_inputs(length: int, channels: int = 512, n_state: int = 16, device: str = "cuda",
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Δ (E, L) bf16 of the scan benchmark's magnitude (softplus of N(-3, 0.5²)) and A2 = A log2 e for the S4D-real
    A = -(1..N); the exps' cost does not depend on the values."""
    g = torch.Generator(device=device).manual_seed(seed)
    dt = torch.nn.functional.softplus(torch.randn(channels, length, device=device, generator=g) * 0.5 - 3.0)
    a = -torch.arange(1, n_state + 1, device=device, dtype=torch.float32).repeat(channels, 1)
    return dt.to(torch.bfloat16), (a * LOG2E).contiguous()


def _timed_decay_passes(length: int, channels: int, n_state: int) -> dict[int, float]:
    """Median ms of one :func:`decay_sums` per segment length in ``SEGMENTS``, over fresh inputs of ``length``
    steps (freed on return)."""
    import triton.testing

    dt, a2 = decay_inputs(length, channels, n_state)
    return {segment: triton.testing.do_bench(lambda: decay_sums(dt, a2, segment), warmup=5, rep=40,
                                             return_mode="median") for segment in SEGMENTS}


def rate_at_occupancy(length: int, warps_per_sm: int, channels: int = 512, n_state: int = 16, warps: int = 4) -> dict:
    """One pass of decays over ``length`` steps launched as one wave of ``warps_per_sm`` warps on every SM (4-warp
    programs, each one whole segment), so its rate is what the special-function unit reaches at that occupancy.
    The scan's forward passes hold 12 (main) and 16 (summary) warps per SM on an H100."""
    import triton.testing

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    blocks_e = triton.cdiv(channels, 32 * warps)
    segment = triton.cdiv(length, max(1, sms * warps_per_sm // warps // blocks_e))
    dt, a2 = decay_inputs(length, channels, n_state)
    ms = triton.testing.do_bench(lambda: decay_sums(dt, a2, segment, warps=warps), warmup=3, rep=30,
                                 return_mode="median")
    return {"warps_per_sm": warps_per_sm, "segment": segment, "programs": blocks_e * triton.cdiv(length, segment),
            "ms": ms, "g_exps_per_s": channels * n_state * length / (ms * 1e-3) / 1e9}


def measure(length: int, bandwidth: float, channels: int = 512, n_state: int = 16) -> dict:
    """The decay kernel checked against its reference at a short length for each segment length (into a
    NaN-poisoned output), then timed at ``length`` for each (``triton.testing.do_bench``, median; the fastest is
    the bound), beside the scan's own times at ``length`` in this process (``bench_scan.bench_length``, kernel by
    kernel)."""
    from genomix.kernels.scan.ops import DEFAULT_TILING

    dt, a2 = decay_inputs(min(length, 4096), channels, n_state)
    errors = []
    for segment in SEGMENTS:
        want = decay_sums_reference(dt, a2, segment)
        errors.append(((decay_sums(dt, a2, segment, fill=float("nan")) - want) / want).abs().max())
    error = torch.stack(errors).max().item()  # NaN (an element left unwritten) if any is; Python's max drops it
    by_segment = _timed_decay_passes(length, channels, n_state)
    exp_ms = min(by_segment.values())
    torch.cuda.empty_cache()
    scan = bench_length(length, bandwidth, DEFAULT_TILING, ref_max_len=0, channels=channels, n_state=n_state,
                        kernel_times=True)
    exps = channels * n_state * length
    return {
        "L": length, "check_max_rel_error": error, "exp_pass_ms_by_segment": by_segment, "exp_pass_ms": exp_ms,
        "g_exps_per_s": exps / (exp_ms * 1e-3) / 1e9,
        "fwd_floor_ms": scan["fwd_floor_ms"], "bwd_floor_ms": scan["bwd_floor_ms"],
        "fwd_target_ms": 4 * scan["fwd_floor_ms"], "bwd_target_ms": 10 * scan["bwd_floor_ms"],
        "fwd_exps_ms": FORWARD_PASSES * exp_ms, "bwd_exps_ms": BACKWARD_PASSES * exp_ms,
        "fwd_ms": scan["fwd_ms"], "bwd_ms": scan["bwd_ms"], "fwd_kernels": scan["fwd_kernels"],
    }


def print_table(rows: list[dict]) -> None:
    print(f"{'L':>8} {'1 pass of exps':>14} {'G exp/s':>8} | {'fwd: 2 passes':>13} {'4x target':>9} {'scan fwd':>8} | "
          f"{'bwd: 4 passes':>13} {'10x target':>10} {'scan bwd':>8}")
    for r in rows:
        print(f"{r['L']:>8} {r['exp_pass_ms']:11.3f} ms {r['g_exps_per_s']:8.0f} | {r['fwd_exps_ms']:10.3f} ms "
              f"{r['fwd_target_ms']:9.3f} {r['fwd_ms']:8.3f} | {r['bwd_exps_ms']:10.3f} ms {r['bwd_target_ms']:10.3f} "
              f"{r['bwd_ms']:8.3f}")
    for r in rows:
        segments = ", ".join(f"{segment} steps {ms:.3f} ms" for segment, ms in r["exp_pass_ms_by_segment"].items())
        print(f"L={r['L']} one pass of exps by program length: {segments}")
        kernels = ", ".join(f"{k['kernel']} {k['ms']:.3f} ms ({k['ms'] / r['exp_pass_ms']:.2f}x)"
                            for k in r["fwd_kernels"])
        print(f"L={r['L']} forward kernels (x one pass of exps): {kernels}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1 << 16, 1 << 20],
                        help="sequence lengths L to time (default: 65536 1048576)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for scan_exp_bound.json (created if missing; default: current folder)")
    parser.add_argument("--warps-per-sm", type=int, nargs="*", default=[], metavar="W",
                        help="also time one pass of decays at the longest length as one wave of W warps per SM each")
    args = parser.parse_args(argv)
    require_cuda(parser)
    bandwidth = copy_bandwidth()
    rows = [measure(length, bandwidth) for length in args.lengths]
    occupancy = [rate_at_occupancy(max(args.lengths), w) for w in args.warps_per_sm]
    write_json(args.out / "scan_exp_bound.json", {"device": torch.cuda.get_device_name(), "copy_gbs": bandwidth / 1e9,
                                                  "torch": torch.__version__, "triton": triton.__version__,
                                                  "rows": rows, "occupancy": occupancy})
    print(f"device {torch.cuda.get_device_name()}, copy bandwidth {bandwidth / 1e9:.0f} GB/s")
    print_table(rows)
    for r in occupancy:
        print(f"L={max(args.lengths)} one wave of {r['warps_per_sm']} warps per SM ({r['programs']} programs of "
              f"{r['segment']} steps): {r['ms']:.3f} ms, {r['g_exps_per_s']:.0f} G exp/s")
    return 0 if all(r["check_max_rel_error"] < 1e-4 for r in rows) else 1  # NaN fails too


if __name__ == "__main__":
    raise SystemExit(main())
