"""Resuming long-running commands: what changed since a run was started.

Every resumable command (``pretrain``, ``finetune``, ``icl``, ``embed``, ``score-variants``) records the settings
it was started with and refuses to continue under other ones, naming each change as ``key: old -> new``
(:func:`changed_settings`, one format everywhere), so that no result mixes two sets of settings. This lives in
its own module, not in :mod:`genomix.outputs` (checks on an output *path*), because the training commands
compare settings with no output file involved.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

#: How a setting that one side lacks (absent, None or empty) is shown in a change list.
UNSET = "-"


def flat_settings(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of keys after ``prefix`` (``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``),
    so that a change deep in a recipe is named by its path instead of shown as two whole sub-mappings."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        out.update(flat_settings(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {f"{prefix}{key}": value})
    return out


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any], keys: Iterable[str] | None = None) -> list[str]:
    """``key: old -> new`` for each of ``keys`` (default: every key of either mapping, sorted) whose values
    differ, in that order; a value one side lacks shows as :data:`UNSET`."""
    keys = sorted(set(old) | set(new)) if keys is None else keys
    return [f"{key}: {_shown(old.get(key))} -> {_shown(new.get(key))}" for key in keys if old.get(key) != new.get(key)]


def _shown(value: Any) -> str:
    text = "" if value is None else str(value)
    return text or UNSET


__all__ = ["UNSET", "changed_settings", "flat_settings"]
