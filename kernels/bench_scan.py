"""Benchmark of the Triton selective scan against the HBM floor and the PyTorch reference.

Shapes of the issue: batch 1, E=512 channels, N=16 states, L in {4K, 64K, 1M}; bf16 u/Δ/z/B/C, fp32
A/D/Δ-bias, with D, z, Δ-bias and softplus (mamba_ssm's Mamba-1 block call). For each L it reports
forward and forward+backward time (triton.testing.do_bench, median), peak memory above the inputs,
and the ratio to the HBM floor: the bytes that must move at least once (inputs read once, output
written once; for the backward, inputs and the output gradient read once and the input gradients
written once) divided by the device-to-device copy bandwidth measured in the same run. The PyTorch
reference runs in the same process where its time is bearable (L <= ``--ref-max-len``). The backward's time is
forward+backward minus the training forward (the one that saves chunk-start states for the backward, timed
on its own), not minus the inference forward: the two compile to different kernels.

    PYTHONPATH=. python kernels/bench_scan.py --out results/   # prints a table, writes scan_bench.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from genomix.kernels.scan.ops import Tiling


def copy_bandwidth() -> float:
    """Bytes/s of a 1 GiB device-to-device copy (read + write counted)."""
    import triton.testing

    src = torch.empty(1 << 29, dtype=torch.float16, device="cuda")
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=10, rep=50)
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def make_inputs(length: int, channels: int = 512, n_state: int = 16, batch: int = 1, dtype=torch.bfloat16, seed: int = 0):
    """Fresh random inputs of Mamba-like magnitude (Δ around softplus⁻¹ of 0.01..0.1)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    kw = dict(device="cuda", generator=g)
    u = torch.randn(batch, channels, length, **kw).to(dtype)
    delta = (torch.randn(batch, channels, length, **kw) * 0.5 - 3.0).to(dtype)
    A = -torch.arange(1, n_state + 1, device="cuda", dtype=torch.float32).repeat(channels, 1)
    B = torch.randn(batch, n_state, length, **kw).to(dtype)
    C = torch.randn(batch, n_state, length, **kw).to(dtype)
    D = torch.ones(channels, device="cuda")
    z = torch.randn(batch, channels, length, **kw).to(dtype)
    bias = torch.rand(channels, **kw) * 0.1
    return u, delta, A, B, C, D, z, bias


def floor_bytes(length: int, channels: int, n_state: int, itemsize: int = 2) -> tuple[int, int]:
    """(forward, backward) minimal HBM traffic in bytes for one sequence."""
    per_channel = channels * length * itemsize  # one (E, L) tensor
    bc = n_state * length * itemsize  # one (N, L) tensor
    fwd = 3 * per_channel + 2 * bc + per_channel  # u, delta, z, B, C in; out
    bwd = (3 * per_channel + 2 * bc + per_channel) + (3 * per_channel + 2 * bc)  # + dout in; du/dΔ/dz/dB/dC out
    return fwd, bwd


def tiling_with(overrides: list[str]) -> Tiling:
    """``ops.DEFAULT_TILING`` with ``NAME=VALUE`` overrides (``variant=assoc``, ``block_e=64``, ``hints=True``,
    ``fwd_maxnreg=None``), each value parsed by its field's annotation; an unknown name is a ``ValueError``."""
    from genomix.kernels.scan.ops import DEFAULT_TILING

    fields = {f.name: f.type for f in dataclasses.fields(DEFAULT_TILING)}
    parsed = {}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise ValueError(f"tiling override {item!r}: expected NAME=VALUE with NAME one of {sorted(fields)}")
        kind = fields[name]  # the annotation as text ("bool", "int | None", ...)
        if value == "None" and "None" in kind:
            parsed[name] = None
        else:
            parsed[name] = value == "True" if kind == "bool" else value if kind == "str" else int(value)
    return dataclasses.replace(DEFAULT_TILING, **parsed)


def time_passes(scan, inputs, leaves, grad) -> dict:
    """Medians (``triton.testing.do_bench``) of one scan call three ways: ``fwd_ms`` without autograd (inference),
    ``train_fwd_ms`` with autograd (saving what the backward needs), ``fwd_bwd_ms`` forward and backward;
    ``bwd_ms`` is the last minus the second. ``scan(*args)`` returns the output; ``leaves`` are ``inputs``'s
    copies that require gradients, ``grad`` the output gradient."""
    import triton.testing

    with torch.no_grad():
        fwd_ms = triton.testing.do_bench(lambda: scan(*inputs), warmup=5, rep=40)
    train_fwd_ms = triton.testing.do_bench(lambda: scan(*leaves), warmup=3, rep=30)
    fwd_bwd_ms = triton.testing.do_bench(lambda: scan(*leaves).backward(grad), warmup=3, rep=30,
                                         grad_to_none=leaves)
    return {"fwd_ms": fwd_ms, "train_fwd_ms": train_fwd_ms, "fwd_bwd_ms": fwd_bwd_ms,
            "bwd_ms": fwd_bwd_ms - train_fwd_ms}


def bench_length(length: int, bandwidth: float, tiling, ref_max_len: int, channels: int = 512,
                 n_state: int = 16, kernel_times: bool = False) -> dict:
    from genomix.kernels.scan.ops import selective_scan_triton
    from genomix.kernels.scan.reference import selective_scan_ref

    inputs = make_inputs(length, channels, n_state)
    u, delta, A, B, C, D, z, bias = inputs
    scan = lambda *a: selective_scan_triton(*a, tiling=tiling)  # noqa: E731
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        out = scan(*inputs)
    torch.cuda.synchronize()
    fwd_peak = torch.cuda.max_memory_allocated() - base
    del out
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    grad = torch.randn_like(u)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    scan(*leaves).backward(grad)
    torch.cuda.synchronize()
    train_peak = torch.cuda.max_memory_allocated() - base
    for t in leaves:
        t.grad = None
    fwd_bytes, bwd_bytes = floor_bytes(length, channels, n_state)
    row = {
        "L": length, **dataclasses.asdict(tiling), **time_passes(scan, inputs, leaves, grad),
        "fwd_floor_ms": fwd_bytes / bandwidth * 1e3, "bwd_floor_ms": bwd_bytes / bandwidth * 1e3,
        "fwd_peak_gib": fwd_peak / 2**30, "fwd_bwd_peak_gib": train_peak / 2**30,
    }
    row["fwd_gbs"] = fwd_bytes / (row["fwd_ms"] * 1e-3) / 1e9
    row["fwd_x_floor"] = row["fwd_ms"] / row["fwd_floor_ms"]
    row["bwd_x_floor"] = row["bwd_ms"] / row["bwd_floor_ms"]
    if kernel_times:  # where a call's time goes, kernel by kernel in launch order
        from genomix.kernels.bench_common import cuda_kernel_timeline

        with torch.no_grad():
            row["fwd_kernels"] = cuda_kernel_timeline(lambda: scan(*inputs))
        for t in leaves:  # as in the timed runs: no accumulation into gradients left by them
            t.grad = None
        row["fwd_bwd_kernels"] = cuda_kernel_timeline(lambda: scan(*leaves).backward(grad))
    if length <= ref_max_len:
        import time

        with torch.no_grad():
            selective_scan_ref(*inputs)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            selective_scan_ref(*inputs)
            torch.cuda.synchronize()
        row["ref_fwd_ms"] = (time.perf_counter() - t0) * 1e3
        row["speedup_vs_ref"] = row["ref_fwd_ms"] / row["fwd_ms"]
    return row


def print_table(rows: list[dict]) -> None:
    head = f"{'L':>9} {'tile':>6} {'fwd ms':>8} {'train fwd':>9} {'fwd+bwd':>9} {'fwd/floor':>9} {'bwd/floor':>9} {'GB/s':>7} {'peak fwd':>9} {'peak f+b':>9} {'ref ms':>9} {'speedup':>8}"
    print(head)
    for r in rows:
        ref = f"{r['ref_fwd_ms']:9.1f} {r['speedup_vs_ref']:7.0f}x" if "ref_fwd_ms" in r else f"{'-':>9} {'-':>8}"
        print(f"{r['L']:>9} {r['block_e']:>2}x{r['chunk']:<3} {r['fwd_ms']:8.3f} {r['train_fwd_ms']:9.3f} {r['fwd_bwd_ms']:9.3f} "
              f"{r['fwd_x_floor']:8.1f}x {r['bwd_x_floor']:8.1f}x {r['fwd_gbs']:7.0f} {r['fwd_peak_gib']:8.2f}G "
              f"{r['fwd_bwd_peak_gib']:8.2f}G {ref}")


def write_json(path: Path, payload: dict) -> None:
    """Atomic JSON write (temporary name, then rename), readable as any file the user writes."""
    from genomix.outputs import atomic_write_text, make_output_dir

    make_output_dir(path.parent)
    atomic_write_text(path, json.dumps(payload, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 65536, 1 << 20],
                        help="sequence lengths L to time (default: 4096 65536 1048576)")
    parser.add_argument("--tiling", nargs="*", default=[], metavar="NAME=VALUE",
                        help="fields of ops.DEFAULT_TILING to override, e.g. block_e=128 fwd_warps=4")
    parser.add_argument("--ref-max-len", type=int, default=4096,
                        help="longest L at which the PyTorch reference is timed too (default: 4096)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for scan_bench.json (created if missing; default: current folder)")
    parser.add_argument("--kernel-times", action="store_true",
                        help="also profile one forward and one forward+backward per length, kernel by kernel")
    args = parser.parse_args(argv)
    from genomix.kernels.bench_common import require_cuda

    require_cuda(parser)
    try:
        tiling = tiling_with(args.tiling)
    except ValueError as err:
        parser.error(str(err))
    bandwidth = copy_bandwidth()
    rows = [bench_length(L, bandwidth, tiling, args.ref_max_len, kernel_times=args.kernel_times)
            for L in args.lengths]
    write_json(args.out / "scan_bench.json", {"device": torch.cuda.get_device_name(), "copy_gbs": bandwidth / 1e9,
                                              "torch": torch.__version__, "rows": rows})
    print(f"device {torch.cuda.get_device_name()}, copy bandwidth {bandwidth / 1e9:.0f} GB/s")
    print_table(rows)
    for r in rows:
        for key in ("fwd_kernels", "fwd_bwd_kernels"):
            if key in r:
                print(f"L={r['L']} {key}: " + ", ".join(f"{k['kernel']} {k['ms']:.3f}" for k in r[key]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
