"""What the weights check costs a load: ``genomix.from_pretrained`` with and without the ``weights.sha256`` record.

A checkpoint that genomix saved records the SHA-256 of its weights files, and both load paths hash every listed
file once more (:mod:`genomix.hub.integrity`), in worker threads while the model is built. For each named size this
script saves fresh weights with :func:`genomix.hub.save_native` into a temporary folder, loads it ``--repeats`` times
with the record and ``--repeats`` times from a copy without it (alternated, after one untimed load of each, so both
read from the page cache), and reports the median seconds of each, their difference, and the hashing alone (one
thread, no load). A cold cache (a first load from disk) adds the same read to both, so it is not measured. What the
check adds depends on spare cores: ``--threads`` sets torch's. Prints a table and writes
``bench_weights_check.json`` (atomically) to ``--out``.

    PYTHONPATH=. python pipelines/bench_weights_check.py --out results/
    PYTHONPATH=. python pipelines/bench_weights_check.py --models mamba-7m-1m --repeats 9 --threads 1 --out results/
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

import genomix
from genomix.cli.option_types import positive_int
from genomix.genome.download import file_digest
from genomix.hub import save_native
from genomix.hub.integrity import MANIFEST
from genomix.kernels.bench_common import exit_on_bad_input
from genomix.models import build
from genomix.outputs import atomic_write_text, make_output_dir

DEFAULT_MODELS = ("hyenadna-large-1m", "caduceus-ps-131k-d256-16L", "mamba-7m-1m", "m2-bert-base-32k")


def _load_seconds(folder: Path) -> float:
    start = time.perf_counter()
    genomix.from_pretrained(folder)
    return time.perf_counter() - start


def measure(model_name: str, repeats: int, scratch: Path) -> dict:
    """Median load seconds of ``model_name``'s saved weights with the record (checked) and without (unchecked)."""
    torch.manual_seed(0)
    checked = save_native(build(model_name), scratch / model_name / "checked")
    unchecked = Path(shutil.copytree(checked, scratch / model_name / "unchecked"))
    (unchecked / MANIFEST).unlink()
    weights = sorted(checked.glob("*.safetensors"))
    weights_bytes = sum(path.stat().st_size for path in weights)
    _load_seconds(checked), _load_seconds(unchecked)  # page cache, imports, first allocations
    times: dict[str, list[float]] = {"checked": [], "unchecked": []}
    for _ in range(repeats):
        times["checked"].append(_load_seconds(checked))
        times["unchecked"].append(_load_seconds(unchecked))
    checked_s, unchecked_s = statistics.median(times["checked"]), statistics.median(times["unchecked"])
    extra = checked_s - unchecked_s
    hash_s = []
    for _ in range(repeats):  # the hashing alone, in this thread: what the check would add if nothing overlapped it
        start = time.perf_counter()
        for path in weights:
            file_digest(path)
        hash_s.append(time.perf_counter() - start)
    return {
        "model": model_name, "weights_bytes": weights_bytes, "repeats": repeats,
        "checked_median_s": checked_s, "unchecked_median_s": unchecked_s, "extra_s": extra,
        "extra_fraction": extra / unchecked_s, "hash_median_s": statistics.median(hash_s),
        "checked_s": times["checked"], "unchecked_s": times["unchecked"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="named sizes (configs/models)")
    parser.add_argument("--repeats", type=positive_int, default=7,
                        help="timed loads with the record and as many without it, after one untimed load of each; "
                             "medians are reported (default: 7)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for bench_weights_check.json (created if missing; default: current folder)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with exit_on_bad_input(parser):  # an unknown model, an --out under a file
        make_output_dir(args.out)
        with tempfile.TemporaryDirectory(prefix="genomix-weights-check-") as scratch:
            rows = [measure(name, args.repeats, Path(scratch)) for name in args.models]
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads()}
    print_table(machine, rows)
    atomic_write_text(args.out / "bench_weights_check.json", json.dumps({"machine": machine, "rows": rows}, indent=1))
    return 0


def print_table(machine: dict, rows: list[dict]) -> None:
    """The machine, then one line per model."""
    print(f"machine: {machine}")
    print(f"{'model':<28} {'weights MB':>10} {'hash alone ms':>13} {'unchecked ms':>12} {'checked ms':>10} "
          f"{'extra ms':>8} {'extra':>6}")
    for r in rows:
        print(f"{r['model']:<28} {r['weights_bytes'] / 1e6:>10.1f} {r['hash_median_s'] * 1e3:>13.1f} "
              f"{r['unchecked_median_s'] * 1e3:>12.1f} {r['checked_median_s'] * 1e3:>10.1f} {r['extra_s'] * 1e3:>8.1f} "
              f"{r['extra_fraction']:>6.1%}")


if __name__ == "__main__":
    raise SystemExit(main())
