"""Per-token log-likelihoods of long sequences with Mamba: pieces of ``max_seq_len`` tokens that continue the
recurrent state (:func:`genomix.models.scoring.token_log_likelihoods`), against stepping the tokens one at a
time through the recurrent step (a CUDA graph on a GPU) over a prefix, same model, same run.

Builds a named Mamba size with fresh weights (fp32), scores random sequences of the given lengths (batch 1),
and reports tokens per second, the peak memory of the call, how many pieces it took, and the largest
difference between the piecewise scores and those of token-by-token steps over the first ``--stepped``
tokens. Prints a table and writes JSON.

    PYTHONPATH=. python pipelines/bench_mamba_scoring.py --model mamba-7m-1m --lengths 1048576 4194304 --out DIR
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genomix.cli.option_types import positive_int
from genomix.kernels.bench_common import exit_on_bad_input
from genomix.models import build
from genomix.models.scoring import token_log_likelihoods
from genomix.models.step_graph import step_function
from genomix.outputs import atomic_write_text, make_output_dir


def min_two(text: str) -> int:
    """A stepped prefix of 2 or more tokens: the first token only seeds the state, so one token compares nothing."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be 2 or more, got {value}")
    return value


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _stepped_scores(model: torch.nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Scores of ``ids`` (1, n) from one recurrent step per token, and the seconds it took."""
    _sync(ids.device)
    start = time.perf_counter()
    with torch.no_grad():
        state = model.allocate_state(1, ids.device)
        logits = model.prefill(ids[:, :1], state)
        step = step_function(model, state, 1, ids.shape[1] - 1)
        scores = []
        for t in range(1, ids.shape[1]):
            scores.append(F.log_softmax(logits.float(), -1).gather(-1, ids[:, t:t + 1]))
            logits = step(ids[:, t])
    _sync(ids.device)
    return torch.cat(scores, dim=1), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mamba-7m-1m", help="named Mamba size, fresh weights (default: mamba-7m-1m)")
    parser.add_argument("--lengths", type=positive_int, nargs="+", default=[1 << 20, 1 << 22],
                        help="lengths of the random sequences to score, in tokens, batch 1 (default: 1048576 4194304)")
    parser.add_argument("--stepped", type=min_two, default=2048,
                        help="prefix scored token by token for comparison (at most the length)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for bench_mamba_scoring.json (created if missing; default: current folder)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with exit_on_bad_input(parser):
        model = build(args.model, task="causal-lm")
    make_output_dir(args.out)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    generator = torch.Generator().manual_seed(0)
    rows = []
    for length in args.lengths:
        ids = torch.randint(7, 11, (1, length), generator=generator).to(device)
        token_log_likelihoods(model, ids[:, :4096])  # warm-up: kernels compiled
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        _sync(device)
        start = time.perf_counter()
        scores = token_log_likelihoods(model, ids)
        _sync(device)
        seconds = time.perf_counter() - start
        prefix = min(args.stepped, length)  # a longer --stepped would count tokens that were never stepped
        stepped, stepped_s = _stepped_scores(model, ids[:, :prefix])
        rows.append({
            "model": args.model, "device": str(device), "length": length,
            "pieces": -(-length // model.config.max_seq_len), "seconds": seconds, "tokens_per_s": length / seconds,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
            "stepped_tokens": prefix, "stepped_tokens_per_s": prefix / stepped_s,
            "max_diff_vs_steps": float((scores[:, :prefix - 1] - stepped).abs().max()),
            "mean_log_likelihood": float(scores.mean()),
        })
    atomic_write_text(args.out / "bench_mamba_scoring.json", json.dumps(rows, indent=1))
    print(f"{'model':<14} {'length':>9} {'pieces':>6} {'s':>7} {'tokens/s':>10} {'peak GiB':>9} "
          f"{'stepped tok/s':>14} {'max diff':>9}")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        print(f"{r['model']:<14} {r['length']:>9} {r['pieces']:>6} {r['seconds']:>7.2f} {r['tokens_per_s']:>10.0f} "
              f"{peak:>9} {r['stepped_tokens_per_s']:>14.0f} {r['max_diff_vs_steps']:>9.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
