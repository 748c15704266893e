"""Mamba generation: the recurrent path (prompt prefilled in one pass, then one step per token; on a GPU
with and without the step replayed from a CUDA graph) against the sliding window (the whole sequence rerun
for every token), same run, same model and prompt.

Builds named Mamba sizes with fresh weights (fp32), checks that :meth:`prefill` leaves the state that
stepping through the prompt token by token leaves (next-token logits and SSM states, relative max
difference), then times greedy :func:`genomix.models.generation.generate` both ways and checks that the
tokens agree (``graphed s`` is the recurrent path with CUDA-graph steps, ``recurrent s`` without them;
on the CPU there are no graphs and both are the eager step). Prints a table and writes JSON. Runs on CUDA when available, else on the CPU.

    PYTHONPATH=. python pipelines/bench_mamba_generation.py --out DIR
    PYTHONPATH=. python pipelines/bench_mamba_generation.py --models mamba-7m-1m --prompt 4096 --new 128 --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from genomix.models import build, generation
from genomix.models.step_graph import ENV_SWITCH


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _prefill_agreement(model: torch.nn.Module, prompt: torch.Tensor) -> dict:
    """Relative max differences between :meth:`prefill` and token-by-token :meth:`step` over the prompt."""
    with torch.no_grad():
        filled = model.allocate_state(prompt.shape[0], prompt.device)
        got = model.prefill(prompt, filled)
        stepped = model.allocate_state(prompt.shape[0], prompt.device)
        for t in range(prompt.shape[1]):
            want = model.step(prompt[:, t], stepped)
    return {"prefill_vs_steps_logits": _rel(got, want),
            "prefill_vs_steps_ssm_state": max(_rel(a.ssm, b.ssm) for a, b in zip(filled, stepped))}


def _timed_generate(model: torch.nn.Module, prompt: torch.Tensor, new: int, recurrent: bool, graphs: bool = True
                    ) -> tuple[float, torch.Tensor]:
    """Seconds and tokens of greedy generation on the chosen path (the recurrent test switched as asked;
    ``graphs``: the recurrent step from a CUDA graph where there is one)."""
    original, switch = generation._is_recurrent, os.environ.get(ENV_SWITCH)
    generation._is_recurrent = lambda m: recurrent
    os.environ[ENV_SWITCH] = "1" if graphs else "0"
    try:
        if prompt.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        tokens = generation.generate(model, prompt, new, greedy=True)
        if prompt.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, tokens
    finally:
        generation._is_recurrent = original
        if switch is None:
            del os.environ[ENV_SWITCH]
        else:
            os.environ[ENV_SWITCH] = switch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mamba-tiny-1k", "mamba-7m-1m"])
    parser.add_argument("--prompt", type=int, default=768, help="prompt length")
    parser.add_argument("--new", type=int, default=128, help="tokens to generate")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        model = build(name, task="causal-lm").to(device).eval()
        prompt = torch.randint(7, 11, (args.batch, args.prompt), generator=generator).to(device)
        row = {"model": name, "device": str(device), "batch": args.batch, "prompt": args.prompt, "new": args.new,
               **_prefill_agreement(model, prompt)}
        _timed_generate(model, prompt, 2, recurrent=True)  # warm-up: kernels compiled, cuBLAS handles made
        row["graphed_s"], graphed = _timed_generate(model, prompt, args.new, recurrent=True)
        row["recurrent_s"], recurrent = _timed_generate(model, prompt, args.new, recurrent=True, graphs=False)
        row["window_s"], window = _timed_generate(model, prompt, args.new, recurrent=False)
        row["same_tokens"] = bool(torch.equal(recurrent, window) and torch.equal(graphed, window))
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_mamba_generation.json").write_text(json.dumps(rows, indent=1))
    print(f"{'model':<16} {'device':<6} {'B x prompt + new':>18} {'graphed s':>10} {'recurrent s':>12} "
          f"{'window s':>9} {'same':>5} {'logits diff':>12} {'state diff':>11}")
    for r in rows:
        shape = f"{r['batch']} x {r['prompt']} + {r['new']}"
        diffs = f"{r['prefill_vs_steps_logits']:>12.1e} {r['prefill_vs_steps_ssm_state']:>11.1e}"
        print(f"{r['model']:<16} {r['device']:<6} {shape:>18} {r['graphed_s']:>10.3f} {r['recurrent_s']:>12.3f} "
              f"{r['window_s']:>9.2f} {str(r['same_tokens']):>5} {diffs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
