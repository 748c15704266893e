"""genomix's own layout: ``config.json`` (``model_type: genomix-*``) + ``model.safetensors`` (or a sharded
``model.safetensors.index.json`` with its shards), and ``weights.sha256``, the weights' hashes, which loading checks.

This is what ``save_pretrained``/``genomix convert``/``push_to_hub`` write, and what
``transformers.AutoModel*.from_pretrained`` reads once genomix is imported.
"""
from __future__ import annotations

import re
from pathlib import Path

from ...errors import CheckpointError, ConfigError
from ...models.registry import get_family
from ..integrity import MANIFEST
from . import register_format
from .base import (
    HUB_WEIGHT_PATTERNS,
    FormatAdapter,
    LoadedCheckpoint,
    build_config,
    check_keys,
    config_for_detection,
    find_weights,
    read_json,
    read_weights,
)
from .common import expected_state_dict, task_of_architectures


#: The files a genomix save writes (and those earlier transformers versions wrote beside them), by name; a folder
#: holding anything else is not replaced by a later save (:func:`genomix.hub.check_replaceable`).
SAVED_FILES = frozenset({"config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
                         "pytorch_model.bin", "pytorch_model.bin.index.json", "tokenizer_config.json", "vocab.json",
                         "special_tokens_map.json", "added_tokens.json", MANIFEST})
_SAVED_SHARD = re.compile(r"(model|pytorch_model)-\d{5}-of-\d{5}\.(safetensors|bin)")


def saved_by_genomix(name: str) -> bool:
    """Whether a file named ``name`` is one a genomix save writes."""
    return name in SAVED_FILES or _SAVED_SHARD.fullmatch(name) is not None


class GenomixNative(FormatAdapter):
    name = "genomix"
    signature = "config.json with model_type 'genomix-*' + model.safetensors"
    patterns = ("*.json", "*.txt", *HUB_WEIGHT_PATTERNS, MANIFEST)
    priority = 0

    def detect(self, path: Path) -> bool:
        return self.model_type_of(path).startswith("genomix-")

    def model_type_of(self, path: Path) -> str:
        return str(config_for_detection(path).get("model_type", ""))

    def load(self, path: Path) -> LoadedCheckpoint:
        data = read_json(path / "config.json")
        try:
            family = get_family(data["model_type"])
        except ConfigError as exc:  # a genomix-* type no family registers (a newer genomix, or a typo)
            raise CheckpointError(f"{path / 'config.json'}: {exc}; a newer genomix may have written it") from None
        config = build_config(family.config_class, data, path / "config.json")
        task = task_of_architectures(family, data.get("architectures"))
        weights = find_weights(path)
        state_dict = read_weights(weights)
        check_keys(weights, state_dict, expected_state_dict(family, task, config))
        return LoadedCheckpoint(config, state_dict, task, self.name)


register_format(GenomixNative())
