"""Data-pipeline benchmark: FASTA -> store conversion, random 1 Mb reads, DataLoader throughput.

Measures, in one process unless stated:
  1. conversion speed (Mb/s, one core) of a synthetic genome made here (default 200 Mb in 4 contigs,
     soft-masked stretches and N runs, written as FASTA.gz at gzip level 1) and of E. coli from
     ../shared/data/genomes (skipped with a note if that folder is absent, e.g. on another machine);
  2. random 1 Mb windows read from the store as token ids (windows/s), for each compression setting;
  3. a ``DataLoader`` over :class:`~genomix.genome.WindowDataset` with ``--workers`` workers at 1 M-token
     windows (tokens/s of input_ids delivered to the main process, labels included in the work).

Prints a table and writes JSON (atomically) to ``--out``. Example::

    PYTHONPATH=. python pipelines/bench_data.py --out bench_data.json --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from genomix.cli.option_types import non_negative_int, positive_int
from genomix.errors import GenomixError
from genomix.genome import WindowDataset, open_store, write_store
from genomix.outputs import atomic_write_text, check_output, make_output_dir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "genomes"
WINDOW = 1 << 20
#: The smallest synthetic genome (Mb) whose 4 contigs each hold a 1 Mb window (random reads need one).
MIN_SYNTHETIC_MB = 4 * WINDOW // 1_000_000 + 1


def synthetic_genome(path: Path, total_bp: int, contigs: int = 4, seed: int = 0) -> Path:
    """Write a random soft-masked FASTA.gz with N runs (60-column lines), unless it already exists."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGTacgt", dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw:
        z = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip container, level 1
        for c in range(contigs):
            n = total_bp // contigs
            codes = rng.integers(0, 4, n, dtype=np.uint8)
            soft = np.repeat(rng.random(n // 5000 + 1) < 0.5, 5000)[:n]  # 5 kb soft-masked blocks
            seq = alphabet[codes + 4 * soft]
            for start in rng.integers(0, n - 20_000, 5):  # N runs (gaps)
                seq[start:start + 20_000] = ord("N")
            pad = (-n) % 60
            lines = np.concatenate([seq, np.full(pad, ord("A"), np.uint8)]).reshape(-1, 60)
            text = np.hstack([lines, np.full((len(lines), 1), ord("\n"), np.uint8)]).ravel()
            text = text[: text.size - pad - (1 if pad else 0)].tobytes() + (b"\n" if pad else b"")
            raw.write(z.compress(f">synth{c + 1} synthetic contig\n".encode()))
            raw.write(z.compress(text))
        raw.write(z.flush())
    os.replace(tmp, path)
    return path


def bench_convert(fasta: Path, out: Path, repeats: int = 1) -> dict:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        write_store(fasta, out)
        best = min(best, time.perf_counter() - t0)
    bp = sum(open_store(out).lengths.values())
    return {"input": fasta.name, "bp": bp, "seconds": best, "mb_per_s": bp / best / 1e6}


def bench_random_reads(store_path: Path, n: int, seed: int = 0) -> dict:
    store = open_store(store_path)
    rng = np.random.default_rng(seed)
    contigs = [c for c in store.contigs if store.lengths[c] > WINDOW]
    names = [contigs[i] for i in rng.integers(len(contigs), size=n)]
    picks = [(c, int(rng.integers(0, store.lengths[c] - WINDOW))) for c in names]
    store.fetch(contigs[0], 0, WINDOW)  # open the handle outside the timing
    t0 = time.perf_counter()
    checksum = 0
    for contig, start in picks:
        checksum += int(store.fetch(contig, start, start + WINDOW)[-1])
    dt = time.perf_counter() - t0
    return {"store": store_path.name, "windows": n, "seconds": dt, "windows_per_s": n / dt,
            "compression": store.attrs.get("compression")}


def bench_loader(store_path: Path, workers: int, batches: int, batch_size: int) -> dict:
    import torch

    ds = WindowDataset(store_path, WINDOW, split="train", samples_per_epoch=(batches + 4) * batch_size,
                       rc_probability=0.5, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers,
                                         persistent_workers=False, prefetch_factor=4 if workers else None)
    it = iter(loader)
    for _ in range(2):  # warm-up: workers start and open their HDF5 handles
        next(it)
    tokens = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        tokens += batch["input_ids"].numel()
    dt = time.perf_counter() - t0
    # Up to workers * prefetch_factor batches may already wait in the queue when timing starts; the
    # lower bound credits the workers only with the batches they must have produced inside the window.
    queued = workers * 4 if workers else 0
    per_batch = tokens / batches
    return {"workers": workers, "batch_size": batch_size, "batches": batches, "seconds": dt,
            "tokens_per_s": tokens / dt, "tokens_per_s_lower_bound": max(batches - queued, 0) * per_batch / dt}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options, with sizes checked and the output path refused before the benchmarks run, not after."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_data.json", help="JSON results path")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "genomix-bench-data"),
                        help="folder for the synthetic genome and the stores made from it (created if missing; "
                             "default: genomix-bench-data in the system temp folder)")
    parser.add_argument("--synthetic-mb", type=positive_int, default=200,
                        help=f"size of the synthetic genome (Mb, at least {MIN_SYNTHETIC_MB})")
    parser.add_argument("--reads", type=positive_int, default=300, help="random 1 Mb windows to read")
    parser.add_argument("--workers", type=non_negative_int, default=4, help="DataLoader workers")
    parser.add_argument("--batches", type=positive_int, default=120, help="DataLoader batches to time")
    parser.add_argument("--batch-size", type=positive_int, default=2,
                        help="1 M-token windows per DataLoader batch (default: 2)")
    args = parser.parse_args(argv)
    if args.synthetic_mb < MIN_SYNTHETIC_MB:
        parser.error(f"--synthetic-mb must be at least {MIN_SYNTHETIC_MB}: each of its 4 contigs must hold a "
                     f"{WINDOW:,}-base window")
    try:
        check_output(args.out, overwrite=True)
        make_output_dir(Path(args.out).parent)
        make_output_dir(args.work_dir)
    except GenomixError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.work_dir)
    synth = synthetic_genome(work / f"synthetic_{args.synthetic_mb}mb.fa.gz", args.synthetic_mb * 1_000_000)
    results: dict = {"machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})",
                     "convert": [], "random_reads": [], "loader": []}
    results["convert"].append(bench_convert(synth, work / "synthetic.h5"))
    ecoli = SHARED / "ecoli_K12_MG1655.fa.gz"
    if ecoli.is_file():
        results["convert"].append(bench_convert(ecoli, work / "ecoli.h5", repeats=3))
    else:
        print(f"note: {ecoli} not found; the E. coli conversion is skipped")
    write_store(synth, work / "synthetic_lzf.h5", compression="lzf")
    for store in ("synthetic.h5", "synthetic_lzf.h5"):
        results["random_reads"].append(bench_random_reads(work / store, args.reads))
    results["loader"].append(bench_loader(work / "synthetic.h5", args.workers, args.batches, args.batch_size))
    print_table(results)
    atomic_write_text(Path(args.out), json.dumps(results, indent=1))
    return 0


def print_table(results: dict) -> None:
    """One line per measurement, with its unit."""
    print(f"\nmachine: {results['machine']}")
    print(f"{'benchmark':<46}{'value':>14}  unit")
    for r in results["convert"]:
        label = f"convert {r['input']} ({r['bp'] / 1e6:.1f} Mb)"
        print(f"{label:<46}{r['mb_per_s']:>14.1f}  Mb/s")
    for r in results["random_reads"]:
        print(f"{'random 1 Mb reads, compression=' + str(r['compression']):<46}{r['windows_per_s']:>14.1f}  windows/s")
    for r in results["loader"]:
        print(f"{'DataLoader 1 M windows, workers=' + str(r['workers']) + ', batch=' + str(r['batch_size']):<46}"
              f"{r['tokens_per_s'] / 1e6:>14.1f}  M tokens/s "
              f"(>= {r['tokens_per_s_lower_bound'] / 1e6:.1f} excluding prefetched batches)")

if __name__ == "__main__":
    raise SystemExit(main())
