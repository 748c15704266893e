"""`genomix embed`: per-sequence (pooled) or per-token embeddings of FASTA records or BED intervals."""
from __future__ import annotations

import argparse

from .inference_options import (add_inference_options, add_resume_options, add_sequence_source_options,
                                read_sequence_sources)
from .option_types import positive_int

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
    add_sequence_source_options(parser, "one embedding per")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    add_resume_options(parser)
    parser.add_argument("--pooling", choices=POOLING_CHOICES, default="mean",
                        help="mean/last/first over each sequence's bases, or none for per-token (default mean)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="chunks per forward pass (default 8)")
    add_inference_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..embed import embed_sequences, load_embedding_model
    from ..heap import fix_mmap_threshold
    from ..outputs import check_output
    from ..resume import output_may_exist

    may_exist = output_may_exist(args.out, args.resume, args.overwrite)  # a finished run's: judged after the load
    check_output(args.out, (args.fasta, args.bed, args.genome, args.model), may_exist)
    sequences, total = read_sequence_sources(args)
    device = resolve_device(args.device)  # a device this machine lacks is refused before the model loads
    if device.type == "cpu":
        fix_mmap_threshold()
    model = load_embedding_model(args.model, args.revision)
    path = embed_sequences(model, sequences, args.out, pooling=args.pooling, batch_size=args.batch_size,
                           overwrite=args.overwrite, resume=args.resume,
                           meta={"revision": args.revision} if args.revision else None,
                           device=device, quiet=args.quiet, total=total, model_name=args.model,
                           reuse_filters=not args.no_filter_reuse, cuda_graphs=not args.no_cuda_graphs)
    print(path)
    return 0
