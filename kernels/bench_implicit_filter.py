"""GPU benchmark of the Triton implicit filter (``implicit_filter_triton``) against its PyTorch reference
(the code Hyena and M2 ran before it: ``nn.Linear``/``sin`` layers, the projection, ``exp`` of the decay
and its multiply, each a kernel, with autograd keeping every intermediate).

For each filter (C channels, L positions, order R, E = 5 features, two inner layers, modulated, the
projection in TF32 as under bf16 autocast): forward (no grad) and forward+backward (``torch.autograd.grad``
of every parameter for a random dk) median ms (``triton.testing.do_bench``), speed-ups, peak memory
above what was allocated before the call, the largest relative difference of the two paths' filters and
gradients, and the share of the HBM floor: the filter written once forward, dk read once backward
(C * L fp32 each), at the device-to-device copy bandwidth measured in the same run. Shapes: M2's
(256, 4K / 64K) and HyenaDNA large-1m's (256, 1M). Correctness is kernels/gpu_check_implicit_filter.py's job.

JSON is rewritten after every case to ``--out``/implicit_filter_bench.json; a table is printed last; the
exit status is 1 if any case raises.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python kernels/bench_implicit_filter.py --out DIR

On CPU through the Triton interpreter (a smoke test of this script: tiny shapes, timings by
``time.perf_counter``, no memory figures):

    TRITON_INTERPRET=1 PYTHONPATH=. python kernels/bench_implicit_filter.py --device cpu --small --out DIR
"""
from __future__ import annotations

import argparse
import importlib

import torch

from genomix.kernels.bench_common import (add_run_args, bench_header, bench_rows, check_device, median_ms,
                                          print_speed_table, time_paths)
from genomix.kernels.bench_layer_norm import peak_gib
from genomix.kernels.gpu_check_implicit_filter import FilterCase, make_inputs, parameters
from genomix.kernels.implicit_filter import implicit_filter_ref, implicit_filter_triton

ops = importlib.import_module("genomix.kernels.implicit_filter.ops")

#: The launch constants of ``ops`` that ``--tiling NAME=VALUE`` may override for a sweep (recorded per row).
TILING = ("FWD_BLOCK_L", "FWD_WARPS", "BWD_BLOCK_L", "BWD_WARPS", "BLOCK_C", "PROGRAMS_PER_SM")
#: (channels, length) of the benchmark, and the --small ones for the interpreter.
BENCH_CASES = [(256, 4096), (256, 65536), (256, 1 << 20)]
SMALL_BENCH_CASES = [(80, 300)]


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def bench_case(channels: int, length: int, device: str, bandwidth: float, seed: int) -> dict:
    """One row: both paths' times, memory and floor shares, and how far apart their results are."""
    case = FilterCase(length, channels, tf32=device == "cuda")
    g = torch.Generator(device=device).manual_seed(seed)
    z, t, layers, out_weight, rates = make_inputs(case, device, g)
    params = parameters(layers, out_weight)
    dk = torch.randn(channels, length, device=device, generator=g)
    paths = {"ref": implicit_filter_ref, "triton": implicit_filter_triton}

    def call(name: str) -> torch.Tensor:
        return paths[name](z, t, layers, out_weight, rates, case.shift, case.tf32)

    row: dict = {"channels": channels, "length": length, "order": case.order, "tf32": case.tf32,
                 **{name.lower(): getattr(ops, name) for name in TILING}}
    results = {name: (call(name), torch.autograd.grad(call(name), params, dk)) for name in paths}
    row["k_rel_diff"] = _rel(results["triton"][0].detach(), results["ref"][0].detach())
    row["grad_rel_diff"] = max(_rel(a, b) for a, b in zip(results["triton"][1], results["ref"][1]))
    del results
    row["fwd_floor_ms"] = channels * length * 4 / bandwidth * 1e3
    row["fwd_bwd_floor_ms"] = 2 * row["fwd_floor_ms"]

    def measure(name: str) -> dict:
        def forward() -> torch.Tensor:
            with torch.no_grad():
                return call(name)

        def forward_backward() -> tuple[torch.Tensor, ...]:
            return torch.autograd.grad(call(name), params, dk)

        return {"fwd_peak_gib": peak_gib(forward, device), "fwd_bwd_peak_gib": peak_gib(forward_backward, device),
                "fwd_ms": median_ms(forward, device), "fwd_bwd_ms": median_ms(forward_backward, device)}

    time_paths(row, measure, device)
    return row


def print_table(rows: list[dict]) -> None:
    print_speed_table(rows, f"{'C x L':>14}", lambda r: f"{str((r['channels'], r['length'])):>14}",
                      f"{'k diff':>8} {'grad diff':>9}", lambda r: f"{r['k_rel_diff']:>8.1e} {r['grad_rel_diff']:>9.1e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(ap, "tiny shapes (for the interpreter)")
    ap.add_argument("--tiling", nargs="*", default=[], metavar="NAME=VALUE",
                    help=f"override launch constants for a sweep, of {', '.join(TILING)}")
    args = ap.parse_args(argv)
    check_device(ap, args.device)
    for item in args.tiling:
        name, _, value = item.partition("=")
        if name not in TILING or not value.isdigit():
            ap.error(f"--tiling takes NAME=INTEGER with NAME one of {', '.join(TILING)}, got {item!r}")
        setattr(ops, name, int(value))
    result = bench_header(args.device, args.small, "implicit_filter")
    bandwidth = result["copy_gbs"] * 1e9
    bench_rows(result, SMALL_BENCH_CASES if args.small else BENCH_CASES,
               lambda case, i: bench_case(*case, args.device, bandwidth, args.seed + i),
               lambda case: {"channels": case[0], "length": case[1]},
               args.out / f"implicit_filter_bench{'_' + '_'.join(args.tiling) if args.tiling else ''}.json", args.device)
    print(f"{result['device']}, copy {bandwidth / 1e9:.0f} GB/s, dispatch default: {result['dispatch_default']}; "
          f"ref = the PyTorch filter (implicit_filter_ref)")
    print_table(result["rows"])
    return 1 if any("error" in r for r in result["rows"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
