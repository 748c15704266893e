"""``genomix pretrain``: Lightning pretraining of a genomix model on a genome store.

With no arguments it runs the ``demo`` recipe: a tiny HyenaDNA on the bundled demo genome, on CPU in a
few minutes, and saves a model that ``genomix.from_pretrained`` loads. Flags override the recipe.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pretrain a model on a genome (default: tiny model, demo genome, CPU)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--recipe", default="demo",
                   help="recipe name in configs/pretrain (demo, hyenadna-hg38, caduceus-hg38, mamba-hg38, "
                        "m2-hg38) or a YAML path (default: demo)")
    p.add_argument("--genome", help="genome: registry name (hg38, demo, ...), FASTA path or prepared store .h5")
    p.add_argument("--bed", help="BED file of train/valid/test intervals (overrides the genome's own split)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", help="named model size (configs/models), e.g. hyenadna-small-32k")
    model.add_argument("--config", help="model config YAML file")
    p.add_argument("--seq-len", type=int, help="target window length (warm-up stages end here)")
    p.add_argument("--devices", default="auto", help="devices per node (number or 'auto')")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--strategy", default="auto", choices=("auto", "ddp", "fsdp"))
    p.add_argument("--precision", choices=("bf16-mixed", "32", "32-true", "16-mixed"),
                   help="default: the recipe's, else bf16-mixed on GPU and 32 on CPU")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="replay each training step from a CUDA graph (one GPU; small models are host-bound without)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (schedule keeps the recipe's horizon)")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", help="checkpoint path, run folder, or 'auto' (continue --out if it has a checkpoint)")
    p.add_argument("--out", default="runs/pretrain", help="output folder (default: runs/pretrain)")
    p.add_argument("--cache-dir", help="genome download/store cache (default: $GENOMIX_CACHE or ~/.cache/genomix)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or model summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import load_recipe, pretrain

    recipe = load_recipe(args.recipe)
    if recipe.schedule_steps is None:  # stopping early with --max-steps must not shorten the schedule
        recipe.schedule_steps = recipe.max_steps
    for field, value in (("model", args.model or args.config), ("seq_len", args.seq_len),
                         ("max_steps", args.max_steps), ("seed", args.seed)):
        if value is not None:
            setattr(recipe, field, value)
    if args.cuda_graphs:
        recipe = dataclasses.replace(recipe, cuda_graphs=True)  # re-validated: offload and graphs exclude each other
    if args.precision:
        recipe.precision = "32-true" if args.precision == "32" else args.precision
    if args.genome:
        recipe.data.genome = args.genome
    if args.bed:
        recipe.data.bed = args.bed
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        logging.getLogger("lightning").setLevel(logging.WARNING)
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    result = pretrain(recipe, Path(args.out), devices=devices, num_nodes=args.num_nodes, strategy=args.strategy,
                      resume=args.resume, cache=args.cache_dir, quiet=args.quiet)
    if result.global_rank != 0:  # one report per run, not per process
        return 0
    print(f"model saved to {result.model_dir} (load with genomix.from_pretrained({str(result.model_dir)!r}))")
    for key in ("val/loss", "val/bits_per_base", "val/perplexity"):
        if key in result.metrics:
            print(f"{key}: {result.metrics[key]:.4f}")
    return 0
