"""Helpers several adapters need: the key set a config implies, the task of a saved model."""
from __future__ import annotations

from typing import Sequence

import torch

from ...models.base import GenomixConfig
from ...models.registry import Family


def expected_state_dict(family: Family, task: str, config: GenomixConfig) -> dict[str, torch.Tensor]:
    """Keys and shapes of ``family.models[task](config)``, built on the meta device (no memory, fast)."""
    with torch.device("meta"):
        model = family.models[task](config)
    return model.state_dict()


def task_of_architectures(family: Family, architectures: Sequence[str] | None) -> str:
    """The task whose class name is ``architectures[0]`` (what ``save_pretrained`` records)."""
    names = {cls.__name__: task for task, cls in family.models.items()}
    for arch in architectures or ():
        if arch in names:
            return names[arch]
    return family.default_task
