"""Variant scoring throughput three ways, same run: eager forwards, the filters' spectra kept, and kept spectra
plus CUDA-graph replay (``score_variants(reuse_filters=..., cuda_graphs=...)``, as ``genomix score-variants``
with ``--no-filter-reuse`` / ``--no-cuda-graphs``).

The variants are every ``--stride``-th position of a FASTA's first record, each changed to the next base (a
VCF written to a temporary folder). The model is a named size with fresh weights (seeded) or a checkpoint.
Each way scores all of them once after a short warm-up; the script prints alleles/s and the speed-ups, checks
that the three TSVs hold the same scores, and writes JSON.

    PYTHONPATH=. python pipelines/bench_score_variants.py --fasta genome.fa --model hyenadna-small-32k --out DIR
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from genomix.cli.option_types import positive_int
from genomix.genome import read_fasta
from genomix.hub import load_model
from genomix.kernels.bench_common import exit_on_bad_input
from genomix.kernels.bench_scan import write_json
from genomix.outputs import make_output_dir
from genomix.variants import Reference, read_vcf, score_variants

WAYS = {"eager": (False, False), "filters kept": (True, False), "filters kept + graphs": (True, True)}
NEXT_BASE = {"A": "C", "C": "G", "G": "T", "T": "A"}


def write_snv_vcf(fasta: Path, stride: int, path: Path) -> int:
    """Every ``stride``-th A/C/G/T position of the first record as an SNV to the next base; returns the count."""
    name, seq = next(iter(read_fasta(fasta).items()))
    records = [(pos + 1, base, NEXT_BASE[base]) for pos in range(0, len(seq), stride)
               if (base := seq[pos].upper()) in NEXT_BASE]
    lines = ["##fileformat=VCFv4.2", f"##contig=<ID={name},length={len(seq)}>",
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"{name}\t{pos}\tv{i}\t{ref}\t{alt}\t.\tPASS\t." for i, (pos, ref, alt) in enumerate(records)]
    path.write_text("\n".join(lines) + "\n")
    return len(records)


def _scores(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fasta", type=Path, required=True,
                        help="reference FASTA; the variants are placed along its first record")
    parser.add_argument("--model", default="hyenadna-small-32k",
                        help="named size (fresh, seeded weights) or checkpoint (default: hyenadna-small-32k)")
    parser.add_argument("--stride", type=positive_int, default=16,
                        help="one variant every STRIDE positions of the first record, in bases (default: 16)")
    parser.add_argument("--window", type=positive_int, default=4096, help="bases per scoring window (default: 4096)")
    parser.add_argument("--batch-size", type=positive_int, default=16,
                        help="alleles per forward pass (default: 16)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for bench_score_variants.json (created if missing; default: current folder)")
    args = parser.parse_args(argv)
    with exit_on_bad_input(parser):  # a missing FASTA, an unknown model, a window past its context, a bad --out
        make_output_dir(args.out)
        row = measure(args)
    write_json(args.out / "bench_score_variants.json", row)
    print(f"{args.model}, {row['alleles']} alleles, window {args.window}, batch {args.batch_size}; "
          f"same scores: {row['same_scores']}")
    for way in WAYS:
        print(f"{way:>22}: {row[f'{way}_alleles_per_s']:>9.1f} alleles/s  {row[f'{way}_speedup']:.2f}x")
    return 0


def measure(args: argparse.Namespace) -> dict:
    """Each way's seconds, alleles/s and speed-up over eager, and whether the three score tables agree."""
    torch.manual_seed(0)
    reference = Reference(args.fasta)
    model = load_model(args.model, "lm")
    row: dict = {"model": args.model, "window": args.window, "batch_size": args.batch_size,
                 "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        vcf = Path(tmp) / "snvs.vcf"
        row["alleles"] = write_snv_vcf(args.fasta, args.stride, vcf)
        outputs = {}
        for way, (reuse, graphs) in WAYS.items():
            warm = Path(tmp) / f"warm-{len(outputs)}.tsv"
            score_variants(model, (v for i, v in zip(range(4 * args.batch_size), read_vcf(vcf))), reference, warm,
                           window=args.window, batch_size=args.batch_size, quiet=True, reuse_filters=reuse,
                           cuda_graphs=graphs)
            outputs[way] = Path(tmp) / f"scores-{len(outputs)}.tsv"
            start = time.perf_counter()
            score_variants(model, read_vcf(vcf), reference, outputs[way], window=args.window,
                           batch_size=args.batch_size, quiet=True, reuse_filters=reuse, cuda_graphs=graphs)
            seconds = time.perf_counter() - start
            row[f"{way}_seconds"] = seconds
            row[f"{way}_alleles_per_s"] = row["alleles"] / seconds
            print(f"{way}: {seconds:.2f} s", flush=True)
        first = _scores(next(iter(outputs.values())))
        row["same_scores"] = all(_scores(path) == first for path in outputs.values())
    for way in WAYS:
        row[f"{way}_speedup"] = row["eager_seconds"] / row[f"{way}_seconds"]
    return row


if __name__ == "__main__":
    raise SystemExit(main())
