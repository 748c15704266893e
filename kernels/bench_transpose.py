"""GPU check and benchmark of the channel-major relayout (kernels/transpose) against ``Tensor.contiguous``.

For Mamba's shapes (Δ: a transposed (batch, L, E) tensor; z: a channel slice of the (batch, L, 2E)
in-projection output), a batched short-sequence one and two ragged ones (fp32 and bf16), it copies time-major → channel-major (the scan's
inputs) and channel-major → time-major (the gradients going back) into NaN-filled outputs, requires the
result to equal PyTorch's copy exactly, and times both with ``triton.testing.do_bench`` (median), in the
same run, with the bandwidth each reaches (bytes read + written). Prints a table and writes
``transpose_bench.json`` into ``--out``.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python kernels/bench_transpose.py --out DIR
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import triton.testing

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.bench_scan import copy_bandwidth, write_json
from genomix.kernels.transpose import empty_time_major, relayout

BF16, FP32 = torch.bfloat16, torch.float32
SHAPES = [  # (batch, E, L, channels the slice is taken from: 2E for z, E for Δ, dtype)
    (1, 512, 1 << 20, 512, BF16), (1, 512, 1 << 20, 1024, BF16), (16, 512, 4096, 1024, BF16),
    (1, 2048, 1 << 22, 2048, BF16),
    (3, 70, 100_003, 140, FP32), (2, 770, 4097, 770, BF16),  # neither axis a multiple of the tile
]


def _source(batch: int, channels: int, length: int, parent: int, dtype: torch.dtype) -> torch.Tensor:
    full = torch.randn(batch, length, parent, device="cuda").to(dtype)
    return full[..., parent - channels:].transpose(1, 2)


def bench_one(batch: int, channels: int, length: int, parent: int, dtype: torch.dtype) -> dict:
    x = _source(batch, channels, length, parent, dtype)
    nbytes = 2 * x.numel() * x.element_size()
    row: dict = {"batch": batch, "E": channels, "L": length, "time_stride": parent, "dtype": str(dtype)}
    out = relayout(x, torch.full(x.shape, float("nan"), device="cuda", dtype=x.dtype))
    ok = torch.equal(out, x.contiguous())
    back = relayout(out, empty_time_major(out).fill_(float("nan")))
    ok = ok and torch.equal(back, out.transpose(1, 2).contiguous().transpose(1, 2))
    row["exact"] = ok
    for name, fn in (("torch_to_cm", lambda: x.contiguous()),
                     ("triton_to_cm", lambda: relayout(x, torch.empty(x.shape, device="cuda", dtype=x.dtype))),
                     ("torch_to_tm", lambda: out.transpose(1, 2).contiguous()),
                     ("triton_to_tm", lambda: relayout(out, empty_time_major(out)))):
        ms = triton.testing.do_bench(fn, warmup=5, rep=40, return_mode="median")
        row[f"{name}_ms"] = ms
        row[f"{name}_gbs"] = nbytes / (ms * 1e-3) / 1e9
    row["speedup_to_cm"] = row["torch_to_cm_ms"] / row["triton_to_cm_ms"]
    row["speedup_to_tm"] = row["torch_to_tm_ms"] / row["triton_to_tm_ms"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("."),
                    help="folder for transpose_bench.json (created if missing; default: current folder)")
    args = ap.parse_args()
    require_cuda(ap)
    bandwidth = copy_bandwidth()
    rows = []
    for shape in SHAPES:
        rows.append(bench_one(*shape))
        torch.cuda.empty_cache()
    write_json(args.out / "transpose_bench.json", {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                                   "copy_gbs": bandwidth / 1e9, "rows": rows})
    print(f"{torch.cuda.get_device_name()}, device-to-device copy {bandwidth / 1e9:.0f} GB/s")
    print(f"{'shape (B, E, L), time stride, dtype':>40} | exact | {'to channel-major: torch / triton ms':>36} | "
          f"{'to time-major: torch / triton ms':>33}")
    for r in rows:
        label = f"{(r['batch'], r['E'], r['L'])}, {r['time_stride']} {r['dtype'].split('.')[-1]}"
        print(f"{label:>40} | {str(r['exact']):>5} | "
              f"{r['torch_to_cm_ms']:>9.3f} / {r['triton_to_cm_ms']:.3f} ({r['speedup_to_cm']:.1f}x, "
              f"{r['triton_to_cm_gbs']:.0f} GB/s) | {r['torch_to_tm_ms']:>8.3f} / {r['triton_to_tm_ms']:.3f} "
              f"({r['speedup_to_tm']:.1f}x)")
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
