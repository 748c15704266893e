"""``genomix icl``: classify with a frozen language model from k-shot prompts and/or a tuned soft prompt."""
from __future__ import annotations

import argparse
import json
import logging

from .inference_options import add_cuda_graphs_option
from .option_types import add_recipe_option, non_negative_int, positive_float, positive_int, seed_option


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("icl", help="in-context classification: k-shot prompts, soft prompts",
                              description=__doc__)
    p.add_argument("--model", required=True, help="causal- or masked-LM checkpoint (dir or Hub id, any supported "
                   "layout); soft prompts need a causal one")
    p.add_argument("--revision", help="Hub branch, tag or commit to pin")
    p.add_argument("--task", required=True, help="task folder, as for `genomix finetune --task`")
    add_recipe_option(p, "icl", "kshot")
    p.add_argument("--out", required=True, help="output folder (metrics.json, predictions/, soft prompt); one "
                   "holding a finished run is refused, unless --resume continues the soft prompt tuned there")
    p.add_argument("--shots", type=non_negative_int, help="demonstrations per class in every prompt")
    p.add_argument("--soft-prompt", type=non_negative_int, dest="soft_prompt_tokens",
                   help="soft-prompt vectors (0: none)")
    p.add_argument("--steps", type=non_negative_int, help="soft-prompt tuning steps")
    p.add_argument("--lr", type=positive_float, help="soft-prompt learning rate")
    p.add_argument("--max-length", type=positive_int, help="cut demonstrations and queries to this many bases")
    p.add_argument("--train-rows", type=positive_int, help="draw demonstrations / tune on the first N training rows")
    p.add_argument("--test-rows", type=positive_int, help="score the first N dev and test rows only")
    p.add_argument("--seed", type=seed_option,
                   help="seed of the demonstrations drawn and of the soft prompt's initialisation and tuning "
                        "batches (default: the recipe's)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue the soft-prompt run in --out, with the "
                   "soft-prompt recipe it was started with: tune on to --steps and score again (a k-shot run keeps "
                   "nothing to continue)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_cuda_graphs_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..tasks.icl import load_icl_recipe, run_icl

    device = resolve_device(args.device)  # a device this machine lacks is refused before the model loads

    recipe = load_icl_recipe(args.recipe, shots=args.shots, soft_prompt_tokens=args.soft_prompt_tokens,
                             steps=args.steps, lr=args.lr, max_length=args.max_length, train_rows=args.train_rows,
                             test_rows=args.test_rows, seed=args.seed)
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    logging.getLogger("genomix").setLevel(logging.WARNING if args.quiet else logging.INFO)
    summary = run_icl(args.model, args.task, args.out, recipe, revision=args.revision, device=device,
                      resume=args.resume, quiet=args.quiet, cuda_graphs=not args.no_cuda_graphs)
    print(json.dumps(summary["metrics"], indent=2))
    return 0
