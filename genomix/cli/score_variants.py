"""`genomix score-variants`: log-likelihood ratios of VCF alleles under a causal DNA language model, or masked
marginals under a masked one."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..errors import ConfigError
from .inference_options import add_inference_options, add_resume_options
from .option_types import positive_int

if TYPE_CHECKING:
    from ..variants import Reference


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score-variants", help="score VCF alleles with a DNA language model into a TSV",
        description="For every ALT allele of a VCF (plain, gzip or bgzip) or BCF, the log-likelihood ratio "
                    "log p(ALT window) - log p(REF window) of a reference window around it under a causal "
                    "language model, or under a masked one the masked marginal log p(ALT) - log p(REF) at the "
                    "masked REF positions (substitutions only); one TSV row per allele, in file order, with a "
                    "status for alleles that are not scored. Rows are kept as they finish: rerun with --resume "
                    "after an interruption.")
    parser.add_argument("--model", required=True, help="checkpoint dir or Hub id of a causal LM (HyenaDNA, Mamba, "
                        "causal M2) or a masked LM (Caduceus, M2-BERT); a named size (e.g. hyenadna-tiny-1k) uses "
                        "random weights, for testing")
    parser.add_argument("--revision", help="Hub branch, tag or commit to pin")
    parser.add_argument("--method", choices=("causal", "masked", "embedding"),
                        help="causal: log-likelihood ratio of the windows (causal LMs); masked: masked marginal "
                             "(masked LMs, substitutions only); embedding: cosine distance of the windows' mean "
                             "final hidden states (any model). Default: causal or masked, by the model's head")
    parser.add_argument("--vcf", required=True, help="VCF (.vcf, .vcf.gz or bgzip) or BCF (bcftools -Ob) file")
    parser.add_argument("--region", action="append", default=[], metavar="CHROM[:START[-END]]",
                        help="score only records overlapping this region (1-based, inclusive; repeatable; the "
                             "contig by its VCF name or, under --contig-map, its reference name); needs a "
                             "bgzip-compressed VCF with a .tbi or .csi index next to it, or a BCF with its .csi")
    parser.add_argument("--regions-bed", metavar="BED", help="score only records overlapping these BED intervals "
                        "(indexed VCF, as --region)")
    parser.add_argument("--reference", required=True,
                        help="reference FASTA (.fa / .fa.gz, read into memory) or genome store (.h5 from "
                             "`genomix genome prepare`, for whole genomes)")
    parser.add_argument("--out", required=True, help="output TSV")
    parser.add_argument("--window", type=positive_int, help="bases per scoring window (default: 4096, or the model's "
                        "max_seq_len if smaller)")
    parser.add_argument("--contig-map", action="append", default=[], metavar="VCF=REF",
                        help="VCF contig name -> reference contig name (repeatable); chr prefixes and M/MT "
                             "are matched without it")
    parser.add_argument("--on-ref-mismatch", choices=("error", "skip"), default="error",
                        help="stop at a REF that differs from the reference (default), or record it and go on")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="alleles per forward pass (default 16)")
    add_resume_options(parser)
    add_inference_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..genome.bed import read_bed_intervals
    from ..variants import Reference, Region, parse_contig_map, parse_region
    from ..resume import output_may_exist
    from ..variants.score import check_region, check_scores_output

    _require_file_out(args.out)
    may_exist = output_may_exist(args.out, args.resume, args.overwrite)  # a finished run's: judged after the load
    check_scores_output(args.out, args.vcf, (args.reference, args.regions_bed, args.model),
                        may_exist)  # before long work
    regions = [parse_region(text) for text in args.region]
    if args.regions_bed:
        regions += [Region(contig, start, end) for contig, start, end, _, _ in read_bed_intervals(args.regions_bed)]
    contig_map = parse_contig_map(args.contig_map)
    regions = _in_vcf_names(regions, contig_map) or None
    reference = Reference(args.reference, contig_map)
    for region in regions or ():
        check_region(region, reference)
    with _each_warning_once(logging.getLogger("genomix.variants.tabix")):
        counts = _check_and_score(args, regions, reference)
    print(args.out)
    print(_summary(counts), file=sys.stderr)
    return 0


def _check_and_score(args: argparse.Namespace, regions: list | None, reference: Reference) -> dict[str, int]:
    """Read the selected records twice: a check pass before the model loads (every contig matched, every record
    placed inside its contig), then the scoring pass; returns the rows per status."""
    from ..devices import resolve_device
    from ..heap import fix_mmap_threshold
    from ..hub import load_model
    from ..variants import read_vcf, score_variants
    from ..variants.score import check_within_contig

    total = 0
    for variant in read_vcf(args.vcf, regions):
        total += 1
        check_within_contig(variant, reference, args.vcf)
    device = resolve_device(args.device)  # a device this machine lacks is refused before the model loads
    if device.type == "cpu":
        fix_mmap_threshold()
    model = load_model(args.model, "lm", args.revision)
    meta = {"model": _identity(args.model), "revision": args.revision or "-", **_file_settings("vcf", args.vcf),
            **_file_settings("reference", args.reference), "regions": _describe(regions)}
    counts = score_variants(model, read_vcf(args.vcf, regions), reference, args.out, vcf=args.vcf, window=args.window,
                            batch_size=args.batch_size, on_ref_mismatch=args.on_ref_mismatch,
                            resume=args.resume, overwrite=args.overwrite, device=device, quiet=args.quiet,
                            total=total, meta=meta, method=args.method,
                            reuse_filters=not args.no_filter_reuse, cuda_graphs=not args.no_cuda_graphs)
    return counts


def _require_file_out(out: str) -> None:
    """Refuse ``--out -``, which would otherwise write a file named ``-``: the output is written to a temporary
    name and renamed when complete (and kept rows are resumed from it), which standard output cannot do."""
    if out == "-":
        raise ConfigError("--out -: the output must be a file path; standard output is not supported, because the "
                          "TSV is written to a temporary file and renamed when complete; give a file name and read it "
                          "from there (e.g. --out scores.tsv)")


def _summary(counts: dict[str, int]) -> str:
    """The run's closing line for stderr: the rows per status (``scored=3 symbolic=1``), or ``0 alleles``."""
    return " ".join(f"{status}={n}" for status, n in sorted(counts.items())) or "0 alleles"


class _OnceFilter(logging.Filter):
    """Lets each distinct message through once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


@contextlib.contextmanager
def _each_warning_once(logger: logging.Logger) -> Iterator[None]:
    """Within the block, ``logger`` says each message once: the VCF is read twice (check pass, scoring pass), and
    a warning about it (a region without records, an index older than its file) is news only the first time."""
    once = _OnceFilter()
    logger.addFilter(once)
    try:
        yield
    finally:
        logger.removeFilter(once)


def _identity(name: str) -> str:
    """A local path as an absolute one (so ``./x`` and ``x`` are the same input to --resume), else ``name`` (a Hub
    id or a named size)."""
    return str(Path(name).resolve()) if Path(name).exists() else name


def _in_vcf_names(regions: list, contig_map: dict[str, str]) -> list:
    """``regions`` with a contig spelled by its reference name under ``--contig-map VCF=REF`` (``MT_human`` for
    ``MT=MT_human``) renamed to the VCF's, which the index knows: either spelling then selects the same records."""
    to_vcf = {ref: vcf for vcf, ref in contig_map.items()}
    return [dataclasses.replace(r, chrom=to_vcf[r.chrom]) if r.chrom in to_vcf and r.chrom not in contig_map else r
            for r in regions]


def _file_settings(key: str, path: str) -> dict[str, str]:
    """An input file as settings that --resume compares: its absolute path, size and modification time, so that a
    file changed in place (a re-edited VCF, another genome at the same path) is not mixed into kept rows."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return {key: str(resolved), f"{key}_size": str(stat.st_size), f"{key}_mtime_ns": str(stat.st_mtime_ns)}


def _describe(regions: list | None) -> str:
    """The regions for the output's header line (which --resume compares): all of them if few, else a digest."""
    if not regions:
        return "all"
    text = ",".join(str(r) for r in regions)
    if len(regions) <= 5:
        return text
    return f"{len(regions)}-regions-sha1:{hashlib.sha1(text.encode()).hexdigest()[:12]}"
