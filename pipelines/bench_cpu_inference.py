"""CPU inference throughput of model sizes (fp32, no grad): tokens per second of a full forward.

For each (model, length, batch) it builds the named size with fresh weights (throughput does not
depend on the weights), warms up once, times ``--repeats`` forwards of the size's LM model (causal, or
masked for Caduceus) and reports the median. On the CPU the long convolutions and the selective scan take
their PyTorch references, so this is their speed in a model. With ``--fixed-filters`` (Hyena sizes) the
same model is timed again inside :func:`genomix.models.fixed_filters` (the long filters' spectra made once
and reused, as in an inference loop), with the largest difference of its logits from the plain forward's.
Prints a table and writes ``bench_cpu_inference.json`` (atomically) to ``--out``.

    PYTHONPATH=. python pipelines/bench_cpu_inference.py --out results/
    PYTHONPATH=. python pipelines/bench_cpu_inference.py --runs caduceus-ps-1k-d256:1024:8 --out results/
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from genomix.cli.option_types import positive_int
from genomix.kernels.bench_common import exit_on_bad_input
from genomix.models import build, fixed_filters
from genomix.outputs import atomic_write_text, make_output_dir

DEFAULT_RUNS = ("hyenadna-tiny-1k:1024:8", "hyenadna-small-32k:32768:1")


def _timed(model: torch.nn.Module, ids: torch.Tensor, repeats: int) -> tuple[list[float], torch.Tensor]:
    """Seconds of ``repeats`` forwards after a warm-up (allocator, FFT plans), and the warm-up's logits."""
    times = []
    with torch.no_grad():
        logits = model(ids).logits
        for _ in range(repeats):
            start = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - start)
    return times, logits


def measure(model_name: str, length: int, batch: int, repeats: int, fixed: bool = False) -> dict:
    """Median seconds per forward and tokens/s for one (model, length, batch); with ``fixed`` also inside
    :func:`fixed_filters` (keys ``fixed_*``)."""
    model = build(model_name).eval()
    ids = torch.randint(7, 11, (batch, length))
    times, logits = _timed(model, ids, repeats)
    seconds = statistics.median(times)
    row = {
        "model": model_name, "length": length, "batch": batch, "repeats": repeats,
        "params": sum(p.numel() for p in model.parameters()),
        "median_s": seconds, "min_s": min(times), "tokens_per_s": batch * length / seconds,
    }
    if fixed:
        with fixed_filters(model):
            fixed_times, fixed_logits = _timed(model, ids, repeats)
        row["fixed_median_s"] = statistics.median(fixed_times)
        row["fixed_tokens_per_s"] = batch * length / row["fixed_median_s"]
        row["fixed_speedup"] = seconds / row["fixed_median_s"]
        row["fixed_max_abs_diff"] = float((fixed_logits - logits).abs().max())
    return row


def run_spec(text: str) -> tuple[str, int, int]:
    """``MODEL:LENGTH:BATCH`` as (model, length, batch); an argparse error for anything else, so that a typo
    stops before the first run instead of after the ones before it."""
    parts = text.split(":")
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() and int(parts[1]) > 0 and int(parts[2]) > 0:
        return parts[0], int(parts[1]), int(parts[2])
    raise argparse.ArgumentTypeError(f"expected MODEL:LENGTH:BATCH with positive integers, e.g. "
                                     f"{DEFAULT_RUNS[0]}; got {text!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", type=run_spec, default=[run_spec(spec) for spec in DEFAULT_RUNS],
                        help="MODEL:LENGTH:BATCH entries")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed forwards per run after one warm-up; the median is reported (default: 5)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--fixed-filters", action="store_true",
                        help="also time each run with the filters' spectra kept between forwards")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for bench_cpu_inference.json (created if missing; default: current folder)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with exit_on_bad_input(parser):  # an unknown model, a length past its max_seq_len, an --out under a file
        make_output_dir(args.out)
        rows = [measure(name, length, batch, args.repeats, args.fixed_filters) for name, length, batch in args.runs]
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    print_table(machine, rows)
    atomic_write_text(args.out / "bench_cpu_inference.json", json.dumps({"machine": machine, "rows": rows}, indent=1))
    return 0


def print_table(machine: dict, rows: list[dict]) -> None:
    """The machine, then one line per run (and one per fixed-filters timing)."""
    print(f"machine: {machine}")
    print(f"{'model':<22} {'L':>7} {'B':>3} {'params':>10} {'median ms':>10} {'tokens/s':>12}")
    for r in rows:
        print(f"{r['model']:<22} {r['length']:>7} {r['batch']:>3} {r['params']:>10,} {r['median_s'] * 1e3:>10.1f} "
              f"{r['tokens_per_s']:>12,.0f}")
        if "fixed_median_s" in r:
            print(f"{'  fixed filters':<22} {'':>7} {'':>3} {'':>10} {r['fixed_median_s'] * 1e3:>10.1f} "
                  f"{r['fixed_tokens_per_s']:>12,.0f}  {r['fixed_speedup']:.2f}x, max |diff| {r['fixed_max_abs_diff']:.1e}")

if __name__ == "__main__":
    raise SystemExit(main())
