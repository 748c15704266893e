"""Shared base classes of every genomix backbone family.

Each family (``hyena``, ``mamba``, ``caduceus``, ``m2``, ``transformer``) subclasses
:class:`GenomixConfig` with its own ``model_type`` (``"genomix-<family>"``) and
:class:`GenomixPreTrainedModel` for its base model and heads. Building on ``transformers``' classes
gives users the conventions they know (``from_pretrained``/``save_pretrained``/``push_to_hub``,
output dataclasses, ``Trainer``) without ``trust_remote_code``: ``genomix.hub`` registers every family
with the ``Auto*`` classes at import.
"""
from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig, PreTrainedModel


def pad_to_multiple(n: int, multiple: int) -> int:
    """Round ``n`` up to a multiple of ``multiple`` (embedding rows are padded for tensor cores)."""
    return n if multiple <= 1 else ((n + multiple - 1) // multiple) * multiple


class GenomixConfig(PretrainedConfig):
    """Fields every genomix model has; families add their own hyper-parameters.

    ``name`` records which named size (``configs/models/<name>.yaml``) the config came from, if any.
    """

    model_type = "genomix"

    def __init__(
        self,
        vocab_size: int = 12,
        pad_vocab_size_multiple: int = 8,
        max_seq_len: int = 1024,
        name: str | None = None,
        pad_token_id: int = 4,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.pad_vocab_size_multiple = pad_vocab_size_multiple
        self.max_seq_len = max_seq_len
        self.name = name
        kwargs.setdefault("tie_word_embeddings", True)
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @property
    def padded_vocab_size(self) -> int:
        return pad_to_multiple(self.vocab_size, self.pad_vocab_size_multiple)


class GenomixPreTrainedModel(PreTrainedModel):
    """Base of all genomix ``nn.Module``s that load and save through ``transformers``' machinery."""

    config_class = GenomixConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True
    _no_split_modules: list[str] = []
