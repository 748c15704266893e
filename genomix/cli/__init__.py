"""The ``genomix`` command. Each subcommand lives in its own module of this package, exposing
``add_parser(subparsers)`` that registers its arguments and sets ``func`` to a function taking the
parsed namespace. Subcommands only parse arguments and call the library."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from ..errors import GenomixError

COMMANDS = ("genome", "convert", "embed", "generate", "score-variants", "index-vcf", "pretrain", "tasks", "finetune",
            "icl")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="genomix", description="Long-context DNA foundation models: data, pretraining, inference."
    )
    parser.add_argument("--version", action="version", version=f"genomix {__version__}",
                        help="print genomix's version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (2 for a GenomixError, with its message; 130 when
    interrupted, also while the subcommands' libraries are still loading)."""
    try:
        parser = build_parser()
    except KeyboardInterrupt:
        print("genomix: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        result = args.func(args)
    except GenomixError as exc:
        if args.verbose:
            raise
        print(f"genomix {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a long job says what it kept; others write nothing partial
        print(f"genomix {args.command}: interrupted; {str(exc) or 'nothing partial was kept'}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (`genomix genome info x.h5 | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not fail too
        return 141
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
