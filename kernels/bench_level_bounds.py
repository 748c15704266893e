"""What bounds the two-level convolution's Triton levels? A probe for issue 4's 5x target at L = 1M, where
the first and the last level run at ~50 % of copy bandwidth (kernels/fftconv/NOTES.md, "Twentieth session").

Three timings of the same bytes, batch 1, bf16 u (1, H, L), H = 256, L = 1M by default:

1. the levels' HBM access pattern with no arithmetic: per program, the (n2 rows x 2·KB samples) time tile
   at a stride of 2·n1 samples and the (n2 rows x KB words) spectrum tile at a stride of n1 words, as the
   first level reads and writes them and the last level the other way round;
2. the library's first level (:func:`.two_level.first_level`) and last level (:func:`.two_level.last_level`
   as the forward runs it, the skip term folded into the filter: twentieth session's numbers are with the
   skip term read here) on the same tensors;
3. the first level as a persistent kernel whose time tiles arrive by TMA (a host tensor descriptor), copied
   stages ahead by Triton's software pipeliner, so that loads are in flight while a program computes its
   previous tile, at 2-4 programs per SM, 1-3 stages and a 128-register cap or none.

If (1) runs near copy bandwidth and (2) does not, the levels are bound by their arithmetic between load and
store, not by their memory pattern; (3) tests whether overlapping a program's loads with its own
arithmetic recovers that.

    PYTHONPATH=. python kernels/bench_level_bounds.py --out DIR [--length 1048576] [--channels 256]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import triton
import triton.language as tl

from genomix.kernels.bench_common import median_ms, require_cuda
from genomix.kernels.bench_scan import copy_bandwidth, write_json
from genomix.kernels.fftconv import cufft_fused as one_level
from genomix.kernels.fftconv import two_level
from genomix.kernels.fftconv.packed_kernels import load_complex, store_complex
from genomix.kernels.fftconv.row_kernels import (_as, _cmul, _forward_dft, _outer_twiddle, _spectrum_words,
                                                 _to_columns)


@triton.jit
def _time_tile(j0, n1, L, N2: tl.constexpr, KB: tl.constexpr):
    """Offsets (N2, 2·KB) of a program's time tile and their mask (times < L)."""
    t = tl.arange(0, N2)[:, None] * (2 * n1) + 2 * j0 + tl.arange(0, 2 * KB)[None, :]
    return t, t < L


@triton.jit
def _word_tile(j0, n1, N2: tl.constexpr, KB: tl.constexpr):
    """Offsets (N2, KB) of a program's spectrum words."""
    return tl.arange(0, N2)[:, None] * n1 + j0 + tl.arange(0, KB)[None, :]


@triton.jit
def first_pattern_kernel(x_ptr, out_ptr, n1, n_blk, L, N2: tl.constexpr, KB: tl.constexpr):
    """The first level's reads and writes without its transform: samples in, fp16 words out."""
    pid = tl.program_id(0)
    row = (pid // n_blk).to(tl.int64)
    j0 = (pid % n_blk) * KB
    t, mask = _time_tile(j0, n1, L, N2, KB)
    re, im = tl.split(tl.reshape(tl.load((x_ptr + row * L) + t, mask=mask, other=0.0).to(tl.float32), (N2, KB, 2)))
    store_complex(out_ptr + row * n1 * N2, _word_tile(j0, n1, N2, KB), re, im, None, HALF=True)


@triton.jit
def last_pattern_kernel(words_ptr, out_ptr, n1, n_blk, L, N2: tl.constexpr, KB: tl.constexpr):
    """The last level's reads and writes without its transform: fp16 words in, samples out."""
    pid = tl.program_id(0)
    row = (pid // n_blk).to(tl.int64)
    j0 = (pid % n_blk) * KB
    re, im = load_complex(words_ptr + row * n1 * N2, _word_tile(j0, n1, N2, KB), None, HALF=True)
    t, mask = _time_tile(j0, n1, L, N2, KB)
    tl.store((out_ptr + row * L) + t, tl.reshape(tl.join(re, im), (N2, 2 * KB)).to(tl.bfloat16), mask=mask)


@triton.jit
def first_level_tma_kernel(x_desc, scale_ptr, out_ptr, mats_a_ptr, mats_b_ptr, tw_ptr, outer_ptr, n1, n_blk,
                           n_tiles, TA: tl.constexpr, TB: tl.constexpr, KB: tl.constexpr, DOTS: tl.constexpr,
                           STAGES: tl.constexpr, MATH: tl.constexpr):
    """:func:`.row_kernels.first_level_kernel` (one row, no gate, n1 a multiple of KB) as a persistent loop
    over tiles whose (1, TA·TB, 2·KB) time tiles come by TMA (rows past the signal zero-filled)."""
    for tile in tl.range(tl.program_id(0), n_tiles, tl.num_programs(0), num_stages=STAGES):
        row = tile // n_blk
        j0 = (tile % n_blk) * KB
        x = x_desc.load([row, 0, 2 * j0])  # [j2 = a·TB + b, q]
        x = tl.permute(tl.reshape(x, (TA, TB, 2 * KB)), (1, 0, 2)).to(tl.float32) * tl.load(scale_ptr + row)
        xr, xi = _as(_to_columns(x, TA, TB, KB), MATH)
        yr, yi = _forward_dft(xr, xi, mats_a_ptr, mats_b_ptr, tw_ptr, TA, TB, KB, DOTS, MATH)
        j1 = j0 + tl.arange(0, KB)
        c, s = _outer_twiddle(outer_ptr, j1, n1, TA, TB, True, tl.float32)
        yr, yi = _cmul(yr, yi, c, s)
        store_complex(out_ptr + row.to(tl.int64) * n1 * TA * TB, _spectrum_words(j1, n1, TA, TB), yr, yi, None,
                      HALF=True)


def _tbps(nbytes: int, ms: float) -> float:
    """Bytes moved in ``ms`` milliseconds, in TB/s."""
    return nbytes / ms / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True,
                    help="folder for bench_level_bounds.json (created if missing)")
    ap.add_argument("--length", type=int, default=1 << 20, help="a power of two, at least 2^16")
    ap.add_argument("--channels", type=int, default=256, help="number of channels H, batch 1 (default: 256)")
    args = ap.parse_args()
    require_cuda(ap)
    torch.manual_seed(0)
    H, L = args.channels, args.length
    u = torch.randn(1, H, L, device="cuda").to(torch.bfloat16)
    plan = one_level._plan(u, False)
    n1, n2 = two_level._split(plan)
    if n2 != two_level.TILE ** 2 or L & (L - 1):
        raise SystemExit("this probe covers the square 16 x 16 level: a power-of-two length below 4M")
    scale = torch.full((1, H), 0.5, device="cuda")
    spectrum = torch.empty(1, H, n2, n1, dtype=torch.complex32, device="cuda")
    words = one_level._complex_words(spectrum)
    y = torch.empty_like(u)
    nbytes = u.numel() * 2 + words.numel() * 4  # what either level reads and writes (the zero half unread)
    result = {"device": torch.cuda.get_device_name(), "copy_bandwidth_TBps": copy_bandwidth() / 1e12,
              "length": L, "channels": H, "gib_per_level": nbytes / 2**30, "pattern": {}, "tma_first_level": {}}
    print(f"{result['device']}, copy {result['copy_bandwidth_TBps']:.2f} TB/s; (1, {H}, {L}) bf16, "
          f"{nbytes / 2**30:.2f} GiB per level")
    for kb in (8, 16, 32, 64):
        n_blk = n1 // kb
        grid = (H * n_blk,)
        first = median_ms(lambda: first_pattern_kernel[grid](u, words, n1, n_blk, L, N2=n2, KB=kb, num_warps=4), "cuda")
        last = median_ms(lambda: last_pattern_kernel[grid](words, y, n1, n_blk, L, N2=n2, KB=kb, num_warps=4), "cuda")
        result["pattern"][kb] = {"first_ms": first, "last_ms": last}
        print(f"pattern only, {kb:2d} columns per program: first {first:.3f} ms ({_tbps(nbytes, first):.2f} TB/s)"
              f", last {last:.3f} ms ({_tbps(nbytes, last):.2f} TB/s)")
    reference = two_level.first_level(u, None, scale, plan)
    n_inv = torch.full((1, H), 1.0 / plan.n, device="cuda")
    result["library_first_ms"] = median_ms(lambda: two_level.first_level(u, None, scale, plan), "cuda")
    result["library_last_ms"] = median_ms(lambda: two_level.last_level(reference, n_inv, None, y), "cuda")
    print(f"library levels ({two_level.COLUMNS} columns, {two_level.ROW_WARPS} warps): first "
          f"{result['library_first_ms']:.3f} ms ({_tbps(nbytes, result['library_first_ms']):.2f} TB/s), last "
          f"{result['library_last_ms']:.3f} ms ({_tbps(nbytes, result['library_last_ms']):.2f} TB/s)")

    from triton.tools.tensor_descriptor import TensorDescriptor  # needs a GPU build of Triton
    TA = TB = two_level.TILE
    KB = two_level.COLUMNS
    tables = (two_level._matrices(TA, u.device, two_level.DOTS), two_level._matrices(TB, u.device, two_level.DOTS),
              two_level._inner_twiddles(TA, TB, u.device), two_level._outer_twiddles(n1, TA, TB, u.device))
    desc = TensorDescriptor(u.view(H, L // (2 * n1), 2 * n1), [H, L // (2 * n1), 2 * n1], [L, 2 * n1, 1],
                            [1, TA * TB, 2 * KB])
    n_blk = n1 // KB
    n_tiles = H * n_blk
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for per_sm in (2, 3, 4):
        for stages in (1, 2, 3):
            for cap in (128, None):
                options = {"num_warps": 4, **({"maxnreg": cap} if cap else {})}

                def call():
                    first_level_tma_kernel[(min(n_tiles, per_sm * sms),)](
                        desc, scale, words, *tables, n1, n_blk, n_tiles, TA=TA, TB=TB, KB=KB, DOTS=two_level.DOTS,
                        STAGES=stages, MATH=tl.float16, **options)
                words.fill_(-1)  # poisoned: every word must be written
                call()
                error = ((torch.view_as_real(spectrum).float() - torch.view_as_real(reference).float()).norm()
                         / torch.view_as_real(reference).float().norm()).item()
                ms = median_ms(call, "cuda")
                result["tma_first_level"][f"{per_sm}/{stages}/{cap}"] = {"ms": ms, "error_vs_library": error}
                print(f"TMA first level, {per_sm} programs per SM, {stages} stages, cap {cap}: {ms:.3f} ms "
                      f"(error against the library's {error:.1e})")
    write_json(args.out / "bench_level_bounds.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
