"""How fast can many programs add into one (2N, L) dB/dC buffer? The rate that ruled out a lanes backward.

A backward with time across the threads (the "lanes" layout, built in the thirty-third session and removed in
the thirty-fourth; kernels/scan/NOTES.md) holds one or two channels per program, so the channel sums of dB and
dC cannot stay in a program: per-program partial rows would take 32 GiB at L = 1M, E = 512. The alternative is
fp32 reductions (Triton's ``tl.atomic_add`` with the result unused compiles to ``REDG.E.ADD.F32x4``, four adds
per instruction, on sm_90). This benchmark measures the rate the GPU's L2 sustains for them, without the rest
of a kernel (H200: ~0.8 T adds/s, 10 / 21.5 ms at L = 1M for 256 / 512 programs, BENCHMARKS.md), which any
backward design that reduces dB/dC through global memory has to budget for:

- ``programs`` programs (256 or 512: E = 512 channels at two or one channel per program) each walk L in
  tiles of ``16 * lanes`` steps from right to left, as a backward does, and for each tile add a value to
  every element of the tile's columns of all ``rows`` = 2N = 32 rows of one shared (rows, L) fp32 buffer
  (``mode = "atomic"``);
- ``mode = "store"`` writes the same elements to per-program partial rows instead (the deterministic
  alternative: ``programs`` x rows x L x 4 bytes written, and as much read again by the sum that would
  follow, not timed here; only where the partial rows fit in ``--store-cap-gib``).

Each program adds ``pid + 1``, so every sum is an exact small integer in fp32 whatever the order, and each
configuration is checked once before it is timed. The table gives ms per pass over L and G element-adds per
second; at L = 1M the "atomic" row is the time such a backward spends on its dB/dC reductions if they do not
overlap its arithmetic (about 18 ms is the whole backward's budget for 10x the HBM floor on an H200).

    PYTHONPATH=. python kernels/bench_scan_atomics.py --out DIR
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import triton
import triton.language as tl

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.bench_scan import write_json

#: Steps per thread (of the lanes layout) and rows of dB and dC together (2N at N = 16).
STEPS, ROWS = 16, 32


@triton.jit
def _tile_adds_kernel(dst_ptr, L, ROWS: tl.constexpr, LANES: tl.constexpr, STEPS: tl.constexpr,
                      ATOMIC: tl.constexpr):
    """Program p adds p + 1 to columns t of every row, tile by tile from the right: into the shared (ROWS, L)
    buffer with reductions (``ATOMIC``), or as stores into its own (ROWS, L) partial rows."""
    pid = tl.program_id(0)
    offs = tl.arange(0, LANES)[:, None] * STEPS + tl.arange(0, STEPS)[None, :]  # thread i: steps 16 i ... 16 i + 15
    value = tl.zeros((LANES, STEPS), tl.float32) + (pid + 1).to(tl.float32)
    n_tiles = tl.cdiv(L, LANES * STEPS)
    for i in range(n_tiles):
        t = (n_tiles - 1 - i) * (LANES * STEPS) + offs
        live = t < L
        for row in range(ROWS):
            if ATOMIC:
                tl.atomic_add(dst_ptr + row * L + t, value, mask=live, sem="relaxed")
            else:
                tl.store(dst_ptr + (pid.to(tl.int64) * ROWS + row) * L + t, value, mask=live)


def tile_adds(dst: torch.Tensor, programs: int, length: int, atomic: bool, warps: int = 4,
              rows: int = ROWS) -> torch.Tensor:
    """One pass of :func:`_tile_adds_kernel` into ``dst`` ((rows, L) for ``atomic``, else (programs, rows, L))."""
    _tile_adds_kernel[(programs,)](dst, length, ROWS=rows, LANES=32 * warps, STEPS=STEPS, ATOMIC=atomic,
                                   num_warps=warps)
    return dst


def expected_sums(dst: torch.Tensor, programs: int, atomic: bool) -> torch.Tensor:
    """What one pass leaves in a zeroed ``dst``: sum of 1..programs everywhere, or p + 1 in program p's rows."""
    if atomic:
        return torch.full_like(dst, programs * (programs + 1) / 2)
    return torch.arange(1, programs + 1, device=dst.device, dtype=dst.dtype).view(-1, 1, 1).expand_as(dst)


def measure(programs: int, length: int, atomic: bool, warps: int) -> dict:
    """Check one pass, then time it (``triton.testing.do_bench``, median)."""
    import triton.testing

    shape = (ROWS, length) if atomic else (programs, ROWS, length)
    dst = torch.zeros(shape, device="cuda", dtype=torch.float32)
    tile_adds(dst, programs, length, atomic, warps)
    exact = bool(torch.equal(dst, expected_sums(dst, programs, atomic)))
    ms = triton.testing.do_bench(lambda: tile_adds(dst, programs, length, atomic, warps), warmup=3, rep=30,
                                 return_mode="median")
    adds = programs * ROWS * length
    return {"mode": "atomic" if atomic else "store", "programs": programs, "L": length, "warps": warps,
            "exact": exact, "ms": ms, "g_adds_per_s": adds / (ms * 1e-3) / 1e9,
            "dst_gib": dst.numel() * 4 / 2**30}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1 << 16, 1 << 20],
                        help="buffer lengths L to time, in steps (default: 65536 1048576)")
    parser.add_argument("--programs", type=int, nargs="+", default=[256, 512],
                        help="numbers of programs adding into the buffer (default: 256 512)")
    parser.add_argument("--warps", type=int, nargs="+", default=[2], help="warps per program to time (default: 2)")
    parser.add_argument("--store-cap-gib", type=float, default=8.0,
                        help="skip 'store' rows whose partial rows would exceed this")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for scan_atomics.json (created if missing; default: current folder)")
    args = parser.parse_args(argv)
    require_cuda(parser)
    rows = []
    for length in args.lengths:
        for programs in args.programs:
            for warps in args.warps:
                for atomic in (True, False):
                    if not atomic and programs * ROWS * length * 4 / 2**30 > args.store_cap_gib:
                        continue
                    rows.append(measure(programs, length, atomic, warps))
                    torch.cuda.empty_cache()
                    r = rows[-1]
                    print(f"{r['mode']:>6} programs={programs:>4} L={length:>8} warps={warps} exact={r['exact']} "
                          f"{r['ms']:9.3f} ms {r['g_adds_per_s']:8.1f} G adds/s", flush=True)
    write_json(args.out / "scan_atomics.json", {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                                "triton": triton.__version__, "rows": rows})
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
