"""Where a kernel's warps wait, from an Nsight Compute source page: stall samples by reason, by opcode, and the
instructions with the most samples of one reason together with the load each one waits on.

The input is the CSV that ``ncu --import REPORT --page source --print-source sass --csv`` writes (optionally
gzipped): one block per profiled kernel, each a ``"Kernel Name",NAME`` line, a header row and one row per SASS
instruction with its ``stall_*`` sample counts. These are the tables in BENCHMARKS.md, "Where the scan waits
now" (fortieth session):

    PYTHONPATH=. python kernels/ncu_stalls.py pipelines/results/h100-2026-12-06-s40/ncu/bwd_source.csv.gz --kernel 1
    PYTHONPATH=. python kernels/ncu_stalls.py …/infer_source.csv.gz --kernel 1 --reason stall_long_sb --top 14

For each of the ``--top`` instructions it names the nearest earlier load that writes a register the
instruction reads, and how many instructions before it that load was issued: what a long-scoreboard wait is
waiting on. SASS lines are parsed as :mod:`.offline_scan_sass` parses them.
"""
from __future__ import annotations

import argparse
import collections
import csv
import gzip
from pathlib import Path

from genomix.kernels.offline_scan_sass import opcode, sass_registers


def read_kernels(path: Path) -> list[tuple[str, list[dict[str, str]]]]:
    """Every kernel block of the source CSV at ``path``: its name and its instruction rows."""
    opener = gzip.open if path.suffix == ".gz" else open
    kernels: list[tuple[str, list[dict[str, str]]]] = []
    header: list[str] | None = None
    with opener(path, "rt", newline="") as handle:
        for line in csv.reader(handle):
            if line and line[0] == "Kernel Name":
                kernels.append((line[1], []))
                header = None
            elif kernels and header is None:
                header = line
            elif kernels and line:
                kernels[-1][1].append(dict(zip(header, line)))
    if not kernels:
        raise ValueError(f"{path}: no \"Kernel Name\" block; write it with ncu --page source --csv")
    return kernels


def _samples(row: dict[str, str], reason: str) -> int:
    return int(row.get(reason) or 0)


def stall_reasons(rows: list[dict[str, str]]) -> collections.Counter:
    """Samples per stall reason (all samples, issued or not) over a kernel's instructions."""
    reasons = [name for name in rows[0] if name.startswith("stall_") and "Not Issued" not in name]
    return collections.Counter({reason: sum(_samples(r, reason) for r in rows) for reason in reasons})


def by_opcode(rows: list[dict[str, str]]) -> dict[str, collections.Counter]:
    """Per opcode, its samples per stall reason."""
    reasons = list(stall_reasons(rows))
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in rows:
        for reason in reasons:
            table[opcode(row["Source"])][reason] += _samples(row, reason)
    return table


def producing_load(rows: list[dict[str, str]], index: int, window: int = 400) -> tuple[int, str] | None:
    """The nearest load before instruction ``index`` (within ``window`` instructions) writing a register that
    the instruction reads, as (instructions back, its SASS text); None if there is none."""
    reads, _ = sass_registers(rows[index]["Source"])
    for back in range(1, min(window, index) + 1):
        text = rows[index - back]["Source"].strip()
        if reads & sass_registers(text)[1]:
            return back, text
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="ncu --page source --print-source sass --csv output (.gz read too)")
    parser.add_argument("--kernel", type=int, default=0, help="which kernel block, in file order (default 0)")
    parser.add_argument("--reason", default="stall_long_sb", help="the reason whose top instructions to list")
    parser.add_argument("--top", type=int, default=12,
                        help="how many instructions with the most --reason samples to list (default 12)")
    args = parser.parse_args()
    name, rows = read_kernels(args.csv)[args.kernel]
    reasons = stall_reasons(rows)
    total = sum(reasons.values())
    print(f"{name}: {len(rows)} instructions, {total} stall samples")
    for reason, count in reasons.most_common(10):
        print(f"  {reason:<24} {100 * count / total:5.1f} %")
    print("by opcode (share of all samples; its three largest reasons):")
    opcodes = by_opcode(rows)
    for op, counts in sorted(opcodes.items(), key=lambda item: -sum(item[1].values()))[:15]:
        top = ", ".join(f"{r[6:]} {100 * c / total:.1f}" for r, c in counts.most_common(3))
        print(f"  {op:<8} {100 * sum(counts.values()) / total:5.1f} %  ({top})")
    of_reason = reasons[args.reason] or 1
    print(f"instructions with the most {args.reason} samples (share of that reason), and the load each reads:")
    ranked = sorted(range(len(rows)), key=lambda i: -_samples(rows[i], args.reason))[:args.top]
    for index in sorted(ranked):
        load = producing_load(rows, index)
        waits = f"<- {load[0]:4d} back: {load[1][:60]}" if load else ""
        print(f"  {index:5d} {100 * _samples(rows[index], args.reason) / of_reason:5.1f} %  "
              f"{rows[index]['Source'].strip()[:50]:<50} {waits}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
