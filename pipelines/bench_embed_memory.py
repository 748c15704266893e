"""Peak memory of ``genomix embed`` on the CPU against record length, as genomix runs it and with glibc's default heap.

One record of the first N bases of E. coli K-12 (``shared/data/genomes``) per length is embedded with mean pooling
by ``--model`` (fresh weights of a named size: memory does not depend on their values), once as genomix runs it
(glibc's mmap threshold fixed at 128 KiB, :mod:`genomix.heap`) and once with ``GENOMIX_MMAP_THRESHOLD=off``
(glibc raises its threshold as large blocks are freed, which lets the heap grow with the number of windows). Each
run is its own process, without any ``MALLOC_*`` setting of the caller's; its peak resident memory comes from
``os.wait4``. Prints a table and writes ``bench_embed_memory.json`` (atomically) to ``--out``.

    PYTHONPATH=. python pipelines/bench_embed_memory.py --out results/
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genomix.cli.option_types import positive_int
from genomix.heap import without_heap_settings
from genomix.kernels.bench_common import exit_on_bad_input
from genomix.models import load_config
from genomix.outputs import atomic_write_text, make_output_dir

GENOME = Path(__file__).resolve().parents[2] / "shared" / "data" / "genomes" / "ecoli_K12_MG1655.fa.gz"
SETTINGS = {"genomix": {}, "glibc default": {"GENOMIX_MMAP_THRESHOLD": "off"}}


def write_records(lengths: list[int], folder: Path) -> dict[int, Path]:
    """One single-record FASTA per length: the genome's first ``length`` bases."""
    with gzip.open(GENOME, "rt") as fh:
        bases = "".join(line.strip() for line in fh if not line.startswith(">"))
    paths = {}
    for length in lengths:
        paths[length] = folder / f"ecoli_{length}.fa"
        paths[length].write_text(f">ecoli_{length}\n{bases[:length]}\n")
    return paths


def peak_run(command: list[str], extra_env: dict[str, str]) -> tuple[float, float]:
    """(peak resident MiB, seconds) of one ``command`` run in its own process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env={**without_heap_settings(os.environ), **extra_env},
                               stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return usage.ru_maxrss / 1024, time.perf_counter() - start  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hyenadna-tiny-1k",
                        help="named model size that embeds the records, fresh weights (default: hyenadna-tiny-1k)")
    parser.add_argument("--lengths", type=positive_int, nargs="+", default=[100_000, 400_000, 1_600_000],
                        help="record lengths to embed, in bases of E. coli (default: 100000 400000 1600000)")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help="chunks per forward pass, passed to genomix embed --batch-size (default: 32)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for bench_embed_memory.json (created if missing; default: current folder)")
    args = parser.parse_args(argv)
    with exit_on_bad_input(parser):
        load_config(args.model)
    make_output_dir(args.out)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        records = write_records(args.lengths, Path(scratch))
        for length, fasta in records.items():
            row: dict = {"model": args.model, "length": length, "batch_size": args.batch_size}
            for name, extra_env in SETTINGS.items():
                command = [sys.executable, "-m", "genomix", "embed", "--model", args.model, "--fasta", str(fasta),
                           "--out", str(Path(scratch) / "e.h5"), "--overwrite", "--quiet", "--device", "cpu",
                           "--batch-size", str(args.batch_size)]
                row[f"{name} MiB"], row[f"{name} s"] = peak_run(command, extra_env)
            rows.append(row)
            print(f"{length:>10,} bases: " + "  ".join(f"{name} {row[f'{name} MiB']:,.0f} MiB {row[f'{name} s']:.1f} s"
                                                      for name in SETTINGS), flush=True)
    atomic_write_text(args.out / "bench_embed_memory.json", json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
