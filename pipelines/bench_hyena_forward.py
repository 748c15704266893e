"""End-to-end HyenaDNA forward throughput: Triton fftconv vs the PyTorch reference, same run.

Builds a named HyenaDNA size with fresh weights, runs bf16-autocast forwards at the given lengths
(batch 1 by default) with each long-convolution path: the PyTorch reference (``reference``), cuFFT with
fused Triton elementwise kernels (``cufft``, the CUDA default) and the Triton Monarch-FFT kernels
(``triton``, ``GENOMIX_TRITON_OPS=fftconv``); the other kernels keep their defaults in every run. Prints
tokens/s, the ratios to the reference, peak memory and each path's agreement with the reference path (relative
L2 difference of the logits: the same model and weights, so only the convolution's arithmetic differs, under
bf16 autocast). With ``--fixed-filters`` each path also runs inside :func:`genomix.models.fixed_filters` (the
long filters' spectra made once and reused by every timed forward, as an inference loop over a fixed model
runs; label ``PATH+fixed``); its logits are compared with the same path's plain forward too. Writes JSON.

    PYTHONPATH=. python pipelines/bench_hyena_forward.py --model hyenadna-large-1m --lengths 1048576 --out DIR
    PYTHONPATH=. python pipelines/bench_hyena_forward.py --lengths 32768 --paths cufft --warmup 3 --out DIR
    PYTHONPATH=. python pipelines/bench_hyena_forward.py --lengths 1048576 --paths reference cufft --fixed-filters --out DIR
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import torch

from genomix.kernels.bench_common import cuda_event_median_ms, require_cuda
from genomix.kernels.dispatch import FFTCONV_PATHS, environment
from genomix.models import build, fixed_filters


def _time_forward(model: torch.nn.Module, ids: torch.Tensor, repeats: int, warmup: int = 1
                  ) -> tuple[float, float, torch.Tensor]:
    """Median seconds of one forward, peak GiB (measured with CUDA events after ``warmup`` forwards) and the
    first warm-up's logits in fp32, on the host (kept on the GPU they would add to the timed forwards' peak
    and, as the reference to compare with, to every later path's)."""
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(ids).logits.float().cpu()  # warm-up: compilation, autotuning, allocator
        for _ in range(warmup - 1):
            model(ids)
        torch.cuda.synchronize()
        seconds = cuda_event_median_ms(lambda: model(ids), repeats) / 1e3
    return seconds, torch.cuda.max_memory_allocated() / 2**30, logits


def run(model_name: str, lengths: list[int], batch: int, repeats: int, paths: list[str] | None = None,
        warmup: int = 1, fixed: bool = False) -> list[dict]:
    """One row per length: each path's time, throughput, peak and (when the reference runs first) logits
    difference and speed-up over the reference; with ``fixed`` also each path inside :func:`fixed_filters`
    (label ``PATH+fixed``, with its logits' difference from the same path's plain forward)."""
    paths = list(FFTCONV_PATHS) if paths is None else paths
    rows = []
    for length in lengths:
        model = build(model_name, max_seq_len=max(length, 1)).cuda().eval()
        ids = torch.randint(7, 11, (batch, length), device="cuda")
        row = {"model": model_name, "length": length, "batch": batch}
        reference_logits = plain_logits = None
        for label, path, reuse in labels(paths, fixed):
            with environment(FFTCONV_PATHS[path]), (fixed_filters(model) if reuse else contextlib.nullcontext()):
                seconds, peak, logits = _time_forward(model, ids, repeats, warmup)
            if label == "reference":
                reference_logits = logits
            if reference_logits is not None:
                row[f"{label}_rel_diff_vs_reference"] = float((logits - reference_logits).norm() / reference_logits.norm())
            if reuse:
                row[f"{label}_max_abs_diff_vs_plain"] = float((logits - plain_logits).abs().max())
            else:
                plain_logits = logits
            del logits
            row[f"{label}_ms"] = seconds * 1e3
            row[f"{label}_tokens_per_s"] = batch * length / seconds
            row[f"{label}_peak_gib"] = peak
        for label, _, _ in labels(paths, fixed):
            if "reference_ms" in row and label != "reference":
                row[f"{label}_speedup"] = row["reference_ms"] / row[f"{label}_ms"]
        rows.append(row)
        del model
        torch.cuda.empty_cache()
    return rows


def labels(paths: list[str], fixed: bool) -> list[tuple[str, str, bool]]:
    """(label, path, inside fixed_filters) of each timing, in order: each path, then (``fixed``) it reused."""
    modes = (False, True) if fixed else (False,)
    return [(f"{path}+fixed" if reuse else path, path, reuse) for path in paths for reuse in modes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hyenadna-large-1m",
                        help="named HyenaDNA size, fresh weights (default: hyenadna-large-1m)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32_768, 262_144, 1_048_576],
                        help="sequence lengths to time, in tokens (default: 32768 262144 1048576)")
    parser.add_argument("--batch", type=int, default=1, help="sequences per forward (default: 1)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed forwards per path and length; the median is reported (default: 5)")
    parser.add_argument("--paths", nargs="+", choices=list(FFTCONV_PATHS), default=list(FFTCONV_PATHS),
                        help="paths to time, in this order (the reference first for ratios and differences; one "
                             "path per process keeps the others' state out of a host-bound timing)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards per path before the timed ones")
    parser.add_argument("--fixed-filters", action="store_true",
                        help="also time each path with the filters' spectra kept between forwards (fixed_filters)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for bench_hyena_forward.json (created if missing; default: current folder)")
    args = parser.parse_args()
    require_cuda(parser)
    rows = run(args.model, args.lengths, args.batch, args.repeats, args.paths, args.warmup, args.fixed_filters)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".bench_hyena_forward.json.tmp"
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(args.out / "bench_hyena_forward.json")
    print(f"{'L':>9} {'path':>15} {'tokens/s':>10} {'vs reference':>12} {'peak GiB':>8} {'logits diff':>11}")
    for r in rows:
        for label, _, _ in labels(args.paths, args.fixed_filters):
            ratio = r.get(f"{label}_speedup", 1.0 if label == "reference" else float("nan"))
            diff = r.get(f"{label}_rel_diff_vs_reference", float("nan"))
            print(f"{r['length']:>9} {label:>15} {r[f'{label}_tokens_per_s']:>10.3e} {ratio:>11.2f}x "
                  f"{r[f'{label}_peak_gib']:>8.2f} {diff:>11.1e}")


if __name__ == "__main__":
    main()
