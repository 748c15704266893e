"""Sampling DNA from any genomix causal LM: greedy, temperature and top-k.

Works with every family whose causal-LM head returns ``.logits`` (batch, length, vocab). Each step
runs the model on the last ``max_seq_len`` tokens (a sliding window once the context is full), so
it needs no per-family cache. Only ``allowed_ids`` (by default the four bases) can be sampled, so the
padded vocabulary columns and special tokens never appear in the output.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError, InputFormatError
from ..tokenizer import A_ID, C_ID, G_ID, T_ID

BASE_IDS = (A_ID, C_ID, G_ID, T_ID)


def next_token_distribution(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, allowed_ids=BASE_IDS
) -> torch.Tensor:
    """Probabilities (batch, vocab) from last-position ``logits`` (batch, vocab) after masking,
    temperature scaling and top-k truncation."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0 (use greedy=True for argmax), got {temperature}")
    logits = logits.float() / temperature
    allowed = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    allowed[list(allowed_ids)] = True
    logits = logits.masked_fill(~allowed, float("-inf"))
    if top_k is not None:
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        k = min(top_k, int(allowed.sum()))
        threshold = logits.topk(k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    return torch.softmax(logits, dim=-1)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    allowed_ids=BASE_IDS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend each prompt row of ``input_ids`` (batch, length >= 1) by ``max_new_tokens`` tokens.

    Returns (batch, length + max_new_tokens). ``greedy`` takes the argmax; otherwise tokens are
    sampled with ``temperature`` and ``top_k`` (reproducible with a seeded ``generator``).
    """
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise InputFormatError(f"input_ids must be (batch, length >= 1), got {tuple(input_ids.shape)}")
    window = int(getattr(model.config, "max_seq_len", input_ids.shape[1] + max_new_tokens))
    was_training = model.training
    model.eval()
    out = input_ids
    try:
        for _ in range(max_new_tokens):
            logits = model(out[:, -window:]).logits[:, -1]
            probs = next_token_distribution(logits, temperature, top_k, allowed_ids)
            if greedy:
                token = probs.argmax(-1, keepdim=True)
            else:
                token = torch.multinomial(probs, 1, generator=generator)
            out = torch.cat([out, token.to(out.dtype)], dim=1)
    finally:
        model.train(was_training)
    return out
