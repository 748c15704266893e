"""`genomix index-vcf`: bgzip-compress a VCF and write its tabix index, for `score-variants --region`."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index-vcf", help="bgzip a sorted VCF and write its .tbi index (no htslib needed)",
        description="Writes OUT (BGZF, as bgzip does) and OUT.tbi (tabix format) from a plain, gzip or bgzip VCF "
                    "whose records are sorted by position within each contig. htslib tools read both files.")
    parser.add_argument("vcf", help="input VCF (.vcf, .vcf.gz)")
    parser.add_argument("--out", help="output .vcf.gz (default: the input with .gz added; required for a "
                        "compressed input)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..variants.indexing import index_vcf

    out = index_vcf(args.vcf, args.out)
    print(out)
    print(f"{out}.tbi")
    return 0
