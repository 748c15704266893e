"""How far 16-bit runs of each model family are from its fp32 logits, on the CPU.

For each named size (fresh weights from a fixed seed, the size's LM model, ``--length`` random bases, batch
2) it compares the fp32 logits with three 16-bit runs: the fp32 model under ``torch.autocast`` to bf16 (the
accurate way), and the model cast to bf16 and to fp16 (``.to(dtype)``; genomix then runs it under autocast to
that type, so the difference from the first is the rounding of the weights themselves). Reports
``|logits - fp32| / |fp32|`` (Frobenius norms), prints a table and writes ``half_precision.json``
(atomically) to ``--out``.

    PYTHONPATH=. python pipelines/check_half_precision.py --out results/
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from genomix.cli.option_types import positive_int
from genomix.kernels.bench_common import exit_on_bad_input
from genomix.models import build
from genomix.outputs import atomic_write_text, make_output_dir

DEFAULT_MODELS = ("hyenadna-tiny-1k", "mamba-tiny-1k", "caduceus-ps-1k-d118", "m2-tiny-1k", "transformer-tiny-1k")


def relative_errors(name: str, length: int, seed: int = 0) -> dict[str, float]:
    """``{"autocast_bf16", "cast_bf16", "cast_fp16"}`` relative logit errors of ``name`` against fp32."""
    torch.manual_seed(seed)
    model = build(name).eval()
    ids = torch.randint(7, 11, (2, length))

    def error(logits: torch.Tensor) -> float:
        return float((logits.float() - reference).norm() / reference.norm())

    with torch.no_grad():
        reference = model(ids).logits.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            row = {"autocast_bf16": error(model(ids).logits)}
        for dtype, key in ((torch.bfloat16, "cast_bf16"), (torch.float16, "cast_fp16")):
            row[key] = error(model.to(dtype)(ids).logits)
            model.float()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help="named sizes to compare, fresh weights (default: hyenadna-tiny-1k mamba-tiny-1k "
                             "caduceus-ps-1k-d118 m2-tiny-1k transformer-tiny-1k)")
    parser.add_argument("--length", type=positive_int, default=512,
                        help="random bases per sequence, batch 2 (default: 512)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for half_precision.json (created if missing; default: current folder)")
    args = parser.parse_args(argv)
    with exit_on_bad_input(parser):  # an unknown model name, a length past its context, an --out under a file
        make_output_dir(args.out)
        rows = [{"model": name, **relative_errors(name, args.length)} for name in args.models]
    print(f"{'model':<24} {'autocast bf16':>14} {'cast bf16':>10} {'cast fp16':>10}")
    for r in rows:
        print(f"{r['model']:<24} {r['autocast_bf16']:>14.4f} {r['cast_bf16']:>10.4f} {r['cast_fp16']:>10.4f}")
    atomic_write_text(args.out / "half_precision.json",
                      json.dumps({"length": args.length, "torch": torch.__version__, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
