"""Benchmark of the depthwise causal conv1d (short filter) on a GPU: Triton kernel vs the PyTorch reference.

Cases are the shapes the models feed the op, bf16 activations with fp32 weight (C, K) and bias (C,)
(parameters stay fp32; both models' convs have a bias):

- ``hyena``: HyenaDNA large-1m's mixer short filter, B=1, C=3*256=768, K=3, no activation, at each of
  ``--lengths`` (default 32K, 256K, 1M); input a channels-last view ``randn(B, L, C).transpose(1, 2)``.
- ``mamba``: Mamba's conv1d, B=1, C=1024, K=4, SiLU, at the longest length; input the x half of
  ``in_proj(h).chunk(2, -1)`` transposed, as ``genomix/models/mamba.py`` feeds it (channel stride 1,
  time stride 2C).
- ``hyena-contiguous``: the hyena case at the longest length with a contiguous (B, C, L) input.

For each case and path (reference and Triton, same run): forward and forward+backward median ms
(``triton.testing.do_bench``; the backward through ``torch.autograd.grad``, so no gradient accumulation
into leaves is timed), speed-ups, peak memory above what was allocated before the call, and the share of
the HBM floor reached: floor = bytes that must move once (forward: read x, write y; backward: read x and
dy, write dx; weights and their gradients included) at the device-to-device copy bandwidth measured in
the same run (``bench_scan.copy_bandwidth``). The strides of each path's dx are recorded too: a dx whose
layout differs from x's costs the model a copy later. JSON is rewritten after every case to
``--out``/causal_conv_bench.json; a table is printed last.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python kernels/bench_causal_conv.py --out DIR
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch
import triton.testing

from genomix.kernels.bench_common import print_speed_table, require_cuda, time_paths
from genomix.kernels.bench_scan import copy_bandwidth, write_json
from genomix.kernels.causal_conv import causal_conv1d_ref, causal_conv1d_triton
from genomix.kernels.dispatch import use_triton

ConvFn = Callable[..., torch.Tensor]  # (x, weight, bias, activation) -> y, either path


@dataclasses.dataclass(frozen=True)
class Case:
    """One call of the op: shapes, options and the memory layout of x (see :func:`conv_input`)."""

    batch: int
    channels: int
    length: int
    width: int  # K, the filter taps
    activation: str | None
    layout: str
    bias: bool = True
    label: str = ""


def conv_input(case: Case, dtype: torch.dtype, device: str, generator: torch.Generator) -> torch.Tensor:
    """A random (B, C, L) activation laid out as ``case.layout`` says.

    "contiguous": channel-major (B, C, L). "channels_last": the transpose of a (B, L, C) linear output.
    "chunk": the transpose of the first half of a (B, L, 2C) output (Mamba's x of ``chunk(2, -1)``).
    """
    b, c, length = case.batch, case.channels, case.length
    if case.layout == "contiguous":
        return torch.randn(b, c, length, device=device, generator=generator).to(dtype)
    if case.layout not in ("channels_last", "chunk"):
        raise ValueError(f"unknown layout {case.layout!r}; expected contiguous, channels_last or chunk")
    width = 2 * c if case.layout == "chunk" else c
    return torch.randn(b, length, width, device=device, generator=generator).to(dtype)[..., :c].transpose(1, 2)


def case_inputs(case: Case, dtype: torch.dtype, device: str, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(x, weight, bias) for ``case``: x in ``dtype`` and the case's layout; fp32 weight at nn.Conv1d's scale."""
    x = conv_input(case, dtype, device, generator)
    weight = torch.randn(case.channels, case.width, device=device, generator=generator) / case.width ** 0.5
    bias = torch.randn(case.channels, device=device, generator=generator) * 0.1 if case.bias else None
    return x, weight, bias


def rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a - b| / max|b| in float64: the worst element's error against the reference's scale."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def leaves_of(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Fresh leaves requiring grad that share storage and strides with the inputs (None stays None)."""
    return [None if t is None else t.detach().requires_grad_() for t in tensors]


def peak_delta(fn: Callable[[], object]) -> tuple[int, object]:
    """(peak bytes allocated above the current allocation while ``fn`` runs, ``fn``'s result)."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base, result


def measure(fn: ConvFn, case: Case, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            dy: torch.Tensor) -> dict:
    """Median ms and peak GiB of one path's forward (no grad) and forward+backward, and its dx strides."""
    xl, wl, bl = leaves_of(x, weight, bias)
    wrt = [t for t in (xl, wl, bl) if t is not None]

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return fn(x, weight, bias, case.activation)

    def forward_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(fn(xl, wl, bl, case.activation), wrt, dy)

    fwd_peak, _ = peak_delta(forward)
    train_peak, grads = peak_delta(forward_backward)
    dx_strides = list(grads[0].stride())
    del grads
    return {
        "fwd_ms": triton.testing.do_bench(forward, return_mode="median"),
        "fwd_bwd_ms": triton.testing.do_bench(forward_backward, return_mode="median"),
        "fwd_peak_gib": fwd_peak / 2**30, "fwd_bwd_peak_gib": train_peak / 2**30, "dx_strides": dx_strides,
    }


def floor_bytes(case: Case, itemsize: int) -> tuple[int, int]:
    """(forward, backward) bytes that must cross HBM at least once."""
    activation = case.batch * case.channels * case.length * itemsize
    params = case.channels * (case.width + int(case.bias)) * 4
    return 2 * activation + params, 3 * activation + 2 * params


def bench_case(case: Case, bandwidth: float, seed: int) -> dict:
    """One row: both paths' times, memory and floor shares, and the forward's agreement between them."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    x, weight, bias = case_inputs(case, torch.bfloat16, "cuda", g)
    dy = torch.randn(case.batch, case.channels, case.length, device="cuda", generator=g).to(x.dtype)
    row: dict = {**dataclasses.asdict(case), "x_strides": list(x.stride())}
    with torch.no_grad():
        row["fwd_rel_err_vs_ref"] = rel_max(causal_conv1d_triton(x, weight, bias, case.activation),
                                            causal_conv1d_ref(x, weight, bias, case.activation))
    fwd_bytes, bwd_bytes = floor_bytes(case, x.element_size())
    row["fwd_floor_ms"] = fwd_bytes / bandwidth * 1e3
    row["fwd_bwd_floor_ms"] = (fwd_bytes + bwd_bytes) / bandwidth * 1e3
    paths = {"ref": causal_conv1d_ref, "triton": causal_conv1d_triton}
    time_paths(row, lambda name: measure(paths[name], case, x, weight, bias, dy), "cuda")
    return row


def model_cases(lengths: list[int]) -> list[Case]:
    """HyenaDNA large-1m at every length; Mamba and the contiguous-input hyena case at the longest."""
    longest = max(lengths)
    return [*(Case(1, 768, n, 3, None, "channels_last", label="hyena") for n in lengths),
            Case(1, 1024, longest, 4, "silu", "chunk", label="mamba"),
            Case(1, 768, longest, 3, None, "contiguous", label="hyena-contiguous")]


def print_table(rows: list[dict]) -> None:
    print_speed_table(rows, f"{'case':>16} {'L':>8}", lambda r: f"{r['label']:>16} {r['length']:>8}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for causal_conv_bench.json (created if missing; default: current folder)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32768, 262144, 1 << 20],
                        help="HyenaDNA lengths; the Mamba and contiguous cases run at the longest")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of the inputs; case i uses SEED+i (default: 0)")
    args = parser.parse_args(argv)
    require_cuda(parser)
    bandwidth = copy_bandwidth()
    header = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "copy_gbs": bandwidth / 1e9,
              "dispatch_default": "triton" if use_triton(torch.empty(0, device="cuda"), op="causal_conv1d")
              else "reference"}
    rows: list[dict] = []
    for i, case in enumerate(model_cases(args.lengths)):
        try:
            rows.append(bench_case(case, bandwidth, args.seed + i))
        except Exception as e:  # keep the other cases' numbers; the failure is reported in the table
            rows.append({**dataclasses.asdict(case), "error": f"{type(e).__name__}: {e}"[:300]})
        torch.cuda.empty_cache()
        print(json.dumps(rows[-1]), flush=True)
        write_json(args.out / "causal_conv_bench.json", {**header, "rows": rows})
    print(f"{header['device']}, copy {bandwidth / 1e9:.0f} GB/s, dispatch default on CUDA: "
          f"{header['dispatch_default']}; bf16 x, fp32 weight/bias")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
