"""Fine-tune one model on every GUE task that has a training split, and tabulate test metrics.

Each task runs ``genomix.tasks.finetune`` into ``--out/<task>/`` (checkpoints, predictions, metrics.json,
model); a task whose ``metrics.json`` exists is not run again, and an interrupted task resumes from its
last finished epoch, so rerunning the same command continues a suite (Ctrl-C stops with one line and exit status
130; nothing finished is lost). A task folder left by a run with other settings (another model, recipe, task
folder or ``--max-epochs``/``--train-rows``) is refused before any training rather than reported under this
run's settings. A task that fails (a diverging run, bad data) is reported in the table and JSON with its error,
and the suite goes on. Each task shows Lightning's progress bars (``--quiet`` silences them). Prints a table
(classes, examples, best epoch, test MCC / accuracy / macro-F1, minutes spent training and predicting) and writes
``finetune_gue.json`` (atomically), which holds the command line and every setting the results depend on (the
resolved recipe too).

    PYTHONPATH=. python pipelines/finetune_gue.py --model hyenadna-tiny-1k --gue ../shared/data/gue \\
        --recipe gue --out runs/gue-tiny
    # a pretrained checkpoint instead of a named size (fresh weights): --model runs/pretrain/model

The GUE folder holds ``<group>/<task>/{train,dev,test}.csv[.gz]``; ``--tasks prom/prom_core_all tf/0``
picks some of them. The Nucleotide Transformer suite (``genomix tasks download nt``: ``<task>/{train,test}.fna``)
runs the same way, with its tasks named ``H3``, ``promoter_all``..., and so does GenomicBenchmarks
(``genomix tasks download genomic_benchmarks``: ``<task>/{train,test}/<class>/<id>.txt``; pass
``--recipe genomic-benchmarks``, which selects epochs by accuracy as that suite reports).

A bad recipe, ``--devices``/``--accelerator`` this machine cannot run, a ``--model`` that names no model, a
``--gue`` that is not a folder, a ``--tasks`` name with no folder under the suite root (with the names it may
mean), task folders of another run, or an ``--out`` that cannot be a folder stop before any training (exit
status 2). A task that fails does not stop the others; they are tabulated with it, and the exit status is then
1, as ``pretrain_transfer.sh``'s is.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def suite_tasks(root: Path) -> list[str]:
    """Task names under ``root`` (``group/task`` as in GUE, or ``task`` as in the NT suite and
    GenomicBenchmarks) whose folder has a train split file or a ``train/`` class-folder tree, in sorted order."""
    from genomix.tasks.labelled import SPLIT_FILE_SUFFIXES

    found = {str(p.parent.relative_to(root)) for pattern in ("*/train.*", "*/*/train.*") for p in root.glob(pattern)
             if p.name.endswith(SPLIT_FILE_SUFFIXES)}
    found |= {str(p.parent.relative_to(root)) for p in root.glob("*/train") if p.is_dir()}
    return sorted(found)


def chosen_tasks(root: Path, names: list[str] | None) -> list[str]:
    """The tasks to run: ``names`` (each once, in order) or every task of the suite at ``root``; a
    :class:`ConfigError` for a root that is not a folder, a suite without tasks, or a name without a folder (with
    the suite's names it may be a misspelling of), so that the suite stops before the tasks before it train."""
    from genomix.errors import ConfigError
    from genomix.tasks.suites import did_you_mean

    if not root.is_dir():
        raise ConfigError(f"--gue {root}: {'not a folder' if root.exists() else 'no such folder'}; give the suite's "
                          "root folder (its <group>/<task>/ or <task>/ folders hold the split files)")
    known = suite_tasks(root)
    tasks = list(dict.fromkeys(names)) if names else known
    if not tasks:
        raise ConfigError(f"no task with a train split under {root} (expected [<group>/]<task>/train.csv[.gz] "
                          "or .fna)")
    missing = [f"{name}{did_you_mean(name, known)}" for name in tasks if not (root / name).is_dir()]
    if missing:
        raise ConfigError(f"no task folder {', '.join(missing)} under {root}; tasks with a train split there: "
                          f"{', '.join(known) or 'none'}")
    return tasks


def check_run(model: str, recipe: Any, accelerator: str, devices: int) -> None:
    """Refuse, before any task trains, what ``finetune`` would refuse in every task: devices this machine lacks
    or that cannot split the recipe's global batch, and a ``model`` that is no named size, folder or Hub id (a
    Hub id is fetched into the cache here, once)."""
    from genomix.hub.resolve import resolve
    from genomix.models.registry import available_models
    from genomix.tasks.finetune import check_devices

    check_devices(recipe, accelerator, devices)
    if model not in available_models():
        resolve(model)


def task_out(out: Path, name: str) -> Path:
    """The folder of task ``name`` (``group/task``) under the suite's ``out``."""
    return out / name.replace("/", "_")


def settings_changes(folder: Path, model: str, task: Path, recipe: Any) -> list[str]:
    """What differs between the run recorded in ``folder/recipe.yaml`` and this one (``key: old -> new``); none
    for a folder without one. A finished task (its ``metrics.json``) is compared on every recipe field but
    ``num_workers``, since its results are reused as they are; an unfinished one as ``finetune`` resumes it
    (``max_epochs`` may grow). The weights are compared when the task resumes, once the model is loaded."""
    import yaml

    from genomix.resume import changed_settings, flat_settings
    from genomix.tasks.finetune import saved_settings
    from genomix.tasks.identity import run_identity
    from genomix.tasks.recipe import dump_finetune_recipe

    saved = saved_settings(folder)
    if saved is None:
        return []
    now = {**flat_settings(yaml.safe_load(dump_finetune_recipe(recipe)), "recipe "), **run_identity(model, task)}
    free = {"recipe num_workers", "weights"} | (set() if (folder / "metrics.json").is_file() else {"recipe max_epochs"})
    return changed_settings(saved, now, [key for key in sorted(saved) if key in now and key not in free])


def check_task_folders(out: Path, root: Path, tasks: list[str], model: str, recipe: Any) -> None:
    """Refuse, before any task trains, task folders in ``out`` that a run with other settings left: a finished
    one would be reported as this run's result, an unfinished one would fail when it came to resume."""
    from genomix.errors import ConfigError

    clashes = []
    for name in tasks:
        changes = settings_changes(task_out(out, name), model, root / name, recipe)
        if changes:
            clashes.append(f"{task_out(out, name)} ({'; '.join(changes)})")
    if clashes:
        raise ConfigError(f"{out} holds task runs made with other settings: {', '.join(clashes)}; rerun with their "
                          "settings (see each folder's recipe.yaml), choose another --out, or remove those folders")


def task_row(name: str, summary: dict, reused: bool) -> dict:
    """The table and JSON row of a finished task from its ``metrics.json`` (``summary``); ``reused`` for a task
    finished by an earlier run. ``minutes`` is the time the task spent training and predicting as ``metrics.json``
    records it (summed over resumed runs), ``None`` for one finished before genomix recorded it."""
    seconds = summary.get("seconds")
    return {"task": name, "classes": len(summary["label_names"]), "train": summary["examples"]["train"],
            "test_rows": summary["examples"]["test"], "best_epoch": summary["best_epoch"],
            "test": summary["metrics"]["test"], "dev": summary["metrics"]["dev"],
            "minutes": None if seconds is None else (seconds["train"] + seconds["predict"]) / 60, "reused": reused}


def print_table(rows: list[dict]) -> None:
    """The results table; a task reused from an earlier run has its time marked ``*``."""
    header = (f"{'task':24} {'classes':>7} {'train':>7} {'test':>6} {'best ep':>7} {'MCC':>7} {'acc':>7} {'F1':>7} "
              f"{'min':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['task']:24} failed: {r['error']}")
            continue
        t = r["test"]
        minutes = ("n/a" if r["minutes"] is None else f"{r['minutes']:.1f}") + ("*" if r["reused"] else " ")
        print(f"{r['task']:24} {r['classes']:7d} {r['train']:7d} {r['test_rows']:6d} {r['best_epoch']:7d} "
              f"{t['mcc']:7.3f} {t['accuracy']:7.3f} {t['f1_macro']:7.3f} {minutes:>7}")
    if any(r.get("reused") for r in rows):
        print("* finished by an earlier run of this suite; its results and time are reused")


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser (for its one-line errors) and the parsed options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint dir, Hub id, or named size (from scratch)")
    parser.add_argument("--gue", required=True, type=Path,
                        help="suite root: GUE's <group>/<task>/ folders or NT's <task>/ folders "
                        "(genomix tasks download)")
    parser.add_argument("--tasks", nargs="*", help="group/task names (default: every task with a train split)")
    parser.add_argument("--recipe", default="gue",
                        help="fine-tuning recipe: a name in configs/finetune (genomic-benchmarks, gue, quick) or a "
                             "YAML path (default: gue)")
    parser.add_argument("--max-epochs", type=int,
                        help="passes over each task's training rows (default: the recipe's)")
    parser.add_argument("--train-rows", type=int,
                        help="train on each task's first N rows only (quick checks; default: the recipe's)")
    parser.add_argument("--accelerator", default="auto", choices=ACCELERATORS,
                        help="Lightning accelerator for every task (default: auto, a GPU when there is one, "
                             "else the CPU)")
    parser.add_argument("--devices", type=int, default=1,
                        help="data-parallel GPUs per task (the recipe's batch size is the global batch)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars while a task trains")
    parser.add_argument("--out", required=True, type=Path,
                        help="suite folder: one <task>/ folder per task and finetune_gue.json (created if missing)")
    return parser, parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from genomix.errors import GenomixError
    from genomix.outputs import make_output_dir
    from genomix.tasks import load_finetune_recipe

    parser, args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:  # refused here, not after hours of training on the tasks before
        tasks = chosen_tasks(args.gue, args.tasks)
        recipe = load_finetune_recipe(args.recipe, max_epochs=args.max_epochs, train_rows=args.train_rows)
        check_run(args.model, recipe, args.accelerator, args.devices)
        check_task_folders(args.out, args.gue, tasks, args.model, recipe)
        make_output_dir(args.out)
    except GenomixError as exc:
        parser.error(str(exc))
    command = shlex.join(["python", "pipelines/finetune_gue.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_suite(args, tasks, recipe, command)
    except KeyboardInterrupt:  # finetune's own advice names a --resume this script does not have: it resumes itself
        parser.exit(130, f"{parser.prog}: interrupted; the finished tasks and the last finished epoch of the one "
                         f"stopped are kept in {args.out}: the same command continues from there\n")


def run_suite(args: argparse.Namespace, tasks: list[str], recipe: Any, command: str) -> int:
    """Fine-tune (or reuse) every task, print the table and write ``finetune_gue.json``; the exit status is 1 when
    a task failed (the work of :func:`main`, after its checks)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from genomix.errors import GenomixError
    from genomix.outputs import atomic_write_text
    from genomix.tasks import finetune

    rows = []
    for i, name in enumerate(tasks, start=1):
        out = task_out(args.out, name)
        done = out / "metrics.json"
        if done.is_file():
            rows.append(task_row(name, json.loads(done.read_text()), reused=True))
            continue
        if rank_zero_only.rank == 0:
            print(f"[{i}/{len(tasks)}] {name}: fine-tuning into {out}", flush=True)
        try:
            rank = finetune(args.model, args.gue / name, out, recipe, resume="auto", accelerator=args.accelerator,
                            devices=args.devices, quiet=args.quiet).global_rank
        except GenomixError as exc:  # one task's failure (e.g. divergence) does not end the suite
            rows.append({"task": name, "error": str(exc)})
            print(f"{name}: failed: {exc}", flush=True)
            continue
        if rank != 0:  # a data-parallel helper process (Lightning relaunched this script): it only trains
            continue
        rows.append(task_row(name, json.loads(done.read_text()), reused=False))
        test = rows[-1]["test"]
        print(f"{name}: test MCC {test['mcc']:.3f}, accuracy {test['accuracy']:.3f} ({rows[-1]['minutes']:.1f} min)",
              flush=True)
    if rank_zero_only.rank != 0:
        return 0
    print()
    print_table(rows)
    payload = {"command": command, "model": args.model, "gue": str(args.gue), "tasks": tasks, "recipe": args.recipe,
               "max_epochs": args.max_epochs, "train_rows": args.train_rows, "accelerator": args.accelerator,
               "devices": args.devices, "resolved_recipe": recipe.to_dict(), "rows": rows}
    atomic_write_text(args.out / "finetune_gue.json", json.dumps(payload, indent=2) + "\n")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
