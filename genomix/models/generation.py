"""Sampling DNA from any genomix causal LM: greedy, temperature, top-k and nucleus (top-p), a repetition
penalty, and beam search.

Works with every family whose causal-LM head returns ``.logits`` (batch, length, vocab). Recurrent models
(those with ``allocate_state``, ``prefill`` and ``step``: :class:`.tasks.RecurrentLMMixin`) read the prompt
in one parallel pass and then advance their state one token at a time (on a GPU the step replays as one
CUDA graph, :mod:`.step_graph`): Mamba at O(1) per token whatever the length so far, HyenaDNA and causal
M2 at O(length) per token (each long convolution's dot product with every earlier position) while prompt
and new tokens fit their ``max_seq_len``. Other models, and those two past it, run on the last
``max_seq_len`` tokens at every step (a sliding window once the context is full), so they need no
per-family cache. Only ``allowed_ids`` (by default the four bases) can be sampled, so the padded vocabulary
columns and special tokens never appear in the output. :func:`beam_search` keeps the ``num_beams`` most likely
continuations of each prompt; a recurrent state follows its beams by reordering its rows in place
(``take_rows`` of each layer's state), so a captured generation step keeps replaying.
"""
from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable, Sequence

import torch

from ..errors import ConfigError, GenomixError, InputFormatError
from ..tokenizer import A_ID, C_ID, G_ID, T_ID
from .base import check_prompt
from .step_graph import step_function
from .tasks import require_causal_lm

BASE_IDS = (A_ID, C_ID, G_ID, T_ID)


def next_token_distribution(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, allowed_ids: Sequence[int] = BASE_IDS,
    top_p: float | None = None,
) -> torch.Tensor:
    """Probabilities (batch, vocab) from last-position ``logits`` (batch, vocab) after masking,
    temperature scaling, top-k truncation and nucleus truncation (in that order, as transformers' logits
    warpers): ``top_p`` keeps the most probable tokens whose probabilities sum to at least ``top_p``, and
    always the most probable one. The logits are scaled relative to the best allowed one (the same
    distribution), so that a tiny temperature gives the argmax instead of overflowing float32 to NaN."""
    allowed = _allowed_mask(logits.shape[-1], logits.device, tuple(allowed_ids))
    logits = logits.float().masked_fill(~allowed, float("-inf"))
    return _warped(logits - logits.amax(dim=-1, keepdim=True), temperature, top_k, len(set(allowed_ids)), top_p)


def _warped(centred: torch.Tensor, temperature: float, top_k: int | None, choices: int,
            top_p: float | None) -> torch.Tensor:
    """:func:`next_token_distribution` from logits already masked to the ``choices`` allowed tokens and centred on
    each row's best (its maximum 0): temperature, top-k and nucleus truncation, softmax. :func:`generate` masks
    and centres them once per step itself."""
    if not 0 < temperature < math.inf:  # infinity would divide the masked tokens' -inf into NaN
        raise ConfigError(f"temperature must be a finite number > 0 (use greedy=True for argmax), got {temperature}")
    logits = centred / temperature
    if top_k is not None:
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        threshold = logits.topk(min(top_k, choices), dim=-1).values[..., -1:]
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


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' repetition penalty: the logits (batch, vocab) of tokens already in a row's sequence
    (``seen``, a (batch, vocab) bool mask) divided by ``penalty`` where positive and multiplied where negative,
    so that ``penalty`` > 1 makes them less likely. With DNA's four bases almost every base has been seen, so
    it mostly flattens (or, below 1, sharpens) the whole distribution."""
    check_repetition_penalty(penalty)
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def check_repetition_penalty(penalty: float) -> None:
    """Refuse a repetition penalty of 0 or less, infinity or NaN (1 is none)."""
    if not 0 < penalty < math.inf:
        raise ConfigError(f"repetition_penalty must be a finite number > 0, got {penalty}")


def _seen_tokens(sequences: torch.Tensor, vocab: int) -> torch.Tensor:
    """The (batch, vocab) mask of the tokens in each row of ``sequences``."""
    seen = torch.zeros(sequences.shape[0], vocab, dtype=torch.bool, device=sequences.device)
    return seen.scatter_(1, sequences.clamp(0, vocab - 1), True)


@functools.cache
def check_allowed_ids(allowed_ids: Sequence[int], vocab: int | None = None) -> None:
    """Refuse an empty ``allowed_ids``, or (given the model's ``vocab``) ids outside its output columns."""
    if allowed_ids and (vocab is None or all(0 <= i < vocab for i in allowed_ids)):
        return
    columns = f"in [0, {vocab}) " if vocab is not None else ""
    raise ConfigError(f"allowed_ids must be one or more token ids {columns}(the model's output columns; by default "
                      f"the four bases A, C, G, T = {BASE_IDS}), got {list(allowed_ids)}")


@functools.lru_cache(maxsize=64)
def _allowed_mask(vocab: int, device: torch.device, allowed_ids: tuple[int, ...]) -> torch.Tensor:
    """The (vocab,) mask of ``allowed_ids``, made once per device and vocabulary (cached; callers never modify
    it): building it at every token copied the ids from the host, which waits for the GPU to finish the step
    before (a pageable host-to-device copy)."""
    check_allowed_ids(allowed_ids, vocab)
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
    allowed_ids: Sequence[int] = BASE_IDS,
    generator: torch.Generator | None = None,
    recurrent: bool | None = None,
    top_p: float | None = None,
    on_token: Callable[[], None] | None = None,
    return_log_likelihood: bool = False,
    repetition_penalty: float = 1.0,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Extend each prompt row of ``input_ids`` (batch, length >= 1) by ``max_new_tokens`` tokens.

    Returns (batch, length + max_new_tokens). ``greedy`` takes the argmax (whatever ``temperature``, ``top_k`` and
    ``top_p``, as in transformers); otherwise tokens are sampled with them (reproducible with a seeded
    ``generator``). Next-token scores that turn NaN or infinite (broken weights, an overflow) stop the call with a
    :class:`~genomix.errors.GenomixError` once the tokens are made, not a base chosen from them. ``recurrent``:
    None takes the recurrent state where the model has one that can hold the sequence, False the sliding
    window, True the state or an error. ``on_token`` is called after each new token (a progress bar's update).
    ``return_log_likelihood``: also return each row's log-likelihood of its new tokens (batch,) fp32, in nats,
    under the model's own distribution (normalised over its output columns as
    :func:`.scoring.token_log_likelihoods` is, before temperature and truncation), to rank samples.
    ``repetition_penalty``: :func:`penalize_repeats` on every step's logits (1: none), before temperature.
    """
    check_repetition_penalty(repetition_penalty)
    next_logits = _start(model, input_ids, max_new_tokens, recurrent, "generate")  # checks the prompt; runs nothing
    batch, prompt_length = input_ids.shape
    _refuse_unfittable(batch * (prompt_length + max_new_tokens) * input_ids.element_size(), input_ids.device,
                       f"generate of max_new_tokens={max_new_tokens} for {batch} sequence(s) returns them whole",
                       "ask for fewer new tokens or sequences")
    sequences = input_ids.new_empty(batch, prompt_length + max_new_tokens)
    sequences[:, :prompt_length] = input_ids
    was_training = model.training
    model.eval()
    log_likelihood = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
    seen = None
    # each row's chosen (greedy) or best (sampling) scores summed over the steps: NaN or infinite once any step's
    # were, which is checked after the loop (one host sync, and two or three small ops per step)
    checksum = torch.zeros(input_ids.shape[0], 1, dtype=torch.float32, device=input_ids.device)
    try:
        logits = next(next_logits)
        allowed = _allowed_mask(logits.shape[-1], logits.device, tuple(allowed_ids))
        # what a row without a finite best score samples from until the call is refused: the allowed tokens alike
        fallback = None if greedy else torch.zeros_like(allowed, dtype=torch.float32).masked_fill(~allowed,
                                                                                                    float("-inf"))
        choices = len(set(allowed_ids))
        for i in range(max_new_tokens):
            shaped = logits.float()
            if repetition_penalty != 1.0:
                seen = _seen_tokens(input_ids, logits.shape[-1]) if seen is None else seen
                shaped = penalize_repeats(shaped, seen, repetition_penalty)
            shaped = shaped.masked_fill(~allowed, float("-inf"))
            if greedy:
                token = shaped.argmax(-1, keepdim=True)  # NaN counts as the largest: a NaN row picks a NaN
                checksum += shaped.gather(-1, token)
            else:
                best = shaped.amax(dim=-1, keepdim=True)
                checksum += best
                centred = torch.where(best.isfinite(), shaped - best, fallback)  # torch.multinomial never sees NaN
                probs = _warped(centred, temperature, top_k, choices, top_p)
                token = torch.multinomial(probs, 1, generator=generator)
            sequences[:, prompt_length + i] = token[:, 0]
            if seen is not None:
                seen.scatter_(1, token, True)
            if return_log_likelihood:
                log_likelihood += torch.log_softmax(logits.float(), dim=-1).gather(-1, token).squeeze(-1)
            if on_token is not None:
                on_token()
            if i + 1 < max_new_tokens:
                logits = next_logits.send((sequences[:, prompt_length + i:prompt_length + i + 1], None))
    finally:
        model.train(was_training)
    if not bool(checksum.isfinite().all()):
        raise _non_finite_scores(model, "generate", repetition_penalty)
    return (sequences, log_likelihood) if return_log_likelihood else sequences


def _non_finite_scores(model: torch.nn.Module, caller: str, repetition_penalty: float) -> GenomixError:
    """The error for next-token scores that were NaN or infinite at some step of ``caller``."""
    penalty = f" (after repetition_penalty={repetition_penalty})" if repetition_penalty != 1.0 else ""
    return GenomixError(f"{type(model).__name__} gave NaN or infinite next-token scores in {caller}{penalty}, so no "
                        "base could be chosen from them; check the checkpoint's weights, keep repetition_penalty "
                        "within a few orders of magnitude of 1, or run in float32 (on the CPU) to rule out a "
                        "half-precision overflow")


@torch.no_grad()
def beam_search(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    num_beams: int,
    allowed_ids: Sequence[int] = BASE_IDS,
    recurrent: bool | None = None,
    repetition_penalty: float = 1.0,
    on_token: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``num_beams`` most likely continuations of ``max_new_tokens`` tokens found by beam search, for each
    prompt row of ``input_ids`` (batch, length >= 1), as transformers' beam search finds them for sequences
    that never end early (no end-of-sequence token can be chosen, so its ``length_penalty`` and
    ``early_stopping`` change nothing): at every step each prompt keeps the ``num_beams`` best extensions of
    its beams by summed log-probability (log-softmax over all output columns, after ``repetition_penalty``;
    only ``allowed_ids`` extend a beam). Deterministic.

    Returns the sequences (batch x num_beams, length + max_new_tokens), each prompt's beams adjacent and best
    first, and each one's log-likelihood of its new tokens under the model's own distribution (batch x
    num_beams,) fp32 in nats, as :func:`generate` returns it (the ranking score itself when
    ``repetition_penalty`` is 1). ``recurrent`` and ``on_token`` (called once per step) and non-finite scores as for
    :func:`generate`; the prompt is read once per row, and its state copied to the row's beams."""
    if num_beams < 1:
        raise ConfigError(f"num_beams must be >= 1, got {num_beams}")
    check_allowed_ids(tuple(allowed_ids), getattr(model.config, "vocab_size", None))
    choices = len(set(allowed_ids))
    if max_new_tokens < 1:
        raise ConfigError(f"beam search needs max_new_tokens >= 1, got {max_new_tokens}")
    if num_beams > choices ** min(max_new_tokens, 64):
        raise ConfigError(f"{num_beams} beams need at least that many distinct continuations: "
                          f"max_new_tokens={max_new_tokens} gives {choices}^{max_new_tokens}")
    check_repetition_penalty(repetition_penalty)
    next_logits = _start(model, input_ids, max_new_tokens, recurrent, "beam_search")  # checks the prompt; runs nothing
    _check_beam_memory(input_ids, max_new_tokens, num_beams)
    batch = input_ids.shape[0]
    was_training = model.training
    model.eval()
    try:
        logits = next(next_logits).float().repeat_interleave(num_beams, dim=0)  # (batch x beams, vocab)
        vocab = logits.shape[-1]
        allowed = _allowed_mask(vocab, logits.device, tuple(allowed_ids))
        # each step's chosen token per beam and the beam it extended: the sequences are traced back once at
        # the end, where copying every beam's tokens so far at every step would cost time quadratic in the length
        tokens = input_ids.new_empty(max_new_tokens, batch * num_beams)
        parents = torch.empty(max_new_tokens, batch * num_beams, dtype=torch.long, device=logits.device)
        scores = torch.full((batch, num_beams), float("-inf"), device=logits.device)
        scores[:, 0] = 0.0  # one live beam per prompt until the first step fills the others
        log_likelihood = torch.zeros(batch * num_beams, device=logits.device)
        seen = _seen_tokens(input_ids, vocab).repeat_interleave(num_beams, dim=0) if repetition_penalty != 1.0 else None
        first_row = torch.arange(batch, device=logits.device)[:, None] * num_beams
        for i in range(max_new_tokens):
            log_probs = torch.log_softmax(logits, dim=-1)  # the model's own, for the returned log-likelihoods
            if seen is not None:
                step_scores = torch.log_softmax(penalize_repeats(logits, seen, repetition_penalty), dim=-1)
            else:
                step_scores = log_probs
            step_scores = step_scores.masked_fill(~allowed, float("-inf"))
            candidates = (scores[:, :, None] + step_scores.view(batch, num_beams, vocab)).view(batch, -1)
            scores, best = candidates.topk(num_beams, dim=-1)  # sorted: each prompt's best beam first
            rows = (first_row + best // vocab).view(-1)
            # while a prompt has fewer continuations than beams, the spare beams stay at -inf: feed them a base
            token = torch.where(scores.isfinite(), best % vocab, allowed_ids[0]).view(-1, 1)
            log_likelihood = log_likelihood[rows] + log_probs[rows].gather(1, token)[:, 0]
            tokens[i] = token[:, 0]
            parents[i] = rows
            if seen is not None:
                seen = seen[rows].scatter_(1, token, True)
            if on_token is not None:
                on_token()
            if i + 1 < max_new_tokens:
                # the model's rows: at first one per prompt, then one per beam
                source = rows // num_beams if i == 0 else rows
                logits = next_logits.send((token, source)).float()
    finally:
        model.train(was_training)
    # a NaN score ranks first in topk and stays in its beam's sum, and a step with no finite score leaves even the
    # best beam at -inf: each prompt's best beam is finite unless some step's scores were not (one check, no
    # per-step work)
    if not bool(scores[:, 0].isfinite().all()):
        raise _non_finite_scores(model, "beam_search", repetition_penalty)
    return torch.cat([input_ids.repeat_interleave(num_beams, dim=0), _trace_beams(tokens, parents)], dim=1), \
        log_likelihood


def _check_beam_memory(input_ids: torch.Tensor, max_new_tokens: int, num_beams: int) -> None:
    """Refuse a beam search whose token buffers alone exceed the memory of ``input_ids``' device, before the model
    runs (:func:`_refuse_unfittable`). Beam search keeps every step's tokens and parent beams, to trace the beams
    back at the end, and then returns the whole sequences."""
    rows = input_ids.shape[0] * num_beams
    # tokens and returned sequences in the prompt's dtype, parent beams as int64 (8 bytes)
    need = rows * (max_new_tokens * (input_ids.element_size() + 8) + (input_ids.shape[1] + max_new_tokens)
                   * input_ids.element_size())
    _refuse_unfittable(need, input_ids.device, f"beam search of max_new_tokens={max_new_tokens} with {rows} beams "
                       f"({input_ids.shape[0]} prompt(s) x {num_beams}) keeps every step's tokens",
                       "ask for fewer new tokens or beams")


def _refuse_unfittable(need: int, device: torch.device, what: str, remedy: str) -> None:
    """Raise :class:`ConfigError` when ``need`` bytes of token buffers exceed all the memory of ``device``, before
    the model runs. Generation has no length limit of its own past ``max_seq_len`` (it slides), so an absurd
    ``max_new_tokens`` would otherwise fail in torch's allocator (naming no option) or, on the CPU, only after
    hours of steps once the pages are touched. It is the device's whole memory, not what is free now, so that only
    what can never fit is refused."""
    limit = _memory_bytes(device)
    if limit is not None and need > limit:
        raise ConfigError(f"{what}: at least {need / 1e9:,.1f} GB, more than all {limit / 1e9:,.1f} GB of memory "
                          f"on {device}; {remedy}")


def _memory_bytes(device: torch.device) -> int | None:
    """All the memory of ``device`` in bytes: a GPU's, or the host's physical memory for the CPU (None where the
    platform does not tell, and for other devices)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows), or not these names
            return None
    return None


def _trace_beams(tokens: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """The final beams' tokens (beams, steps) from each step's ``tokens`` (steps, beams) and ``parents`` (the
    beam of the previous step each one extended; the first step's are ignored), walking back from the last step."""
    steps, beams = tokens.shape
    out = tokens.new_empty(beams, steps)
    beam = torch.arange(beams, device=tokens.device)
    for i in range(steps - 1, -1, -1):
        out[:, i] = tokens[i, beam]
        beam = parents[i, beam]
    return out


def _start(model: torch.nn.Module, input_ids: torch.Tensor, max_new_tokens: int, recurrent: bool | None,
           caller: str):
    """Checks, and the logits generator (:func:`_recurrent_logits` or :func:`_window_logits`) for extending
    ``input_ids`` by ``max_new_tokens``."""
    require_causal_lm(model, caller)
    check_prompt(input_ids, caller)
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be 0 or more, got {max_new_tokens}")
    steps = max(max_new_tokens - 1, 0)  # tokens fed back after the prompt
    can_recur = _is_recurrent(model, input_ids.shape[1] + steps)
    if recurrent and not can_recur:
        raise ConfigError(f"{type(model).__name__} has no recurrent state that holds {input_ids.shape[1] + steps} "
                          f"positions; {caller} with recurrent=None or False (a sliding window)")
    use_state = can_recur if recurrent is None else recurrent
    return _recurrent_logits(model, input_ids, steps) if use_state else _window_logits(model, input_ids)


#: transformers ``generate`` options that change nothing here at these values (their defaults): the others
#: (returning scores, other penalties and processors) are refused rather than ignored.
_NEUTRAL_HF_OPTIONS = {"return_dict_in_generate": False, "output_scores": False, "output_logits": False,
                       "num_beam_groups": 1, "diversity_penalty": 0.0, "no_repeat_ngram_size": 0}
#: Beam-search options that rank finished beams of different lengths: every beam here has the same length
#: (nothing ends early), so no value changes the result.
_LENGTH_ONLY_OPTIONS = ("length_penalty", "early_stopping")
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
    num_beams: int = 1,
    repetition_penalty: float = 1.0,
    attention_mask: torch.Tensor | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    **options: Any,
) -> torch.Tensor:
    """:func:`generate` called as transformers' ``model.generate``: greedy unless ``do_sample``; the length by
    ``max_new_tokens`` or ``max_length`` (prompt included); ``use_cache=False`` reads the whole sequence at
    every step (the sliding window) instead of the recurrent state. Sampling takes ``temperature``, ``top_k``
    and ``top_p``; ``num_return_sequences`` samples that many continuations of each prompt (rows of one prompt
    adjacent, as transformers orders them; ``top_k=0`` and ``top_p=1`` filter nothing, as there). ``num_beams`` > 1
    without ``do_sample`` is beam search (:func:`beam_search`; ``num_return_sequences`` of each prompt's best beams,
    best first; ``length_penalty`` and ``early_stopping`` are taken and change nothing, as every beam has the same
    length). ``repetition_penalty`` as transformers applies it (:func:`penalize_repeats`). ``attention_mask`` must
    have ``input_ids``' shape and mark every position (each row a whole prompt: left-padded batches of unequal
    prompts are refused). Options that would change the result and are not implemented here (beam sampling, other
    penalties, scores) raise ``TypeError``. Returns the (batch x num_return_sequences, prompt + new) token ids, as
    transformers does."""
    unsupported = [f"{name}={value!r}" for name, value in options.items()
                   if name not in _TOKEN_ID_OPTIONS + _LENGTH_ONLY_OPTIONS
                   and _NEUTRAL_HF_OPTIONS.get(name, object()) != value]
    if num_beams > 1 and do_sample:
        unsupported.append(f"num_beams={num_beams} with do_sample=True (beam sampling)")
    if unsupported:
        raise TypeError(f"{type(model).__name__}.generate() does not implement {', '.join(unsupported)}: it takes "
                        "max_new_tokens or max_length, do_sample, temperature, top_k, top_p, num_return_sequences, "
                        "num_beams (without do_sample), repetition_penalty, attention_mask (all ones), use_cache and "
                        "generator (greedy by default, as transformers)")
    check_prompt(input_ids, "generate")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise InputFormatError(f"generate got an attention_mask of shape {tuple(attention_mask.shape)} for input_ids "
                               f"of shape {tuple(input_ids.shape)}; pass one of the same shape, or none")
    if attention_mask is not None and not bool(attention_mask.bool().all()):
        raise InputFormatError("generate takes whole prompts only: attention_mask has padded positions; generate "
                               "prompts of different lengths in separate calls")
    if (max_new_tokens is None) == (max_length is None):
        raise ConfigError("generate needs one of max_new_tokens and max_length (the prompt included)")
    if max_new_tokens is None:
        max_new_tokens = max_length - input_ids.shape[1]
        if max_new_tokens < 0:
            raise ConfigError(f"max_length={max_length} is shorter than the prompt ({input_ids.shape[1]} tokens)")
    recurrent = None if use_cache else False
    if num_beams > 1:
        if not 1 <= num_return_sequences <= num_beams:
            raise ConfigError(f"num_return_sequences={num_return_sequences}: beam search returns 1 to num_beams="
                              f"{num_beams} sequences per prompt")
        sequences, _ = beam_search(model, input_ids, max_new_tokens, num_beams, recurrent=recurrent,
                                   repetition_penalty=repetition_penalty)
        return sequences.view(input_ids.shape[0], num_beams, -1)[:, :num_return_sequences].flatten(0, 1)
    if num_return_sequences < 1 or (num_return_sequences > 1 and not do_sample):
        raise ConfigError(f"num_return_sequences={num_return_sequences}: it must be >= 1, and more than one needs "
                          "do_sample=True or num_beams (greedy decoding returns one sequence per prompt)")
    return generate(model, input_ids.repeat_interleave(num_return_sequences, dim=0), max_new_tokens,
                    greedy=not do_sample, temperature=temperature, top_k=top_k or None,
                    top_p=None if top_p == 1.0 else top_p,
                    generator=generator, recurrent=recurrent, repetition_penalty=repetition_penalty)


def _is_recurrent(model: torch.nn.Module, length: int) -> bool:
    """Whether ``model`` can generate through a recurrent state holding ``length`` positions."""
    if not all(callable(getattr(model, name, None)) for name in ("allocate_state", "prefill", "step")):
        return False
    limit = getattr(model, "max_state_length", None)
    return limit is None or length <= limit


def sliding_window(model: torch.nn.Module, length: int) -> int | None:
    """The window, in tokens, that each new token of a sequence growing to ``length`` tokens is sampled from, where
    that is shorter than the sequence (no recurrent state holds it all: :func:`_is_recurrent`); None where every
    new token follows the whole sequence."""
    window = _window(model)
    if _is_recurrent(model, length) or window is None or length <= window:
        return None
    return window


def _window(model: torch.nn.Module) -> int | None:
    return int(getattr(model.config, "max_seq_len", 0)) or None


def _recurrent_logits(model: torch.nn.Module, prompt: torch.Tensor, steps: int):
    """Last-position logits after the prompt, then after each of ``steps`` tokens sent in as ``(tokens,
    rows)``: tokens (batch', 1) extending rows ``rows`` of the sequences so far (None: each its own row; more
    rows than before only at the first token, beam search copying each prompt to its beams). The whole prompt is
    read in one parallel pass (a state with a limit holds prompt and new tokens, :func:`_is_recurrent`; Mamba's
    reads a prompt of any length, as its new tokens follow the whole sequence), each further token in one
    recurrent step (:func:`.step_graph.step_function`, made at the first token for the batch from then on)."""
    length = prompt.shape[1] + steps
    state = model.allocate_state(prompt.shape[0], prompt.device, length)
    token, rows = yield model.prefill(prompt, state)
    if rows is not None and len(rows) != prompt.shape[0]:  # a state with the new rows, copied from the prompts'
        wider = model.allocate_state(len(rows), prompt.device, length)
        for target, source in zip(wider, state):
            target.take_rows(rows, source)
        state, rows = wider, None
    step = step_function(model, state, token.shape[0], steps)
    while True:
        if rows is not None:
            for layer_state in state:
                layer_state.take_rows(rows)
        token, rows = yield step(token[:, 0])


def _window_logits(model: torch.nn.Module, prompt: torch.Tensor):
    """Last-position logits of the model run on the last ``max_seq_len`` tokens so far, after the prompt and
    then after each ``(tokens, rows)`` sent in (as :func:`_recurrent_logits` takes them)."""
    window = _window(model)
    out = prompt
    while True:
        token, rows = yield model(out if window is None else out[:, -window:]).logits[:, -1]
        out = torch.cat([out if rows is None else out[rows], token], dim=1)
