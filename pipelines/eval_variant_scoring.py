"""Variant-effect evaluation: how well a model's scores separate labelled pathogenic from benign variants.

Reads a labelled table (tab-separated, with columns ``chrom pos ref alt label``, one allele per row, label 1 =
pathogenic, 0 = benign; e.g. ``shared/data/variants/clinvar_chrMT_labeled_GRCh38_rCRS.tsv``), writes it as a VCF,
scores it with ``genomix score-variants``' library call, and reports the AUROC of a pathogenicity score,
overall and for SNVs and indels apart: ``-llr`` for the likelihood methods (a model that finds pathogenic
alleles less likely scores above 0.5), the embedding distance for ``--method embedding``. Prints a table and writes
``eval_variant_scoring.json`` (atomically; with every setting the scores depend on and the command line) and the
per-variant ``scores.tsv`` to ``--out``; a rerun replaces them with ``--overwrite`` only. An AUROC that cannot be
computed (a subset with one class) is ``null`` in the JSON. A bad input (a missing file, a row cut short, a position
that is not a number, a label other than 0/1, an unknown contig, a model that cannot be loaded, an existing
``scores.tsv`` without ``--overwrite``) stops with one line and exit status 2, before anything is written to
``--out``. Scoring shows a progress bar (``--quiet`` silences it); Ctrl-C keeps the rows scored so far (exit status
130), which ``--resume`` and ``--overwrite`` treat as ``genomix score-variants`` does (:mod:`genomix.resume`): the
same command with ``--resume`` continues after them, ``--overwrite`` without ``--resume`` starts again.

    PYTHONPATH=. python pipelines/eval_variant_scoring.py --model CHECKPOINT \\
        --variants ../shared/data/variants/clinvar_chrMT_labeled_GRCh38_rCRS.tsv \\
        --reference ../shared/data/genomes/human_mtDNA_rCRS.fa --contig-map MT=MT_human --out DIR
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from genomix.cli.inference_options import add_resume_options

COLUMNS = ("chrom", "pos", "ref", "alt", "label")


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
    """Rows of the labelled table; an :class:`InputFormatError` naming the file (and line) when it is missing or
    empty, a needed column is missing, or a row is cut short or malformed (:func:`row_problem`), so that a bad
    table stops before the model is loaded, in terms of the table rather than of the VCF made from it."""
    from genomix.errors import InputFormatError

    if not path.is_file():
        raise InputFormatError(f"{path}: no such labelled variant table; check --variants")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        if reader.fieldnames is None:
            raise InputFormatError(f"{path}: the file is empty (need a header line: {' '.join(COLUMNS)})")
        missing = sorted(set(COLUMNS) - set(reader.fieldnames))
        if missing:
            raise InputFormatError(f"{path}: missing columns {missing} in its header line (need {' '.join(COLUMNS)})")
        rows = list(reader)
    if not rows:
        raise InputFormatError(f"{path}: no variants below the header line")
    for line, row in enumerate(rows, start=2):
        problem = row_problem(row)
        if problem:
            raise InputFormatError(f"{path}, line {line}: {problem}")
    return rows


def row_problem(row: dict) -> str | None:
    """What is wrong with one labelled row, or ``None``: a needed field missing (a row cut short), a position
    that is not a positive integer, an empty or multi-allelic allele (each allele needs its own label), or a
    label other than 0/1."""
    absent = [name for name in COLUMNS if not (row.get(name) or "").strip()]
    if absent:
        return f"no {', '.join(absent)} (a row cut short?); every row needs {' '.join(COLUMNS)}"
    if not row["pos"].isdigit() or int(row["pos"]) < 1:
        return f"position {row['pos']!r} is not a positive integer (1-based)"
    if "," in row["ref"] + row["alt"]:
        return f"{row['ref']}>{row['alt']} has several alleles; give one allele per row, each with its own label"
    if row["label"] not in ("0", "1"):
        return f"label {row['label']!r} is not 0 (benign) or 1 (pathogenic)"
    return None


def write_vcf(rows: list[dict], path: Path) -> None:
    """The labelled rows as a VCF (IDs ``row0``, ``row1``… in table order, the label in INFO), written atomically."""
    from genomix.outputs import atomic_write_text

    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"{r['chrom']}\t{r['pos']}\trow{i}\t{r['ref']}\t{r['alt']}\t.\t.\tLABEL={r['label']}"
              for i, r in enumerate(rows)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def file_fingerprint(path: Path) -> str:
    """``sha256:`` and 16 hex digits of ``path``'s bytes: recorded with the scores, so that ``--resume`` refuses to
    continue an interrupted run on an edited table and the JSON says which table it was."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="causal- or masked-LM checkpoint or Hub id (a named size: "
                        "random weights); masked models score substitutions only")
    parser.add_argument("--variants", type=Path, required=True, help="labelled TSV: chrom pos ref alt label")
    parser.add_argument("--reference", type=Path, required=True, help="FASTA or genome store (.h5)")
    parser.add_argument("--contig-map", action="append", default=[], metavar="VCF=REF",
                        help="contig name in the table -> reference contig name (repeatable); chr prefixes and "
                             "M/MT are matched without it")
    parser.add_argument("--window", type=int,
                        help="bases per scoring window (default: 4096, or the model's max_seq_len if smaller)")
    parser.add_argument("--method", choices=("causal", "masked", "embedding"),
                        help="scoring method (default: by the model's head); embedding ranks by distance")
    parser.add_argument("--batch-size", type=int, default=16, help="alleles per forward pass (default: 16)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    add_resume_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for eval_variant_scoring.json, scores.tsv and variants.vcf (created if missing; "
                             "default: current folder)")
    args = parser.parse_args(argv)
    from genomix.kernels.bench_common import exit_on_bad_input

    command = shlex.join(["python", "pipelines/eval_variant_scoring.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        with exit_on_bad_input(parser):
            return evaluate(args, command)
    except KeyboardInterrupt as exc:  # score_variants says what it kept and that --resume continues
        parser.exit(130, f"{parser.prog}: interrupted: {exc or 'no variant was scored yet'}\n")


def evaluate(args: argparse.Namespace, command: str) -> int:
    """Score the labelled variants with the model and write the AUROC table (the work of :func:`main`); the
    inputs are read and checked, and the model loaded, before anything is written to ``--out``."""
    from genomix.devices import resolve_device
    from genomix.hub import load_model
    from genomix.outputs import atomic_write_text, check_output_dir, make_output_dir
    from genomix.resume import weights_fingerprint
    from genomix.variants import Reference, parse_contig_map, read_vcf, score_variants, scoring_method
    from genomix.variants.score import check_scores_output

    rows = read_labelled(args.variants)
    reference = Reference(args.reference, parse_contig_map(args.contig_map))
    check_output_dir(args.out)
    vcf = args.out / "variants.vcf"
    # a finished run's scores.tsv is refused without --overwrite before the model loads, as score-variants does
    scores_path = check_scores_output(args.out / "scores.tsv", vcf, [args.reference], args.overwrite)
    model = load_model(args.model, "lm")
    method = scoring_method(model, args.method)
    device = resolve_device(args.device)
    make_output_dir(args.out)
    write_vcf(rows, vcf)
    table_id = file_fingerprint(args.variants)
    started = time.perf_counter()
    score_variants(model, read_vcf(vcf), reference, scores_path, vcf=vcf, window=args.window,
                   batch_size=args.batch_size, on_ref_mismatch="skip", resume=args.resume, overwrite=args.overwrite,
                   device=device, quiet=args.quiet, total=len(rows), meta={"table": table_id}, method=method)
    seconds = time.perf_counter() - started
    settings, scored = read_scores(scores_path, len(rows))
    # a pathogenic allele should look unlikely (low llr) or far from the reference (large distance)
    column, sign = ("embedding_distance", 1.0) if method == "embedding" else ("llr", -1.0)
    table = auroc_table(rows, scored, column, sign)
    statuses = count_statuses(scored)
    print_table(table, column, sign, statuses, len(rows))
    result = {"command": command, "model": args.model, "weights": weights_fingerprint(model),
              "variants": str(args.variants), "table_fingerprint": table_id, "reference": str(args.reference),
              "contig_map": args.contig_map, "window": int(settings["window"]), "method": method,
              "batch_size": args.batch_size, "device": str(device), "score": f"{sign:+.0f} {column}",
              "statuses": statuses, "seconds": seconds,
              "table": [{**row, "auroc": None if math.isnan(row["auroc"]) else row["auroc"]} for row in table]}
    atomic_write_text(args.out / "eval_variant_scoring.json", json.dumps(result, indent=1, allow_nan=False) + "\n")
    return 0


def read_scores(path: Path, expected: int) -> tuple[dict[str, str], list[dict]]:
    """The settings line (``# genomix score-variants key=value ...``) and rows of the scores TSV, in one pass over
    the file (its second line names the columns, which the settings record too), the rows in the order of the
    labelled table (by their ``row<i>`` IDs): one per labelled allele, which the AUROC pairs with its label."""
    from genomix.errors import InputFormatError
    from genomix.variants.score import scores_settings

    with open(path) as fh:
        settings = scores_settings(fh)
        by_id = {row["id"]: row for row in csv.DictReader(fh, settings["columns"].split(","), delimiter="\t")}
    ids = [f"row{i}" for i in range(expected)]
    if sorted(by_id) != sorted(ids):
        raise InputFormatError(f"{path}: {len(by_id)} scored alleles for {expected} labelled ones; it does not "
                               "pair with the table (start again with --overwrite, without --resume)")
    return settings, [by_id[i] for i in ids]


def count_statuses(scored: list[dict]) -> dict[str, int]:
    """Rows of the scores TSV per status (``scored``, ``ref_mismatch``…)."""
    counts: dict[str, int] = {}
    for row in scored:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def print_table(table: list[dict], column: str, sign: float, statuses: dict[str, int], total: int) -> None:
    """The AUROC table, with the alleles left unscored (which the AUROC leaves out) and why."""
    print(f"{'variants':>8} {'n':>6} {'pathogenic':>10} {'AUROC':>12}   (score: {'-' if sign < 0 else ''}{column})")
    for row in table:
        shown = "n/a" if math.isnan(row["auroc"]) else f"{row['auroc']:.3f}"
        print(f"{row['variants']:>8} {row['n']:>6} {row['pathogenic']:>10} {shown:>12}")
    unscored = {status: n for status, n in statuses.items() if status != "scored"}
    if unscored:
        why = ", ".join(f"{status}: {n}" for status, n in sorted(unscored.items()))
        print(f"{sum(unscored.values())} of {total} variants were not scored ({why}); see scores.tsv")
    if any(math.isnan(row["auroc"]) for row in table):
        print("n/a: an AUROC needs both pathogenic and benign scored variants")


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
