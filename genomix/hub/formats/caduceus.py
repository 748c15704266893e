"""Caduceus Hub layout (``kuleshov-group/caduceus-*``): ``config.json`` with ``model_type: "caduceus"`` and
``pytorch_model.bin``/``model.safetensors`` (or their sharded index) with keys ``caduceus.backbone.…`` plus
``lm_head.…``.

genomix's Caduceus keeps the Hub's module names below the backbone, so loading strips the ``caduceus.``
prefix; no remote code runs. Classification checkpoints are not a released Hub layout and are not read.
"""
from __future__ import annotations

import re
from pathlib import Path

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
from .mamba_ssm import mamba_fields

_CADUCEUS_FIELDS = ("bidirectional", "bidirectional_strategy", "bidirectional_weight_tie", "rcps",
                    "complement_map")

_TIED_REV = re.compile(r"\.mamba_rev\.(in_proj|out_proj)\.")


class CaduceusFormat(FormatAdapter):
    name = "caduceus"
    signature = "config.json with model_type 'caduceus' + pytorch_model.bin or model.safetensors"
    patterns = ("config.json", *HUB_WEIGHT_PATTERNS)
    priority = 40
    model_type = "genomix-caduceus"

    def detect(self, path: Path) -> bool:
        return config_for_detection(path).get("model_type") == "caduceus"

    def load(self, path: Path) -> LoadedCheckpoint:
        from ...models.caduceus import CaduceusConfig
        from ...models.registry import get_family
        from .common import expected_state_dict

        raw = read_json(path / "config.json")
        fields, names = mamba_fields(raw, path)
        fields.update({k: raw[k] for k in _CADUCEUS_FIELDS if k in raw})
        config = build_config(CaduceusConfig, fields, path / "config.json", names)
        weights = find_weights(path)
        state = {}
        for key, value in read_weights(weights).items():
            state[key[len("caduceus."):] if key.startswith("caduceus.") else key] = value
        if config.bidirectional_weight_tie:  # stored twice on the Hub; genomix keeps the forward copy
            state = {k: v for k, v in state.items() if not _TIED_REV.search(k)}
        if config.tie_word_embeddings:  # the tied head is the embedding matrix
            state.pop("lm_head.weight", None)
            state.pop("lm_head.lm_head.weight", None)
        check_keys(weights, state, expected_state_dict(get_family(config.model_type), "masked-lm", config))
        return LoadedCheckpoint(config=config, state_dict=state, task="masked-lm", source_format=self.name)


def _register() -> None:
    from . import register_format

    register_format(CaduceusFormat())


_register()
