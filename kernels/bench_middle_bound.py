"""How fast can one Triton pass do a 1M convolution's middle level? A probe for issue 4's 5x target at L = 1M
(kernels/fftconv/NOTES.md, "Twenty-ninth session").

Between its two Triton levels, the two-level forward at 1M spends about 2.8 ms in four passes over HBM:
cuFFT's 4096-point level of the signal and of the filter, the spectral product, and the inverse cuFFT level.
One pass could instead hold a 4096-word row of the signal and the same row of the filter. It would run their
DFTs (three 16-point Monarch steps each), multiply them, and run the inverse DFT. That pass would move 3 GiB
instead of 9, and 1M would meet 5x if it ran at about half of copy bandwidth or better.

This probe times that pass, with one omission. A packed-real product also pairs each bin k with the mirror
bin M - k, which lives in another row. Pairing rows, unpacking and repacking are left out, so the probe's time
is a lower bound for the real level. Each row here is transformed, multiplied and transformed back on its
own: a circular convolution of the row with the filter's row, checked against torch.fft on the CPU
(tests/test_bench_middle_bound.py).

    PYTHONPATH=. python kernels/bench_middle_bound.py --out DIR [--channels 256] [--warps 4 8] [--dots 1 4]

Rows: 256 channels x 256 rows of 4096 fp16 complex words each (1 GiB per operand, the 1M shape). Each
setting is timed twice: with the filter's rows transformed in the pass (``filter_dft``: the fused level that
replaces all four passes), and with the filter's spectrum read (``spectrum``: the filter side keeps its own
passes).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import triton
import triton.language as tl

from genomix.kernels.bench_common import median_ms, require_cuda
from genomix.kernels.bench_scan import copy_bandwidth, write_json
from genomix.kernels.fftconv import cufft_fused as one_level
from genomix.kernels.fftconv import two_level
from genomix.kernels.fftconv.packed_kernels import load_complex, store_complex
from genomix.kernels.fftconv.row_kernels import (MAT_F, MAT_F_ADJ, _as, _cmul, _forward_dft, _inverse_dft, _step,
                                                 _twiddle)

#: Points per row: 16 (outer step) x 256 (two inner steps of 16).
ROW = 4096


@triton.jit
def _row_forward(xr, xi, mats_ptr, tw_outer_ptr, tw_inner_ptr, DOTS: tl.constexpr, MATH: tl.constexpr):
    """The 4096-point DFT of a row given as (1, 256, 16) tiles [·, m, a] (word a·256 + m): a 16-point step over
    a, the twiddles ω_4096^(m·c), then the two-step 256-point DFT over m = a2·16 + b2 for each c. Returns
    (16, 16, 16) fp32 tiles [c, c2, d] of bin c + 16·(c2 + 16·d)."""
    pr, pi = _as(_step(xr, xi, mats_ptr, MAT_F, 256, 16, 1, DOTS), MATH)  # [·, m, c]
    twr, twi = _as(_twiddle(tw_outer_ptr, 16, 256, False), MATH)
    pr, pi = _cmul(pr, pi, twr, twi)
    pr = tl.permute(tl.reshape(pr, (16, 16, 16)), (2, 1, 0))  # [c, b2, a2]
    pi = tl.permute(tl.reshape(pi, (16, 16, 16)), (2, 1, 0))
    return _forward_dft(pr, pi, mats_ptr, mats_ptr, tw_inner_ptr, 16, 16, 16, DOTS, MATH)


@triton.jit
def _row_inverse(yr, yi, mats_ptr, tw_outer_ptr, tw_inner_ptr, DOTS: tl.constexpr, MATH: tl.constexpr):
    """Inverse of :func:`_row_forward` (unnormalised), from [c, c2, d] tiles in ``MATH`` to (1, 256, 16) fp32
    tiles [·, m, a]."""
    qr, qi = _inverse_dft(yr, yi, mats_ptr, mats_ptr, tw_inner_ptr, 16, 16, 16, DOTS, MATH)  # [c, b2, a2]
    qr = tl.reshape(tl.permute(qr, (2, 1, 0)), (1, 256, 16)).to(MATH)  # [·, m, c]
    qi = tl.reshape(tl.permute(qi, (2, 1, 0)), (1, 256, 16)).to(MATH)
    twr, twi = _as(_twiddle(tw_outer_ptr, 16, 256, False), MATH)
    qr, qi = _cmul(qr, qi, twr, -twi)
    return _step(qr, qi, mats_ptr, MAT_F_ADJ, 256, 16, 1, DOTS)


@triton.jit
def middle_probe_kernel(x_ptr, k_ptr, y_ptr, mats_ptr, tw_outer_ptr, tw_inner_ptr, scale,
                        FILTER_DFT: tl.constexpr, DOTS: tl.constexpr, MATH: tl.constexpr):
    """One program per row of 4096 fp16 complex words (int32): y = scale · IDFT(DFT(x) ⊙ K) (the scale applied
    to the inverse's fp32 output, so the fp16 steps see values of order one), K the DFT of
    ``k``'s row (FILTER_DFT) or ``k``'s row read as a spectrum in bin order [c, c2, d] (word c·256 + c2·16 +
    d)."""
    base = tl.program_id(0).to(tl.int64) * 4096
    rm, r16 = tl.arange(0, 256), tl.arange(0, 16)
    time_words = rm[None, :, None] + r16[None, None, :] * 256  # [·, m, a]
    xr, xi = _as(load_complex(x_ptr + base, time_words, None, HALF=True), MATH)
    yr, yi = _row_forward(xr, xi, mats_ptr, tw_outer_ptr, tw_inner_ptr, DOTS, MATH)
    if FILTER_DFT:
        kr, ki = _as(load_complex(k_ptr + base, time_words, None, HALF=True), MATH)
        kr, ki = _row_forward(kr, ki, mats_ptr, tw_outer_ptr, tw_inner_ptr, DOTS, MATH)
    else:
        bin_words = r16[:, None, None] * 256 + r16[None, :, None] * 16 + r16[None, None, :]
        kr, ki = load_complex(k_ptr + base, bin_words, None, HALF=True)
    yr, yi = _cmul(yr, yi, kr, ki)
    zr, zi = _row_inverse(yr.to(MATH), yi.to(MATH), mats_ptr, tw_outer_ptr, tw_inner_ptr, DOTS, MATH)
    store_complex(y_ptr + base, time_words, zr * scale, zi * scale, None, HALF=True)


def spectrum_in_bin_order(k: torch.Tensor) -> torch.Tensor:
    """The DFT of rows ``k`` (..., 4096) complex, laid out as :func:`middle_probe_kernel` reads a spectrum:
    bin c + 16·(c2 + 16·d) at position c·256 + c2·16 + d."""
    spectrum = torch.fft.fft(k.to(torch.complex128))
    return spectrum.reshape(*k.shape[:-1], 16, 16, 16).permute(*range(k.dim() - 1), -1, -2, -3).reshape(k.shape)


def middle_probe(x: torch.Tensor, k: torch.Tensor, scale: float, filter_dft: bool = True, dots: int = 1,
                 half_math: bool = True, warps: int = 4) -> torch.Tensor:
    """``scale`` times the circular convolution of each 4096-point complex32 row of ``x`` with the same row of
    ``k`` (``filter_dft``), or with the filter whose spectrum ``k`` holds in bin order
    (:func:`spectrum_in_bin_order`); complex32 out."""
    if x.shape != k.shape or x.shape[-1] != ROW or x.dtype != torch.complex32 or k.dtype != torch.complex32:
        raise ValueError(f"rows of {ROW} complex32 words, x and k alike; got {tuple(x.shape)} {x.dtype}, "
                         f"{tuple(k.shape)} {k.dtype}")
    x, k = x.contiguous(), k.contiguous()
    y = torch.empty_like(x)
    middle_probe_kernel[(x.numel() // ROW,)](
        one_level._complex_words(x), one_level._complex_words(k), one_level._complex_words(y),
        two_level._matrices(16, x.device, dots), two_level._inner_twiddles(16, 256, x.device),
        two_level._inner_twiddles(16, 16, x.device), scale,
        FILTER_DFT=filter_dft, DOTS=dots, MATH=two_level._math(half_math), num_warps=warps,
    )
    return y


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True,
                    help="folder for bench_middle_bound.json (created if missing)")
    ap.add_argument("--channels", type=int, default=256, help="channels, each of --rows rows (default: 256)")
    ap.add_argument("--rows", type=int, default=256, help="rows per channel (256 at L = 1M)")
    ap.add_argument("--warps", type=int, nargs="+", default=[4, 8],
                    help="warps per program to time, one row of 4096 words per program (default: 4 8)")
    ap.add_argument("--dots", type=int, nargs="+", default=[1, 4],
                    help="fp16 dots per complex matrix product to time: 1, 3 or 4 (default: 1 4)")
    args = ap.parse_args()
    require_cuda(ap)
    torch.manual_seed(0)
    shape = (args.channels, args.rows, ROW)
    x = (torch.randn(*shape, dtype=torch.complex64, device="cuda") / 64).to(torch.complex32)
    k = (torch.randn(*shape, dtype=torch.complex64, device="cuda") / 64).to(torch.complex32)
    want = torch.fft.ifft(torch.fft.fft(x[:1].to(torch.complex128)) * torch.fft.fft(k[:1].to(torch.complex128)))
    nbytes = 3 * x.numel() * 4  # read x and k, write y: 4-byte words
    bw = copy_bandwidth()
    result = {"device": torch.cuda.get_device_name(), "copy_bandwidth_TBps": bw / 1e12, "shape": list(shape),
              "gib_moved": nbytes / 2**30, "floor_ms": nbytes / bw * 1e3, "rows": []}
    scale = 1.0 / ROW
    # the filter's rows, or its spectrum (channel 0's is exact; the others' rows stand in for timing)
    operands = {True: k, False: torch.cat([spectrum_in_bin_order(k[:1]).to(torch.complex32), k[1:]])}
    for dots in args.dots:
        for warps in args.warps:
            for filter_dft, operand in operands.items():
                row = {"dots": dots, "warps": warps, "filter": "filter_dft" if filter_dft else "spectrum"}

                def run():
                    return middle_probe(x, operand, scale, filter_dft, dots, True, warps)
                try:
                    error = (run()[:1].to(torch.complex128) - want).abs().norm() / want.abs().norm()
                    row["rel_err_channel0"] = float(error)
                    row["ms"] = median_ms(run, "cuda")
                    row["share_of_copy_bandwidth"] = nbytes / (row["ms"] * 1e-3) / bw
                except Exception as e:  # a setting that fails to compile or run is recorded, the others go on
                    row["error"] = f"{type(e).__name__}: {e}"[:300]
                result["rows"].append(row)
                print(json.dumps(row), flush=True)
                write_json(args.out / "bench_middle_bound.json", result)
    print(f"{result['device']}, copy {bw / 1e12:.2f} TB/s; {shape} complex32 rows, "
          f"{result['gib_moved']:.1f} GiB moved, floor {result['floor_ms']:.3f} ms")
    print(f"{'dots':>4} {'warps':>5} {'filter':>10} | {'ms':>7} {'share':>6} | rel err")
    for r in result["rows"]:
        if "error" in r:
            print(f"{r['dots']:>4} {r['warps']:>5} {r['filter']:>10} | FAILED {r['error']}")
            continue
        print(f"{r['dots']:>4} {r['warps']:>5} {r['filter']:>10} | {r['ms']:>7.3f} "
              f"{r['share_of_copy_bandwidth']:>6.0%} | {r['rel_err_channel0']:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
