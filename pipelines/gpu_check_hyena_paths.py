"""Do HyenaDNA's long-convolution paths agree end to end? (GPU)

Builds a named HyenaDNA size with fresh weights and one random sequence, and compares the logits of
the whole model across the long-convolution paths, all other kernels at their defaults:
- bf16 autocast: the default cuFFT path (two levels where :mod:`genomix.kernels.fftconv.two_level`
  applies) and the same path forced onto one level, each against the PyTorch reference path, and the
  default path run twice (it must repeat bit for bit: no race in the in-place stream updates or the
  kernels);
- fp32 (no autocast), at ``--fp32-length``: the cuFFT path (fp32 spectra) against the reference, which
  must agree to fp32 rounding.
Relative L2 differences of the logits; prints them and writes ``gpu_check_hyena_paths.json`` to ``--out``.

    PYTHONPATH=. python pipelines/gpu_check_hyena_paths.py --length 1048576 --out DIR
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.bench_scan import write_json
from genomix.kernels.dispatch import FFTCONV_OPS, environment
from genomix.models import build

#: The PyTorch reference for every long convolution (the Monarch, on-chip and cuFFT paths off).
REFERENCE = {"GENOMIX_REFERENCE_OPS": ",".join(FFTCONV_OPS)}
ONE_LEVEL = {"GENOMIX_FFTCONV_TWO_LEVEL": "0"}
#: bf16 budget for 8 layers of gated convolutions with fp16 spectra (one convolution: ~3e-3); fp32's.
TOLERANCE = {"bf16": 5e-2, "fp32": 1e-4}


def _logits(model: torch.nn.Module, ids: torch.Tensor, env: dict[str, str], autocast: bool) -> torch.Tensor:
    with environment(env), torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        return model(ids).logits.float()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def check(model_name: str, length: int, fp32_length: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = build(model_name, max_seq_len=max(length, fp32_length)).cuda().eval()
    ids = torch.randint(7, 11, (1, length), device="cuda")
    reference = _logits(model, ids, REFERENCE, autocast=True)
    default = _logits(model, ids, {}, autocast=True)
    repeat = _logits(model, ids, {}, autocast=True)
    one_level = _logits(model, ids, ONE_LEVEL, autocast=True)
    short = ids[:, :fp32_length]
    fp32_diff = _rel(_logits(model, short, {}, autocast=False), _logits(model, short, REFERENCE, autocast=False))
    result = {
        "model": model_name, "length": length, "fp32_length": fp32_length, "device": torch.cuda.get_device_name(),
        "bf16_default_vs_reference": _rel(default, reference),
        "bf16_one_level_vs_reference": _rel(one_level, reference),
        "bf16_default_vs_one_level": _rel(default, one_level),
        "bf16_default_repeats_bitwise": bool(torch.equal(default, repeat)),
        "fp32_cufft_vs_reference": fp32_diff,
    }
    result["ok"] = (result["bf16_default_repeats_bitwise"] and fp32_diff <= TOLERANCE["fp32"]
                    and max(result["bf16_default_vs_reference"], result["bf16_one_level_vs_reference"]) <= TOLERANCE["bf16"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hyenadna-large-1m",
                        help="named HyenaDNA size, fresh weights (default: hyenadna-large-1m)")
    parser.add_argument("--length", type=int, default=1 << 20,
                        help="tokens of the random sequence, batch 1, for the bf16 comparisons (default: 1048576)")
    parser.add_argument("--fp32-length", type=int, default=1 << 18,
                        help="tokens of the fp32 comparison, the sequence's first ones (default: 262144)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of the fresh weights and the sequence (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for gpu_check_hyena_paths.json (created if missing; default: current folder)")
    args = parser.parse_args()
    require_cuda(parser)
    result = check(args.model, args.length, args.fp32_length, args.seed)
    write_json(args.out / "gpu_check_hyena_paths.json", result)
    for key, value in result.items():
        print(f"{key:>32}: {value}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
