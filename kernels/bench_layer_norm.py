"""GPU check and benchmark of the Triton LayerNorm (``layer_norm_triton``) against the float64 reference
and against the model's current path, ``F.layer_norm`` under bf16 autocast followed by the cast to bf16.

Check (first): every case runs ``layer_norm_triton`` forward and backward (``torch.autograd.grad`` for x,
weight and bias when present) on fresh random inputs and compares y and each gradient with
``layer_norm_ref`` on float64 copies on the same device, by the worst element's error over the
reference's largest magnitude (fp32 <= 1e-5; <= 1e-2 when x or y is bf16). Cases: N = 118, 256, 768,
1000 and 8192 (the widest Triton row), odd row counts (1, 1001, 4097, 100003), fp32 and bf16 x, y in
x's dtype or bf16 (fp32 -> bf16 is the model's), affine on and off, x contiguous or a column slice of a
wider tensor (row stride != N), and one bf16 (M, 256) case with M * N just past 2^31 (int64 offsets;
its y and dx are compared on the first and last rows, which are row-local). Before the forward and the
backward the CUDA caching allocator's free blocks are filled with NaN
(``gpu_check_causal_conv.poison_allocator``), so memory the kernels leave unwritten reads as non-finite.
The contract is checked too: y contiguous in the requested dtype, gradients in their inputs' shapes and
dtypes.

Benchmark (then): fp32 x (the residual stream), fp32 weight/bias, bf16 output, at (1, 1048576, 256)
(HyenaDNA large-1m at L = 1M), (16, 4096, 256) and (1, 1048576, 1024). For each path, forward (no grad)
and forward+backward (``torch.autograd.grad`` for x, weight and bias, bf16 dy) median ms
(``triton.testing.do_bench``), speed-ups, peak memory above what was allocated before the call, and the
share of the HBM floor: bytes that must move once (forward: read x, write y; backward: read x and dy,
write dx; weight, bias and their gradients included; not the per-row statistics) at the
device-to-device copy bandwidth measured in the same run (``bench_scan.copy_bandwidth``).

JSON is rewritten after every case to ``--out``/layer_norm_bench.json; tables are printed last; the exit
status is 1 if any check fails or any case raises.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python kernels/bench_layer_norm.py --out DIR

On CPU through the Triton interpreter (a smoke test of this script: tiny shapes, no int64 case, timings
by ``time.perf_counter``, no memory figures; the NaN poisoning has no effect there):

    TRITON_INTERPRET=1 PYTHONPATH=. python kernels/bench_layer_norm.py --device cpu --small --out DIR
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from genomix.kernels.bench_causal_conv import leaves_of, peak_delta, rel_max
from genomix.kernels.bench_common import (add_run_args, check_detail, check_device, check_then_bench, median_ms,
                                          print_speed_table, time_paths)
from genomix.kernels.check_runner import verdict
from genomix.kernels.gpu_check_causal_conv import TOL, poison_allocator
from genomix.kernels.layer_norm import layer_norm_ref, layer_norm_triton

EPS = 1e-5
BF16 = torch.bfloat16
NormFn = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]  # (x, w, b) -> y


@dataclasses.dataclass(frozen=True)
class CheckCase:
    """One checked call: x of shape (*lead, n) in ``x_dtype``, y in ``out_dtype`` (dtype names)."""

    lead: tuple[int, ...]
    n: int
    x_dtype: str
    out_dtype: str
    affine: bool = True
    layout: str = "contiguous"  # or "slice": x[..., :n] of a (*lead, n + 64) tensor


CHECKS = [
    CheckCase((1,), 256, "float32", "float32"),
    CheckCase((3, 1001), 118, "float32", "float32"),
    CheckCase((3, 1001), 118, "bfloat16", "bfloat16", affine=False),
    CheckCase((2, 4097), 256, "float32", "bfloat16"),
    CheckCase((2, 4097), 256, "float32", "float32", affine=False, layout="slice"),
    CheckCase((2, 4097), 256, "bfloat16", "float32", layout="slice"),
    CheckCase((1, 100_003), 768, "float32", "bfloat16"),
    CheckCase((1, 100_003), 768, "float32", "float32"),
    CheckCase((5, 7, 1), 1000, "bfloat16", "bfloat16"),
    CheckCase((1001,), 8192, "float32", "bfloat16"),
]
#: Rows of the int64-offset case: (M, 256) with M * 256 just past 2^31 elements.
INT64_ROWS, INT64_N, INT64_EDGE = (1 << 31) // 256 + 3, 256, 1024
BENCH_SHAPES = [(1, 1 << 20, 256), (16, 4096, 256), (1, 1 << 20, 1024)]
#: --small: each leading dim capped (the interpreter runs every program in Python), and tiny benchmark shapes.
SMALL_MAX_LEAD = 101
SMALL_BENCH_SHAPES = [(1, 300, 256), (2, 64, 256), (1, 100, 1024)]


def make_inputs(shape: tuple[int, ...], dtype: torch.dtype, affine: bool, device: str, generator: torch.Generator,
                layout: str = "contiguous") -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(x, weight, bias): x off-centre (mean 1, std 3: a one-pass variance would lose digits) in ``dtype``,
    fp32 weight near 1 and bias near 0 as after training (None without ``affine``)."""
    *lead, n = shape
    if layout not in ("contiguous", "slice"):
        raise ValueError(f"unknown layout {layout!r}; expected contiguous or slice")
    width = n + 64 if layout == "slice" else n
    x = (torch.randn(*lead, width, device=device, generator=generator) * 3 + 1).to(dtype)[..., :n]
    if not affine:
        return x, None, None
    weight = 1 + 0.1 * torch.randn(n, device=device, generator=generator)
    return x, weight, 0.1 * torch.randn(n, device=device, generator=generator)


def check(case: CheckCase, device: str, seed: int) -> dict:
    """One case: Triton y and gradients vs the float64 reference, NaN-poisoned, contract checked."""
    g = torch.Generator(device=device).manual_seed(seed)
    x_dtype, out_dtype = getattr(torch, case.x_dtype), getattr(torch, case.out_dtype)
    shape = (*case.lead, case.n)
    x, weight, bias = make_inputs(shape, x_dtype, case.affine, device, g, case.layout)
    dy = torch.randn(shape, device=device, generator=g).to(out_dtype)
    inputs = [t for t in (x, weight, bias) if t is not None]
    ref_leaves = [None if t is None else t.detach().double().requires_grad_() for t in (x, weight, bias)]
    ref = layer_norm_ref(*ref_leaves, EPS)
    ref_grads = torch.autograd.grad(ref, [t for t in ref_leaves if t is not None], dy.double())
    poison_bytes = 3 * math.prod(shape) * 4 + (64 << 20)
    leaves = leaves_of(x, weight, bias)
    poison_allocator(device, poison_bytes)
    out = layer_norm_triton(*leaves, EPS, out_dtype)
    poison_allocator(device, poison_bytes)
    grads = torch.autograd.grad(out, [t for t in leaves if t is not None], dy)
    names = ("y", "dx", "dweight", "dbias")
    errors = {name: rel_max(a, b) for name, a, b in zip(names, (out, *grads), (ref, *ref_grads))}
    finite = all(bool(torch.isfinite(t).all()) for t in (out, *grads))
    contract = (out.is_contiguous() and out.shape == x.shape and out.dtype == out_dtype
                and all(gr.shape == t.shape and gr.dtype == t.dtype for gr, t in zip(grads, inputs)))
    tol = TOL[BF16] if BF16 in (x_dtype, out_dtype) else TOL[torch.float32]
    worst = max(errors.values())
    return {"errors": errors, "worst": worst, "tol": tol, "finite": finite, "contract": contract,
            "ok": finite and contract and worst <= tol}


def check_int64_offsets(device: str, seed: int) -> dict:
    """bf16 (INT64_ROWS, 256), past 2^31 elements: y and dx of the first and last rows vs float64 (row-local)."""
    g = torch.Generator(device=device).manual_seed(seed)
    x, weight, bias = make_inputs((INT64_ROWS, INT64_N), BF16, True, device, g)
    dy = torch.randn(x.shape, device=device, generator=g, dtype=BF16)
    xl = x.detach().requires_grad_()
    poison_allocator(device, 2 * x.numel() * 2)
    out = layer_norm_triton(xl, weight, bias, EPS, BF16)
    (dx,) = torch.autograd.grad(out, xl, dy)
    errors, finite = {}, True
    for edge, rows in (("first", slice(0, INT64_EDGE)), ("last", slice(-INT64_EDGE, None))):
        ref_x = x[rows].double().requires_grad_()
        ref = layer_norm_ref(ref_x, weight.double(), bias.double(), EPS)
        (ref_dx,) = torch.autograd.grad(ref, ref_x, dy[rows].double())
        errors[f"y_{edge}"], errors[f"dx_{edge}"] = rel_max(out[rows], ref), rel_max(dx[rows], ref_dx)
        finite = finite and bool(torch.isfinite(out[rows]).all() and torch.isfinite(dx[rows]).all())
    worst = max(errors.values())
    return {"errors": errors, "worst": worst, "tol": TOL[BF16], "finite": finite, "contract": out.dtype == BF16,
            "ok": finite and out.dtype == BF16 and worst <= TOL[BF16]}


def reference_path(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """The model's path today: ``nn.LayerNorm`` under bf16 autocast (fp32 out), then the next Linear's cast."""
    with torch.autocast(x.device.type, dtype=BF16):
        return F.layer_norm(x, x.shape[-1:], weight, bias, EPS).to(BF16)


def triton_path(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """One pass: fp32 x in, bf16 y out."""
    return layer_norm_triton(x, weight, bias, EPS, BF16)


def peak_gib(fn: Callable[[], object], device: str) -> float | None:
    """Peak GiB allocated above the current allocation while ``fn`` runs (None off CUDA)."""
    return peak_delta(fn)[0] / 2**30 if device == "cuda" else None


def measure(fn: NormFn, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dy: torch.Tensor,
            device: str) -> dict:
    """Median ms and peak GiB of one path's forward (no grad) and forward+backward."""
    leaves = leaves_of(x, weight, bias)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return fn(x, weight, bias)

    def forward_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(fn(*leaves), leaves, dy)

    return {"fwd_peak_gib": peak_gib(forward, device), "fwd_bwd_peak_gib": peak_gib(forward_backward, device),
            "fwd_ms": median_ms(forward, device), "fwd_bwd_ms": median_ms(forward_backward, device)}


def floor_bytes(shape: tuple[int, ...], x_itemsize: int, y_itemsize: int) -> tuple[int, int]:
    """(forward, backward) bytes that must cross HBM at least once."""
    elements, n = math.prod(shape), shape[-1]
    return elements * (x_itemsize + y_itemsize) + 2 * n * 4, elements * (2 * x_itemsize + y_itemsize) + 4 * n * 4


def bench_case(shape: tuple[int, ...], device: str, bandwidth: float, seed: int) -> dict:
    """One row: both paths' times, memory and floor shares, and the forward's agreement between them."""
    g = torch.Generator(device=device).manual_seed(seed)
    x, weight, bias = make_inputs(shape, torch.float32, True, device, g)
    dy = torch.randn(shape, device=device, generator=g).to(BF16)
    row: dict = {"shape": list(shape)}
    with torch.no_grad():
        row["fwd_rel_err_vs_ref"] = rel_max(triton_path(x, weight, bias), reference_path(x, weight, bias))
    fwd_bytes, bwd_bytes = floor_bytes(shape, x.element_size(), 2)
    row["fwd_floor_ms"] = fwd_bytes / bandwidth * 1e3
    row["fwd_bwd_floor_ms"] = (fwd_bytes + bwd_bytes) / bandwidth * 1e3
    paths = {"ref": reference_path, "triton": triton_path}
    time_paths(row, lambda name: measure(paths[name], x, weight, bias, dy, device), device)
    return row


def print_checks(rows: list[dict]) -> None:
    print(f"{'shape':>18} {'x':>8} {'y':>8} {'affine':>6} {'layout':>10} {'worst rel err':>13} {'tol':>6} "
          f"{'finite':>6} {'contract':>8} ok")
    for r in rows:
        detail = check_detail(r)
        print(f"{str(tuple(r['shape'])):>18} {r['x_dtype']:>8} {r['out_dtype']:>8} {str(r['affine']):>6} "
              f"{r['layout']:>10} {detail} {r['ok']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(ap, f"cap leading dims at {SMALL_MAX_LEAD}, skip the int64 case, tiny benchmark shapes")
    args = ap.parse_args(argv)
    check_device(ap, args.device)
    int64_job = ({"shape": [INT64_ROWS, INT64_N], "x_dtype": "bfloat16", "out_dtype": "bfloat16", "affine": True,
                  "layout": "int64 rows"}, lambda seed: check_int64_offsets(args.device, seed))
    result = check_then_bench(
        args, "layer_norm", "layer_norm", CHECKS, SMALL_MAX_LEAD, lambda c, seed: check(c, args.device, seed),
        SMALL_BENCH_SHAPES if args.small else BENCH_SHAPES,
        lambda shape, bandwidth, seed: bench_case(shape, args.device, bandwidth, seed),
        extra_jobs=() if args.small else (int64_job,))
    print_checks(result["checks"])
    failed = verdict(result["checks"])
    print(f"{result['device']}, copy {result['copy_gbs']:.0f} GB/s, dispatch default: {result['dispatch_default']}; "
          f"fp32 x and weight/bias, bf16 y and dy; ref = F.layer_norm under bf16 autocast + .to(bf16)")
    print_speed_table(result["rows"], f"{'shape':>18}", lambda r: f"{str(tuple(r['shape'])):>18}")
    return 1 if failed or any("error" in r for r in result["rows"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
