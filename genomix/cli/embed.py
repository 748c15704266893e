"""`genomix embed`: per-sequence (pooled) or per-token embeddings of FASTA records or BED intervals."""
from __future__ import annotations

import argparse

from .inference_options import add_inference_options, add_resume_options

#: Same as genomix.embed.EMBED_POOLING (kept literal so `genomix --help` does not import torch).
POOLING_CHOICES = ("mean", "last", "first", "none")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed", help="embed FASTA records or BED intervals into an HDF5 file",
        description="Run a model's backbone over sequences and write pooled or per-token hidden states "
                    "(with sequence ids) to HDF5. Sequences longer than the model's context are chunked. Rows are "
                    "kept as they finish: rerun with --resume after an interruption.")
    parser.add_argument("--model", required=True, help="checkpoint dir or Hub id (any layout); a named size "
                        "(e.g. hyenadna-tiny-1k) uses random weights, for testing")
    parser.add_argument("--revision", help="Hub branch, tag or commit to pin")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fasta", help="FASTA file (.fa or .fa.gz): one embedding per record")
    source.add_argument("--bed", help="BED intervals (contig start end [name] [score] [strand]); needs --genome")
    parser.add_argument("--genome", help="genome store (.h5) from `genomix genome prepare`, for --bed")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    add_resume_options(parser)
    parser.add_argument("--pooling", choices=POOLING_CHOICES, default="mean",
                        help="mean/last/first over each sequence's bases, or none for per-token (default mean)")
    parser.add_argument("--batch-size", type=int, default=8, help="chunks per forward pass (default 8)")
    add_inference_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..embed import bed_sequences, embed_sequences, fasta_sequences, load_embedding_model
    from ..errors import InputFormatError
    from ..outputs import check_output

    check_output(args.out, (args.fasta, args.bed, args.genome), args.overwrite)
    if args.bed:
        if not args.genome:
            raise InputFormatError("--bed needs --genome STORE.h5 (make one with `genomix genome prepare`)")
        from ..genome import open_store
        from ..genome.bed import read_bed_intervals

        store = open_store(args.genome)
        intervals = read_bed_intervals(args.bed, store.lengths)  # every row checked before any is embedded
        sequences, total = bed_sequences(intervals, store), len(intervals)
    else:
        sequences, total = fasta_sequences(args.fasta), None
    model = load_embedding_model(args.model, args.revision)
    path = embed_sequences(model, sequences, args.out, pooling=args.pooling, batch_size=args.batch_size,
                           overwrite=args.overwrite, resume=args.resume,
                           meta={"revision": args.revision} if args.revision else None,
                           device=args.device, quiet=args.quiet, total=total, model_name=args.model,
                           reuse_filters=not args.no_filter_reuse, cuda_graphs=not args.no_cuda_graphs)
    print(path)
    return 0
