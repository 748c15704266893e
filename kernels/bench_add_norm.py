"""GPU check and benchmark of the fused add-norm (``add_norm_triton``: a pre-norm block's residual add and
RMSNorm/LayerNorm in one kernel each way) against the float64 reference and against the models' previous
path, the same math as separate PyTorch ops (``add_norm_ref``) followed by the next Linear's bf16 cast.

Check (first): each case runs ``add_norm_triton`` forward and backward (``torch.autograd.grad`` of both
outputs, y and the residual sum s, for x, the residual, weight and bias) on fresh random inputs and
compares y, s and every gradient with ``add_norm_ref`` on float64 copies, by the worst element's error
over the reference's largest magnitude (fp32 <= 1e-5; <= 1e-2 when x, y or s is 16-bit). Cases: N = 40,
256, 1000 and 8192, odd row counts, RMSNorm and LayerNorm, the first block (no residual), bf16 x with an
fp32 residual stream (Mamba under autocast) and an all-bf16 stream, x and residual as column slices of
wider tensors (Caduceus's strands). The CUDA caching allocator's free blocks are filled with NaN before
the forward and the backward (``gpu_check_causal_conv.poison_allocator``), so memory the kernels leave
unwritten reads as non-finite; outputs and gradients must come back in their contract's dtypes.

Benchmark (then): bf16 x (the mixer's output), fp32 residual stream and weight, bf16 y, fp32 s, RMSNorm
(Mamba's), at (1, 1048576, 256) (``mamba-7m-1m`` at L = 1M), (16, 4096, 256) and (1, 1048576, 1024).
Forward (no grad) and forward+backward median ms (``triton.testing.do_bench``), speed-ups, peak memory
above what was allocated before the call, and the share of the HBM floor (forward: read x and the
residual, write s and y; backward: read s, dy and ds, write dx and the residual's gradient) at the
device-to-device copy bandwidth measured in the same run.

JSON is rewritten after every case to ``--out``/add_norm_bench.json; tables are printed last; the exit
status is 1 if any check fails or any case raises.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python kernels/bench_add_norm.py --out DIR

On CPU through the Triton interpreter (a smoke test: tiny shapes, ``perf_counter`` timings, no memory):

    TRITON_INTERPRET=1 PYTHONPATH=. python kernels/bench_add_norm.py --device cpu --small --out DIR
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable

import torch

from genomix.kernels.bench_causal_conv import leaves_of, rel_max
from genomix.kernels.bench_common import (add_run_args, check_detail, check_device, check_then_bench, median_ms,
                                          print_speed_table, time_paths)
from genomix.kernels.bench_layer_norm import peak_gib
from genomix.kernels.check_runner import verdict
from genomix.kernels.gpu_check_causal_conv import TOL, poison_allocator
from genomix.kernels.layer_norm import add_norm_ref, add_norm_triton

EPS = 1e-5
BF16, F32 = torch.bfloat16, torch.float32


@dataclasses.dataclass(frozen=True)
class CheckCase:
    """One checked call on (*lead, n): dtypes by name; ``residual`` None is the first block (s = x)."""

    lead: tuple[int, ...]
    n: int
    x_dtype: str
    residual: str | None
    residual_out: str
    out_dtype: str
    rms: bool = True
    layout: str = "contiguous"  # or "slice": x and the residual are column slices of wider tensors


CHECKS = [
    CheckCase((1, 4097), 256, "bfloat16", "float32", "float32", "bfloat16"),
    CheckCase((2, 1001), 256, "float32", "float32", "float32", "float32"),
    CheckCase((1, 100_003), 256, "bfloat16", None, "float32", "bfloat16"),
    CheckCase((3, 1001), 40, "bfloat16", "bfloat16", "bfloat16", "float32", layout="slice"),
    CheckCase((2, 4097), 256, "float32", "float32", "float32", "float32", rms=False, layout="slice"),
    CheckCase((1, 100_003), 1000, "bfloat16", "float32", "float32", "bfloat16", rms=False),
    CheckCase((1001,), 8192, "bfloat16", "float32", "float32", "bfloat16"),
]
BENCH_SHAPES = [(1, 1 << 20, 256), (16, 4096, 256), (1, 1 << 20, 1024)]
SMALL_MAX_LEAD = 101
SMALL_BENCH_SHAPES = [(1, 300, 256), (2, 64, 256), (1, 100, 1024)]


def make_inputs(shape: tuple[int, ...], x_dtype: torch.dtype, residual_dtype: torch.dtype | None, device: str,
                generator: torch.Generator, layout: str = "contiguous"):
    """(x, residual or None, weight, bias): a residual stream with an offset mean, fp32 weight near 1 and bias
    near 0 as after training; with ``layout="slice"`` x and the residual are column slices (row stride > n)."""
    *lead, n = shape
    if layout not in ("contiguous", "slice"):
        raise ValueError(f"unknown layout {layout!r}; expected contiguous or slice")
    width, offset = (n + 64, 32) if layout == "slice" else (n, 0)
    x = torch.randn(*lead, width, device=device, generator=generator).to(x_dtype)[..., offset:offset + n]
    residual = None
    if residual_dtype is not None:
        residual = (torch.randn(*lead, width, device=device, generator=generator) * 4 + 1).to(residual_dtype)
        residual = residual[..., offset:offset + n]
    weight = 1 + 0.1 * torch.randn(n, device=device, generator=generator)
    return x, residual, weight, 0.1 * torch.randn(n, device=device, generator=generator)


def check(case: CheckCase, device: str, seed: int) -> dict:
    """One case: Triton y, s and gradients vs the float64 reference, NaN-poisoned, contract checked."""
    g = torch.Generator(device=device).manual_seed(seed)
    dt = {name: getattr(torch, name) for name in ("float32", "bfloat16")}
    x_dtype, res_out, out_dtype = dt[case.x_dtype], dt[case.residual_out], dt[case.out_dtype]
    shape = (*case.lead, case.n)
    x, residual, weight, bias = make_inputs(shape, x_dtype, None if case.residual is None else dt[case.residual],
                                            device, g, case.layout)
    bias = None if case.rms else bias
    dy = torch.randn(shape, device=device, generator=g).to(out_dtype)
    ds = torch.randn(shape, device=device, generator=g).to(res_out)
    inputs = [t for t in (x, residual, weight, bias) if t is not None]
    ref_leaves = leaves_of(*(None if t is None else t.double() for t in (x, residual, weight, bias)))
    ref = add_norm_ref(*ref_leaves, EPS, case.rms, torch.float64, torch.float64)
    ref_grads = torch.autograd.grad(ref, [t for t in ref_leaves if t is not None], (dy.double(), ds.double()))
    poison_bytes = 6 * math.prod(shape) * 4 + (64 << 20)
    leaves = leaves_of(x, residual, weight, bias)
    poison_allocator(device, poison_bytes)
    y, s = add_norm_triton(*leaves, EPS, case.rms, out_dtype, res_out)
    poison_allocator(device, poison_bytes)
    grads = torch.autograd.grad((y, s), [t for t in leaves if t is not None], (dy, ds))
    names = ["y", "s"] + [n for n, t in zip(("dx", "dresidual", "dweight", "dbias"), (x, residual, weight, bias))
                          if t is not None]
    errors = {name: rel_max(a, b) for name, a, b in zip(names, (y, s, *grads), (*ref, *ref_grads))}
    finite = all(bool(torch.isfinite(t).all()) for t in (y, s, *grads))
    contract = (y.dtype == out_dtype and s.dtype == res_out and y.shape == s.shape == x.shape
                and all(gr.shape == t.shape and gr.dtype == t.dtype for gr, t in zip(grads, inputs)))
    tol = TOL[BF16] if BF16 in (x_dtype, out_dtype, res_out) else TOL[F32]
    worst = max(errors.values())
    return {"errors": errors, "worst": worst, "tol": tol, "finite": finite, "contract": contract,
            "ok": finite and contract and worst <= tol}


def reference_path(x, residual, weight):
    """The models' previous path: add, fp32 residual, RMSNorm as PyTorch ops, then the next Linear's cast."""
    return add_norm_ref(x, residual, weight, None, EPS, True, BF16, F32)


def triton_path(x, residual, weight):
    return add_norm_triton(x, residual, weight, None, EPS, True, BF16, F32)


def measure(fn: Callable, x, residual, weight, dy, ds, device: str) -> dict:
    """Median ms and peak GiB of one path's forward (no grad) and forward+backward."""
    leaves = leaves_of(x, residual, weight)

    def forward():
        with torch.no_grad():
            return fn(x, residual, weight)

    def forward_backward():
        return torch.autograd.grad(fn(*leaves), leaves, (dy, ds))

    return {"fwd_peak_gib": peak_gib(forward, device), "fwd_bwd_peak_gib": peak_gib(forward_backward, device),
            "fwd_ms": median_ms(forward, device), "fwd_bwd_ms": median_ms(forward_backward, device)}


def bench_case(shape: tuple[int, ...], device: str, bandwidth: float, seed: int) -> dict:
    """One row: both paths' times, memory and floor shares, and their forward agreement."""
    g = torch.Generator(device=device).manual_seed(seed)
    x, residual, weight, _ = make_inputs(shape, BF16, F32, device, g)
    dy = torch.randn(shape, device=device, generator=g).to(BF16)
    ds = torch.randn(shape, device=device, generator=g)
    row: dict = {"shape": list(shape)}
    with torch.no_grad():
        got, want = triton_path(x, residual, weight), reference_path(x, residual, weight)
        row["fwd_rel_err_vs_ref"] = max(rel_max(got[0], want[0]), rel_max(got[1], want[1]))
    elements = math.prod(shape)
    row["fwd_floor_ms"] = elements * 12 / bandwidth * 1e3  # x 2 + residual 4 in, s 4 + y 2 out
    row["fwd_bwd_floor_ms"] = row["fwd_floor_ms"] + elements * 16 / bandwidth * 1e3  # s 4, dy 2, ds 4; dx 2, dres 4
    paths = {"ref": reference_path, "triton": triton_path}
    time_paths(row, lambda name: measure(paths[name], x, residual, weight, dy, ds, device), device)
    return row


def print_checks(rows: list[dict]) -> None:
    print(f"{'shape':>18} {'x':>8} {'residual':>8} {'s':>8} {'y':>8} {'norm':>5} {'layout':>10} "
          f"{'worst rel err':>13} {'tol':>6} {'finite':>6} {'contract':>8} ok")
    for r in rows:
        detail = check_detail(r)
        print(f"{str(tuple(r['shape'])):>18} {r['x_dtype']:>8} {str(r['residual']):>8} {r['residual_out']:>8} "
              f"{r['out_dtype']:>8} {'rms' if r['rms'] else 'ln':>5} {r['layout']:>10} {detail} {r['ok']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(ap, f"cap leading dims at {SMALL_MAX_LEAD}, tiny benchmark shapes")
    args = ap.parse_args(argv)
    check_device(ap, args.device)
    result = check_then_bench(
        args, "add_norm", "add_norm", CHECKS, SMALL_MAX_LEAD, lambda c, seed: check(c, args.device, seed),
        SMALL_BENCH_SHAPES if args.small else BENCH_SHAPES,
        lambda shape, bandwidth, seed: bench_case(shape, args.device, bandwidth, seed))
    print_checks(result["checks"])
    failed = verdict(result["checks"])
    print(f"{result['device']}, copy {result['copy_gbs']:.0f} GB/s, dispatch default: {result['dispatch_default']}; "
          "bf16 x, fp32 residual and weight, bf16 y, fp32 s, RMSNorm; ref = the PyTorch ops + .to(bf16)")
    print_speed_table(result["rows"], f"{'shape':>18}", lambda r: f"{str(tuple(r['shape'])):>18}")
    return 1 if failed or any("error" in r for r in result["rows"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
