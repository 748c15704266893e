"""``genomix pretrain``: Lightning pretraining of a genomix model on a genome store.

With no arguments it runs the ``demo`` recipe: a tiny HyenaDNA on the bundled demo genome, on CPU in a
few minutes, and saves a model that ``genomix.from_pretrained`` loads. Flags override the recipe.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from ..outputs import check_output_dir
from .option_types import add_recipe_option, devices_option, positive_int, seed_option


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pretrain a model on a genome (default: tiny model, demo genome, CPU)",
        description=__doc__.splitlines()[0],
    )
    add_recipe_option(p, "pretrain", None, "demo; a resumed run uses its own saved recipe")
    p.add_argument("--genome", nargs="+", action="extend", metavar="GENOME",
                   help="genome: registry name (hg38, demo, ...), FASTA path, folder of FASTA shards (one genome: "
                        "contigs keep their names), a prepared store .h5, or several FASTA files (given after one "
                        "--genome or each after its own): one store of several sources, contigs named <file "
                        "stem>/<contig>, which the recipe's data.source_weights can weight")
    p.add_argument("--bed", help="BED file of train/valid/test intervals (overrides the genome's own split)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", help="named model size (configs/models), e.g. hyenadna-small-32k")
    model.add_argument("--config", help="model config YAML file")
    p.add_argument("--seq-len", type=positive_int, help="target window length (warm-up stages end here)")
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu"),
                   help="default: a GPU when there is one, else the CPU")
    p.add_argument("--devices", default="auto", type=devices_option,
                   help="devices per node (number or 'auto'); several on a machine without a GPU are CPU processes "
                        "(DDP on CPU) and need --accelerator cpu")
    p.add_argument("--num-nodes", type=positive_int, default=1,
                   help="machines in a multi-node run, each with --devices processes (default: 1)")
    p.add_argument("--strategy", default="auto", choices=("auto", "ddp", "fsdp"),
                   help="Lightning's distribution strategy for several devices (default: auto, DDP when there are "
                        "several)")
    p.add_argument("--precision", choices=("bf16-mixed", "32", "32-true", "16-mixed"),
                   help="default: the recipe's, else bf16-mixed on GPU and 32 on CPU")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="replay each training step from a CUDA graph (one GPU; small models are host-bound without)")
    p.add_argument("--max-steps", type=positive_int,
                   help="stop when the run has made this many optimiser steps in all, counting those before a "
                        "--resume (the schedule keeps the recipe's horizon; a later --resume without it goes on to "
                        "the recipe's end)")
    p.add_argument("--seed", type=seed_option,
                   help="seed of the weights' initialisation, window sampling and masking (default: the recipe's)")
    p.add_argument("--resume", help="checkpoint path, run folder, or 'auto' (continue --out if it has a checkpoint)")
    p.add_argument("--out", default="runs/pretrain", help="output folder (default: runs/pretrain)")
    p.add_argument("--cache-dir", help="genome download/store cache (default: $GENOMIX_CACHE or ~/.cache/genomix)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or model summary")
    p.set_defaults(func=run)


def _resume_point(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """The checkpoint ``--resume`` names (resolved once: ``auto`` without one logs a fresh start once) and the
    recipe its run was made with (``recipe.yaml`` beside its checkpoints); ``(None, None)`` for a new run. A
    checkpoint of a fine-tuning run is refused as such, before its recipe is read as a pretraining one."""
    from ..train.run import resolve_resume, resume_source

    checkpoint = resolve_resume(args.resume, Path(args.out).expanduser())
    if checkpoint is None:
        return None, None
    saved = resume_source(checkpoint, "pretraining") / "recipe.yaml"
    return checkpoint, saved if saved.is_file() else None


#: Recipe fields a resumed run may change: how long it runs and how each step is executed.
RESUMABLE_CHANGES = ("max_steps", "precision", "cuda_graphs")


def _refuse_changes(args: argparse.Namespace, recipe, saved: Path, fresh) -> None:
    """A resumed run continues as it was made (``recipe``, read from ``saved``): flags that would make it another
    run are refused. ``fresh`` is the recipe the same flags would start a new run with, when ``--recipe`` is
    given: the same command as the first run's (a requeued job) passes; so does ``--resume auto --out DIR``
    alone; more ``--max-steps``, another ``--precision`` or other devices are fine."""
    from ..errors import ConfigError
    from ..resume import changed_settings, flat_settings

    if fresh is not None:
        now, new = flat_settings(recipe.to_dict()), flat_settings(fresh.to_dict())
        now.update({key: _absolute(now.get(key)) for key in _PATH_FIELDS})  # a run saved by an older genomix
        kept = [key for key in sorted(set(now) | set(new)) if key not in RESUMABLE_CHANGES]
        changed = changed_settings(now, new, kept)
    else:
        had = {"--model/--config": _absolute(recipe.model), "--genome": _absolute(recipe.data.genome),
               "--bed": _absolute(recipe.data.bed), "--seq-len": recipe.seq_len, "--seed": recipe.seed}
        asked = {"--model/--config": _absolute(args.model or args.config), "--genome": _absolute(_genome(args)),
                 "--bed": _absolute(args.bed), "--seq-len": args.seq_len, "--seed": args.seed}
        changed = changed_settings(had, asked, [flag for flag, value in asked.items() if value is not None])
    if changed:
        raise ConfigError(f"resuming the run in {args.out} (made with {saved}) with other settings "
                          f"({'; '.join(changed)}); drop those flags to continue it, or pass another --out to start "
                          "a new run")


#: The recipe fields (as :func:`~genomix.resume.flat_settings` names them) that may hold paths.
_PATH_FIELDS = ("model", "data.genome", "data.bed")


def _absolute(value: Any) -> Any:
    """A genome, BED or model given as a path that exists, made absolute (several paths, as a tuple or a recipe
    dict's list, each), so that the run's saved recipe resumes from any working folder (a batch job's requeue may
    start elsewhere) and compares equal however the path was spelt; registry names (``hg38``), model names and Hub
    ids stay as given."""
    if value is None or isinstance(value, (list, tuple)):
        return value if value is None else type(value)(_absolute(part) for part in value)
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


def _genome(args: argparse.Namespace) -> str | tuple[str, ...] | None:
    """``--genome`` as the recipe holds it: one name or path, or a tuple of several FASTA files (``None``: not
    given)."""
    from ..train.recipe import genome_value

    return genome_value(args.genome) if args.genome else None


def _fresh_recipe(args: argparse.Namespace):
    """The recipe of a new run: ``--recipe`` (default ``demo``) with the flags applied."""
    from ..errors import ConfigError
    from ..train import load_recipe

    recipe = load_recipe(args.recipe or "demo")
    if recipe.schedule_steps is None:  # stopping early with --max-steps must not shorten the schedule
        recipe.schedule_steps = recipe.max_steps
    if args.config and not Path(args.config).is_file():
        raise ConfigError(f"--config {args.config}: no such model config file")
    chosen = args.model or args.config
    if chosen and chosen != recipe.model and recipe.model_overrides:
        logging.getLogger(__name__).info("the recipe's model_overrides %s are for its model %s, not applied to %s",
                                         recipe.model_overrides, recipe.model, chosen)
        recipe.model_overrides = {}
    for field, value in (("model", chosen), ("seq_len", args.seq_len), ("seed", args.seed)):
        if value is not None:
            setattr(recipe, field, value)
    if args.genome:
        recipe.data.genome = _genome(args)
    if args.bed:
        recipe.data.bed = args.bed
    recipe.model, recipe.data.genome, recipe.data.bed = (_absolute(recipe.model), _absolute(recipe.data.genome),
                                                         _absolute(recipe.data.bed))
    return recipe


def run(args: argparse.Namespace) -> int:
    check_output_dir(args.out)  # at once: before torch loads and --resume auto looks in (and logs about) --out
    from ..train import load_recipe, pretrain

    checkpoint, saved = _resume_point(args)
    if saved is None:
        recipe = _fresh_recipe(args)
    else:
        recipe = load_recipe(saved)
        fresh = _fresh_recipe(args) if args.recipe else None
        _refuse_changes(args, recipe, saved, fresh)
        # --max-steps stopped one invocation early; a resumed one goes on to the recipe's end
        recipe.max_steps = fresh.max_steps if fresh is not None else recipe.schedule_steps
    if args.max_steps is not None:
        recipe.max_steps = args.max_steps
    if args.cuda_graphs:
        recipe = dataclasses.replace(recipe, cuda_graphs=True)  # re-validated: offload and graphs exclude each other
    if args.precision:
        recipe.precision = "32-true" if args.precision == "32" else args.precision
    result = pretrain(recipe, Path(args.out), devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy,
                      accelerator=args.accelerator, resume=checkpoint, cache=args.cache_dir, quiet=args.quiet)
    if result.global_rank != 0:  # one report per run, not per process
        return 0
    if result.finished_at is not None:
        print(f"the run in {args.out} already finished at step {result.finished_at} (max_steps {recipe.max_steps}); "
              f"its final model is {result.model_dir} (load with genomix.from_pretrained({str(result.model_dir)!r})); "
              "nothing was changed: pass a larger --max-steps to train further")
        return 0
    print(f"model saved to {result.model_dir} (load with genomix.from_pretrained({str(result.model_dir)!r}))")
    if "val/step" in result.metrics and result.metrics["val/step"] != result.metrics["step"]:
        print(f"last validation at step {result.metrics['val/step']:.0f}; the run ended at step "
              f"{result.metrics['step']:.0f}, between validations")
    for key in ("val/loss", "val/bits_per_base", "val/perplexity"):
        if key in result.metrics:
            print(f"{key}: {result.metrics[key]:.4f}")
    return 0
