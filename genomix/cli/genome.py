"""`genomix genome`: download reference genomes, build genome stores, and describe them."""
from __future__ import annotations

import argparse

from ..genome.registry import known_genomes
from .option_types import non_negative_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    names = ", ".join(sorted(known_genomes()))
    parser = subparsers.add_parser("genome", help="download, prepare and inspect genome stores",
                                   description="Genome stores: download a reference, convert it to HDF5, inspect.")
    sub = parser.add_subparsers(dest="genome_command", metavar="ACTION")
    sub.required = True

    prep = sub.add_parser("prepare", help="build a genome store from a named genome or FASTA file(s)")
    prep.add_argument("--genome", nargs="+", default=["demo"], metavar="GENOME",
                      help=f"{names}, or PATH.fa[.gz]; several FASTA files, or a folder of them, make one store "
                           "(a genome in per-chromosome shards, or several species for one corpus) (default: demo)")
    prep.add_argument("--prefix-contigs", action="store_true",
                      help="name each contig <FASTA file name up to its first dot>/<name>: for files that share "
                           "contig names (several species' X, chrM)")
    prep.add_argument("--out", help="store path (default: <cache>/stores/<name>.h5)")
    prep.add_argument("--bed", help="split BED (contig start end train|valid|test) to store with the sequences")
    prep.add_argument("--cache-dir", help="download/store cache (default: $GENOMIX_CACHE or ~/.cache/genomix)")
    prep.add_argument("--compression", choices=("none", "lzf", "gzip"), default="none",
                      help="chunk compression: none is fastest (default), lzf/gzip trade speed for disk")
    prep.add_argument("--force", action="store_true", help="rebuild even if the store exists")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(func=_prepare)

    info = sub.add_parser("info", help="print contigs, lengths, N fraction and splits of a store")
    info.add_argument("store", help="genome store (.h5) made by `genomix genome prepare`")
    info.add_argument("--max-contigs", type=non_negative_int, default=50, help="list at most this many contigs")
    info.set_defaults(func=_info)

    dl = sub.add_parser("download", help="download (and verify) a named genome's FASTA into the cache",
                        description="Download a named genome's FASTA into <cache>/downloads/<name>/ and verify it "
                                    "against its checksum. An interrupted download (Ctrl-C, a lost connection) "
                                    "resumes from its .part file when the same command runs again; a verified "
                                    "file is not downloaded again.")
    dl.add_argument("--genome", required=True, choices=sorted(known_genomes()), help="registry name of the genome")
    dl.add_argument("--cache-dir", help="download cache (default: $GENOMIX_CACHE or ~/.cache/genomix)")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=_download)


def _prepare(args: argparse.Namespace) -> int:
    from ..genome import prepare_genome

    genome = args.genome[0] if len(args.genome) == 1 else args.genome
    path = prepare_genome(genome, out=args.out, cache=args.cache_dir, bed=args.bed, quiet=args.quiet,
                          force=args.force, compression=None if args.compression == "none" else args.compression,
                          prefix_contigs=args.prefix_contigs)
    print(path)
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..genome import open_store

    store = open_store(args.store)
    total = sum(store.lengths.values())
    print(f"{'store:':<17}{store.path}")
    for key in ("source", "source_sha256", "genomix_version", "created", "compression"):
        print(f"{key + ':':<17}{store.attrs.get(key, '?')}")
    print(f"{'contigs:':<17}{len(store.contigs):,}   total: {total:,} bp   N fraction: {store.n_fraction():.4f}")
    shown = store.contigs[: args.max_contigs]
    width = max([24, *(len(name) + 1 for name in shown)])  # long names (`gi|...|`, `<file>/<contig>`) stay aligned
    print(f"{'contig':<{width}}{'length':>15}{'N fraction':>12}")
    for name in shown:
        print(f"{name:<{width}}{store.lengths[name]:>15,}{store.n_fraction(name):>12.4f}")
    if len(store.contigs) > args.max_contigs:
        print(f"... {len(store.contigs) - args.max_contigs} more")
    if store.splits:
        print("splits:")
        for split, rows in sorted(store.splits.items()):
            bp = int((rows[:, 2] - rows[:, 1]).sum()) if len(rows) else 0
            print(f"  {split:<8}{len(rows):>8,} intervals {bp:>15,} bp")
    else:
        print(f"{'splits:':<17}none stored (windows use hold-out splits)")
    return 0


def _download(args: argparse.Namespace) -> int:
    from ..genome.registry import cache_dir, fetch_genome

    print(fetch_genome(known_genomes()[args.genome], cache_dir(args.cache_dir), quiet=args.quiet))
    return 0
