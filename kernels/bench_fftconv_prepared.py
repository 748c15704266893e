"""Benchmark of a fixed filter's spectrum kept between inference calls (``prepare_filter`` + ``fftconv_prepared``)
against the plain forward of each path, same run, on a GPU.

The issue-4 shapes (bf16 u (B, H, L), fp32 filter and D, B*H*L = 256 M; ``--gates`` adds bf16 pre- and
post-gates): forward median ms (``triton.testing.do_bench``) of

- the PyTorch reference, plain (``fftconv_ref``: transforms the filter every call) and with its filter
  spectrum kept (the same reuse on the reference, so that the comparison is like for like);
- the CUDA default (:func:`fftconv`: cuFFT with fused passes, on two levels from 256K, or the on-chip kernels
  at 4K), plain and prepared;
- the one-off cost of :func:`prepare_filter`,

the speed-ups over both reference forms, the prepared output's largest difference from the plain one
(the same kernels on the same data: 0 expected) and which path the prepared filter took. Prints a table and
writes JSON.

    PYTHONPATH=. python kernels/bench_fftconv_prepared.py --out DIR [--lengths 4096 1048576] [--gates]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import triton.testing

from genomix.kernels.bench_fftconv import SHAPES, benchmark_shape
from genomix.kernels.bench_common import require_cuda
from genomix.kernels.bench_scan import write_json
from genomix.kernels.fftconv import fftconv, fftconv_prepared, fftconv_ref, prepare_filter
from genomix.kernels.fftconv.reference import forward_with_spectrum, reference_filter_spectrum


def _ms(fn) -> float:
    fn()  # compile / warm up
    return triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median")


@torch.no_grad()
def bench_one(L: int, B: int, H: int, gates: bool) -> dict:
    u = torch.randn(B, H, L, device="cuda").to(torch.bfloat16)
    k = torch.randn(H, L, device="cuda") / L ** 0.5
    D = torch.randn(H, device="cuda")
    pre, post = ([torch.randn(B, H, L, device="cuda").to(torch.bfloat16) for _ in range(2)] if gates
                 else (None, None))
    row: dict = {"L": L, "B": B, "H": H, "gates": gates}
    prepared = prepare_filter(k, D, like=u)
    row["path"] = prepared.path
    ref_spectrum = reference_filter_spectrum(k, u.dtype)
    plain = fftconv(u, k, D, pregate=pre, postgate=post)
    row["max_abs_diff_prepared_vs_plain"] = float((fftconv_prepared(u, prepared, pre, post) - plain).abs().max())
    want = fftconv_ref(u, k, D, pre, post).double()
    row["rel_err_vs_ref"] = float((plain.double() - want).norm() / want.norm())
    del plain, want
    row["ref_ms"] = _ms(lambda: fftconv_ref(u, k, D, pre, post))
    row["ref_kept_spectrum_ms"] = _ms(lambda: forward_with_spectrum(u, ref_spectrum, D, pre, post))
    row["plain_ms"] = _ms(lambda: fftconv(u, k, D, pregate=pre, postgate=post))
    row["prepared_ms"] = _ms(lambda: fftconv_prepared(u, prepared, pre, post))
    row["prepare_ms"] = _ms(lambda: prepare_filter(k, D, like=u))
    for name in ("plain", "prepared"):
        row[f"{name}_speedup"] = row["ref_ms"] / row[f"{name}_ms"]
    row["prepared_speedup_vs_ref_kept"] = row["ref_kept_spectrum_ms"] / row["prepared_ms"]
    torch.cuda.empty_cache()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=".", help="folder for bench_fftconv_prepared[_gated].json "
                    "(created if missing; default: current folder)")
    ap.add_argument("--lengths", type=int, nargs="*", default=list(SHAPES),
                    help="sequence lengths L to time (default: 4096 32768 262144 1048576 4194304)")
    ap.add_argument("--gates", action="store_true", help="with bf16 pre- and post-gates (Hyena's and M2's calls)")
    args = ap.parse_args()
    require_cuda(ap)
    rows = []
    for L in args.lengths:
        B, H = benchmark_shape(L)
        rows.append(bench_one(L, B, H, args.gates))
        print(rows[-1], flush=True)
    name = "bench_fftconv_prepared_gated.json" if args.gates else "bench_fftconv_prepared.json"
    write_json(Path(args.out) / name, {"device": torch.cuda.get_device_name(), "rows": rows})
    print(f"{'L':>9} {'B':>4} {'path':>9} {'ref':>7} {'ref kept':>8} {'plain':>7} {'prepared':>8} {'prepare':>7} "
          f"{'plain x':>7} {'prep. x':>7} {'x kept ref':>10} {'max diff':>8}")
    for r in rows:
        print(f"{r['L']:>9} {r['B']:>4} {r['path']:>9} {r['ref_ms']:>7.2f} {r['ref_kept_spectrum_ms']:>8.2f} "
              f"{r['plain_ms']:>7.2f} {r['prepared_ms']:>8.2f} {r['prepare_ms']:>7.2f} {r['plain_speedup']:>6.2f}x "
              f"{r['prepared_speedup']:>6.2f}x {r['prepared_speedup_vs_ref_kept']:>9.2f}x "
              f"{r['max_abs_diff_prepared_vs_plain']:>8.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
