"""The loader behind every genomix model class's ``from_pretrained`` (``HyenaForCausalLM.from_pretrained(...)``).

transformers' own loader reads genomix's native layout only, and trusts the class it is called on: handed
another family's checkpoint it builds that class with random weights, or fails in a config setter or after its
load report. This one first detects the checkpoint's layout and family, as :func:`genomix.from_pretrained` does:

- another family's checkpoint is refused with a :class:`CheckpointError` naming both, before any weight is read;
- this family's native layout goes on to transformers' loader, with all of its options, and is refused when it
  lacks backbone weights that its config asks for (transformers would start them at random);
- another layout of this family (HyenaDNA original or ``-hf``, mamba_ssm, Caduceus) is converted by its adapter
  and loaded into this class's head, as ``genomix.from_pretrained(..., task=<this head>)`` would.

``transformers.AutoModel*`` pass the config they have read (and picked the class from). A local genomix-layout
folder loaded that way (or with a ``config`` of the caller's) gets the same checks and messages as the native
layout above; anything else given a ``config`` goes to transformers' loader unchecked.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..errors import CheckpointError, ConfigError
from ..model_types import FAMILY_MODULES
from ..models.base import GenomixPreTrainedModel
from ..models.registry import get_family
from . import from_pretrained
from .formats import FormatAdapter, detect_format, load_checkpoint
from .formats.base import summarise
from .formats.common import expected_state_dict
from .formats.genomix_native import GenomixNative
from .integrity import check_weights_folder, checked_by_the_end
from .resolve import resolve

#: transformers' ``from_pretrained`` options that say where the checkpoint is (passed on to :func:`resolve`).
HUB_OPTIONS = ("revision", "cache_dir", "local_files_only", "token")


def _task_of(cls: type[GenomixPreTrainedModel]) -> str | None:
    """The task (``causal-lm``, ``base``, ...) whose head ``cls`` is in its family, or None for other classes."""
    family = get_family(cls.config_class.model_type)
    return next((task for task, model_class in family.models.items() if model_class is cls), None)


def _check_family(cls: type[GenomixPreTrainedModel], name: str, adapter: FormatAdapter, model_type: str) -> None:
    """Refuse a checkpoint whose family is not ``cls``'s, naming both and the loaders that would read it."""
    expected = cls.config_class.model_type
    if model_type == expected:
        return
    hint = f"genomix.from_pretrained({name!r}) picks the family from the checkpoint"
    task = _task_of(cls) if expected in FAMILY_MODULES else None
    if model_type in FAMILY_MODULES and task in get_family(model_type).models:
        hint += f", or use {get_family(model_type).models[task].__name__}.from_pretrained"
    raise CheckpointError(
        f"{name}: a {model_type or 'unknown family'} checkpoint ({adapter.name} layout), which {cls.__name__} "
        f"({expected}) cannot load; {hint}"
    )


def _load_native(
    cls: type[GenomixPreTrainedModel],
    name: str,
    directory: Path,
    native_loader: Callable[..., Any],
    model_args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """transformers' loader on a genomix-layout checkpoint (in ``directory``), refusing one that lacks backbone
    weights its config asks for (e.g. ``n_layer`` raised by hand): transformers would start them at random with
    only a printed report. A fresh head on a pretrained backbone (a causal-LM checkpoint for classification) is
    fine. When transformers fails on the files (truncated weights, a missing shard, a bad config value), genomix's
    own reader says which file is wrong and what to do, instead of transformers' exception. Weights files whose
    SHA-256 is recorded are checked before the model is returned (:mod:`genomix.hub.integrity`): transformers does
    not."""
    wants_info = kwargs.pop("output_loading_info", False)
    given_config = kwargs.get("config")
    with _held_back(TRANSFORMERS_LOADER_LOG) as report:
        model, info = _native_load(name, directory, native_loader, model_args, kwargs, report)
        _refuse_weights_of_another_model(cls, name, model, info, given_config)
        report.release()  # a load that stands: transformers' report (a fresh head's new weights) is the user's news
    return (model, info) if wants_info else model


def _native_load(name: str, directory: Path, native_loader: Callable[..., Any], model_args: tuple[Any, ...],
                 kwargs: dict[str, Any], report: "_HeldRecords") -> tuple[Any, dict[str, Any]]:
    """transformers' loader and its loading info, with the weights' recorded hashes checked as it reads them; a
    failure on damaged files is genomix's reader's message, any other is transformers' own (its held ``report``
    released to explain it)."""
    with checked_by_the_end():
        check_weights_folder(directory)
        try:
            return native_loader(name, *model_args, output_loading_info=True, **kwargs)
        except Exception:
            problem = _files_problem(directory)
            if problem is None:  # the files are fine: the failure is the call's own, which its report explains
                report.release()
                raise
            raise problem from None


def _refuse_weights_of_another_model(cls: type[GenomixPreTrainedModel], name: str, model: Any,
                                     info: dict[str, Any], given_config: Any = None) -> None:
    """Refuse a loaded checkpoint that lacks backbone weights its config asks for, holds weights no model of its
    family has, or holds NaN or infinite weights. ``given_config``: the ``config`` the caller passed, which the
    refusal names instead of the folder's ``config.json`` where they differ (``AutoModel*`` pass the latter)."""
    prefix = None if _task_of(cls) == "base" else cls.base_model_prefix + "."
    missing = sorted(key for key in info["missing_keys"] if prefix is None or key.startswith(prefix))
    # the family's key names mean a meta-device model per head: built only when transformers reports strays
    unexpected = sorted(set(info["unexpected_keys"]) - _family_keys(model.config)) if info["unexpected_keys"] else []
    if missing or unexpected:  # said here instead of in transformers' report of the same weights, which is dropped
        # only now, as it reads config.json again: which config the refusal blames
        mine = _differs_from_folder(given_config, name)
        problems = []
        if missing:
            source = "the config passed (config=)" if mine else "its config.json"
            problems.append(f"lacks {len(missing)} backbone weight(s) that {source} asks for "
                            f"({summarise(missing, 4)})")
        if unexpected:
            problems.append(f"holds {len(unexpected)} weight(s) no {model.config.model_type} model has "
                            f"({summarise(unexpected, 4)})")
        advice = "pass the config of these weights" if mine else "re-save or re-download the checkpoint"
        raise CheckpointError(f"{name}: the checkpoint {' and '.join(problems)}; the config and the weights are not "
                              f"of one model: {advice}")
    broken = [key for key, value in model.state_dict().items()
              if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if broken:
        raise CheckpointError(f"{name}: {len(broken)} weight(s) hold NaN or infinite values ({summarise(broken, 4)}): "
                              "the file is corrupt or was saved from a diverged run; re-download it or use an earlier "
                              "checkpoint")


def _differs_from_folder(config: Any, folder: str) -> bool:
    """Whether ``config`` (one the caller passed, or None) says something else than ``folder``'s own config.json,
    fields transformers adds as it reads one (``_name_or_path``, its version) aside."""
    if config is None:
        return False

    def said(cfg: Any) -> dict[str, Any]:
        return {k: v for k, v in cfg.to_dict().items() if not k.startswith("_") and k != "transformers_version"}
    return said(config) != said(type(config).from_pretrained(folder))


#: The logger transformers' ``from_pretrained`` writes its load report to (missing, unexpected, new weights).
TRANSFORMERS_LOADER_LOG = "transformers.modeling_utils"


class _HeldRecords(list):
    """Log records held back from a logger (:func:`_held_back`) until :meth:`release` emits them through it."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        """The logger's filter while records are held: keep ``record`` here, emit nothing."""
        self.append(record)
        return False

    def release(self) -> None:
        """Stop holding records back, and emit those held."""
        self.logger.removeFilter(self)
        for record in self:
            self.logger.handle(record)
        self.clear()


@contextlib.contextmanager
def _held_back(name: str) -> Iterator[_HeldRecords]:
    """Hold back the records of logger ``name`` (transformers' load report) from the block on, until they are
    released (:meth:`_HeldRecords.release`) when the load stands; those of a load genomix refuses are dropped at
    the block's end: the report of a checkpoint refused for the same weights would print ahead of the refusal,
    as if it had loaded."""
    held = _HeldRecords(logging.getLogger(name))
    held.logger.addFilter(held)
    try:
        yield held
    finally:
        held.logger.removeFilter(held)  # what was not released is dropped


def _family_keys(config: Any) -> set[str]:
    """Every weight name a model of ``config``'s family may hold, with and without the backbone prefix: what a
    checkpoint of any head of the family saves (a head dropped on load is no error, a stray weight is)."""
    family = get_family(config.model_type)
    keys: set[str] = set()
    for task, model_class in family.models.items():
        try:
            names = expected_state_dict(family, task, config)
        except ConfigError:  # a head this config cannot have (M2-BERT has no causal one)
            continue
        keys |= set(names) | {key.removeprefix(model_class.base_model_prefix + ".") for key in names}
    return keys


def _files_problem(directory: Path) -> CheckpointError | None:
    """What genomix's reader of the native layout finds wrong with the checkpoint in ``directory`` (None: nothing)."""
    try:
        load_checkpoint(directory, GenomixNative.name)
    except CheckpointError as exc:
        return exc
    return None


def _local_native_folder(name_or_path: str | os.PathLike) -> Path | None:
    """``name_or_path`` as a local folder in genomix's native layout, or None (a Hub id, another layout, or a
    folder without a readable config.json: those are left to transformers when the caller hands a config)."""
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        return None
    try:
        return path if isinstance(detect_format(path), GenomixNative) else None
    except CheckpointError:
        return None


def load_for_class(
    cls: type[GenomixPreTrainedModel],
    name_or_path: str | os.PathLike | None,
    model_args: tuple[Any, ...],
    kwargs: dict[str, Any],
    native_loader: Callable[..., GenomixPreTrainedModel],
) -> GenomixPreTrainedModel:
    """``cls.from_pretrained(name_or_path, *model_args, **kwargs)`` for a genomix model class ``cls``;
    ``native_loader`` is transformers' ``from_pretrained`` bound to ``cls``."""
    if name_or_path is None:
        return native_loader(name_or_path, *model_args, **kwargs)
    if kwargs.get("config") is not None:
        directory = _local_native_folder(name_or_path)
        if directory is None:
            return native_loader(name_or_path, *model_args, **kwargs)
        return _load_native(cls, str(name_or_path), directory, native_loader, model_args, kwargs)
    name = str(name_or_path)
    directory = resolve(name_or_path, **{key: kwargs.get(key) for key in HUB_OPTIONS})
    adapter = detect_format(directory)
    _check_family(cls, name, adapter, adapter.model_type_of(directory))
    if isinstance(adapter, GenomixNative):
        return _load_native(cls, name, directory, native_loader, model_args, kwargs)
    task = _task_of(cls)
    if task is None:
        raise CheckpointError(
            f"{name}: {cls.__name__} reads genomix-layout checkpoints only, and this one is in the {adapter.name} "
            f"layout; load it with genomix.from_pretrained({name!r}) or convert it first (genomix convert)"
        )
    if model_args:
        raise ConfigError(f"{cls.__name__}.from_pretrained: positional model arguments apply to genomix-layout "
                          f"checkpoints only; {name} is in the {adapter.name} layout (pass config fields by name)")
    overrides = {key: value for key, value in kwargs.items() if key not in HUB_OPTIONS}
    return from_pretrained(directory, task=task, format=adapter.name, **overrides)
