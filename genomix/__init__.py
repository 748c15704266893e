"""genomix: long-context DNA foundation models with fast kernels, genome stores and pretraining.

Heavy submodules load lazily (PEP 562), so ``import genomix`` stays fast and never needs a GPU. It still
makes transformers' ``Auto*`` classes load genomix checkpoints: :mod:`genomix.model_types` registers each
family when transformers first looks its ``model_type`` up, importing nothing before then.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .model_types import teach_transformers

__version__ = "0.1.0"

_LAZY_ATTRS = {
    "Tokenizer": ("genomix.tokenizer", "Tokenizer"),
    "from_pretrained": ("genomix.hub", "from_pretrained"),
    "GenomixError": ("genomix.errors", "GenomixError"),
}
_LAZY_MODULES = {"genome", "models", "hub", "train", "tasks", "variants", "embed", "kernels", "tokenizer", "errors",
                 "cli"}

__all__ = sorted(_LAZY_ATTRS) + sorted(_LAZY_MODULES) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from . import genome, hub, kernels, models  # noqa: F401
    from .errors import GenomixError  # noqa: F401
    from .hub import from_pretrained  # noqa: F401
    from .tokenizer import Tokenizer  # noqa: F401

teach_transformers()


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        module, attr = _LAZY_ATTRS[name]
        value = getattr(importlib.import_module(module), attr)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"genomix.{name}")
    else:
        raise AttributeError(f"module 'genomix' has no attribute {name!r}")
    globals()[name] = value
    return value
