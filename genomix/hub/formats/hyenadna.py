"""HyenaDNA's original release layout (``LongSafari/hyenadna-*-seqlen``).

``config.json`` has the research code's fields with the Hyena operator's in a nested ``layer`` block
(``_name_: hyena``, ``l_max``, ``w``, ``local_order``...); ``weights.ckpt`` is a Lightning checkpoint
whose ``state_dict`` keys start with ``model.`` and, when ``checkpoint_mixer``/``checkpoint_mlp`` were
on, carry an extra ``.layer.`` (``.mixer.layer.``, ``.mlp.layer.``) from the checkpointing wrapper.

:func:`hyena_state_dict` is the key surgery shared with the ``-hf`` layout: tied LM head and the
implicit filter's shared sine frequency (stored once per use in these files, once in genomix).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError
from ...models.hyena import FAMILY, HyenaConfig, fixed_buffers
from . import register_format
from .base import (
    FormatAdapter,
    LoadedCheckpoint,
    build_config,
    check_keys,
    config_for_detection,
    read_json,
    read_weights,
)
from .common import expected_state_dict

#: ``layer`` fields that only configure training (learning rates, weight decay): not model structure.
TRAINING_ONLY = {"_name_", "lr", "wd", "lr_pos_emb", "modulation_lr", "fused_fft_conv", "fused_bias_fc"}
#: ``layer`` field -> HyenaConfig field.
LAYER_FIELDS = {
    "emb_dim": "emb_dim",
    "filter_order": "filter_order",
    "local_order": "short_filter_order",
    "short_filter_order": "short_filter_order",
    "l_max": "max_seq_len",
    "order": "hyena_order",
    "modulate": "modulate",
    "w": "activation_freq",
    "num_inner_mlps": "num_inner_mlps",
    "train_freq": "train_freq",
    "bias": "use_bias",
    "dropout": "hyena_dropout",
    "filter_dropout": "hyena_filter_dropout",
    "shift": "modulation_shift",
    "fast_decay_pct": "fast_decay_pct",
    "slow_decay_pct": "slow_decay_pct",
    "target": "modulation_target",
    "normalized": "normalized_filter",
}
#: top-level fields -> HyenaConfig field (the rest describe fused kernels or training and are ignored).
TOP_FIELDS = {
    "d_model": "d_model",
    "n_layer": "n_layer",
    "d_inner": "d_inner",
    "vocab_size": "vocab_size",
    "resid_dropout": "resid_dropout",
    "embed_dropout": "embed_dropout",
    "pad_vocab_size_multiple": "pad_vocab_size_multiple",
    "layer_norm_epsilon": "layer_norm_epsilon",
}
_SHARED_FREQ = re.compile(r"(.*\.implicit_filter\.)(\d+)\.freq$")


#: Fields the research code's constructors take without a default (``LMBackbone``'s sizes, ``HyenaOperator``'s
#: ``l_max``): a config without them describes no model, and guessing would build a different one.
REQUIRED_TOP = ("d_model", "n_layer", "d_inner", "vocab_size")
REQUIRED_LAYER = ("l_max",)
#: The research code's defaults where genomix's differ, for fields a config may leave out (``HyenaFilter``'s
#: ``w=1`` and ``emb_dim=3``, ``LMBackbone``'s ``pad_vocab_size_multiple=1``, and the shift of the released
#: code's ``ExponentialModulation``).
ORIGINAL_DEFAULTS = {"activation_freq": 1.0, "emb_dim": 3, "pad_vocab_size_multiple": 1, "modulation_shift": 0.05}


def config_from_original(data: dict[str, Any], source: Path) -> HyenaConfig:
    """A HyenaConfig from the research code's config (nested ``layer`` block); fields it leaves out take the
    research code's defaults, and fields that code requires must be there."""
    layer = data.get("layer")
    if not isinstance(layer, dict) or layer.get("_name_", "hyena") != "hyena":
        raise CheckpointError(f"{source}: expected a 'layer' block with _name_ 'hyena', got {layer!r}")
    unknown = set(layer) - set(LAYER_FIELDS) - TRAINING_ONLY
    if unknown:
        raise CheckpointError(
            f"{source}: layer fields {sorted(unknown)} are not understood; genomix cannot guarantee the "
            "same outputs for this checkpoint"
        )
    absent = [k for k in REQUIRED_TOP if k not in data] + [f"layer.{k}" for k in REQUIRED_LAYER if k not in layer]
    if absent:
        raise CheckpointError(f"{source}: lacks {', '.join(absent)}, which HyenaDNA's config must give; restore "
                              "the checkpoint's original config.json or download the checkpoint again")
    names = {TOP_FIELDS[k]: k for k in data if k in TOP_FIELDS}
    names.update({LAYER_FIELDS[k]: f"layer.{k}" for k in layer if k in LAYER_FIELDS})
    fields = dict(ORIGINAL_DEFAULTS)
    fields.update({TOP_FIELDS[k]: v for k, v in data.items() if k in TOP_FIELDS})
    fields.update({LAYER_FIELDS[k]: v for k, v in layer.items() if k in LAYER_FIELDS})
    return build_config(HyenaConfig, fields, source, names)


def hyena_state_dict(
    state_dict: dict[str, torch.Tensor], config: HyenaConfig, source: Path, prefix: str = "backbone."
) -> dict[str, torch.Tensor]:
    """Fold HyenaDNA's per-use sine frequencies into one and resolve the LM head against the embedding.

    Keys must already be in genomix naming (``backbone.layers...``). Sets
    ``config.tie_word_embeddings`` from the weights: a head equal to the embedding matrix is tied.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        match = _SHARED_FREQ.match(key)
        if match and int(match.group(2)) != 1:
            first = state_dict.get(f"{match.group(1)}1.freq")
            if first is None or not torch.equal(first, value):
                raise CheckpointError(
                    f"{source}: {key} differs from {match.group(1)}1.freq; genomix's HyenaDNA shares one "
                    "sine frequency per implicit filter (as the reference does)"
                )
            continue
        out[key] = value
    head = out.pop("lm_head.weight", None)
    embedding = out.get(f"{prefix}embeddings.word_embeddings.weight")
    if head is not None and embedding is not None and not torch.equal(head, embedding):
        config.tie_word_embeddings = False
        out["lm_head.weight"] = head
    else:
        config.tie_word_embeddings = True
    for key, value in fixed_buffers(config, prefix).items():
        out.setdefault(key, value)
    return out


class HyenaDNAOriginal(FormatAdapter):
    name = "hyenadna"
    signature = "config.json with a 'layer' block + weights.ckpt"
    patterns = ("config.json", "weights.ckpt")
    priority = 20
    model_type = HyenaConfig.model_type

    def detect(self, path: Path) -> bool:
        return isinstance(config_for_detection(path).get("layer"), dict)

    def load(self, path: Path) -> LoadedCheckpoint:
        data = read_json(path / "config.json")
        config = config_from_original(data, path / "config.json")
        raw = read_weights(path / "weights.ckpt")
        renamed = {}
        for key, value in raw.items():
            if not key.startswith("model."):
                raise CheckpointError(f"{path / 'weights.ckpt'}: key {key!r} lacks the 'model.' prefix of this layout")
            key = key[len("model."):]
            if data.get("checkpoint_mixer"):
                key = key.replace(".mixer.layer.", ".mixer.")
            if data.get("checkpoint_mlp"):
                key = key.replace(".mlp.layer.", ".mlp.")
            renamed[key] = value
        state_dict = hyena_state_dict(renamed, config, path / "weights.ckpt")
        check_keys(path / "weights.ckpt", state_dict, expected_state_dict(FAMILY, "causal-lm", config))
        return LoadedCheckpoint(config, state_dict, "causal-lm", self.name)


register_format(HyenaDNAOriginal())
