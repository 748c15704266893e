"""What the benchmark and check scripts share: timing both paths of an elementwise kernel (causal conv,
LayerNorm, GELU-GLU) into one row, printing the speed table, and refusing bad input with one line and exit
status 2 (no CUDA device, or a :class:`~genomix.errors.GenomixError` from the work).

A row holds, for each path name ``p`` ("ref" and "triton"), ``p_fwd_ms``, ``p_fwd_bwd_ms``, their peak GiB
and their share of the HBM floor (``fwd_floor_ms``/``fwd_bwd_floor_ms``, which the caller sets), plus
``fwd_speedup``/``fwd_bwd_speedup`` of Triton over the reference.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import triton
import triton.testing

from genomix.errors import GenomixError
from genomix.kernels.bench_scan import copy_bandwidth, write_json
from genomix.kernels.check_runner import run_cases
from genomix.kernels.dispatch import interpreting, use_triton

PATH_NAMES = ("ref", "triton")


def time_paths(row: dict, measure: Callable[[str], dict], device: str) -> dict:
    """Fill ``row`` with ``measure(path_name)``'s numbers for both paths, floor shares and speed-ups."""
    for name in PATH_NAMES:
        for key, value in measure(name).items():
            row[f"{name}_{key}"] = value
        for phase in ("fwd", "fwd_bwd"):
            row[f"{name}_{phase}_pct_floor"] = 100 * row[f"{phase}_floor_ms"] / row[f"{name}_{phase}_ms"]
        if device == "cuda":
            torch.cuda.empty_cache()
    row["fwd_speedup"] = row["ref_fwd_ms"] / row["triton_fwd_ms"]
    row["fwd_bwd_speedup"] = row["ref_fwd_bwd_ms"] / row["triton_fwd_bwd_ms"]
    return row


def _peaks(row: dict, phase: str) -> str:
    """"ref/triton" peak GiB of a phase, "-" where memory was not measured (CPU)."""
    ref, tri = row["ref_" + phase + "_peak_gib"], row["triton_" + phase + "_peak_gib"]
    return "-" if ref is None else f"{ref:.2f}/{tri:.2f}"


def print_speed_table(rows: list[dict], head_title: str, head: Callable[[dict], str],
                      tail_title: str = "", tail: Callable[[dict], str] = lambda row: "") -> None:
    """One line per row: ``head(row)`` (e.g. the shape), both paths' times and speed-ups, floor shares,
    peaks, then ``tail(row)``; rows with an ``error`` print it instead."""
    print(f"{head_title} | {'ref fwd':>8} {'tri fwd':>8} {'x':>5} | {'ref f+b':>8} {'tri f+b':>8} {'x':>5} | "
          f"{'%floor tri fwd':>14} {'f+b':>4} {'ref fwd':>7} {'f+b':>4} | {'peak GiB ref/tri fwd':>20} {'f+b':>11}"
          f"{' | ' + tail_title if tail_title else ''}")
    for r in rows:
        if "error" in r:
            print(f"{head(r)} | FAILED {r['error']}")
            continue
        print(f"{head(r)} | {r['ref_fwd_ms']:>8.3f} {r['triton_fwd_ms']:>8.3f} {r['fwd_speedup']:>5.2f} | "
              f"{r['ref_fwd_bwd_ms']:>8.3f} {r['triton_fwd_bwd_ms']:>8.3f} {r['fwd_bwd_speedup']:>5.2f} | "
              f"{r['triton_fwd_pct_floor']:>13.0f}% {r['triton_fwd_bwd_pct_floor']:>3.0f}% "
              f"{r['ref_fwd_pct_floor']:>6.0f}% {r['ref_fwd_bwd_pct_floor']:>3.0f}% | "
              f"{_peaks(r, 'fwd'):>20} {_peaks(r, 'fwd_bwd'):>11}{' | ' + tail(r) if tail_title else ''}")


def add_run_args(ap: argparse.ArgumentParser, small_help: str) -> None:
    """The options every such script takes: ``--out``, ``--device`` (cuda, or cpu in the interpreter),
    ``--small`` (shapes the interpreter can run) and ``--seed``."""
    ap.add_argument("--out", type=Path, default=Path("."),
                    help="folder for the JSON result (created if missing; default: current folder)")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu under TRITON_INTERPRET=1")
    ap.add_argument("--small", action="store_true", help=small_help)
    ap.add_argument("--seed", type=int, default=0, help="base random seed of the test inputs (default: 0)")


def check_device(ap: argparse.ArgumentParser, device: str) -> None:
    """Refuse a device the script cannot run on: not cuda or cpu (:func:`check_device_name`), no CUDA here, or
    the CPU without the Triton interpreter."""
    check_device_name(ap, device)
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device here; use --device cpu --small with TRITON_INTERPRET=1")
    if device == "cpu" and not interpreting():
        ap.error("--device cpu runs the Triton kernels in the interpreter: set TRITON_INTERPRET=1")


def check_device_name(ap: argparse.ArgumentParser, device: str, cpu_needs: str = "TRITON_INTERPRET=1") -> None:
    """Refuse a ``--device`` other than cuda or cpu (``cpu_needs``: what the CPU run needs set), before any case
    runs: a typo must not read as failing kernels."""
    if device not in ("cuda", "cpu"):
        ap.error(f"--device {device!r}: use cuda, or cpu under {cpu_needs}")


def require_cuda(ap: argparse.ArgumentParser) -> None:
    """Stop with one line and exit status 2 where there is no CUDA device, before any work: a GPU-only script's
    first CUDA call would otherwise end in torch's traceback ("Torch not compiled with CUDA enabled")."""
    if not torch.cuda.is_available():
        ap.exit(2, f"{ap.prog}: error: needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() "
                   "is False); run it on a GPU machine\n")


@contextlib.contextmanager
def exit_on_bad_input(ap: argparse.ArgumentParser, *, show_cause: bool = False) -> Iterator[None]:
    """Turn a :class:`GenomixError` raised inside the block (an unknown model, a length past its context, an
    ``--out`` under a file, a malformed input) into one line on stderr and exit status 2, as argparse does for a
    bad option, instead of a traceback. ``show_cause`` shows the error's GenomixError cause instead, for scripts
    that call a library function whose wrapper adds advice meant for another command."""
    try:
        yield
    except GenomixError as exc:
        shown = exc.__cause__ if show_cause and isinstance(exc.__cause__, GenomixError) else exc
        ap.exit(2, f"{ap.prog}: error: {shown}\n")


def median_ms(fn: Callable[[], object], device: str) -> float:
    """Median ms of ``fn``: ``triton.testing.do_bench`` on CUDA, a few ``perf_counter`` runs on CPU."""
    if device == "cuda":
        return triton.testing.do_bench(fn, return_mode="median")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def cuda_event_median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median ms (the upper one for an even count) of ``repeats`` calls of ``fn``, each between two CUDA events
    and synchronised after: time the GPU spends waiting for the host to issue the call's kernels counts (no
    warm-up here)."""
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median_high(times)


def graph_replay(call: Callable[[], object]) -> Callable[[], None]:
    """``call`` captured in a CUDA graph, after one warm-up on a side stream (compilation, cuFFT plans):
    the returned function replays it, with none of the host's launch cost."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    return graph.replay


def _cuda_profile(call: Callable[[], object]) -> torch.profiler.profile:
    """torch.profiler's record of the GPU work of one run of ``call``, finished before it returns."""
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    return prof


def cuda_kernel_ms(call: Callable[[], object]) -> list[dict]:
    """GPU ms per kernel name over one run of ``call`` (torch.profiler; warm it up first), largest first."""
    rows = []
    for ev in _cuda_profile(call).key_averages():
        t = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
        if t > 0:
            rows.append({"kernel": ev.key[:60], "calls": ev.count, "ms": t / 1e3})
    return sorted(rows, key=lambda r: -r["ms"])


def cuda_kernel_timeline(call: Callable[[], object]) -> list[dict]:
    """Every GPU kernel of one run of ``call`` in launch order, with its ms (torch.profiler; warm it up first):
    unlike :func:`cuda_kernel_ms`, two launches of one kernel (the scan's summary and main passes) stay apart."""
    kernels = [ev for ev in _cuda_profile(call).events() if ev.device_type == torch.autograd.DeviceType.CUDA]
    kernels.sort(key=lambda ev: ev.time_range.start)
    return [{"kernel": ev.name[:60], "ms": ev.time_range.elapsed_us() / 1e3} for ev in kernels]


def cpu_copy_bandwidth() -> float:
    """Bytes/s of a 256 MiB host copy (read + write counted): the floor's yardstick for the CPU smoke run."""
    src = torch.empty(1 << 26, dtype=torch.float32)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), "cpu")
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def bench_header(device: str, small: bool, op: str) -> dict[str, Any]:
    """The JSON head of a benchmark run: device, versions, the copy bandwidth its floors use (measured now:
    device-to-device on a GPU, a host copy on the CPU), the path ``op``'s dispatch takes by default, and an
    empty ``rows`` list."""
    cuda = device == "cuda"
    bandwidth = copy_bandwidth() if cuda else cpu_copy_bandwidth()
    return {
        "device": torch.cuda.get_device_name() if cuda else device, "torch": torch.__version__,
        "triton": triton.__version__, "small": small, "copy_gbs": bandwidth / 1e9,
        "dispatch_default": "triton" if use_triton(torch.empty(0, device=device), op=op) else "reference",
        "rows": [],
    }


def bench_rows(result: dict[str, Any], cases: Iterable[Any], bench_one: Callable[[Any, int], dict],
               describe: Callable[[Any], dict], out: Path, device: str) -> None:
    """Append ``bench_one(case, index)`` for every case to ``result["rows"]``; a case that raises leaves
    ``describe(case)`` with its error instead (the others still run). Each row is printed and the JSON
    rewritten at once, so a time cap on the GPU loses nothing."""
    for index, case in enumerate(cases):
        try:
            row = bench_one(case, index)
        except Exception as e:  # keep the other cases' numbers; the failure is reported in the table
            row = {**describe(case), "error": f"{type(e).__name__}: {e}"[:300]}
        result["rows"].append(row)
        print(json.dumps(row), flush=True)
        write_json(out, result)
        if device == "cuda":
            torch.cuda.empty_cache()


def capped_checks(checks: list[Any], small: bool, max_lead: int) -> list[Any]:
    """The check cases (dataclasses with a ``lead`` shape tuple), each leading dim capped at ``max_lead``
    under ``--small`` (the interpreter runs every program in Python)."""
    if not small:
        return list(checks)
    return [dataclasses.replace(c, lead=tuple(min(d, max_lead) for d in c.lead)) for c in checks]


def check_jobs(checks: Iterable[Any], run: Callable[[Any, int], dict]) -> list[tuple[dict, Callable[[int], dict]]]:
    """``check_runner.run_cases`` jobs: each case's fields (plus its full ``shape``) and ``run(case, seed)``."""
    return [({**dataclasses.asdict(c), "shape": [*c.lead, c.n]}, lambda seed, c=c: run(c, seed)) for c in checks]


def check_detail(row: dict) -> str:
    """The error, tolerance, finiteness and contract columns of a checked case, or its error message."""
    if "worst" not in row:
        return f"{'ERROR':>13} {row['error'][:60]}"
    return f"{row['worst']:>13.2e} {row['tol']:>6.0e} {str(row['finite']):>6} {str(row['contract']):>8}"


def check_then_bench(args: argparse.Namespace, op: str, name: str, checks: list[Any], max_lead: int,
                     run_check: Callable[[Any, int], dict], bench_shapes: Iterable[tuple[int, ...]],
                     bench_one: Callable[[tuple[int, ...], float, int], dict],
                     extra_jobs: Iterable[tuple[dict, Callable[[int], dict]]] = ()) -> dict[str, Any]:
    """A check-and-benchmark script's run: the checks (capped under ``--small``, then ``extra_jobs``) and the
    benchmark rows (``bench_one(shape, copy bandwidth in bytes/s, seed)``) into ``args.out/{name}_bench.json``
    with the dispatch default of ``op``; returns the result (``checks`` and ``rows``)."""
    result = {**bench_header(args.device, args.small, op), "checks": []}
    out_path = args.out / f"{name}_bench.json"
    jobs = check_jobs(capped_checks(checks, args.small, max_lead), run_check) + list(extra_jobs)
    result["checks"] = run_cases(jobs, args.seed, out_path, result, args.device, key="checks")
    bandwidth = result["copy_gbs"] * 1e9
    bench_rows(result, bench_shapes, lambda shape, i: bench_one(shape, bandwidth, args.seed + i),
               lambda shape: {"shape": list(shape)}, out_path, args.device)
    return result
