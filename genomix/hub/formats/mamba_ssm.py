"""mamba_ssm's ``MambaLMHeadModel`` layout: ``config.json`` (``MambaConfig`` fields, mixer options in
``ssm_cfg``) + ``pytorch_model.bin`` or ``model.safetensors`` (or their sharded index) with keys ``backbone.…`` and
``lm_head.weight``.

genomix's Mamba uses mamba_ssm's parameter names, so only the config is translated. Only Mamba-1 mixers
without attention layers or MLPs are supported; anything else is refused with a CheckpointError.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import CheckpointError
from .base import (
    HUB_WEIGHT_PATTERNS,
    FormatAdapter,
    LoadedCheckpoint,
    build_config,
    check_keys,
    config_for_detection,
    find_weights,
    json_object,
    read_json,
    read_weights,
)

#: mamba_ssm ``ssm_cfg`` entries genomix's config takes over (the rest select kernels, not math).
SSM_FIELDS = ("d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max", "dt_init", "dt_scale",
              "dt_init_floor", "conv_bias", "bias")
#: Top-level fields shared by mamba_ssm's and Caduceus' configs.
TOP_FIELDS = ("d_model", "n_layer", "vocab_size", "rms_norm", "residual_in_fp32", "fused_add_norm",
              "pad_vocab_size_multiple", "norm_epsilon")
_INIT_FIELDS = ("initializer_range", "rescale_prenorm_residual", "n_residuals_per_layer")


def mamba_fields(raw: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """genomix Mamba config fields from a mamba_ssm/Caduceus-style config dict, and what the file calls each
    (``d_state`` -> ``ssm_cfg.d_state``) for :func:`~.base.build_config`'s messages."""
    source = path / "config.json"
    ssm = json_object(raw, "ssm_cfg", source)
    layer = ssm.pop("layer", "Mamba1")
    if layer != "Mamba1":
        raise CheckpointError(f"{source}: ssm_cfg.layer={layer!r}; genomix implements Mamba1 only")
    init = json_object(raw, "initializer_cfg", source)
    fields = {k: raw[k] for k in TOP_FIELDS if k in raw}
    names = {k: k for k in fields}
    for block, values, keys in (("ssm_cfg", ssm, SSM_FIELDS), ("initializer_cfg", init, _INIT_FIELDS)):
        fields.update({k: values[k] for k in keys if k in values})
        names.update({k: f"{block}.{k}" for k in keys if k in values})
    if "tie_embeddings" in raw:
        fields["tie_word_embeddings"] = bool(raw["tie_embeddings"])
    return fields, names


class MambaSSMFormat(FormatAdapter):
    name = "mamba_ssm"
    signature = "config.json without model_type, with d_model, n_layer and ssm_cfg + pytorch_model.bin"
    patterns = ("config.json", *HUB_WEIGHT_PATTERNS)
    priority = 40
    model_type = "genomix-mamba"

    def detect(self, path: Path) -> bool:
        raw = config_for_detection(path)
        return "model_type" not in raw and "ssm_cfg" in raw and "d_model" in raw and "n_layer" in raw

    def load(self, path: Path) -> LoadedCheckpoint:
        from ...models.mamba import MambaConfig
        from ...models.registry import get_family
        from .common import expected_state_dict

        raw = read_json(path / "config.json")
        if raw.get("d_intermediate", 0) or raw.get("attn_layer_idx"):
            raise CheckpointError(
                f"{path / 'config.json'}: MLP (d_intermediate) or attention layers (attn_layer_idx) are not "
                "supported by genomix's Mamba; only pure Mamba-1 stacks load"
            )
        fields, names = mamba_fields(raw, path)
        config = build_config(MambaConfig, fields, path / "config.json", names)
        weights = find_weights(path)
        state = read_weights(weights)
        if config.tie_word_embeddings:
            state.pop("lm_head.weight", None)  # the tied head is the embedding matrix
        check_keys(weights, state, expected_state_dict(get_family(config.model_type), "causal-lm", config))
        return LoadedCheckpoint(config=config, state_dict=state, task="causal-lm", source_format=self.name)


def _register() -> None:
    from . import register_format

    register_format(MambaSSMFormat())


_register()
