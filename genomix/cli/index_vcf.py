"""`genomix index-vcf`: bgzip-compress a VCF and write its tabix index, for `score-variants --region`."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index-vcf", help="bgzip a sorted VCF and write its .tbi index (no htslib needed)",
        description="Indexes a VCF whose records are sorted by position within each contig: a bgzip file in place "
                    "(FILE.tbi), a plain or gzip one into a bgzip copy OUT with OUT.tbi. htslib tools read both files.")
    parser.add_argument("vcf", help="input VCF (.vcf, .vcf.gz)")
    parser.add_argument("--out", help="bgzip copy to write (default: none for a bgzip input, indexed in place; "
                        "the input with .gz added for plain text; required for a gzip input)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bgzip copy (--out, or the "
                        "default name for a plain VCF), or the existing index of a bgzip input")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..variants.indexing import index_vcf

    out = index_vcf(args.vcf, args.out, overwrite=args.overwrite)
    print(out)
    print(f"{out}.tbi")
    return 0
