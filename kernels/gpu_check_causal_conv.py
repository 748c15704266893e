"""GPU correctness checks of the Triton causal conv1d against a float64 reference (run on the lent H200).

Every case runs ``causal_conv1d_triton`` forward and backward (``torch.autograd.grad`` for x, weight and,
when present, bias) on fresh random inputs, fp32 and bf16 x with fp32 weight/bias, and compares the
output and each gradient with ``causal_conv1d_ref`` evaluated on float64 copies on the same device, by
the worst element's error over the reference's largest magnitude (fp32 <= 1e-5, bf16 <= 1e-2). The
cases cover lengths 1 and 3 (shorter than the filter), 1000, 4097 and 100003 (none a multiple of a
tile), C = 70 and 770 (not multiples of the channel tile), B up to 3, K = 2, 3, 4, no activation and
SiLU, bias on and off, and x contiguous, a channels-last view and Mamba's chunk view (see
``bench_causal_conv.conv_input``). Before the forward and again before the backward the CUDA caching
allocator's free blocks are filled with NaN, so output or gradient memory the kernels leave unwritten
(including the per-tile weight-gradient partials) shows up as non-finite values. The op's contract is
checked as well: output contiguous (B, C, L) in x's dtype, each gradient in its input's shape and dtype.
Prints a pass/fail table last, writes JSON to ``--out``/causal_conv_gpu_check.json and exits 1 if any
case fails.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python kernels/gpu_check_causal_conv.py --out DIR

On CPU through the Triton interpreter (tiny shapes; the NaN poisoning has no effect there, since only
the CUDA caching allocator hands freed memory back unchanged):

    TRITON_INTERPRET=1 GENOMIX_FORCE_TRITON=1 PYTHONPATH=. python kernels/gpu_check_causal_conv.py \
        --device cpu --small --out DIR
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from genomix.kernels.bench_causal_conv import Case, case_inputs, leaves_of, rel_max
from genomix.kernels.bench_common import check_device_name
from genomix.kernels.check_runner import run_check_script
from genomix.kernels.causal_conv import causal_conv1d_ref, causal_conv1d_triton

CASES = [  # Case(batch, channels, length, width, activation, layout, bias)
    Case(2, 70, 1, 4, "silu", "channels_last", True),
    Case(3, 70, 3, 4, None, "contiguous", False),
    Case(1, 770, 3, 2, None, "chunk", False),
    Case(2, 770, 1000, 3, None, "channels_last", True),
    Case(3, 70, 1000, 2, "silu", "contiguous", True),
    Case(1, 70, 4097, 4, "silu", "chunk", True),
    Case(2, 770, 4097, 3, "silu", "contiguous", False),
    Case(2, 70, 4097, 2, None, "channels_last", False),
    Case(1, 770, 100_003, 3, None, "channels_last", True),
    Case(2, 770, 100_003, 4, "silu", "chunk", True),
    Case(3, 70, 100_003, 2, None, "contiguous", False),
]
#: --small caps: the interpreter runs every program in Python. 300 steps are 3 time tiles, the last ragged.
SMALL_MAX_LENGTH, SMALL_MAX_CHANNELS = 300, 70
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}
NAN_SMALL_BLOCK = 1 << 17  # fp32 elements: 512 KiB requests are served from the allocator's small pool


def poison_allocator(device: str, nbytes: int) -> None:
    """Leave the caching allocator's free memory full of NaN, so that memory taken with ``torch.empty``
    and never written reads as NaN. Cached free blocks are released first (a best-fit request would
    otherwise reuse one holding stale values), then one large block (split for large requests) and
    enough 512 KiB blocks to fill small-pool segments (requests of 1 MiB or less never come from the
    large pool) are filled and freed."""
    if device == "cuda":
        torch.cuda.empty_cache()
    big = torch.full((nbytes // 4,), float("nan"), device=device)
    small = [torch.full((NAN_SMALL_BLOCK,), float("nan"), device=device) for _ in range(32)]
    del big, small


def check(case: Case, dtype: torch.dtype, device: str, seed: int) -> dict:
    """One case: Triton forward and gradients vs the float64 reference, NaN-poisoned, contract checked."""
    g = torch.Generator(device=device).manual_seed(seed)
    x, weight, bias = case_inputs(case, dtype, device, g)
    dy = torch.randn(case.batch, case.channels, case.length, device=device, generator=g).to(dtype)
    inputs = [t for t in (x, weight, bias) if t is not None]
    ref_leaves = [None if t is None else t.detach().double().requires_grad_() for t in (x, weight, bias)]
    ref = causal_conv1d_ref(*ref_leaves, case.activation)
    ref_grads = torch.autograd.grad(ref, [t for t in ref_leaves if t is not None], dy.double())
    poison_bytes = 4 * case.batch * case.channels * case.length * 4 + (64 << 20)
    leaves = leaves_of(x, weight, bias)
    poison_allocator(device, poison_bytes)
    out = causal_conv1d_triton(*leaves, case.activation)
    poison_allocator(device, poison_bytes)
    grads = torch.autograd.grad(out, [t for t in leaves if t is not None], dy)
    names = ("y", "dx", "dweight", "dbias")
    errors = {name: rel_max(a, b) for name, a, b in zip(names, (out, *grads), (ref, *ref_grads))}
    finite = all(bool(torch.isfinite(t).all()) for t in (out, *grads))
    contract = (out.is_contiguous() and out.shape == x.shape and out.dtype == x.dtype
                and all(gr.shape == t.shape and gr.dtype == t.dtype for gr, t in zip(grads, inputs)))
    worst = max(errors.values())
    return {"errors": errors, "worst": worst, "finite": finite, "contract": contract,
            "ok": finite and contract and worst <= TOL[dtype]}


def print_table(rows: list[dict]) -> None:
    print(f"{'dtype':>8} {'B':>2} {'C':>4} {'L':>7} {'K':>2} {'act':>5} {'bias':>4} {'layout':>13} "
          f"{'worst rel err':>13} {'finite':>6} {'contract':>8} ok")
    for r in rows:
        detail = (f"{r['worst']:>13.2e} {str(r['finite']):>6} {str(r['contract']):>8}" if "worst" in r
                  else f"{'ERROR':>13} {r['error'][:60]}")
        print(f"{r['dtype']:>8} {r['batch']:>2} {r['channels']:>4} {r['length']:>7} {r['width']:>2} "
              f"{str(r['activation']):>5} {str(r['bias'])[0]:>4} {r['layout']:>13} {detail} {r['ok']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("."),
                    help="folder for causal_conv_gpu_check.json (created if missing; default: current folder)")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu under TRITON_INTERPRET=1 GENOMIX_FORCE_TRITON=1")
    ap.add_argument("--small", action="store_true",
                    help=f"cap L at {SMALL_MAX_LENGTH} and C at {SMALL_MAX_CHANNELS} (for the interpreter)")
    ap.add_argument("--seed", type=int, default=0,
                    help="base random seed; case i is seeded SEED*1000+i (default: 0)")
    args = ap.parse_args(argv)
    check_device_name(ap, args.device, "TRITON_INTERPRET=1 GENOMIX_FORCE_TRITON=1")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device here; use --device cpu --small with TRITON_INTERPRET=1 GENOMIX_FORCE_TRITON=1")
    cases = [dataclasses.replace(c, length=min(c.length, SMALL_MAX_LENGTH),
                                 channels=min(c.channels, SMALL_MAX_CHANNELS)) if args.small else c for c in CASES]
    checks = [({**dataclasses.asdict(case), "dtype": str(dtype).split(".")[-1]},
               lambda seed, case=case, dtype=dtype: check(case, dtype, args.device, seed))
              for dtype in (torch.float32, torch.bfloat16) for case in cases]
    return run_check_script(checks, args, "causal_conv", print_table)


if __name__ == "__main__":
    raise SystemExit(main())
