"""genomix's own layout: ``config.json`` (``model_type: genomix-*``) + ``model.safetensors``.

This is what ``save_pretrained``/``genomix convert``/``push_to_hub`` write, and what
``transformers.AutoModel*.from_pretrained`` reads once genomix is imported.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import CheckpointError
from ...models.registry import get_family
from . import register_format
from .base import FormatAdapter, LoadedCheckpoint, check_keys, config_for_detection, read_json, read_weights
from .common import expected_state_dict, task_of_architectures

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class GenomixNative(FormatAdapter):
    name = "genomix"
    patterns = ("*.json", "model.safetensors", "*.txt")
    priority = 0

    def detect(self, path: Path) -> bool:
        return self.model_type_of(path).startswith("genomix-")

    def model_type_of(self, path: Path) -> str:
        return str(config_for_detection(path).get("model_type", ""))

    def load(self, path: Path) -> LoadedCheckpoint:
        data = read_json(path / "config.json")
        family = get_family(data["model_type"])
        config = family.config_class.from_dict(data)
        task = task_of_architectures(family, data.get("architectures"))
        weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
        if weights is None:
            raise CheckpointError(f"{path}: config.json found but no weights ({' or '.join(WEIGHT_FILES)})")
        state_dict = read_weights(weights)
        check_keys(weights, state_dict, expected_state_dict(family, task, config))
        return LoadedCheckpoint(config, state_dict, task, self.name)


register_format(GenomixNative())
