"""Backbones (HyenaDNA, Mamba, Caduceus, Monarch Mixer, a Transformer baseline) and their heads."""
from .base import GenomixConfig, GenomixPreTrainedModel
from .fixed_filters import fixed_filters
from .registry import Family, available_models, build, get_family, load_config, register_family

__all__ = [
    "Family",
    "GenomixConfig",
    "GenomixPreTrainedModel",
    "available_models",
    "build",
    "fixed_filters",
    "get_family",
    "load_config",
    "register_family",
]
