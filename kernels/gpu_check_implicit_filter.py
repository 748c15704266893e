"""GPU correctness checks of the Triton implicit filter against a float64 reference.

Every case builds a filter the way the models initialise one (``nn.Linear``'s fan-in uniform weights,
frequencies ~10, decay rates of M2/HyenaDNA's range), runs ``implicit_filter_triton`` forward and
backward (``torch.autograd.grad`` of every parameter for a random dk), and compares the filter and each
gradient with :func:`implicit_filter_ref` run in float64 on the same device. The sine layers amplify
rounding (three layers of sin(10 x)), so the yardstick is the fp32 reference's own error on the same
inputs: an fp32 case passes when the Triton error is at most ``RATIO`` times that plus ``FLOOR``; a TF32
case (the mode under 16-bit autocast) when its errors are within ``TF32_TOL``. Cases: M2's
64K filter (exact and TF32 projection), HyenaDNA's 1M filter (one shared frequency, shift 0.05, TF32),
an unmodulated 3-feature filter with no inner layer and a non-power-of-two order, a 768-channel
order-48 filter read through a strided dk (a bidirectional filter's half), one position, and three
inner layers at order 16. Before the forward and again before the backward the CUDA caching
allocator's free blocks are filled with NaN, so memory the kernels leave unwritten shows up as
non-finite. Prints a pass/fail table, writes JSON to ``--out``/implicit_filter_gpu_check.json after
every case and exits 1 if any fails.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python kernels/gpu_check_implicit_filter.py --out DIR

On CPU through the Triton interpreter (lengths and channels capped; the NaN poisoning has no effect):

    TRITON_INTERPRET=1 PYTHONPATH=. python kernels/gpu_check_implicit_filter.py --device cpu --small --out DIR
"""
from __future__ import annotations

import argparse
import dataclasses
import math

import torch

from genomix.kernels.bench_common import add_run_args, check_device
from genomix.kernels.check_runner import run_check_script
from genomix.kernels.gpu_check_causal_conv import poison_allocator
from genomix.kernels.implicit_filter import SineLayer, implicit_filter_ref, implicit_filter_triton

#: Pass (fp32 mode): Triton error <= RATIO * (fp32 reference error) + FLOOR, both against float64. The
#: kernels' three-pass TF32 products carry ~2^-21 relative error, ~8x fp32's rounding, which the sine
#: layers amplify as they amplify the reference's (the models take this mode only when forced).
RATIO, FLOOR = 16.0, 2e-6
#: Pass (``tf32``, the mode under 16-bit autocast: single-pass TF32 backward products, MUFU sine): errors
#: within TF32_TOL of float64, below bf16's own rounding (2^-8 = 3.9e-3) of the activations the filter meets.
TF32_TOL = 4e-3
#: --small caps (the interpreter runs every program in Python).
SMALL_MAX_LENGTH, SMALL_MAX_CHANNELS = 300, 80


@dataclasses.dataclass(frozen=True)
class FilterCase:
    """A filter of ``channels`` over ``length`` positions: ``features`` inputs, ``n_inner`` inner layers of
    width ``order``; ``shared_freq`` (HyenaDNA: one frequency for all layers), ``modulate``/``shift``
    (the decay), ``tf32`` (projection on TF32 tensor cores), ``dk_stride`` (dk rows that far apart)."""

    length: int
    channels: int
    order: int = 64
    features: int = 5
    n_inner: int = 2
    shared_freq: bool = False
    modulate: bool = True
    shift: float = 0.0
    tf32: bool = False
    dk_stride: int | None = None


CASES = [
    FilterCase(65536, 256),
    FilterCase(65536, 256, tf32=True),
    FilterCase(1 << 20, 256, shared_freq=True, shift=0.05, tf32=True),
    FilterCase(4097, 100, order=40, features=3, n_inner=0, modulate=False),
    FilterCase(10001, 768, order=48, dk_stride=20002),
    FilterCase(1, 64),
    FilterCase(333, 16, order=16, n_inner=3),
]


def make_inputs(case: FilterCase, device: str, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, list[SineLayer], torch.Tensor, torch.Tensor | None]:
    """(z, t, layers, out_weight, decay_rates) as a model initialises them (leaves, fp32)."""
    def uniform(*shape: int, bound: float) -> torch.Tensor:
        return ((torch.rand(*shape, device=device, generator=generator) * 2 - 1) * bound).requires_grad_()

    t = torch.linspace(0, 1, case.length, device=device)
    z = torch.rand(case.length, case.features, device=device, generator=generator) * 2 - 1
    z[:, 0] = t
    layers: list[SineLayer] = []
    width = case.features
    shared = None
    for _ in range(case.n_inner + 1):
        freq = shared if shared is not None else (
            10 + torch.randn(1, case.order, device=device, generator=generator)).requires_grad_()
        shared = freq if case.shared_freq else None
        layers.append((uniform(case.order, width, bound=1 / math.sqrt(width)),
                       uniform(case.order, bound=1 / math.sqrt(width)), freq))
        width = case.order
    out_weight = uniform(case.channels, case.order, bound=1 / math.sqrt(case.order))
    rates = (torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, case.channels, device=device).abs()
             if case.modulate else None)
    return z, t, layers, out_weight, rates


def parameters(layers: list[SineLayer], out_weight: torch.Tensor) -> list[torch.Tensor]:
    """Every distinct trainable tensor (a shared frequency once)."""
    seen: dict[int, torch.Tensor] = {}
    for p in [*(p for layer in layers for p in layer), out_weight]:
        seen.setdefault(id(p), p)
    return list(seen.values())


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def errors(case: FilterCase, device: str, seed: int) -> dict:
    """Errors of the Triton path and of the fp32 reference vs float64 (filter and worst gradient)."""
    g = torch.Generator(device=device).manual_seed(seed)
    z, t, layers, out_weight, rates = make_inputs(case, device, g)
    params = parameters(layers, out_weight)
    stride = case.dk_stride or case.length
    dk = torch.randn(case.channels, stride, device=device, generator=g)[:, :case.length]

    def run(fn, cast, poison: bool):
        leaves = {id(p): cast(p.detach()).requires_grad_(p.requires_grad) for p in params}
        lay = [tuple(leaves[id(p)] for p in layer) for layer in layers]
        if poison:
            poison_allocator(device, 4 * case.channels * case.length * 4 + (64 << 20))
        k = fn(cast(z), cast(t), lay, leaves[id(out_weight)], None if rates is None else cast(rates), case.shift,
               case.tf32)
        if poison:
            poison_allocator(device, 4 * case.channels * case.length * 4 + (64 << 20))
        grads = torch.autograd.grad(k, [leaves[id(p)] for p in params], cast(dk))
        return k.detach(), grads

    ref_k, ref_grads = run(implicit_filter_ref, lambda x: x.double(), False)
    got_k, got_grads = run(implicit_filter_triton, lambda x: x, True)
    f32_k, f32_grads = run(implicit_filter_ref, lambda x: x, False)
    finite = bool(torch.isfinite(got_k).all()) and all(bool(torch.isfinite(d).all()) for d in got_grads)
    contract = got_k.shape == (case.channels, case.length) and got_k.is_contiguous() and got_k.dtype == torch.float32
    return {
        "k": _rel(got_k, ref_k), "k_fp32_ref": _rel(f32_k, ref_k),
        "grad": max(_rel(a, b) for a, b in zip(got_grads, ref_grads)),
        "grad_fp32_ref": max(_rel(a, b) for a, b in zip(f32_grads, ref_grads)),
        "finite": finite, "contract": contract,
    }


def check(case: FilterCase, device: str, seed: int) -> dict:
    """One case: pass when finite, the contract holds and both errors are within the yardstick (TF32
    cases on CUDA: within TF32_TOL; elsewhere TF32 changes nothing and the fp32 yardstick applies)."""
    e = errors(case, device, seed)
    if case.tf32 and device == "cuda":
        within = e["k"] <= TF32_TOL and e["grad"] <= TF32_TOL
    else:
        within = e["k"] <= RATIO * e["k_fp32_ref"] + FLOOR and e["grad"] <= RATIO * e["grad_fp32_ref"] + FLOOR
    return {**e, "ok": e["finite"] and e["contract"] and within}


def print_table(rows: list[dict]) -> None:
    print(f"{'L':>8} {'C':>4} {'R':>4} {'E':>3} {'n':>2} {'tf32':>5} {'k err':>9} {'fp32 ref':>9} {'grad err':>9} "
          f"{'fp32 ref':>9} {'finite':>6} ok")
    for r in rows:
        detail = (f"{r['k']:>9.2e} {r['k_fp32_ref']:>9.2e} {r['grad']:>9.2e} {r['grad_fp32_ref']:>9.2e} "
                  f"{str(r['finite']):>6}" if "k" in r else f"{'ERROR':>9} {r['error'][:70]}")
        print(f"{r['length']:>8} {r['channels']:>4} {r['order']:>4} {r['features']:>3} {r['n_inner']:>2} "
              f"{str(r['tf32']):>5} {detail} {r['ok']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(ap, f"cap L at {SMALL_MAX_LENGTH} and C at {SMALL_MAX_CHANNELS} (for the interpreter)")
    args = ap.parse_args(argv)
    check_device(ap, args.device)
    cases = [dataclasses.replace(c, length=min(c.length, SMALL_MAX_LENGTH), channels=min(c.channels, SMALL_MAX_CHANNELS),
                                 dk_stride=c.dk_stride and 2 * min(c.length, SMALL_MAX_LENGTH))
             if args.small else c for c in CASES]
    checks = [(dataclasses.asdict(case), lambda seed, case=case: check(case, args.device, seed)) for case in cases]
    return run_check_script(checks, args, "implicit_filter", print_table)


if __name__ == "__main__":
    raise SystemExit(main())
