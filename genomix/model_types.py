"""Every genomix ``model_type``, the module that defines it, and how transformers learns of them on demand.

``import genomix`` calls :func:`teach_transformers`, so that ``transformers.AutoConfig`` /
``AutoModel*`` / ``AutoTokenizer`` ``.from_pretrained`` load a genomix directory with no other genomix
import. This module uses the standard library only: registering eagerly would import torch and
transformers' modeling code (about 2 s) on every ``import genomix`` and every CLI start.

transformers has no lazy registration for out-of-tree model types (``AutoConfig.register`` takes the
config class itself). What it has is one table, ``CONFIG_MAPPING``, that every ``Auto*.from_pretrained``
asks for ``config.json``'s ``model_type`` before anything else; registered classes live in its
``_extra_content`` dict, checked with ``in`` before each lookup. Once transformers has loaded that table,
its ``_extra_content`` becomes an :class:`_OnDemandConfigs`, which imports a genomix family the first
time its ``model_type`` is asked for; importing a family registers its config, heads and tokenizer with
every ``Auto*`` class (:func:`genomix.models.registry.register_family`), so the model lookup that follows
the config finds them too.

A tokenizer folder saved on its own has no ``config.json``: ``AutoTokenizer`` finds its class by the name in
``tokenizer_config.json`` instead, so transformers' table of tokenizer classes by name gets the same on-demand view
(:class:`_OnDemandTokenizerClasses`; :class:`_OnDemandTokenizerMapping` for transformers 4).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any, Callable

FAMILY_MODULES = {
    "genomix-hyena": "genomix.models.hyena",
    "genomix-mamba": "genomix.models.mamba",
    "genomix-caduceus": "genomix.models.caduceus",
    "genomix-m2": "genomix.models.m2",
    "genomix-transformer": "genomix.models.transformer",
}
CONFIG_AUTO_MODULE = "transformers.models.auto.configuration_auto"
TOKENIZER_AUTO_MODULE = "transformers.models.auto.tokenization_auto"
#: ``tokenizer_config.json``'s ``tokenizer_class`` for a genomix tokenizer (``genomix.tokenizer.Tokenizer``).
TOKENIZER_CLASS = "Tokenizer"


class _OnDemandConfigs(dict):
    """transformers' dict of registered config classes, which imports (and so registers) a genomix family
    the first time its ``model_type`` is looked up."""

    def __contains__(self, model_type: object) -> bool:
        if model_type in FAMILY_MODULES and not super().__contains__(model_type):
            importlib.import_module(FAMILY_MODULES[model_type])
        return super().__contains__(model_type)


def _look_up_on_demand(configuration_auto: ModuleType) -> None:
    """Give transformers' ``CONFIG_MAPPING`` the on-demand view of its registered configs (idempotent)."""
    mapping = getattr(configuration_auto, "CONFIG_MAPPING", None)
    extra = getattr(mapping, "_extra_content", None)
    # A transformers whose internals moved is left alone: importing genomix.hub or a family still registers.
    if isinstance(extra, dict) and not isinstance(extra, _OnDemandConfigs):
        mapping._extra_content = _OnDemandConfigs(extra)


def _register_families() -> None:
    """Register every genomix family (config, heads, tokenizer) with transformers' ``Auto*`` classes."""
    importlib.import_module("genomix.hub")


class _OnDemandTokenizerClasses(dict):
    """transformers 5's tokenizer classes by name, which registers genomix's the first time its name is asked for:
    a tokenizer folder saved alone has no ``config.json`` whose ``model_type`` would have registered it."""

    def __contains__(self, name: object) -> bool:
        if name == TOKENIZER_CLASS and not super().__contains__(name):
            _register_families()
        return super().__contains__(name)


class _OnDemandTokenizerMapping(dict):
    """transformers 4's registered tokenizers by config class, which registers genomix's before being searched by
    class name (the last place ``tokenizer_class_from_name`` looks)."""

    def items(self):  # type: ignore[override]
        _register_families()
        return super().items()

    def values(self):  # type: ignore[override]
        _register_families()
        return super().values()


def _find_tokenizer_on_demand(tokenization_auto: ModuleType) -> None:
    """Give transformers' tokenizer-class lookup by name the on-demand view (idempotent)."""
    by_name = getattr(tokenization_auto, "REGISTERED_TOKENIZER_CLASSES", None)
    if isinstance(by_name, dict):
        if not isinstance(by_name, _OnDemandTokenizerClasses):
            tokenization_auto.REGISTERED_TOKENIZER_CLASSES = _OnDemandTokenizerClasses(by_name)
        return
    mapping = getattr(tokenization_auto, "TOKENIZER_MAPPING", None)
    extra = getattr(mapping, "_extra_content", None)
    if isinstance(extra, dict) and not isinstance(extra, _OnDemandTokenizerMapping):
        mapping._extra_content = _OnDemandTokenizerMapping(extra)


class _ThenCall:
    """A loader that runs ``callback(module)`` after the wrapped loader has executed the module."""

    def __init__(self, loader: Any, callback: Callable[[ModuleType], None]) -> None:
        self._loader, self._callback = loader, callback

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._callback(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ... for inspect and friends
        return getattr(self._loader, name)


class _WhenImported:
    """A one-shot ``sys.meta_path`` finder: lets the other finders find ``name`` and wraps the loader they
    return, so ``callback`` runs once the module has been executed, whoever imports it."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenCall(spec.loader, self.callback)
        return spec


def _when_loaded(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Run ``callback`` on module ``name`` now if it is loaded, else once it is (one waiting finder per name)."""
    if name in sys.modules:
        callback(sys.modules[name])
    elif not any(isinstance(finder, _WhenImported) and finder.name == name for finder in sys.meta_path):
        sys.meta_path.insert(0, _WhenImported(name, callback))


def teach_transformers() -> None:
    """Make transformers' ``Auto*`` classes resolve genomix model types and genomix's tokenizer class, now if
    transformers' auto modules are loaded, else when they load; imports nothing itself."""
    _when_loaded(CONFIG_AUTO_MODULE, _look_up_on_demand)
    _when_loaded(TOKENIZER_AUTO_MODULE, _find_tokenizer_on_demand)
