"""GPU correctness checks of the Triton GELU-gated linear unit against a float64 reference.

Every case runs ``gelu_glu_triton`` forward and backward (``torch.autograd.grad`` for h) on fresh random
h (std 3: gelu's curved part and both tails) and dout, fp32, bf16 or fp16, and compares out and dh with
autograd of ``F.gelu(gate, approximate="tanh") * value`` on float64 copies on the same device (computed in
row chunks, so the 1M-row cases fit), by the worst element's error over the reference's largest magnitude
(fp32 <= 1e-5, 16-bit <= 1e-2). Cases: the M2 MLP's d_inner 1024 at 65536 rows (the profiled training
step) and at 2^20 + 1000 rows (past 2^31 elements of h: int64 offsets), fp32 and bf16; odd widths
(d_inner 40, 100, 1000, 1536) and one wider than a program's tile (5000: column tiles); 1 row and row
counts that are no multiple of a tile; 3-D h; h read in place through a row stride (every other row of a
bigger tensor; a column slice of a wider one) and h whose leading dims do not flatten (transposed: copied).
Before the forward and again before the backward the CUDA caching allocator's free blocks are filled with
NaN, so output or gradient memory the kernels leave unwritten shows up as non-finite. The contract is
checked as well: out contiguous (..., d_inner) in h's dtype, dh in h's shape and dtype. Prints a pass/fail
table last, writes JSON to ``--out``/gelu_glu_gpu_check.json after every case and exits 1 if any fails.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python kernels/gpu_check_gelu_glu.py --out DIR

On CPU through the Triton interpreter (rows capped; the NaN poisoning has no effect there):

    TRITON_INTERPRET=1 PYTHONPATH=. python kernels/gpu_check_gelu_glu.py --device cpu --small --out DIR
"""
from __future__ import annotations

import argparse
import dataclasses
import math

import torch
import torch.nn.functional as F

from genomix.kernels.bench_common import add_run_args, check_device
from genomix.kernels.check_runner import run_check_script
from genomix.kernels.gelu_glu import gelu_glu_triton
from genomix.kernels.gpu_check_causal_conv import TOL, poison_allocator

LAYOUTS = ("contiguous", "rows", "slice", "transposed")
#: Rows of float64 reference computed at a time (2^18 rows x 2 x 1024 float64 is 4 GiB).
REF_CHUNK_ELEMENTS = 1 << 29
#: --small: each leading dim capped (the interpreter runs every program in Python).
SMALL_MAX_LEAD = 101


@dataclasses.dataclass(frozen=True)
class CheckCase:
    """h of shape (*lead, 2 * d_inner) in ``dtype`` (a name), laid out as ``layout``:
    contiguous; rows: every other row of a tensor twice as long in the first dim; slice: h[..., :2D] of
    a (*lead, 2D + 64) tensor; transposed: the first two leading dims swapped (not one row stride)."""

    lead: tuple[int, ...]
    d_inner: int
    dtype: str
    layout: str = "contiguous"


CASES = [
    CheckCase((65536,), 1024, "bfloat16"),
    CheckCase((65536,), 1024, "float32"),
    CheckCase((16, 4096), 1024, "bfloat16", "rows"),
    CheckCase(((1 << 20) + 1000,), 1024, "bfloat16"),
    CheckCase(((1 << 20) + 1000,), 1024, "float32"),
    CheckCase((1,), 1024, "float32"),
    CheckCase((1,), 40, "bfloat16"),
    CheckCase((4097,), 1000, "float32", "slice"),
    CheckCase((4097,), 1000, "bfloat16", "slice"),
    CheckCase((3, 1001), 100, "float32", "transposed"),
    CheckCase((3, 1001), 40, "float16"),
    CheckCase((100_003,), 1536, "bfloat16", "rows"),
    CheckCase((1001,), 5000, "float32"),
    CheckCase((2, 777), 5000, "bfloat16", "slice"),
]


def make_h(case: CheckCase, device: str, generator: torch.Generator) -> torch.Tensor:
    """h for one case in its layout (values ~ N(0, 9))."""
    dtype, width = getattr(torch, case.dtype), 2 * case.d_inner
    lead = list(case.lead)
    if case.layout not in LAYOUTS:
        raise ValueError(f"unknown layout {case.layout!r}; expected one of {LAYOUTS}")
    if case.layout == "rows":
        lead[0] *= 2
    if case.layout == "transposed":
        lead[0], lead[1] = lead[1], lead[0]
    full_width = width + 64 if case.layout == "slice" else width
    h = (torch.randn(*lead, full_width, device=device, generator=generator) * 3).to(dtype)
    if case.layout == "rows":
        return h[::2]
    if case.layout == "slice":
        return h[..., :width]
    return h.transpose(0, 1) if case.layout == "transposed" else h


def errors_vs_float64(h: torch.Tensor, dout: torch.Tensor, out: torch.Tensor, dh: torch.Tensor,
                      d_inner: int) -> dict[str, float]:
    """max|got - ref| / max|ref| of out and dh, the float64 reference computed a chunk of rows at a time."""
    rows = [t.reshape(-1, t.shape[-1]) for t in (h, dout, out, dh)]
    chunk = max(1, REF_CHUNK_ELEMENTS // (2 * d_inner))
    worst = {"out": [0.0, 0.0], "dh": [0.0, 0.0]}  # [max abs error, max abs reference]
    for start in range(0, rows[0].shape[0], chunk):
        h64, dout64, got_out, got_dh = (t[start:start + chunk] for t in rows)
        h64 = h64.double().requires_grad_()
        gate, value = h64.split(d_inner, dim=-1)
        ref = F.gelu(gate, approximate="tanh") * value
        (ref_dh,) = torch.autograd.grad(ref, h64, dout64.double())
        for name, got, want in (("out", got_out, ref.detach()), ("dh", got_dh, ref_dh)):
            err = (got.double() - want).abs().max().item()  # NaN propagates
            worst[name][0] = err if math.isnan(err) else max(worst[name][0], err)
            worst[name][1] = max(worst[name][1], want.abs().max().item())
        del h64, ref, ref_dh
    return {name: err / max(scale, 1e-30) for name, (err, scale) in worst.items()}


def check(case: CheckCase, device: str, seed: int) -> dict:
    """One case: Triton out and dh vs the float64 reference, NaN-poisoned, contract checked."""
    g = torch.Generator(device=device).manual_seed(seed)
    dtype = getattr(torch, case.dtype)
    h = make_h(case, device, g)
    dout = torch.randn(*h.shape[:-1], case.d_inner, device=device, generator=g).to(dtype)
    poison_bytes = h.numel() * h.element_size() + (64 << 20)
    leaf = h.detach().requires_grad_()
    poison_allocator(device, poison_bytes)
    out = gelu_glu_triton(leaf, case.d_inner)
    poison_allocator(device, poison_bytes)
    (dh,) = torch.autograd.grad(out, leaf, dout)
    finite = bool(torch.isfinite(out).all() and torch.isfinite(dh).all())
    contract = (out.is_contiguous() and out.shape == (*h.shape[:-1], case.d_inner) and out.dtype == dtype
                and dh.shape == h.shape and dh.dtype == dtype)
    errors = errors_vs_float64(h, dout, out.detach(), dh, case.d_inner)
    tol = TOL[torch.float32] if dtype == torch.float32 else TOL[torch.bfloat16]
    worst = max(errors.values())
    return {"errors": errors, "worst": worst, "tol": tol, "finite": finite, "contract": contract,
            "ok": finite and contract and worst <= tol}


def print_table(rows: list[dict]) -> None:
    print(f"{'shape of h':>20} {'dtype':>8} {'layout':>10} {'out err':>9} {'dh err':>9} {'tol':>6} "
          f"{'finite':>6} {'contract':>8} ok")
    for r in rows:
        shape = str((*r["lead"], 2 * r["d_inner"]))
        detail = (f"{r['errors']['out']:>9.2e} {r['errors']['dh']:>9.2e} {r['tol']:>6.0e} {str(r['finite']):>6} "
                  f"{str(r['contract']):>8}" if "worst" in r else f"{'ERROR':>9} {r['error'][:70]}")
        print(f"{shape:>20} {r['dtype']:>8} {r['layout']:>10} {detail} {r['ok']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(ap, f"cap leading dims at {SMALL_MAX_LEAD} (for the interpreter)")
    args = ap.parse_args(argv)
    check_device(ap, args.device)
    cases = [dataclasses.replace(c, lead=tuple(min(d, SMALL_MAX_LEAD) for d in c.lead)) if args.small else c
             for c in CASES]
    checks = [(dataclasses.asdict(case), lambda seed, case=case: check(case, args.device, seed)) for case in cases]
    return run_check_script(checks, args, "gelu_glu", print_table)


if __name__ == "__main__":
    raise SystemExit(main())
