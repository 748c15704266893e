"""CPU inference throughput of HyenaDNA sizes (fp32, no grad): tokens per second of a full forward.

For each (model, length, batch) it builds the named size with fresh weights (throughput does not
depend on the weights), warms up once, times ``--repeats`` forwards of the causal-LM model and
reports the median. Prints a table and writes ``bench_cpu_inference.json`` (atomically) to ``--out``.

    PYTHONPATH=. python pipelines/bench_cpu_inference.py --out results/
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

from genomix.models import build

DEFAULT_RUNS = ("hyenadna-tiny-1k:1024:8", "hyenadna-small-32k:32768:1")


def measure(model_name: str, length: int, batch: int, repeats: int) -> dict:
    """Median seconds per forward and tokens/s for one (model, length, batch)."""
    model = build(model_name).eval()
    ids = torch.randint(7, 11, (batch, length))
    times = []
    with torch.no_grad():
        model(ids)  # warm-up (allocator, FFT plans)
        for _ in range(repeats):
            start = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "model": model_name, "length": length, "batch": batch, "repeats": repeats,
        "params": sum(p.numel() for p in model.parameters()),
        "median_s": seconds, "min_s": min(times), "tokens_per_s": batch * length / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="MODEL:LENGTH:BATCH entries")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for spec in args.runs:
        name, length, batch = spec.split(":")
        rows.append(measure(name, int(length), int(batch), args.repeats))
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    print(f"machine: {machine}")
    print(f"{'model':<22} {'L':>7} {'B':>3} {'params':>10} {'median ms':>10} {'tokens/s':>12}")
    for r in rows:
        print(f"{r['model']:<22} {r['length']:>7} {r['batch']:>3} {r['params']:>10,} {r['median_s'] * 1e3:>10.1f} "
              f"{r['tokens_per_s']:>12,.0f}")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "bench_cpu_inference.json"
    tmp = target.with_name(f".{target.name}.partial")
    tmp.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    os.replace(tmp, target)


if __name__ == "__main__":
    main()
