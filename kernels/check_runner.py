"""The loop every GPU correctness script shares: run each case, keep going past failures, save as it goes.

A script builds ``(fields, check)`` pairs, where ``fields`` describe the case (they start its row) and
``check(seed)`` returns the measured part of the row with an ``ok`` flag. One case raising does not hide
the others, and the JSON is rewritten after every case, so a time cap on the GPU loses nothing.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from genomix.kernels.bench_scan import write_json


def run_cases(cases: Iterable[tuple[dict[str, Any], Callable[[int], dict[str, Any]]]], seed: int, out: Path,
              meta: dict[str, Any], device: str, key: str = "rows") -> list[dict[str, Any]]:
    """Rows of the checked cases (each seeded ``seed * 1000 + index``), printed and written to ``out`` as
    ``meta`` with the rows under ``key``."""
    rows: list[dict[str, Any]] = []
    for fields, check in cases:
        row = {**fields, "seed": seed * 1000 + len(rows)}
        start = time.time()
        try:
            row.update(check(row["seed"]))
        except Exception as e:  # report and go on: one bad shape must not hide the others
            row.update(ok=False, error=f"{type(e).__name__}: {e}"[:400])
        row["seconds"] = round(time.time() - start, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
        write_json(out, {**meta, key: rows})
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def verdict(rows: list[dict[str, Any]]) -> int:
    """Print how many cases passed; the process exit status (1 if any failed)."""
    failed = sum(not r["ok"] for r in rows)
    print(f"{len(rows) - failed}/{len(rows)} cases pass")
    return 1 if failed else 0


def run_check_script(checks: Iterable[tuple[dict[str, Any], Callable[[int], dict[str, Any]]]],
                     args: argparse.Namespace, name: str, print_table: Callable[[list[dict[str, Any]]], None]) -> int:
    """The end of a GPU check script (``args`` with ``device``, ``out``, ``seed``, ``small``): run the checks into
    ``args.out / f"{name}_gpu_check.json"`` with the device, torch version and ``--small`` recorded, print
    the script's table and return the exit status."""
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    rows = run_cases(checks, args.seed, args.out / f"{name}_gpu_check.json",
                     {"device": device_name, "torch": torch.__version__, "small": args.small}, args.device)
    print_table(rows)
    return verdict(rows)
