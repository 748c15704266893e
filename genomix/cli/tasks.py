"""`genomix tasks`: list the benchmark suites genomix can fetch, and download them as task folders."""
from __future__ import annotations

import argparse


#: The suites of genomix/tasks/data/benchmarks.yaml (kept literal so that building the command line does not
#: import genomix.tasks, whose fine-tuning module loads Lightning: seconds on every `genomix` call).
SUITE_CHOICES = ("genomic_benchmarks", "gue", "nt")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    names = SUITE_CHOICES
    parser = subparsers.add_parser("tasks",
                                   help="list and download fine-tuning benchmarks (GUE, NT, GenomicBenchmarks)",
                                   description="Benchmark suites as task folders for `genomix finetune --task`.")
    sub = parser.add_subparsers(dest="tasks_command", metavar="ACTION")
    sub.required = True

    show = sub.add_parser("list", help="the suites, their sources and tasks")
    show.add_argument("suite", nargs="?", choices=names, help="one suite only")
    show.set_defaults(func=_list)

    dl = sub.add_parser("download", help="download a suite's tasks (resumable; finished tasks are skipped, "
                                          "damaged ones fetched again)")
    dl.add_argument("suite", choices=names, help="the suite to download (`genomix tasks list` shows them)")
    dl.add_argument("--tasks", nargs="+", metavar="TASK",
                    help="tasks or groups to fetch (e.g. prom tf/0; default: all)")
    dl.add_argument("--out", help="suite folder (default: <cache>/benchmarks/<suite>)")
    dl.add_argument("--archive", help="an already downloaded copy of the suite's zip (suites fetched as one zip, "
                                      "such as gue)")
    dl.add_argument("--cache-dir", help="without --out, the suite goes to <cache-dir>/benchmarks/<suite>, its "
                                        "downloads under it (default: $GENOMIX_CACHE or ~/.cache/genomix)")
    dl.add_argument("--quiet", action="store_true", help="no progress bars")
    dl.set_defaults(func=_download)


def _list(args: argparse.Namespace) -> int:
    from ..tasks.suites import known_suites

    for spec in known_suites().values():
        if args.suite and spec.name != args.suite:
            continue
        print(f"{spec.name}: {spec.description}")
        print(f"  source:  {spec.source()}")
        print(f"  tasks ({len(spec.tasks)}): {' '.join(spec.tasks)}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..tasks.suites import fetch_suite

    if args.out is not None and args.cache_dir is not None:  # --out holds the downloads too: the cache is unused
        raise ConfigError("--cache-dir only chooses the default --out (<cache-dir>/benchmarks/<suite>); pass one "
                          "of them")
    folders = fetch_suite(args.suite, out=args.out, tasks=args.tasks, archive=args.archive,
                          cache=args.cache_dir, quiet=args.quiet)
    for task, folder in folders.items():
        print(f"{task}\t{folder}")
    return 0
