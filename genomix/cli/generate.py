"""`genomix generate`: sample continuations of DNA prompts from a causal LM into a FASTA file."""
from __future__ import annotations

import argparse

from .inference_options import (add_device_options, add_resume_options, add_sequence_source_options,
                                read_sequence_sources)
from .option_types import positive_float, positive_int


def unit_fraction(text: str) -> float:
    """A number in (0, 1] (``--top-p``)."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="sample continuations of DNA prompts from a causal LM into FASTA",
        description="Extend each prompt (FASTA records, BED intervals of a genome store, or sequences given with "
                    "--prompt) with bases sampled from a causal language model (HyenaDNA, Mamba, causal M2, the "
                    "Transformer), or with --num-beams take its most likely continuations by beam search, and "
                    "write the new bases as FASTA records PROMPT_ID/1..K, each header giving the "
                    "sample's log-likelihood under the model (nats, given its prompt). Prompt i samples with "
                    "seed + i, so results do not depend on the other prompts. Completed prompts are kept as the run "
                    "goes: rerun with --resume after an interruption.")
    parser.add_argument("--model", required=True, help="checkpoint dir or Hub id (any layout) with a causal LM head; "
                        "a named size (e.g. mamba-tiny-1k) uses random weights, for testing")
    parser.add_argument("--revision", help="Hub branch, tag or commit to pin")
    add_sequence_source_options(parser, "one prompt per", strings=True)
    parser.add_argument("--out", required=True, help="output FASTA file")
    parser.add_argument("--max-new-tokens", type=positive_int, required=True, help="bases to add to each prompt")
    parser.add_argument("--num-samples", type=positive_int, default=1, help="continuations per prompt (default 1)")
    parser.add_argument("--greedy", action="store_true", help="take the most probable base at every step "
                        "instead of sampling (one continuation per prompt; no --temperature, --top-k, --top-p)")
    parser.add_argument("--temperature", type=positive_float, default=1.0, help="sampling temperature (default 1)")
    parser.add_argument("--top-k", type=positive_int, help="sample among the k most probable bases")
    parser.add_argument("--top-p", type=unit_fraction, help="sample among the most probable bases whose "
                        "probabilities sum to at least p (nucleus sampling)")
    parser.add_argument("--num-beams", type=positive_int, default=1, help="beam search with this many beams instead "
                        "of sampling: the --num-samples most likely continuations of each prompt, best first "
                        "(deterministic; no --temperature, --top-k, --top-p)")
    parser.add_argument("--repetition-penalty", type=positive_float, default=1.0, help="transformers' repetition "
                        "penalty: divide positive (multiply negative) logits of bases already in the sequence by it "
                        "(default 1: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first prompt's sampling (default 0)")
    parser.add_argument("--line-width", type=positive_int, default=80, help="bases per FASTA line (default 80)")
    add_resume_options(parser)
    add_device_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..generate_fasta import check_decoding, generate_fasta
    from ..hub import load_model
    from ..outputs import check_output
    from ..resume import output_may_exist

    may_exist = output_may_exist(args.out, args.resume, args.overwrite)  # a finished run's: judged after the load
    check_output(args.out, (args.fasta, args.bed, args.genome, args.model), may_exist)
    check_decoding(args.max_new_tokens, args.num_samples, args.greedy, args.num_beams, args.temperature, args.top_k,
                   args.top_p)
    prompts, total = read_sequence_sources(args)
    device = resolve_device(args.device)  # a device this machine lacks is refused before the model loads
    model = load_model(args.model, "lm", args.revision)
    path = generate_fasta(model, prompts, args.out, args.max_new_tokens, num_samples=args.num_samples,
                          greedy=args.greedy, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          seed=args.seed, device=device, quiet=args.quiet, total=total, model_name=args.model,
                          overwrite=args.overwrite, resume=args.resume, line_width=args.line_width,
                          num_beams=args.num_beams, repetition_penalty=args.repetition_penalty)
    print(path)
    return 0
