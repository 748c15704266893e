"""Variant-effect evaluation: how well a model's scores separate labelled pathogenic from benign variants.

Reads a labelled table (tab-separated, with columns ``chrom pos ref alt label``, label 1 = pathogenic,
0 = benign; e.g. ``shared/data/variants/clinvar_chrMT_labeled_GRCh38_rCRS.tsv``), writes it as a VCF,
scores it with ``genomix score-variants``' library call, and reports the AUROC of a pathogenicity score,
overall and for SNVs and indels apart: ``-llr`` for the likelihood methods (a model that finds pathogenic
alleles less likely scores above 0.5), the embedding distance for ``--method embedding``. Prints a table and writes
``eval_variant_scoring.json`` (atomically) and the per-variant ``scores.tsv`` to ``--out``; a rerun replaces
them. A bad input (a missing file, a label other than 0/1, an unknown contig, a model that cannot be loaded) stops
with one line and exit status 2.

    PYTHONPATH=. python pipelines/eval_variant_scoring.py --model CHECKPOINT \\
        --variants ../shared/data/variants/clinvar_chrMT_labeled_GRCh38_rCRS.tsv \\
        --reference ../shared/data/genomes/human_mtDNA_rCRS.fa --contig-map MT=MT_human --out DIR
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 positive, 0 negative): the Mann-Whitney
    probability that a positive outscores a negative, ties counting one half (average ranks)."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    for end in range(1, len(scores) + 1):  # average rank over each run of ties
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def read_labelled(path: Path) -> list[dict]:
    """Rows of the labelled table; an :class:`InputFormatError` naming the file (and line) when it is missing, a
    needed column is missing or a label is not 0 or 1, so that a bad table stops before the model is loaded."""
    from genomix.errors import InputFormatError

    if not path.is_file():
        raise InputFormatError(f"{path}: no such labelled variant table; check --variants")
    with open(path) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    missing = {"chrom", "pos", "ref", "alt", "label"} - set(rows[0] if rows else {})
    if missing:
        raise InputFormatError(f"{path}: missing columns {sorted(missing)} (need chrom pos ref alt label)")
    for line, row in enumerate(rows, start=2):
        if row["label"] not in ("0", "1"):
            raise InputFormatError(f"{path}, line {line}: label {row['label']!r} is not 0 (benign) or 1 (pathogenic)")
    return rows


def write_vcf(rows: list[dict], path: Path) -> None:
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"{r['chrom']}\t{r['pos']}\trow{i}\t{r['ref']}\t{r['alt']}\t.\t.\tLABEL={r['label']}"
              for i, r in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="causal- or masked-LM checkpoint or Hub id (a named size: random "
                        "weights); masked models score substitutions only")
    parser.add_argument("--variants", type=Path, required=True, help="labelled TSV: chrom pos ref alt label")
    parser.add_argument("--reference", type=Path, required=True, help="FASTA or genome store (.h5)")
    parser.add_argument("--contig-map", action="append", default=[], metavar="VCF=REF")
    parser.add_argument("--window", type=int)
    parser.add_argument("--method", choices=("causal", "masked", "embedding"),
                        help="scoring method (default: by the model's head); embedding ranks by distance")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    from genomix.kernels.bench_common import exit_on_bad_input

    # score_variants' advice to continue with --resume is for `genomix score-variants`: a rerun of this script
    # starts afresh, so only the cause is shown
    with exit_on_bad_input(parser, show_cause=True):
        return evaluate(args)


def evaluate(args: argparse.Namespace) -> int:
    """Score the labelled variants with the model and write the AUROC table (the work of :func:`main`); the
    inputs are read and checked before the model is loaded."""
    from genomix.hub import load_model
    from genomix.outputs import atomic_write_text, make_output_dir
    from genomix.variants import Reference, parse_contig_map, read_vcf, score_variants

    rows = read_labelled(args.variants)
    reference = Reference(args.reference, parse_contig_map(args.contig_map))
    make_output_dir(args.out)
    vcf = args.out / "variants.vcf"
    write_vcf(rows, vcf)
    model = load_model(args.model, "lm")
    scores_path = args.out / "scores.tsv"
    started = time.perf_counter()
    counts = score_variants(model, read_vcf(vcf), reference, scores_path, vcf=vcf, window=args.window,
                            batch_size=args.batch_size, on_ref_mismatch="skip", overwrite=True, device=args.device,
                            quiet=True, method=args.method)
    seconds = time.perf_counter() - started
    with open(scores_path) as fh:
        scored = list(csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t"))
    # a pathogenic allele should look unlikely (low llr) or far from the reference (large distance)
    column, sign = ("embedding_distance", 1.0) if args.method == "embedding" else ("llr", -1.0)
    table = auroc_table(rows, scored, column, sign)
    result = {"model": args.model, "variants": str(args.variants), "reference": str(args.reference),
              "window": args.window, "method": args.method or "by the model's head", "score": f"{sign:+.0f} {column}",
              "statuses": counts, "seconds": seconds, "table": table}
    print(f"{'variants':>8} {'n':>6} {'pathogenic':>10} {'AUROC':>12}   (score: {'-' if sign < 0 else ''}{column})")
    for row in table:
        print(f"{row['variants']:>8} {row['n']:>6} {row['pathogenic']:>10} {row['auroc']:>12.3f}")
    atomic_write_text(args.out / "eval_variant_scoring.json", json.dumps(result, indent=1))
    return 0


def auroc_table(rows: list[dict], scored: list[dict], column: str, sign: float) -> list[dict]:
    """AUROC of ``sign * column`` of the scored alleles (``scored``, the score TSV's rows in the order of the
    labelled ``rows``) for all of them, the SNVs and the indels."""
    labels = np.array([int(r["label"]) for r in rows])
    ok = np.array([s["status"] == "scored" for s in scored])
    pathogenicity = np.array([sign * float(s[column]) if s["status"] == "scored" else np.nan for s in scored])
    snv = np.array([len(r["ref"]) == 1 and len(r["alt"]) == 1 for r in rows])
    return [{"variants": name, "n": int(subset.sum()), "pathogenic": int(labels[subset].sum()),
             "auroc": auroc(pathogenicity[subset], labels[subset])}
            for name, subset in (("all", ok), ("SNVs", ok & snv), ("indels", ok & ~snv))]


if __name__ == "__main__":
    raise SystemExit(main())
