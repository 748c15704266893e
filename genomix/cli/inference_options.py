"""Options shared by the commands that run a fixed model over many inputs (``embed``, ``score-variants``,
``generate``)."""
from __future__ import annotations

import argparse


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--quiet``."""
    parser.add_argument("--device", help="cpu, cuda, cuda:1... (default: cuda if available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """:func:`add_device_options`, ``--no-filter-reuse`` and ``--no-cuda-graphs`` (read back as
    ``args.no_filter_reuse``, ``args.no_cuda_graphs``)."""
    add_device_options(parser)
    parser.add_argument("--no-filter-reuse", action="store_true",
                        help="recompute the long filters' spectra (HyenaDNA, M2) on every forward instead of "
                        "keeping one per layer between forwards: slower, less GPU memory (1 GiB per layer at "
                        "1M-base windows)")
    add_cuda_graphs_option(parser)


def add_cuda_graphs_option(parser: argparse.ArgumentParser) -> None:
    """``--no-cuda-graphs`` (read back as ``args.no_cuda_graphs``): for every command whose forwards over fixed
    weights run in :func:`genomix.models.inference_loop`."""
    parser.add_argument("--no-cuda-graphs", action="store_true",
                        help="run every inference forward eagerly instead of replaying repeated batch shapes from "
                        "CUDA graphs: slower for small models and single long sequences, less GPU memory")


def add_resume_options(parser: argparse.ArgumentParser) -> None:
    """``--resume`` and ``--overwrite``, with the policy of :mod:`genomix.resume` for an interrupted run's rows."""
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run after the rows it kept (refused if its settings differ)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out; without --resume, also discard an interrupted run's rows")


def add_sequence_source_options(parser: argparse.ArgumentParser, each: str, strings: bool = False) -> None:
    """One required source of sequences: ``--fasta`` or ``--bed`` (with ``--genome``), and with ``strings`` also
    ``--prompt SEQ`` (repeatable); ``each`` says what one sequence is for (``one embedding per record``)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fasta", help=f"FASTA file (.fa or .fa.gz): {each} record")
    source.add_argument("--bed", help=f"BED intervals (contig start end [name] [score] [strand]): {each} interval; "
                        "needs --genome. An interval without a name gets the id contig:start-end(strand) in BED's "
                        "own 0-based coordinates, as bedtools getfasta -s names it")
    if strings:
        source.add_argument("--prompt", action="append", metavar="SEQ",
                            help=f"a sequence given here (repeatable; ids prompt1, prompt2, ...): {each} sequence")
    parser.add_argument("--genome", help="genome store (.h5) from `genomix genome prepare`, for --bed")


def read_sequence_sources(args: argparse.Namespace):
    """(sequences, how many or None) from the options of :func:`add_sequence_source_options`: BED intervals are
    all checked against the store's contigs before any is used; FASTA records are streamed."""
    from ..embed import SequenceInput, bed_sequences, fasta_sequences
    from ..errors import InputFormatError

    if args.bed:
        if not args.genome:
            raise InputFormatError("--bed needs --genome STORE.h5 (make one with `genomix genome prepare`)")
        from ..genome import open_store
        from ..genome.bed import read_bed_intervals

        store = open_store(args.genome)
        intervals = read_bed_intervals(args.bed, store.lengths)
        return bed_sequences(intervals, store), len(intervals)
    if args.genome:
        raise InputFormatError("--genome is the store that --bed intervals are read from, and is not used with "
                               f"{'--prompt' if getattr(args, 'prompt', None) else '--fasta'}: pass --bed with it, "
                               "or leave it out")
    if getattr(args, "prompt", None):
        from ..errors import TokenizationError
        from ..tokenizer import encode

        prompts = []
        for i, seq in enumerate(args.prompt, start=1):
            try:
                prompts.append(SequenceInput(f"prompt{i}", encode(seq)))
            except TokenizationError as exc:
                raise TokenizationError(f"--prompt number {i}: {exc}") from None
        return prompts, len(prompts)
    return fasta_sequences(args.fasta), None
