"""Sampling DNA from any genomix causal LM: greedy, temperature, top-k and nucleus (top-p).

Works with every family whose causal-LM head returns ``.logits`` (batch, length, vocab). Recurrent models
(those with ``allocate_state``, ``prefill`` and ``step``: :class:`.tasks.RecurrentLMMixin`) read the prompt
in one parallel pass and then advance their state one token at a time (on a GPU the step replays as one
CUDA graph, :mod:`.step_graph`): Mamba at O(1) per token whatever the length so far, HyenaDNA and causal
M2 at O(length) per token (each long convolution's dot product with every earlier position) while prompt
and new tokens fit their ``max_seq_len``. Other models, and those two past it, run on the last
``max_seq_len`` tokens at every step (a sliding window once the context is full), so they need no
per-family cache. Only ``allowed_ids`` (by default the four bases) can be sampled, so the padded vocabulary
columns and special tokens never appear in the output.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch

from ..errors import ConfigError, InputFormatError
from ..tokenizer import A_ID, C_ID, G_ID, T_ID
from .base import check_prompt
from .step_graph import step_function
from .tasks import require_causal_lm

BASE_IDS = (A_ID, C_ID, G_ID, T_ID)


def next_token_distribution(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, allowed_ids=BASE_IDS,
    top_p: float | None = None,
) -> torch.Tensor:
    """Probabilities (batch, vocab) from last-position ``logits`` (batch, vocab) after masking,
    temperature scaling, top-k truncation and nucleus truncation (in that order, as transformers' logits
    warpers): ``top_p`` keeps the most probable tokens whose probabilities sum to at least ``top_p``, and
    always the most probable one."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0 (use greedy=True for argmax), got {temperature}")
    logits = logits.float() / temperature
    allowed = _allowed_mask(logits.shape[-1], logits.device, tuple(allowed_ids))
    logits = logits.masked_fill(~allowed, float("-inf"))
    if top_k is not None:
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        k = min(top_k, len(set(allowed_ids)))
        threshold = logits.topk(k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
        ascending, order = logits.sort(dim=-1)
        # a token goes when the less probable tokens and itself hold at most 1 - top_p of the mass
        drop = ascending.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p
        drop[..., -1] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.softmax(logits, dim=-1)


@functools.cache
def _allowed_mask(vocab: int, device: torch.device, allowed_ids: tuple[int, ...]) -> torch.Tensor:
    """The (vocab,) mask of ``allowed_ids``, made once per device: building it at every token copied the ids
    from the host, which waits for the GPU to finish the step before (a pageable host-to-device copy)."""
    allowed = torch.zeros(vocab, dtype=torch.bool, device=device)
    allowed[list(allowed_ids)] = True
    return allowed


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
    recurrent: bool | None = None,
    top_p: float | None = None,
    on_token: Callable[[], None] | None = None,
    return_log_likelihood: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Extend each prompt row of ``input_ids`` (batch, length >= 1) by ``max_new_tokens`` tokens.

    Returns (batch, length + max_new_tokens). ``greedy`` takes the argmax; otherwise tokens are
    sampled with ``temperature``, ``top_k`` and ``top_p`` (reproducible with a seeded ``generator``). ``recurrent``:
    None takes the recurrent state where the model has one that can hold the sequence, False the sliding
    window, True the state or an error. ``on_token`` is called after each new token (a progress bar's update).
    ``return_log_likelihood``: also return each row's log-likelihood of its new tokens (batch,) fp32, in nats,
    under the model's own distribution (normalised over its output columns as
    :func:`.scoring.token_log_likelihoods` is, before temperature and truncation), to rank samples.
    """
    require_causal_lm(model, "generate")
    check_prompt(input_ids, "generate")
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be 0 or more, got {max_new_tokens}")
    steps = max(max_new_tokens - 1, 0)  # tokens fed back after the prompt
    can_recur = _is_recurrent(model, input_ids.shape[1] + steps)
    if recurrent and not can_recur:
        raise ConfigError(f"{type(model).__name__} has no recurrent state that holds {input_ids.shape[1] + steps} "
                          "positions; generate with recurrent=None or False (a sliding window)")
    use_state = can_recur if recurrent is None else recurrent
    was_training = model.training
    model.eval()
    tokens = [input_ids]
    log_likelihood = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
    try:
        next_logits = _recurrent_logits(model, input_ids, steps) if use_state else _window_logits(model, input_ids)
        logits = next(next_logits)
        for i in range(max_new_tokens):
            probs = next_token_distribution(logits, temperature, top_k, allowed_ids, top_p)
            if greedy:
                token = probs.argmax(-1, keepdim=True)
            else:
                token = torch.multinomial(probs, 1, generator=generator)
            tokens.append(token.to(input_ids.dtype))
            if return_log_likelihood:
                log_likelihood += torch.log_softmax(logits.float(), dim=-1).gather(-1, token).squeeze(-1)
            if on_token is not None:
                on_token()
            if i + 1 < max_new_tokens:
                logits = next_logits.send(tokens[-1])
    finally:
        model.train(was_training)
    sequences = torch.cat(tokens, dim=1)
    return (sequences, log_likelihood) if return_log_likelihood else sequences


#: transformers ``generate`` options that change nothing here at these values (their defaults): the others
#: (beam search, penalties, returning scores) are refused rather than ignored.
_NEUTRAL_HF_OPTIONS = {"num_beams": 1, "repetition_penalty": 1.0, "return_dict_in_generate": False,
                       "output_scores": False, "output_logits": False}
#: Token-id options read by transformers to pad or stop; only bases are sampled here, so no special token is
#: ever produced and they change nothing.
_TOKEN_ID_OPTIONS = ("pad_token_id", "eos_token_id", "bos_token_id")


@torch.no_grad()
def generate_like_transformers(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int | None = None,
    max_length: int | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    num_return_sequences: int = 1,
    attention_mask: torch.Tensor | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    **options: Any,
) -> torch.Tensor:
    """:func:`generate` called as transformers' ``model.generate``: greedy unless ``do_sample``; the length by
    ``max_new_tokens`` or ``max_length`` (prompt included); ``use_cache=False`` reads the whole sequence at
    every step (the sliding window) instead of the recurrent state. Sampling takes ``temperature``, ``top_k``
    and ``top_p``; ``num_return_sequences`` samples that many continuations of each prompt (rows of one prompt
    adjacent, as transformers orders them). ``attention_mask`` must mark every position (each row a whole
    prompt: left-padded batches of unequal prompts are refused). Options that would change the result and are
    not implemented here (beam search, penalties, scores) raise ``TypeError``.
    Returns the (batch x num_return_sequences, prompt + new) token ids, as transformers does."""
    unsupported = [f"{name}={value!r}" for name, value in options.items()
                   if name not in _TOKEN_ID_OPTIONS and _NEUTRAL_HF_OPTIONS.get(name, object()) != value]
    if unsupported:
        raise TypeError(f"{type(model).__name__}.generate() does not implement {', '.join(unsupported)}: it takes "
                        "max_new_tokens or max_length, do_sample, temperature, top_k, top_p, num_return_sequences, "
                        "attention_mask (all ones), use_cache and generator (greedy by default, as transformers)")
    check_prompt(input_ids, "generate")
    if attention_mask is not None and not bool(attention_mask.bool().all()):
        raise InputFormatError("generate takes whole prompts only: attention_mask has padded positions; generate "
                               "prompts of different lengths in separate calls")
    if (max_new_tokens is None) == (max_length is None):
        raise ConfigError("generate needs one of max_new_tokens and max_length (the prompt included)")
    if max_new_tokens is None:
        max_new_tokens = max_length - input_ids.shape[1]
        if max_new_tokens < 0:
            raise ConfigError(f"max_length={max_length} is shorter than the prompt ({input_ids.shape[1]} tokens)")
    if num_return_sequences < 1 or (num_return_sequences > 1 and not do_sample):
        raise ConfigError(f"num_return_sequences={num_return_sequences}: it must be >= 1, and more than one needs "
                          "do_sample=True (greedy decoding returns one sequence per prompt)")
    return generate(model, input_ids.repeat_interleave(num_return_sequences, dim=0), max_new_tokens,
                    greedy=not do_sample, temperature=temperature, top_k=top_k, top_p=None if top_p == 1.0 else top_p,
                    generator=generator, recurrent=None if use_cache else False)


def _is_recurrent(model: torch.nn.Module, length: int) -> bool:
    """Whether ``model`` can generate through a recurrent state holding ``length`` positions."""
    if not all(callable(getattr(model, name, None)) for name in ("allocate_state", "prefill", "step")):
        return False
    limit = getattr(model, "max_state_length", None)
    return limit is None or length <= limit


def _window(model: torch.nn.Module) -> int | None:
    return int(getattr(model.config, "max_seq_len", 0)) or None


def _recurrent_logits(model: torch.nn.Module, prompt: torch.Tensor, steps: int):
    """Last-position logits after the prompt, then after each of ``steps`` tokens sent in (batch, 1): the
    prompt (its last ``max_seq_len`` tokens, as the sliding window would read it) in one parallel pass, each
    further token one recurrent step (:func:`.step_graph.step_function`)."""
    window = _window(model)
    if window is not None:
        prompt = prompt[:, -window:]
    state = model.allocate_state(prompt.shape[0], prompt.device, prompt.shape[1] + steps)
    token = yield model.prefill(prompt, state)
    step = step_function(model, state, prompt.shape[0], steps)
    while True:
        token = yield step(token[:, 0])


def _window_logits(model: torch.nn.Module, prompt: torch.Tensor):
    """Last-position logits of the model run on the last ``max_seq_len`` tokens so far, after the prompt and
    then after each token sent in (batch, 1)."""
    window = _window(model)
    out = prompt
    while True:
        token = yield model(out if window is None else out[:, -window:]).logits[:, -1]
        out = torch.cat([out, token], dim=1)
