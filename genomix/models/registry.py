"""Name → config → model: the one place that knows every family, named size and head.

Named sizes are YAML files in ``configs/models/`` (shipped inside the package as ``genomix/configs``);
each names its ``model_type`` and the family's hyper-parameters. ``build("hyenadna-tiny-1k")`` reads
the YAML, makes the family's config and a model with fresh weights. Families register themselves
with :func:`register_family` when their module is imported; :data:`~genomix.model_types.FAMILY_MODULES`
says which module to import for a ``model_type``, so nothing loads before it is needed.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import typing
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..model_types import FAMILY_MODULES
from .base import GenomixConfig, GenomixPreTrainedModel, check_config_fields
from .config_types import type_error

TASKS = ("base", "causal-lm", "masked-lm", "classification")


@dataclasses.dataclass
class Family:
    """The classes of one backbone family; ``default_task`` is what ``build`` makes when not told."""

    model_type: str
    config_class: type[GenomixConfig]
    models: dict[str, type[GenomixPreTrainedModel]]
    default_task: str = "causal-lm"


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make a family known to :func:`build`, :func:`genomix.from_pretrained` and the Auto* classes."""
    unknown = set(family.models) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task names {sorted(unknown)}; expected some of {TASKS}")
    _FAMILIES[family.model_type] = family
    from ..hub.auto import register_with_auto  # imported late: genomix.hub imports this module

    register_with_auto(family)
    return family


def get_family(model_type: str) -> Family:
    """The :class:`Family` registered under ``model_type`` (``"genomix-hyena"``, ...), importing its module on first
    use; an unknown ``model_type`` is a :class:`~genomix.errors.ConfigError` listing the known ones."""
    if model_type not in _FAMILIES:
        module = FAMILY_MODULES.get(model_type)
        if module is None:
            raise ConfigError(
                f"unknown model_type {model_type!r}; genomix knows {sorted(FAMILY_MODULES)}"
            )
        importlib.import_module(module)
    return _FAMILIES[model_type]


def all_families() -> list[Family]:
    """Import and return every family (used to register them all with transformers)."""
    return [get_family(t) for t in FAMILY_MODULES]


def config_dirs() -> list[Path]:
    """Where named model configs are looked up: ``$GENOMIX_CONFIG_PATH`` entries, then the shipped ones."""
    extra = [Path(p) for p in os.environ.get("GENOMIX_CONFIG_PATH", "").split(os.pathsep) if p]
    return extra + [Path(__file__).resolve().parent.parent / "configs" / "models"]


def available_models() -> list[str]:
    """Names accepted by :func:`build` and ``--model``."""
    names = {p.stem for d in config_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise ConfigError(f"{path}: a model config must be a mapping with a 'model_type' field")
    return data


def config_dict(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Raw config fields of a named size or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"model config {str(path)!r}: no such file (named sizes: {available_models()})")
        return _read_yaml(path)
    for directory in config_dirs():
        candidate = directory / f"{name_or_path}.yaml"
        if candidate.is_file():
            data = _read_yaml(candidate)
            data.setdefault("name", str(name_or_path))
            return data
    close = [n for n in available_models() if str(name_or_path).split("-")[0] in n]
    hint = f" Did you mean one of {close}?" if close else f" Known: {available_models()}"
    raise ConfigError(f"unknown model {str(name_or_path)!r}: no configs/models/{name_or_path}.yaml.{hint}")


@functools.cache
def config_field_types(config_class: type[GenomixConfig]) -> dict[str, Any]:
    """The annotated type of every named ``__init__`` parameter along ``config_class``'s genomix bases (the most
    derived class's annotation wins): what a config file's values are checked against, here for YAML and by
    :func:`genomix.hub.formats.base.build_config` for a checkpoint's JSON."""
    types: dict[str, Any] = {}
    for cls in reversed(config_class.__mro__):
        if issubclass(cls, GenomixConfig) and "__init__" in vars(cls):
            types.update(typing.get_type_hints(cls.__init__))
    for name in ("kwargs", "return"):
        types.pop(name, None)
    return types


def check_config_types(config_class: type[GenomixConfig], data: dict[str, Any], source: str) -> None:
    """Refuse a config value of the wrong type (``d_model: "128"``, ``layer_norm_epsilon: 1e-5``, which YAML
    reads as text) with a :class:`ConfigError` naming ``source`` and the field, before the model is built from
    it (where it would fail inside torch, or not at all)."""
    types = config_field_types(config_class)
    for key, value in data.items():
        error = type_error(types[key], value) if key in types else None
        if error:
            raise ConfigError(f"{source}: field {key} {error}")


def load_config(name_or_path: str | os.PathLike | GenomixConfig, **overrides: Any) -> GenomixConfig:
    """A family config from a name, a YAML path or a config object, with field overrides applied; anything else
    is a :class:`ConfigError` here rather than a ``TypeError`` from deep inside :mod:`pathlib`."""
    if not isinstance(name_or_path, (str, os.PathLike, GenomixConfig)):
        raise ConfigError(
            f"a model must be named by a size name (e.g. 'hyenadna-tiny-1k'), a YAML config path or a genomix "
            f"config object, got {type(name_or_path).__name__} {name_or_path!r:.60}"
        )
    if isinstance(name_or_path, GenomixConfig):
        data, source = name_or_path.to_dict(), f"model config {name_or_path.name!r}"
    else:
        data, source = config_dict(name_or_path), f"model config {str(name_or_path)!r}"
    try:
        family = get_family(overrides.get("model_type", data["model_type"]))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if not isinstance(name_or_path, GenomixConfig):  # a config object's own fields were checked as it was made
        check_config_fields(family.config_class, list(data), source)
        check_config_types(family.config_class, data, source)
    check_config_fields(family.config_class, list(overrides), "config overrides")
    check_config_types(family.config_class, overrides, "config overrides")
    data.update(overrides)
    data.pop("model_type")
    try:
        return family.config_class(**data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def build(
    name_or_config: str | os.PathLike | GenomixConfig, task: str | None = None, **overrides: Any
) -> GenomixPreTrainedModel:
    """A model with fresh weights from a named size, YAML path or config.

    ``task`` is one of ``base``, ``causal-lm``, ``masked-lm``, ``classification``; by default the
    family's own pretraining head.
    """
    config = load_config(name_or_config, **overrides)
    family = get_family(config.model_type)
    task = task or getattr(config, "default_task", None) or family.default_task  # e.g. m2-bert: masked-lm
    if task not in family.models:
        raise ConfigError(
            f"{config.model_type} models have no {task!r} head; available: {sorted(family.models)}"
        )
    return family.models[task](config)
