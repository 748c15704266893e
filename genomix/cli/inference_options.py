"""Options shared by the commands that run a fixed model over many inputs (``embed``, ``score-variants``)."""
from __future__ import annotations

import argparse


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--quiet``, ``--no-filter-reuse`` and ``--no-cuda-graphs`` (read back as
    ``args.no_filter_reuse``, ``args.no_cuda_graphs``)."""
    parser.add_argument("--device", help="cpu, cuda, cuda:1... (default: cuda if available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-filter-reuse", action="store_true",
                        help="recompute the long filters' spectra (HyenaDNA, M2) on every forward instead of "
                        "keeping one per layer between forwards: slower, less GPU memory (1 GiB per layer at "
                        "1M-base windows)")
    parser.add_argument("--no-cuda-graphs", action="store_true",
                        help="run every forward eagerly instead of replaying repeated batch shapes from CUDA "
                        "graphs: slower for small models and single long sequences, less GPU memory")


def add_resume_options(parser: argparse.ArgumentParser) -> None:
    """``--resume`` and ``--overwrite``, with the policy of :mod:`genomix.resume` for an interrupted run's rows."""
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run after the rows it kept (refused if its settings differ)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out; without --resume, also discard an interrupted run's rows")
