"""`genomix convert SRC DST`: any supported checkpoint layout -> genomix's (transformers-loadable) layout."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a checkpoint (any supported layout, local or Hub) to genomix layout",
        description="Read SRC (a directory or Hub id in genomix, HyenaDNA original, HyenaDNA -hf or another "
                    "supported layout, auto-detected) and write DST as config.json + model.safetensors + "
                    "tokenizer files, loadable with genomix.from_pretrained or transformers' AutoModel*.")
    parser.add_argument("src", help="checkpoint directory or Hub id (owner/name)")
    parser.add_argument("dst", help="output directory, written atomically (created; an earlier genomix checkpoint "
                        "there is replaced only with --overwrite, any other existing folder is refused)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier genomix checkpoint at DST")
    parser.add_argument("--format", help="the source layout, when several match (it must match SRC): genomix, "
                        "hyenadna, hyenadna-hf, mamba_ssm or caduceus")
    parser.add_argument("--revision", help="Hub branch, tag or commit to pin")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.quiet:
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging as hf_logging

        disable_progress_bars()  # downloads
        hf_logging.disable_progress_bar()  # transformers' own bars (writing the weights)
    from ..hub import convert

    print(convert(args.src, args.dst, format=args.format, revision=args.revision, overwrite=args.overwrite))
    return 0
