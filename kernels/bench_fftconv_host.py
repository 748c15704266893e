"""Host time of one long-convolution call, per path: where small calls are bound by Python and launches.

For the PyTorch reference path and the cuFFT path (the CUDA default for long convolutions), one ``fftconv``
call at (B, H, L) bf16 with both gates and D, no gradients: ``host_us`` is the time to issue a call (200 calls
without synchronising, divided by 200), ``wall_us`` the time until they have all run, and on CUDA
``graphed_us`` the time per call replayed from a CUDA graph (the device's share alone). When ``host_us`` is
above ``graphed_us`` the call is host-bound. Prints a table and writes ``bench_fftconv_host.json``.

    PYTHONPATH=. python kernels/bench_fftconv_host.py --out DIR [--shape 1 256 32768]
    TRITON_INTERPRET=1 PYTHONPATH=. python kernels/bench_fftconv_host.py --device cpu --small --out DIR
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from genomix.kernels.bench_common import add_run_args, check_device, graph_replay
from genomix.kernels.bench_scan import write_json
from genomix.kernels.dispatch import FFTCONV_PATHS, environment
from genomix.kernels.fftconv import fftconv

#: The paths timed (environments in :data:`FFTCONV_PATHS`; the cuFFT path also runs in the CPU interpreter
#: when forced).
PATHS = ("reference", "cufft")


def _per_call_s(call, calls: int, device: str) -> tuple[float, float]:
    """(seconds to issue one call, seconds until it has run) over ``calls`` unsynchronised calls."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    issued = time.perf_counter()
    if device == "cuda":
        torch.cuda.synchronize()
    return (issued - start) / calls, (time.perf_counter() - start) / calls


def _graphed_s(call, calls: int) -> float:
    """Seconds per call replayed from a CUDA graph of one call."""
    return _per_call_s(graph_replay(call), calls, "cuda")[1]


def bench(shape: tuple[int, int, int], calls: int, device: str, seed: int) -> list[dict]:
    batch, channels, length = shape
    g = torch.Generator(device=device).manual_seed(seed)
    u, pre, post = (torch.randn(shape, generator=g, device=device).to(torch.bfloat16) for _ in range(3))
    k = torch.randn(channels, length, generator=g, device=device) / length ** 0.5
    D = torch.randn(channels, generator=g, device=device)

    def call() -> torch.Tensor:
        return fftconv(u, k, D, pregate=pre, postgate=post)

    rows = []
    for label in PATHS:
        env = FFTCONV_PATHS[label]
        if device == "cpu":
            env = {**env, "GENOMIX_FORCE_TRITON": "1"}
        with environment(env), torch.no_grad():
            for _ in range(3):
                call()
            host, wall = _per_call_s(call, calls, device)
            row = {"path": label, "B": batch, "H": channels, "L": length, "calls": calls,
                   "host_us": host * 1e6, "wall_us": wall * 1e6}
            if device == "cuda":
                row["graphed_us"] = _graphed_s(call, calls) * 1e6
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(ap, "a (1, 4, 300) call, 3 timed calls (for the CPU interpreter)")
    ap.add_argument("--shape", type=int, nargs=3, default=[1, 256, 32768], metavar=("B", "H", "L"),
                    help="batch, channels and length of the call (default: 1 256 32768)")
    ap.add_argument("--calls", type=int, default=200,
                    help="calls issued per measurement, the times are per call (default: 200; 3 with --small)")
    args = ap.parse_args(argv)
    check_device(ap, args.device)
    shape, calls = ((1, 4, 300), 3) if args.small else (tuple(args.shape), args.calls)
    rows = bench(shape, calls, args.device, args.seed)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (interpreter)"
    write_json(Path(args.out) / "bench_fftconv_host.json", {"device": name, "torch": torch.__version__, "rows": rows})
    print(f"{name}; fftconv {shape} bf16, gates and D, no gradients; us per call")
    print(f"{'path':>10} {'host':>8} {'wall':>8} {'graphed':>8}")
    for r in rows:
        graphed = f"{r['graphed_us']:>8.0f}" if "graphed_us" in r else f"{'-':>8}"
        print(f"{r['path']:>10} {r['host_us']:>8.0f} {r['wall_us']:>8.0f} {graphed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
