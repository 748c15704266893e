"""Launch-shape sweep of the cuFFT path's spectral product (``cufft_fused.packed_product``) on a GPU.

For each spectrum precision (complex32: the bf16 default; complex64: fp32 spectra) and each use (the
forward's product with a filter spectrum broadcast over the batch, written in place; the filter
gradient's batch-summed cross spectrum), times every (frequency pairs per program, warps, output rows
per program) in the grid with ``triton.testing.do_bench`` and reports ms and the bandwidth achieved on
the bytes that must move (both inputs read once, the output written once). Prints a table, best first
per case, and writes JSON; the defaults in ``cufft_fused`` are marked ``*``.

    PYTHONPATH=. python kernels/bench_packed_product.py --out DIR [--length 1048576 --channels 256]
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch
import triton.testing

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.bench_scan import copy_bandwidth, write_json
from genomix.kernels.fftconv import cufft_fused

BLOCKS, WARPS, ROWS = (256, 512, 1024), (4, 8), (4, 8, 16)
SETTINGS = ("PACKED_BLOCK", "PACKED_WARPS", "PACKED_ROWS")


def _cases(length: int, channels: int, batch: int, dtype: torch.dtype) -> dict:
    """name -> (callable, bytes moved): spectra of 2L-point real rows are L complex values."""
    def spectrum(b: int) -> torch.Tensor:
        return torch.randn(b, channels, length, 2, device="cuda").to(
            torch.float16 if dtype == torch.complex32 else torch.float32).view(dtype).squeeze(-1)

    x, k, g = spectrum(batch), spectrum(1), spectrum(batch)
    cross = spectrum(1)
    size = x[0].numel() * x.element_size()  # one batch entry's bytes
    return {
        "product (filter broadcast, in place)": (lambda: cufft_fused.packed_product(x, k, x), (2 * batch + 1) * size),
        "cross spectrum (batch-summed)": (lambda: cufft_fused.packed_product(g, x, cross, conj_b=True),
                                          (2 * batch + 1) * size),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=".",
                    help="folder for bench_packed_product.json (created if missing; default: current folder)")
    ap.add_argument("--length", type=int, default=1 << 20, help="L: spectra of L complex values per row")
    ap.add_argument("--channels", type=int, default=256, help="channels: spectrum rows per batch entry (default: 256)")
    ap.add_argument("--batch", type=int, default=1,
                    help="batch size B of the signal spectra; the filter spectrum has batch 1 (default: 1)")
    args = ap.parse_args()
    require_cuda(ap)
    defaults = tuple(getattr(cufft_fused, name) for name in SETTINGS)
    bw = copy_bandwidth()
    rows = []
    for dtype in (torch.complex32, torch.complex64):
        for case, (fn, nbytes) in _cases(args.length, args.channels, args.batch, dtype).items():
            for shape in itertools.product(BLOCKS, WARPS, ROWS):
                for name, value in zip(SETTINGS, shape):
                    setattr(cufft_fused, name, value)
                ms = triton.testing.do_bench(fn, warmup=10, rep=100, return_mode="median")
                rows.append({"dtype": str(dtype).split(".")[-1], "case": case, "block": shape[0], "warps": shape[1],
                             "rows": shape[2], "ms": ms, "TBps": nbytes / ms / 1e9, "default": shape == defaults})
            torch.cuda.empty_cache()
    for name, value in zip(SETTINGS, defaults):
        setattr(cufft_fused, name, value)
    write_json(Path(args.out) / "bench_packed_product.json",
               {"device": torch.cuda.get_device_name(), "copy_bandwidth_TBps": bw / 1e12, "length": args.length,
                "channels": args.channels, "batch": args.batch, "rows": rows})
    print(f"{torch.cuda.get_device_name()}, copy {bw / 1e12:.2f} TB/s; L = {args.length}, "
          f"{args.batch} x {args.channels} rows; five fastest and the default per case")
    for key in dict.fromkeys((r["dtype"], r["case"]) for r in rows):
        group = sorted((r for r in rows if (r["dtype"], r["case"]) == key), key=lambda r: r["ms"])
        shown = group[:5] + [r for r in group[5:] if r["default"]]
        print(f"{key[0]} {key[1]}")
        for r in shown:
            print(f"  {'*' if r['default'] else ' '} block {r['block']:>4} warps {r['warps']} rows {r['rows']:>2}: "
                  f"{r['ms']:.3f} ms, {r['TBps']:.2f} TB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
