"""Per-token log-likelihoods of DNA under a causal language model, for sequences of any length where the
model allows it.

``token_log_likelihoods(model, ids)[b, t - 1] = log p(ids[b, t] | ids[b, :t])`` for t >= 1, normalised over
the model's output columns as its training loss is. Recurrent models (those with ``allocate_state`` and
``extend``: Mamba) read the sequence in pieces of ``max_seq_len`` tokens, each continuing the state the one
before left, so a chromosome-length sequence takes the memory of one piece and its likelihoods are exact
(the first token of a piece is scored from the last position of the piece before it). Other models read it
in one forward, up to their ``max_seq_len``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputFormatError
from .base import check_attention_mask, check_id_tensor
from .tasks import require_causal_lm


def _chosen(logits: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
    """log-softmax of ``logits`` (batch, l, vocab) at the ``next_ids`` (batch, l), fp32."""
    return F.log_softmax(logits.float(), dim=-1).gather(-1, next_ids.unsqueeze(-1)).squeeze(-1)


def reads_in_pieces(model: torch.nn.Module) -> bool:
    """Whether ``model`` carries a recurrent state across pieces (``allocate_state`` and ``extend``: Mamba),
    so that :func:`token_log_likelihoods` scores sequences longer than its ``max_seq_len``."""
    return all(callable(getattr(model, name, None)) for name in ("allocate_state", "extend"))


def _check_right_padding(attention_mask: torch.Tensor, input_ids: torch.Tensor) -> None:
    """Refuse a mask that is not ``input_ids``' shape or not 1s followed by 0s in every row: left or inner
    padding would change what the real tokens are conditioned on."""
    check_attention_mask(attention_mask, input_ids)
    mask = attention_mask.bool()
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise InputFormatError("token_log_likelihoods takes right padding only (each attention_mask row: 1s, "
                               "then 0s); pad with genomix.tokenizer.pad_batch(..., side='right')")


@torch.no_grad()
def token_log_likelihoods(model: torch.nn.Module, input_ids: torch.Tensor, progress: bool = False,
                          attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, L - 1) fp32: the log-probability of each token given those before it (see the module
    docstring), with ``model`` in eval mode for the call; ``progress``: a progress bar over the pieces.

    ``attention_mask`` (batch, L; 1 = token, 0 = padding) lets sequences of different lengths share a batch
    when padded on the right: a causal model's score of a token does not depend on what follows it, and
    padded positions score 0, so ``.sum(dim=1)`` is each sequence's log-likelihood."""
    require_causal_lm(model, "token_log_likelihoods")
    check_id_tensor(input_ids, "input_ids")
    if input_ids.dim() != 2 or input_ids.shape[1] < 2:
        raise InputFormatError(f"input_ids must be (batch, length >= 2), got {tuple(input_ids.shape)}")
    if attention_mask is not None:
        _check_right_padding(attention_mask, input_ids)
    scores = _scores(model, input_ids, progress)
    if attention_mask is None:
        return scores
    return scores.masked_fill(~attention_mask[:, 1:].bool().to(scores.device), 0.0)


def _scores(model: torch.nn.Module, input_ids: torch.Tensor, progress: bool) -> torch.Tensor:
    """:func:`token_log_likelihoods` without padding: one forward, or pieces carrying a recurrent state."""
    was_training = model.training
    model.eval()
    try:
        if not reads_in_pieces(model):
            return _chosen(model(input_ids).logits[:, :-1], input_ids[:, 1:])
        from tqdm.auto import tqdm

        piece = int(model.config.max_seq_len)
        state = model.allocate_state(input_ids.shape[0], input_ids.device)
        scores, previous = [], None
        starts = range(0, input_ids.shape[1], piece)
        for start in tqdm(starts, desc="scoring", unit="piece", disable=not progress or len(starts) < 2):
            ids = input_ids[:, start:start + piece]
            logits = model.extend(ids, state)
            if previous is not None:  # this piece's first token, from the last position before it
                scores.append(_chosen(previous, ids[:, :1]))
            scores.append(_chosen(logits[:, :-1], ids[:, 1:]))
            previous = logits[:, -1:]
        return torch.cat(scores, dim=1)
    finally:
        model.train(was_training)


__all__ = ["reads_in_pieces", "token_log_likelihoods"]
