"""``genomix finetune``: fine-tune a model on a labelled-sequence classification task.

The task is a folder with train/dev/test CSV or TSV tables (``sequence,label``; GUE's layout) or
GenomicBenchmarks' class folders. The best epoch on dev (by the recipe's ``monitor`` metric) is tested,
exported as a model, and its predictions and metrics are written to ``--out``.
"""
from __future__ import annotations

import argparse
import json

from .inference_options import add_cuda_graphs_option
from .option_types import add_recipe_option, positive_float, positive_int, seed_option


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a model on a sequence-classification task (GUE, GenomicBenchmarks, CSV)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--model", required=True,
                   help="pretrained checkpoint (dir or Hub id, any supported layout) whose backbone gets a fresh "
                        "classification head; a named size (e.g. hyenadna-tiny-1k) trains from scratch")
    p.add_argument("--revision", help="Hub branch, tag or commit to pin")
    p.add_argument("--task", required=True, help="task folder: train/dev/test .csv/.tsv[.gz] with sequence,label "
                   "columns or .fna[.gz] with '|label' headers, or GenomicBenchmarks' train/ and test/ class "
                   "folders (`genomix tasks download` fetches GUE, NT and GenomicBenchmarks)")
    add_recipe_option(p, "finetune", "gue")
    p.add_argument("--out", required=True, help="output folder (checkpoints, logs, predictions, metrics, model)")
    p.add_argument("--max-epochs", type=positive_int, help="passes over the training rows (default: the recipe's)")
    p.add_argument("--batch-size", type=positive_int,
                   help="training rows per optimiser step, over all --devices (default: the recipe's)")
    p.add_argument("--lr", type=positive_float, help="peak learning rate")
    p.add_argument("--max-length", type=int, help="longest input (default: the model's max_seq_len)")
    p.add_argument("--truncation", choices=("error", "keep-start", "keep-end"),
                   help="what to do with longer sequences (default: the recipe's, usually error)")
    p.add_argument("--train-rows", type=positive_int, help="train on the first N rows only (quick checks)")
    p.add_argument("--seed", type=seed_option,
                   help="seed of the head's initialisation, a dev split held out of train (tasks without one), "
                        "shuffling, augmentation and dropout (default: the recipe's)")
    p.add_argument("--precision", choices=("bf16-mixed", "32-true", "16-mixed"),
                   help="default: the recipe's, else bf16-mixed on GPU and 32-true on CPU")
    p.add_argument("--accelerator", default="auto", help="auto, cpu or gpu (default: auto, a GPU when there is one, "
                   "else the CPU)")
    p.add_argument("--devices", type=positive_int, default=1,
                   help="data-parallel processes: GPUs, or CPU processes (DDP on CPU), which need --accelerator cpu: "
                        "several devices on a machine without a CUDA GPU are refused otherwise; the recipe's batch "
                        "size is the global batch and must be a multiple of it (default: 1)")
    p.add_argument("--resume", help="'auto' (continue --out from its last finished epoch) or a .ckpt path")
    p.add_argument("--quiet", action="store_true", help="no progress bars or model summary")
    add_cuda_graphs_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..tasks import finetune, load_finetune_recipe

    recipe = load_finetune_recipe(args.recipe, max_epochs=args.max_epochs, batch_size=args.batch_size,
                                  max_length=args.max_length, truncation=args.truncation,
                                  train_rows=args.train_rows, seed=args.seed, precision=args.precision)
    if args.lr is not None:
        recipe.optim.lr = args.lr
    result = finetune(args.model, args.task, args.out, recipe, revision=args.revision, resume=args.resume,
                      accelerator=args.accelerator, devices=args.devices, quiet=args.quiet,
                      cuda_graphs=not args.no_cuda_graphs)
    if result.global_rank == 0:
        print(f"best epoch {result.best_epoch}; model saved to {result.model_dir}")
        print(json.dumps(result.metrics, indent=2))
    return 0
