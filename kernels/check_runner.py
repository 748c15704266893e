"""The loop every GPU correctness script shares: run each case, keep going past failures, save as it goes.

A script builds ``(fields, check)`` pairs, where ``fields`` describe the case (they start its row) and
``check(seed)`` returns the measured part of the row with an ``ok`` flag. One case raising does not hide
the others, and the JSON is rewritten after every case, so a time cap on the GPU loses nothing.
"""
from __future__ import annotations

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
