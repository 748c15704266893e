"""End-to-end HyenaDNA forward throughput: Triton fftconv vs the PyTorch reference, same run.

Builds a named HyenaDNA size with fresh weights, runs bf16-autocast forwards at the given lengths
(batch 1 by default) once with the Triton fftconv (``GENOMIX_TRITON_OPS=fftconv``) and once with the
reference fftconv (``GENOMIX_REFERENCE_OPS=fftconv,fftconv-short``; the other kernels keep their
defaults in both runs), and prints tokens/s, the ratio and peak memory. Writes JSON.

    PYTHONPATH=. python pipelines/bench_hyena_forward.py --model hyenadna-large-1m --lengths 1048576 --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from genomix.models import build


def _time_forward(model: torch.nn.Module, ids: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median seconds of one forward and peak GiB, measured with CUDA events after a warm-up."""
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        model(ids)  # warm-up: compilation, autotuning, allocator
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(ids)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2], torch.cuda.max_memory_allocated() / 2**30


def run(model_name: str, lengths: list[int], batch: int, repeats: int) -> list[dict]:
    rows = []
    for length in lengths:
        model = build(model_name, max_seq_len=max(length, 1)).cuda().eval()
        ids = torch.randint(7, 11, (batch, length), device="cuda")
        row = {"model": model_name, "length": length, "batch": batch}
        os.environ["GENOMIX_TRITON_OPS"] = "fftconv"  # the Triton run takes the kernels at every length
        for label, reference_ops in (("reference", "fftconv,fftconv-short"), ("triton", "")):
            os.environ["GENOMIX_REFERENCE_OPS"] = reference_ops
            seconds, peak = _time_forward(model, ids, repeats)
            row[f"{label}_ms"] = seconds * 1e3
            row[f"{label}_tokens_per_s"] = batch * length / seconds
            row[f"{label}_peak_gib"] = peak
        os.environ.pop("GENOMIX_REFERENCE_OPS", None)
        os.environ.pop("GENOMIX_TRITON_OPS", None)
        row["speedup"] = row["reference_ms"] / row["triton_ms"]
        rows.append(row)
        del model
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hyenadna-large-1m")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32_768, 262_144, 1_048_576])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    rows = run(args.model, args.lengths, args.batch, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_hyena_forward.json").write_text(json.dumps(rows, indent=1))
    print(f"{'L':>9} {'ref tok/s':>12} {'triton tok/s':>13} {'speed-up':>9} {'ref GiB':>8} {'triton GiB':>10}")
    for r in rows:
        print(f"{r['length']:>9} {r['reference_tokens_per_s']:>12.3e} {r['triton_tokens_per_s']:>13.3e} "
              f"{r['speedup']:>9.2f} {r['reference_peak_gib']:>8.2f} {r['triton_peak_gib']:>10.2f}")


if __name__ == "__main__":
    main()
