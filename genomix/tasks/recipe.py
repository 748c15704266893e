"""Fine-tuning recipes: one YAML file per recipe in ``configs/finetune/``, read into a dataclass.

A recipe says how to fine-tune (optimiser, schedule, batch, epochs, sequence handling, model selection);
the model and the task come from the command line. Unknown keys are an error, as for pretraining.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import yaml

from ..errors import ConfigError
from ..train.recipe import (OptimConfig, check_field_types, check_gradient_clip, check_learning_rate, check_num_workers,
                            check_precision, check_seed, config_dirs, from_mapping, read_named_yaml)
from .metrics import METRICS

TRUNCATION = ("error", "keep-start", "keep-end")
# what ``null`` means for the optional counts, as their error messages say
_NULL_MEANS = {"eval_batch_size": "batch_size", "train_rows": "all", "max_length": "the model's max_seq_len"}


@dataclasses.dataclass
class FinetuneRecipe:
    """Everything a fine-tuning run needs besides the model, the task and the hardware.

    - ``max_epochs`` passes over the training split; the development split is scored after each, and the
      checkpoint with the best ``monitor`` metric is the one tested and exported.
    - ``max_length``: the longest input (default: the model's ``max_seq_len``). Longer sequences are an
      error unless ``truncation`` says which end to keep.
    - ``rc_aug``: train on the reverse complement of each sequence with probability 1/2.
    - ``pooling`` / ``classifier_dropout``: override the model config's head settings (``None``: keep).
    - ``train_rows``: use only the first rows of the training split (quick runs; ``None``: all).
    """

    optim: OptimConfig = dataclasses.field(default_factory=lambda: OptimConfig(lr=6e-4, weight_decay=0.1,
                                                                               warmup_fraction=0.1, min_lr_ratio=0.0))
    batch_size: int = 128
    eval_batch_size: int | None = None
    max_epochs: int = 10
    monitor: str = "mcc"
    max_length: int | None = None
    truncation: str = "error"
    rc_aug: bool = False
    pooling: str | None = None
    classifier_dropout: float | None = None
    gradient_clip: float = 1.0
    precision: str | None = None
    seed: int = 0
    train_rows: int | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.monitor not in METRICS:
            raise ConfigError(f"recipe field monitor must be one of {METRICS}, got {self.monitor!r}")
        if self.truncation not in TRUNCATION:
            raise ConfigError(f"recipe field truncation must be one of {TRUNCATION}, got {self.truncation!r}")
        for name in ("batch_size", "max_epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"recipe field {name} must be a positive integer, got {getattr(self, name)}")
        for name in ("eval_batch_size", "train_rows", "max_length"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"recipe field {name} must be a positive integer (or null: "
                                  f"{_NULL_MEANS[name]}), got {getattr(self, name)}")
        if self.classifier_dropout is not None and not 0 <= self.classifier_dropout < 1:
            raise ConfigError("recipe field classifier_dropout must be a probability in [0, 1) (or null: the "
                              f"model's own), got {self.classifier_dropout}")
        check_precision(self.precision)
        check_seed(self.seed)
        check_num_workers(self.num_workers)
        check_gradient_clip(self.gradient_clip)
        check_learning_rate(self.optim)

    @property
    def evaluation_batch_size(self) -> int:
        """Rows per batch when scoring dev and test: ``eval_batch_size``, else ``batch_size``."""
        return self.eval_batch_size or self.batch_size

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["optim"]["betas"] = list(data["optim"]["betas"])
        data["optim"]["no_decay"] = list(data["optim"]["no_decay"])
        return data


def load_finetune_recipe(name_or_path: str | os.PathLike, **overrides: Any) -> FinetuneRecipe:
    """A recipe from a shipped name (``gue``, ``quick``…) or a YAML path; ``overrides`` replace top-level
    fields (``None`` values are ignored)."""
    data, where = read_named_yaml(name_or_path, config_dirs("GENOMIX_FINETUNE_RECIPE_PATH", "finetune"),
                                  "fine-tuning recipe", **overrides)
    check_field_types(FinetuneRecipe, data, where)
    return from_mapping(FinetuneRecipe, data, where, {"optim": OptimConfig})


def dump_finetune_recipe(recipe: FinetuneRecipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
