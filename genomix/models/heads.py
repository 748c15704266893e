"""Head pieces every backbone family shares: padding-aware pooling, a sequence-classification head,
and the LM / classification losses with Hugging Face's conventions.

Pooling modes (``pooling`` in a family config):

- ``mean``: average over real tokens (``attention_mask == 1``);
- ``last``: the last real token (what a causal model has seen the whole sequence at);
- ``first``: the first real token (for bidirectional models; genomix adds no CLS token).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputFormatError
from .base import check_id_tensor, may_sync

POOLING_MODES = ("mean", "last", "first")
IGNORE_INDEX = -100


def check_pooling(mode: str) -> None:
    """Refuse a pooling mode :func:`pool` does not know, listing the ones it does. Configs and classification
    models call it as they are built, so that a typo fails there and not at the first forward."""
    if mode not in POOLING_MODES:
        raise ConfigError(f"unknown pooling {mode!r}; choose one of {', '.join(POOLING_MODES)}")


def _mask_or_ones(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"attention_mask {tuple(attention_mask.shape)} does not match hidden {tuple(hidden.shape[:2])}")
    return attention_mask.bool()


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None = None, mode: str = "mean") -> torch.Tensor:
    """(batch, length, channels) -> (batch, channels), ignoring padding positions.

    Rows without any real token pool to zeros (mean) or position 0 (first/last) rather than NaN.
    """
    check_pooling(mode)
    mask = _mask_or_ones(hidden, attention_mask)
    if mode == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    positions = torch.arange(hidden.shape[1], device=hidden.device).expand_as(mask)
    if mode == "last":
        index = torch.where(mask, positions, torch.full_like(positions, -1)).amax(1).clamp_min(0)
    else:  # first
        big = torch.full_like(positions, hidden.shape[1])
        index = torch.where(mask, positions, big).amin(1).clamp_max(hidden.shape[1] - 1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


class SequenceClassificationHead(nn.Module):
    """Pool the backbone's last hidden states, then dropout and a linear layer to ``num_labels`` logits."""

    def __init__(self, d_model: int, num_labels: int, pooling: str = "mean", dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        check_pooling(pooling)
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, num_labels, bias=bias)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        pooled = pool(hidden, attention_mask, self.pooling)
        return self.proj(self.dropout(pooled.to(self.proj.weight.dtype)))


def check_lm_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Refuse LM ``labels`` that are not one integer token id per input position (the shape of ``input_ids``)."""
    check_id_tensor(labels, "labels", any_integer=True)
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise InputFormatError(f"labels must have input_ids' shape {tuple(logits.shape[:-1])} (token ids, "
                               f"{IGNORE_INDEX} where no loss is wanted), got {tuple(labels.shape)}")


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Next-token cross-entropy: position ``i`` predicts ``labels[i + 1]`` (shift inside, HF style)."""
    check_lm_labels(logits, labels)
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shifted_labels = labels[:, 1:].reshape(-1).to(logits.device, torch.long)  # int32 labels too
    return F.cross_entropy(shifted_logits, shifted_labels, ignore_index=ignore_index)


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Position-wise cross-entropy (no shift); ``ignore_index`` marks unmasked positions."""
    check_lm_labels(logits, labels)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).to(logits.device, torch.long),
        ignore_index=ignore_index,
    )


def check_class_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Refuse single-label classification ``labels`` that are not one integer class in ``[0, num_labels)`` (or
    the ignored :data:`IGNORE_INDEX`) per sequence; the value check is skipped where :func:`.base.may_sync` says."""
    batch, num_labels = logits.shape[0], logits.shape[-1]
    check_id_tensor(labels, "labels", any_integer=True)
    if labels.numel() != batch:
        raise InputFormatError(f"labels must hold one class per sequence ({batch}), got shape {tuple(labels.shape)}")
    if not may_sync(labels):
        return
    bad = labels[(labels != IGNORE_INDEX) & ((labels < 0) | (labels >= num_labels))]
    if bad.numel():
        raise InputFormatError(f"class labels must lie in [0, {num_labels}) (num_labels={num_labels}); got "
                               f"{int(bad[0])}. Build the model with num_labels=<number of classes>")


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """Loss by ``config.problem_type`` (inferred and stored like transformers does when unset)."""
    num_labels = logits.shape[-1]
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    labels = labels.to(logits.device)
    if config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1).float(), labels.float().view(-1))
    if config.problem_type == "single_label_classification":
        check_class_labels(logits, labels)
        return F.cross_entropy(logits.float().view(-1, num_labels), labels.view(-1).long())  # int32 labels too
    if config.problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    raise ConfigError(f"unknown problem_type {config.problem_type!r}")
