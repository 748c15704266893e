"""Fine-tune one model on every GUE task that has a training split, and tabulate test metrics.

Each task runs ``genomix.tasks.finetune`` into ``--out/<task>/`` (checkpoints, predictions, metrics.json,
model); a task whose ``metrics.json`` exists is not run again, and an interrupted task resumes from its
last finished epoch, so rerunning the same command continues a suite. A task that fails (a diverging run,
bad data) is reported in the table and JSON with its error, and the suite goes on. Prints a table (classes, examples,
best epoch, test MCC / accuracy / macro-F1, wall time) and writes ``finetune_gue.json`` (atomically).

    PYTHONPATH=. python pipelines/finetune_gue.py --model hyenadna-tiny-1k --gue ../shared/data/gue \\
        --recipe gue --out runs/gue-tiny
    # a pretrained checkpoint instead of a named size (fresh weights): --model runs/pretrain/model

The GUE folder holds ``<group>/<task>/{train,dev,test}.csv[.gz]``; ``--tasks prom/prom_core_all tf/0``
picks some of them. The Nucleotide Transformer suite (``genomix tasks download nt``: ``<task>/{train,test}.fna``)
runs the same way, with its tasks named ``H3``, ``promoter_all``..., and so does GenomicBenchmarks
(``genomix tasks download genomic_benchmarks``: ``<task>/{train,test}/<class>/<id>.txt``; pass
``--recipe genomic-benchmarks``, which selects epochs by accuracy as that suite reports).

A bad recipe, a ``--tasks`` name with no folder under the suite root or an ``--out`` that cannot be a folder
stops before any training (exit status 2). A task that fails does not stop the others; they are tabulated
with it, and the exit status is then 1, as ``pretrain_transfer.sh``'s is.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path


def suite_tasks(root: Path) -> list[str]:
    """Task names under ``root`` (``group/task`` as in GUE, or ``task`` as in the NT suite and
    GenomicBenchmarks) whose folder has a train split file or a ``train/`` class-folder tree, in sorted order."""
    from genomix.tasks.labelled import SPLIT_FILE_SUFFIXES

    found = {str(p.parent.relative_to(root)) for pattern in ("*/train.*", "*/*/train.*") for p in root.glob(pattern)
             if p.name.endswith(SPLIT_FILE_SUFFIXES)}
    found |= {str(p.parent.relative_to(root)) for p in root.glob("*/train") if p.is_dir()}
    return sorted(found)


def print_table(rows: list[dict]) -> None:
    header = f"{'task':24} {'classes':>7} {'train':>7} {'test':>6} {'best ep':>7} {'MCC':>7} {'acc':>7} {'F1':>7} {'min':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['task']:24} failed: {r['error']}")
            continue
        t = r["test"]
        print(f"{r['task']:24} {r['classes']:7d} {r['train']:7d} {r['test_rows']:6d} {r['best_epoch']:7d} "
              f"{t['mcc']:7.3f} {t['accuracy']:7.3f} {t['f1_macro']:7.3f} {r['minutes']:6.1f}")


def main(argv: list[str] | None = None) -> int:
    from genomix.errors import GenomixError
    from genomix.outputs import atomic_write_text, make_output_dir
    from genomix.tasks import finetune, load_finetune_recipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint dir, Hub id, or named size (from scratch)")
    parser.add_argument("--gue", required=True, type=Path,
                        help="suite root: GUE's <group>/<task>/ folders or NT's <task>/ folders (genomix tasks download)")
    parser.add_argument("--tasks", nargs="*", help="group/task names (default: every task with a train split)")
    parser.add_argument("--recipe", default="gue")
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--train-rows", type=int)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--devices", type=int, default=1,
                        help="data-parallel GPUs per task (the recipe's batch size is the global batch)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    tasks = args.tasks or suite_tasks(args.gue)
    if not tasks:
        parser.error(f"no task with a train split under {args.gue} (expected [<group>/]<task>/train.csv[.gz] or .fna)")
    missing = [name for name in tasks if not (args.gue / name).is_dir()]
    if missing:
        parser.error(f"no task folder {', '.join(missing)} under {args.gue}; tasks with a train split there: "
                     f"{', '.join(suite_tasks(args.gue)) or 'none'}")
    try:  # refused here, not after hours of training on the tasks before
        recipe = load_finetune_recipe(args.recipe, max_epochs=args.max_epochs, train_rows=args.train_rows)
        make_output_dir(args.out)
    except GenomixError as exc:
        parser.error(str(exc))
    rows, rank = [], 0
    for name in tasks:
        out = args.out / name.replace("/", "_")
        done = out / "metrics.json"
        start = time.perf_counter()
        if not done.is_file():
            try:
                rank = finetune(args.model, args.gue / name, out, recipe, resume="auto", accelerator=args.accelerator,
                                devices=args.devices, quiet=True).global_rank
            except GenomixError as exc:  # one task's failure (e.g. divergence) does not end the suite
                rows.append({"task": name, "error": str(exc)})
                print(f"{name}: failed: {exc}", flush=True)
                continue
            if rank != 0:  # a data-parallel helper process (Lightning relaunched this script): it only trains
                continue
        summary = json.loads(done.read_text())
        rows.append({"task": name, "classes": len(summary["label_names"]), "train": summary["examples"]["train"],
                     "test_rows": summary["examples"]["test"], "best_epoch": summary["best_epoch"],
                     "test": summary["metrics"]["test"], "dev": summary["metrics"]["dev"],
                     "minutes": (time.perf_counter() - start) / 60})
        test = rows[-1]["test"]
        print(f"{name}: test MCC {test['mcc']:.3f}, accuracy {test['accuracy']:.3f} ({rows[-1]['minutes']:.1f} min)",
              flush=True)
    if rank != 0:
        return 0
    print()
    print_table(rows)
    payload = {"model": args.model, "recipe": args.recipe, "max_epochs": args.max_epochs, "rows": rows}
    atomic_write_text(args.out / "finetune_gue.json", json.dumps(payload, indent=2) + "\n")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
