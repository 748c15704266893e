"""HyenaDNA's ``-hf`` layout (``LongSafari/hyenadna-*-seqlen-hf``): flat ``config.json`` with
``model_type: hyenadna`` and ``pytorch_model.bin`` or ``model.safetensors`` (or their sharded index) whose keys are
``backbone.…`` (base model) or ``hyena.backbone.…`` (causal-LM and classification wrappers, with
``lm_head.weight`` / ``score.weight``). Below ``backbone`` the names equal the original layout's.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import CheckpointError
from ...models.hyena import FAMILY, HyenaConfig
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
from .common import expected_state_dict
from .hyenadna import hyena_state_dict

#: ``-hf`` config fields with the same meaning in HyenaConfig.
SAME_FIELDS = (
    "d_model", "n_layer", "d_inner", "vocab_size", "max_seq_len", "emb_dim", "filter_order",
    "short_filter_order", "hyena_order", "activation_freq", "num_inner_mlps", "train_freq", "use_bias",
    "pad_vocab_size_multiple", "embed_dropout", "hyena_dropout", "hyena_filter_dropout",
    "layer_norm_epsilon", "initializer_range", "pad_token_id", "id2label", "label2id", "problem_type",
)
#: The ``-hf`` ``HyenaConfig``'s defaults where genomix's differ, for fields a config.json leaves out: the
#: reference builds those models, so a missing ``max_seq_len`` (the positional features' length) or
#: ``activation_freq`` must mean what it means there.
HF_DEFAULTS = {"d_model": 256, "n_layer": 12, "max_seq_len": 1024, "emb_dim": 3, "activation_freq": 1.0}
_WRAPPED = ("backbone.", "lm_head.", "score.")


class HyenaDNAHF(FormatAdapter):
    name = "hyenadna-hf"
    signature = "config.json with model_type 'hyenadna' + pytorch_model.bin or model.safetensors"
    patterns = ("config.json", *HUB_WEIGHT_PATTERNS)
    priority = 30
    model_type = HyenaConfig.model_type

    def detect(self, path: Path) -> bool:
        return config_for_detection(path).get("model_type") == "hyenadna"

    def load(self, path: Path) -> LoadedCheckpoint:
        data = read_json(path / "config.json")
        fields = {**HF_DEFAULTS, **{k: data[k] for k in SAME_FIELDS if k in data}}
        weights = find_weights(path)
        raw = read_weights(weights)
        if any(k.startswith("hyena.backbone.") for k in raw):
            raw = {k.removeprefix("hyena."): v for k, v in raw.items()}
        odd = sorted(k for k in raw if not k.startswith(_WRAPPED))
        if odd or not any(k.startswith("backbone.") for k in raw):
            raise CheckpointError(f"{weights}: not HyenaDNA -hf weights: keys must be 'backbone.…' or "
                                  f"'hyena.backbone.…' (plus lm_head/score), found {odd[:5] or 'no backbone keys'}")
        task = "causal-lm"
        if "score.weight" in raw:
            task = "classification"
            raw["score.proj.weight"] = raw.pop("score.weight")
            fields.update(num_labels=raw["score.proj.weight"].shape[0], pooling="last", classifier_bias=False)
        elif "lm_head.weight" not in raw:
            task = "base"
        config = build_config(HyenaConfig, fields, path / "config.json")
        state_dict = hyena_state_dict(raw, config, weights)
        if task == "base":
            state_dict = {k.removeprefix("backbone."): v for k, v in state_dict.items()}
        check_keys(weights, state_dict, expected_state_dict(FAMILY, task, config))
        return LoadedCheckpoint(config, state_dict, task, self.name)


register_format(HyenaDNAHF())
