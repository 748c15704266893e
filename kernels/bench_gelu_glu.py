"""GPU benchmark of the Triton GELU-gated linear unit (``gelu_glu_triton``) against the PyTorch path the
M2 MLP ran before it: ``gate, value = h.split(d_inner, -1); F.gelu(gate, approximate="tanh") * value``
in h's dtype (gelu and multiply forward, their backward kernels and split's ``torch.cat`` of the two
gradient halves).

For each shape and dtype, forward (no grad) and forward+backward (``torch.autograd.grad`` for h, dout in
h's dtype) median ms (``triton.testing.do_bench``), speed-ups, peak memory above what was allocated
before the call, the largest relative difference between the two paths' outputs (16-bit: the PyTorch path
rounds gelu before the multiply, the kernel does not), and the share of the HBM floor: bytes that must
move once (forward: read h, write out = 3 * M * D elements; backward: read h and dout, write dh =
5 * M * D) at the device-to-device copy bandwidth measured in the same run (``bench_scan.copy_bandwidth``).
Shapes: 65536 x (2 x 1024) (the profiled M2 training step), 2^20 x (2 x 1024), bf16 and fp32.
Correctness is kernels/gpu_check_gelu_glu.py's job.

JSON is rewritten after every case to ``--out``/gelu_glu_bench.json; a table is printed last; the exit
status is 1 if any case raises.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python kernels/bench_gelu_glu.py --out DIR

On CPU through the Triton interpreter (a smoke test of this script: tiny shapes, timings by
``time.perf_counter``, no memory figures):

    TRITON_INTERPRET=1 PYTHONPATH=. python kernels/bench_gelu_glu.py --device cpu --small --out DIR
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F

from genomix.kernels.bench_causal_conv import rel_max
from genomix.kernels.bench_common import (add_run_args, bench_header, bench_rows, check_device, median_ms,
                                          print_speed_table, time_paths)
from genomix.kernels.bench_layer_norm import peak_gib
from genomix.kernels.gelu_glu import gelu_glu_triton

GluFn = Callable[[torch.Tensor, int], torch.Tensor]  # (h, d_inner) -> out
#: (rows, d_inner, dtype name) of the benchmark, and the --small ones for the interpreter.
BENCH_CASES = [(65536, 1024, "bfloat16"), (1 << 20, 1024, "bfloat16"), (65536, 1024, "float32"),
               (1 << 20, 1024, "float32")]
SMALL_BENCH_CASES = [(300, 1024, "bfloat16"), (100, 1000, "float32")]


def torch_path(h: torch.Tensor, d_inner: int) -> torch.Tensor:
    """The M2 MLP's former code: split, tanh-gelu of the gate, times the value, all in h's dtype."""
    gate, value = h.split(d_inner, dim=-1)
    return F.gelu(gate, approximate="tanh") * value


def measure(fn: GluFn, h: torch.Tensor, d_inner: int, dout: torch.Tensor, device: str) -> dict:
    """Median ms and peak GiB of one path's forward (no grad) and forward+backward."""
    leaf = h.detach().requires_grad_()

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return fn(h, d_inner)

    def forward_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(fn(leaf, d_inner), leaf, dout)

    return {"fwd_peak_gib": peak_gib(forward, device), "fwd_bwd_peak_gib": peak_gib(forward_backward, device),
            "fwd_ms": median_ms(forward, device), "fwd_bwd_ms": median_ms(forward_backward, device)}


def bench_case(rows: int, d_inner: int, dtype_name: str, device: str, bandwidth: float, seed: int) -> dict:
    """One row: both paths' times, memory and floor shares, and how far apart their outputs and dh are."""
    g = torch.Generator(device=device).manual_seed(seed)
    dtype = getattr(torch, dtype_name)
    h = (torch.randn(rows, 2 * d_inner, device=device, generator=g) * 3).to(dtype)
    dout = torch.randn(rows, d_inner, device=device, generator=g).to(dtype)
    row: dict = {"shape": [rows, 2 * d_inner], "dtype": dtype_name}
    leaf = h.detach().requires_grad_()
    outs = [fn(leaf, d_inner) for fn in (torch_path, gelu_glu_triton)]
    row["out_rel_diff"] = rel_max(outs[1], outs[0])
    torch_dh, triton_dh = (torch.autograd.grad(o, leaf, dout)[0] for o in outs)
    row["dh_rel_diff"] = rel_max(triton_dh, torch_dh)
    del outs, leaf, torch_dh, triton_dh
    elements = rows * d_inner * h.element_size()
    row["fwd_floor_ms"] = 3 * elements / bandwidth * 1e3
    row["fwd_bwd_floor_ms"] = 8 * elements / bandwidth * 1e3
    paths = {"ref": torch_path, "triton": gelu_glu_triton}
    time_paths(row, lambda name: measure(paths[name], h, d_inner, dout, device), device)
    return row


def print_table(rows: list[dict]) -> None:
    print_speed_table(rows, f"{'shape':>16} {'dtype':>8}", lambda r: f"{str(tuple(r['shape'])):>16} {r['dtype']:>8}",
                      f"{'out diff':>8} {'dh diff':>8}", lambda r: f"{r['out_rel_diff']:>8.1e} {r['dh_rel_diff']:>8.1e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(ap, "tiny shapes (for the interpreter)")
    args = ap.parse_args(argv)
    check_device(ap, args.device)
    result = bench_header(args.device, args.small, "gelu_glu")
    bandwidth = result["copy_gbs"] * 1e9
    bench_rows(result, SMALL_BENCH_CASES if args.small else BENCH_CASES,
               lambda case, i: bench_case(*case, args.device, bandwidth, args.seed + i),
               lambda case: {"shape": [case[0], 2 * case[1]], "dtype": case[2]}, args.out / "gelu_glu_bench.json",
               args.device)
    print(f"{result['device']}, copy {bandwidth / 1e9:.0f} GB/s, dispatch default: {result['dispatch_default']}; "
          f"ref = split + F.gelu(tanh) * value in h's dtype (the former MonarchGLU code)")
    print_table(result["rows"])
    return 1 if any("error" in r for r in result["rows"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
