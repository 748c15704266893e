"""The ``genomix`` command. Each subcommand lives in its own module of this package, exposing
``add_parser(subparsers)`` that registers its arguments and sets ``func`` to a function taking the
parsed namespace. Subcommands only parse arguments and call the library."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from typing import Iterator, Sequence

from ..errors import GenomixError

COMMANDS = ("genome", "convert", "embed", "generate", "score-variants", "index-vcf", "pretrain", "tasks", "finetune",
            "icl")
#: Commands that keep finished rows as they go and take SIGTERM (a batch scheduler's stop) as Ctrl-C: they end
#: saying what they kept, where its default would kill them outright. The training commands have their own handling.
TERMINATED_AS_INTERRUPTED = ("embed", "generate", "score-variants")


@contextlib.contextmanager
def _sigterm_as_interrupt(wanted: bool, terminated: list[int]) -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (appending to ``terminated``) where ``wanted`` and this
    is the main thread (signals reach no other); the previous handler is restored after it, so that a later command
    in the same process (tests, a notebook) gets its own."""
    if not wanted or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    """Entry point; returns the process exit status (2 for a GenomixError or a file the system refuses, with its
    message; 130 when interrupted, also while the subcommands' libraries are still loading; 143 when
    :data:`TERMINATED_AS_INTERRUPTED` commands are terminated)."""
    try:
        parser = build_parser()
    except KeyboardInterrupt:
        print("genomix: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    terminated: list[int] = []
    with _sigterm_as_interrupt(args.command in TERMINATED_AS_INTERRUPTED, terminated):
        return _run(args, terminated)


def _run(args: argparse.Namespace, terminated: list[int]) -> int:
    """The subcommand's exit status, its errors as one line each (see :func:`main`)."""
    try:
        result = args.func(args)
    except GenomixError as exc:
        if args.verbose:
            raise
        print(f"genomix {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a long job says what it kept; others write nothing partial
        how = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"genomix {args.command}: {how}; {str(exc) or 'nothing partial was kept'}", file=sys.stderr)
        return 128 + signal.SIGTERM if terminated else 130
    except BrokenPipeError:  # the reader of stdout went away (`genomix genome info x.h5 | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not fail too
        return 141
    except OSError as exc:  # (after BrokenPipeError, an OSError too) a file the system refused: one line, no traceback
        if args.verbose:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"genomix {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
