"""Type checks for values read from YAML against a field's annotation (model configs and run recipes).

YAML gives users strings where they meant numbers (``lr: 2e-3`` is text to YAML 1.1), quoted numbers
(``d_model: "128"``) and lists where one value was meant. Such a value would reach a model or the
optimiser and fail far from the file with a message about tensors, or not fail at all. Model configs
(:mod:`genomix.models.registry`) and recipes (:mod:`genomix.train.recipe`) both ask :func:`type_error`
about each key they read, so the key and the file can be named before anything is built.
"""
from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any

_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _accepts(kind: type, value: Any) -> bool:
    """Whether YAML ``value`` is of the scalar ``kind``: a float field takes an int (``lr: 1``), no field
    takes a bool unless it is one (``True`` is an ``int`` in Python, not in a YAML file)."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _numeric_text(value: Any) -> bool:
    """Whether ``value`` is a string that Python reads as a number (``"2e-3"``: YAML 1.1 wants ``2.0e-3``)."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _tuple_error(options: tuple[Any, ...], value: Any) -> str | None:
    """What is wrong with ``value`` for a ``tuple[X, ...]`` or ``tuple[X, Y]`` field (``None``: nothing)."""
    if not isinstance(value, (list, tuple)):
        return f"must be a list, got {value!r}"
    if options[-1] is Ellipsis:
        options = options[:1] * len(value)
    elif len(value) != len(options):
        return f"must be a list of {len(options)} items, got {value!r}"
    return next((f"item {i + 1} {error}" for i, (kind, item) in enumerate(zip(options, value))
                 if (error := type_error(kind, item))), None)


def _dict_error(options: tuple[Any, ...], value: Any) -> str | None:
    """What is wrong with ``value`` for a ``dict[K, V]`` field (``None``: nothing): each key and entry is
    checked like a scalar field (``source_weights: {human: x}``)."""
    if not isinstance(value, dict):
        return f"must be a mapping, got {value!r}"
    key_kind, value_kind = options or (Any, Any)
    for key, item in value.items():
        if error := type_error(key_kind, key):
            return f"key {key!r} {error}"
        if error := type_error(value_kind, item):
            return f"entry {key!r} {error}"
    return None


#: What a union member that is a container accepts, and how a message names it.
_CONTAINERS = {tuple: ((list, tuple), "a list"), dict: (dict, "a mapping")}

#: Annotations checked as ``tuple[X, ...]`` (a YAML or JSON list) and as ``dict[K, V]`` (a mapping).
_SEQUENCES = (tuple, list, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)


def _normalised(kind: Any) -> Any:
    """``kind`` in the two container forms :func:`type_error` checks: ``Sequence[int]``, ``list[int]`` and
    a bare ``list`` become ``tuple[int, ...]`` / ``tuple[Any, ...]``; ``Mapping[K, V]`` and a bare ``dict``
    become ``dict[K, V]`` / ``dict[Any, Any]``. A file holds lists and mappings, whichever of these a
    config's annotation names."""
    origin, options = typing.get_origin(kind) or kind, typing.get_args(kind)
    if origin in _SEQUENCES and not (origin is tuple and options):
        return tuple[options[0] if options else Any, ...]
    if origin in _MAPPINGS:
        return dict[options] if options else dict[Any, Any]
    return kind


def type_error(kind: Any, value: Any) -> str | None:
    """What is wrong with ``value`` for a field annotated ``kind`` (``None``: nothing).

    Scalars (``int``, ``float``, ``bool``, ``str``) are checked by kind, and a union takes a value any of
    its members accepts (``dt_rank: int | str`` takes ``auto`` and ``16``; ``genome: str | tuple[str, ...]``
    a name or a list of names); optional fields also take ``null``, tuple, list and sequence fields a list of
    such scalars, dict and mapping fields a mapping whose keys and entries are checked the same way. Other
    annotations are not checked.
    """
    kind = _normalised(kind)
    origin, options = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        return _tuple_error(options, value)
    if origin is dict:
        return _dict_error(options, value)
    members = tuple(map(_normalised, options)) if origin in (typing.Union, types.UnionType) else (kind,)
    if value is None and type(None) in members:
        return None
    containers = [member for member in members if typing.get_origin(member) in _CONTAINERS]
    for member in containers:
        if isinstance(value, _CONTAINERS[typing.get_origin(member)][0]):
            return type_error(member, value)
    scalars = [k for k in members if k in _KINDS]
    if not (scalars or containers) or any(_accepts(k, value) for k in scalars):
        return None
    hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if float in scalars and _numeric_text(value) else ""
    names = [_KINDS[k] for k in scalars] + [_CONTAINERS[typing.get_origin(m)][1] for m in containers]
    return f"must be {' or '.join(names)}, got {value!r}{hint}"
