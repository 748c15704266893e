"""Benchmark of the long FFT convolution on a GPU: Triton kernels vs the PyTorch reference, same run.

bf16 u (B, H, L), fp32 filter (H, L) and D (H,), B*H*L = 256 M elements, HyenaDNA's recipe (``--gates``
adds bf16 pre/post-gates; ``--batch-heads B H`` sets the shape, e.g. M2's). For each L: forward and
forward+backward median ms (``triton.testing.do_bench``), speed-up over the reference, peak memory (all the
process holds, and each call's own: what it allocated above what was held when it started), and the
forward's distance from the HBM floor (read u and the gates, write y in bf16, read the filter once, at the
device-to-device copy bandwidth measured in the same run). Prints a table last and writes JSON to ``--out``.

    PYTHONPATH=. python kernels/bench_fftconv.py --out OUTDIR [--lengths 4096 32768 ...]

By default it benchmarks the public op, :func:`genomix.kernels.fftconv.fftconv`, i.e. whatever path its one
dispatch point picks for each length on this GPU (``--path dispatch``: the on-chip kernels up to
``routing.ON_CHIP_MAX_L``, the cuFFT path with fused Triton passes beyond). The other paths, at every
length: ``triton`` the Triton (Monarch) kernels; ``cufft`` the cuFFT path with fused Triton elementwise
kernels (fp16 spectra for these bf16 inputs); ``cufft-two-level`` the same with its two-level transforms
(``fftconv/two_level.py``) forced on for the forward and the backward; ``cufft-fp32`` with fp32 spectra
(``fp32_intermediate=True``). The JSON's ``triton_*`` keys hold the chosen path's numbers.
The Triton variant is ``plan.current_tuning()`` (``GENOMIX_FFTCONV_VARIANT=v1|v2`` overrides the
default); ``kernels/gpu_fftconv_variants.py`` compares the variants in one run.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path

import torch
import triton.testing

from genomix.kernels.bench_common import cuda_kernel_ms, require_cuda
from genomix.kernels.bench_scan import copy_bandwidth, write_json
from genomix.kernels.fftconv import fftconv, fftconv_ref, fftconv_triton
from genomix.kernels.fftconv import cufft_fused, two_level
from genomix.kernels.fftconv.cufft_fused import fftconv_cufft
from genomix.kernels.fftconv.plan import current_tuning

def fftconv_cufft_two_level(*args, **kwargs):
    """The cuFFT path with its two-level transforms forced on (``two_level.ENV_SWITCH``)."""
    with two_level.switched_on():
        return fftconv_cufft(*args, **kwargs)


PATHS = {"dispatch": fftconv, "triton": fftconv_triton, "cufft": fftconv_cufft,
         "cufft-two-level": fftconv_cufft_two_level,
         "cufft-fp32": functools.partial(fftconv_cufft, fp32_intermediate=True)}
SHAPES = {4096: (256, 256), 32768: (32, 256), 262144: (4, 256), 1 << 20: (1, 256), 1 << 22: (1, 64)}


def benchmark_shape(L: int) -> tuple[int, int]:
    """(B, H) of the benchmark at length L: B*H*L = 256 M elements, 256 channels where possible."""
    return SHAPES.get(L, (max(1, (1 << 28) // (256 * L)), 256))


def peak_gib(fn) -> tuple[float, float]:
    """(peak GiB allocated during ``fn`` with everything the process holds, the part of it ``fn`` itself
    allocated above what was held when it started: its transients and outputs). The first includes this
    harness's own tensors (the float64 expected output, both paths' inputs and leaves, dy: ~5.5 GiB at
    B·H·L = 256M), alike for both paths; the second is the convolution's own memory."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    held = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return peak / 2**30, (peak - held) / 2**30


def bench_one(L: int, B: int, H: int, bw: float, fast=fftconv_triton, gates: bool = False,
              k_sumsq: bool = False) -> dict:
    """One row; with ``gates`` both paths also get bf16 pre- and post-gates (as Hyena and M2 call them),
    and the forward+backward computes all five gradients. With ``k_sumsq`` the fast path is also given each
    filter row's sum of squares, as HyenaDNA's implicit filter hands it to ``fftconv`` (no norm pass over k)."""
    u = torch.randn(B, H, L, device="cuda").to(torch.bfloat16)
    k = torch.randn(H, L, device="cuda") / L ** 0.5
    if k_sumsq:
        fast = functools.partial(fast, k_sumsq=k.square().sum(-1))
    D = torch.randn(H, device="cuda")
    gate_args = [torch.randn(B, H, L, device="cuda").to(torch.bfloat16) for _ in range(2 if gates else 0)]
    inputs = (u, k, D, *gate_args)
    dy = torch.randn(B, H, L, device="cuda").to(torch.bfloat16)
    row: dict = {"L": L, "B": B, "H": H, "gates": gates, "k_sumsq": k_sumsq}
    floor_ms = (B * H * L * 2 * (2 + len(gate_args)) + H * L * 4) / bw * 1e3
    row["floor_ms"] = floor_ms
    want = fftconv_ref(*inputs).double()
    row["rel_err_vs_ref"] = float((fast(*inputs).double() - want).norm() / want.norm())
    for name, f in (("ref", fftconv_ref), ("triton", fast)):
        leaves = [t.detach().clone().requires_grad_() for t in inputs]

        def fwd():
            with torch.no_grad():
                return f(*inputs)

        def fwdbwd():
            f(*leaves).backward(dy)
            for leaf in leaves:
                leaf.grad = None

        fwd(), fwdbwd()  # compile / warm up
        row[f"{name}_fwd_ms"] = triton.testing.do_bench(fwd, warmup=50, rep=300, return_mode="median")
        row[f"{name}_fwdbwd_ms"] = triton.testing.do_bench(fwdbwd, warmup=50, rep=300, return_mode="median")
        row[f"{name}_fwd_peak_gib"], row[f"{name}_fwd_own_gib"] = peak_gib(fwd)
        row[f"{name}_fwdbwd_peak_gib"], row[f"{name}_fwdbwd_own_gib"] = peak_gib(fwdbwd)
        torch.cuda.empty_cache()
    row["fwd_speedup"] = row["ref_fwd_ms"] / row["triton_fwd_ms"]
    row["fwdbwd_speedup"] = row["ref_fwdbwd_ms"] / row["triton_fwdbwd_ms"]
    row["fwd_x_floor"] = row["triton_fwd_ms"] / floor_ms
    for step in ("fwd", "fwdbwd"):
        row[f"{step}_own_memory_ratio"] = row[f"triton_{step}_own_gib"] / row[f"ref_{step}_own_gib"]
    return row


def breakdown(L: int, B: int, H: int, fast=fftconv_triton) -> list[dict]:
    """GPU time per kernel of one fast-path forward+backward (torch.profiler), to see where time goes."""
    u = torch.randn(B, H, L, device="cuda").to(torch.bfloat16).requires_grad_()
    k = (torch.randn(H, L, device="cuda") / L ** 0.5).requires_grad_()
    D = torch.randn(H, device="cuda").requires_grad_()
    dy = torch.randn(B, H, L, device="cuda").to(torch.bfloat16)
    fast(u, k, D).backward(dy)
    u.grad = k.grad = D.grad = None  # else the profiled backward also accumulates into the warm-up's grads
    return cuda_kernel_ms(lambda: fast(u, k, D).backward(dy))[:14]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=".",
                    help="folder for bench_fftconv_<path>[_gated][_k_sumsq].json (created if missing; "
                         "default: current folder)")
    ap.add_argument("--lengths", type=int, nargs="*", default=list(SHAPES),
                    help="sequence lengths L to time (default: 4096 32768 262144 1048576 4194304)")
    ap.add_argument("--path", choices=tuple(PATHS), default="dispatch", help="the path compared with the reference")
    ap.add_argument("--breakdown", type=int, default=1 << 20, help="L whose fwd+bwd is profiled per kernel (0: none)")
    ap.add_argument("--gates", action="store_true", help="with bf16 pre- and post-gates (Hyena's and M2's calls)")
    ap.add_argument("--k-sumsq", action="store_true",
                    help="give the fast path the filter rows' sums of squares, as HyenaDNA's implicit filter does "
                         "(paths dispatch and cufft)")
    ap.add_argument("--pass-elements-log2", type=int, nargs=2, metavar=("K", "K_FILTER"),
                    help="cuFFT path: at most 2^K batch x channels x length per pass, and for training calls also "
                         "2^K_FILTER channels x length (cufft_fused.INFERENCE_ELEMENTS_PER_PASS, "
                         "TRAINING_FILTER_ELEMENTS_PER_PASS)")
    ap.add_argument("--batch-heads", type=int, nargs=2, metavar=("B", "H"),
                    help="this (batch, channels) at every length instead of B*H*L = 256M (e.g. 16 256 for M2 at 4K)")
    args = ap.parse_args()
    require_cuda(ap)
    if args.k_sumsq and args.path not in ("dispatch", "cufft"):
        ap.error("--k-sumsq applies to --path dispatch or cufft")
    if args.pass_elements_log2 is not None:
        cufft_fused.INFERENCE_ELEMENTS_PER_PASS, cufft_fused.TRAINING_FILTER_ELEMENTS_PER_PASS = (
            1 << k for k in args.pass_elements_log2)
    torch.manual_seed(0)
    bw = copy_bandwidth()
    rows = []
    for L in args.lengths:
        B, H = args.batch_heads or benchmark_shape(L)
        try:
            rows.append(bench_one(L, B, H, bw, PATHS[args.path], args.gates, args.k_sumsq))
        except Exception as e:  # keep the other lengths' numbers; the failure is reported in the table
            rows.append({"L": L, "B": B, "H": H, "error": f"{type(e).__name__}: {e}"[:300]})
        torch.cuda.empty_cache()
        print(json.dumps(rows[-1]), flush=True)
    prof = breakdown(args.breakdown, *SHAPES.get(args.breakdown, (1, 256)), PATHS[args.path]) if args.breakdown else []
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "copy_bandwidth_TBps": bw / 1e12, "max_row": os.environ.get("GENOMIX_FFTCONV_MAX_ROW", "4096"),
              "tuning": repr(current_tuning()), "path": args.path,
              "elements_per_pass": {"batch_channels_length": cufft_fused.INFERENCE_ELEMENTS_PER_PASS,
                                    "training_channels_length": cufft_fused.TRAINING_FILTER_ELEMENTS_PER_PASS},
              "rows": rows, "breakdown_L": args.breakdown, "breakdown": prof}
    suffix = ("_gated" if args.gates else "") + ("_k_sumsq" if args.k_sumsq else "")
    write_json(Path(args.out) / f"bench_fftconv_{args.path}{suffix}.json", result)
    for p in prof:
        print(f"  {p['ms']:8.2f} ms {p['calls']:3d}x {p['kernel']}")
    print(f"{result['device']}, copy {bw / 1e12:.2f} TB/s; bf16{', gates' if args.gates else ''}"
          f"{', k_sumsq given' if args.k_sumsq else ''}")
    print("GiB: peak memory of forward+backward (all the process holds); own: the call's own peak memory over the "
          "reference's, forward and forward+backward")
    print(f"{'L':>8} {'B':>3} {'H':>3} | {'ref fwd':>8} {'tri fwd':>8} {'x':>5} | {'ref f+b':>8} {'tri f+b':>8} {'x':>5} | "
          f"{'ref GiB':>7} {'tri GiB':>7} | {'own fwd':>7} {'own f+b':>7} | {'fwd/floor':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['L']:>8} {r['B']:>3} {r['H']:>3} | FAILED {r['error']}")
            continue
        print(f"{r['L']:>8} {r['B']:>3} {r['H']:>3} | {r['ref_fwd_ms']:>8.2f} {r['triton_fwd_ms']:>8.2f} {r['fwd_speedup']:>5.2f} | "
              f"{r['ref_fwdbwd_ms']:>8.2f} {r['triton_fwdbwd_ms']:>8.2f} {r['fwdbwd_speedup']:>5.2f} | "
              f"{r['ref_fwdbwd_peak_gib']:>7.2f} {r['triton_fwdbwd_peak_gib']:>7.2f} | "
              f"{r['fwd_own_memory_ratio']:>7.2f} {r['fwdbwd_own_memory_ratio']:>7.2f} | {r['fwd_x_floor']:>8.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
