"""Backbones (HyenaDNA, Mamba, Caduceus, Monarch Mixer, a Transformer baseline) and their heads."""
from .base import GenomixConfig, GenomixPreTrainedModel
from .fixed_filters import fixed_filters
from .forward_graph import GraphedForward, graphed_forwards
from .inference_loop import inference_loop
from .registry import Family, available_models, build, get_family, load_config, register_family

__all__ = [
    "Family",
    "GenomixConfig",
    "GenomixPreTrainedModel",
    "GraphedForward",
    "available_models",
    "build",
    "fixed_filters",
    "get_family",
    "graphed_forwards",
    "inference_loop",
    "load_config",
    "register_family",
]
