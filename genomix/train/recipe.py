"""Pretraining recipes: one YAML file per run recipe in ``configs/pretrain/``, read into dataclasses.

A recipe says *how* to train (optimiser, schedule, batch, sequence-length warm-up, data split,
checkpoint cadence); the model size comes from ``configs/models/`` by name. Unknown keys are an error
so that a typo in a recipe never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import ConfigError
from ..models.config_types import type_error

TASKS = ("causal-lm", "masked-lm")


@dataclasses.dataclass
class OptimConfig:
    """AdamW with decoupled weight decay and a linear warm-up then cosine decay of the learning rate.

    Parameters whose qualified name contains one of ``no_decay`` (case-insensitive), and every 0-d/1-d
    parameter, get no weight decay (HyenaDNA excludes its implicit filters, biases and norms).
    """

    lr: float = 6e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    no_decay: tuple[str, ...] = ("filter", "bias", "norm")
    warmup_fraction: float = 0.01
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        """Refuse values that torch's AdamW refuses in a traceback once the run has started (a negative rate, a
        beta of 1.5), or takes without a word and trains wrongly with: a negative weight decay (passed per
        parameter group, which skips torch's own check), a warm-up longer than the run, a schedule whose floor is
        above its peak."""
        if not 0 <= self.lr < math.inf:  # 0 is a frozen model's (tests); a recipe asks for more: check_learning_rate
            raise ConfigError(f"recipe field optim.lr must be a positive learning rate, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(f"recipe field optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        for name in ("weight_decay", "eps"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"recipe field optim.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("warmup_fraction", "min_lr_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"recipe field optim.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclasses.dataclass
class WarmupConfig:
    """Sequence-length warm-up: start at ``start_seq_len`` and double every ``stage_epochs`` epochs.

    ``start_seq_len: null`` (or a start length >= the target) trains at the target length throughout.
    """

    start_seq_len: int | None = None
    stage_epochs: int = 1


def genome_value(genome: str | Sequence[str]) -> str | tuple[str, ...]:
    """A recipe's ``data.genome`` in its one form: a name or path as a string, several FASTA files as a tuple of
    paths (a list of one is that one path), so that the YAML list, ``--genome A.fa B.fa`` and a resumed run's
    saved recipe compare equal."""
    if isinstance(genome, str):
        return genome
    paths = tuple(str(path) for path in genome)
    if not paths:
        raise ConfigError("recipe field data.genome must name a genome, got an empty list")
    return paths[0] if len(paths) == 1 else paths


@dataclasses.dataclass
class DataConfig:
    """Where windows come from: a genome (registry name, FASTA path, folder of FASTA shards, store path, or a
    list of FASTA files) and its split.

    ``bed`` is a BED file of train/valid/test intervals (HyenaDNA's ``sequences_human.bed`` layout) that
    replaces the store's own split. Without it, ``valid_contigs``/``test_contigs`` are held out whole, or
    ``holdout_fraction`` cuts every contig (its last fraction to test, the fraction before that to valid, the
    rest to train); with none of these the store's own split is used: the registry's BED or held-out
    chromosomes, else the 5 % cut ``genomix genome prepare`` makes (a single-contig genome such as the demo).

    A list of several FASTA files makes one store whose contigs are named ``<file stem>/<contig>`` (the stem
    being the file name up to its first dot): each file is a *source*. ``source_weights`` (``{stem: weight}``,
    one entry per source, 0 to leave one out) draws each training window from source ``s`` with probability
    ``w_s / sum(w)`` and, inside it, in proportion to its length, instead of in proportion to length over the
    whole corpus, where the largest genome dominates. Validation and test windows stay unweighted.
    """

    genome: str | tuple[str, ...] = "demo"
    bed: str | None = None
    valid_contigs: tuple[str, ...] = ()
    test_contigs: tuple[str, ...] = ()
    holdout_fraction: float | None = None
    rc_aug: bool = True
    max_n_fraction: float = 0.1
    num_workers: int = 0
    mlm_probability: float = 0.15
    source_weights: dict[str, float] | None = None

    def __post_init__(self) -> None:
        self.genome = genome_value(self.genome)
        self.check_split()
        check_num_workers(self.num_workers, "data.num_workers")
        if not 0 < self.mlm_probability <= 1:  # 0 masks nothing: a NaN loss at the first step
            raise ConfigError(f"recipe field data.mlm_probability must be in (0, 1], got {self.mlm_probability}")
        if not 0 <= self.max_n_fraction <= 1:
            raise ConfigError(f"recipe field data.max_n_fraction must be in [0, 1], got {self.max_n_fraction}")
        if self.source_weights is not None:
            from ..genome.windows import check_source_weights

            try:
                check_source_weights(self.source_weights)
            except ConfigError as exc:
                raise ConfigError(f"recipe field data.source_weights: {exc}") from None

    def check_split(self) -> None:
        """Refuse two ways of splitting at once, where one would silently win: a BED file's intervals (``bed``),
        whole held-out contigs (``valid_contigs``/``test_contigs``) or a fraction of every contig
        (``holdout_fraction``). Run again by :func:`genomix.train.pretrain`, after the command's ``--bed``."""
        if self.bed and (self.valid_contigs or self.test_contigs):
            raise ConfigError("recipe field data.bed excludes data.valid_contigs and data.test_contigs: the split "
                              "comes from the BED file's intervals or from whole held-out contigs, one of them (put "
                              "the held-out contigs' rows in the BED as valid or test)")
        if self.holdout_fraction is not None:
            if self.bed or self.valid_contigs or self.test_contigs:
                raise ConfigError("recipe field data.holdout_fraction excludes data.bed, data.valid_contigs and "
                                  "data.test_contigs: hold out a fraction of every contig, whole contigs, or a BED "
                                  "file's intervals, one of them")
            if not 0 < self.holdout_fraction < 0.5:
                raise ConfigError(f"recipe field data.holdout_fraction must be in (0, 0.5), got "
                                  f"{self.holdout_fraction}")


@dataclasses.dataclass
class Recipe:
    """Everything a pretraining run needs besides the hardware (devices, strategy, output folder).

    Batch semantics: one optimiser step sees ``global_batch * seq_len`` tokens at every warm-up stage;
    per device a forward holds at most ``micro_batch_tokens`` tokens, the rest is gradient accumulation.
    ``max_steps`` is where training stops, ``schedule_steps`` (default ``max_steps``) the horizon of
    the learning-rate schedule, so a run stopped early and resumed follows the same schedule.

    ``cuda_graphs: true`` replays each micro-batch's forward and backward from a CUDA graph (one per
    warm-up stage's shape) under Lightning's manual optimisation, for small models whose eager steps are
    bound by the host's kernel launches (M2 width 256, 65K tokens per step: 40 -> 16-18 ms on an H200).
    It needs one CUDA GPU, precision bf16-mixed or 32-true and no ``offload_checkpoints``; training is
    eager training up to rounding (dropout draws other masks, still fixed per step), and a run may switch
    it on or off when resumed.
    """

    task: str = "causal-lm"
    model: str = "hyenadna-tiny-1k"
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    seq_len: int = 1024
    global_batch: int = 8
    micro_batch_tokens: int = 8192
    steps_per_epoch: int = 100
    max_steps: int = 200
    schedule_steps: int | None = None
    seed: int = 0
    precision: str | None = None
    gradient_clip: float = 1.0
    activation_checkpointing: bool = False
    offload_checkpoints: bool = False  # keep block-boundary checkpoints in host memory (longer contexts)
    # keep the selective scan's forward outputs through checkpointing (Mamba/Caduceus: faster, more memory)
    checkpoint_keeps_scan: bool = False
    cuda_graphs: bool = False  # replay training steps from CUDA graphs (host-bound small models; see above)
    checkpoint_every: int = 100  # optimiser steps between checkpoints; validation runs at every epoch end
    val_windows: int = 64  # tiled validation windows per evaluation, whatever the device count
    log_every: int = 10
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    warmup: WarmupConfig = dataclasses.field(default_factory=WarmupConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"recipe task {self.task!r} is not one of {TASKS}")
        for name in ("seq_len", "global_batch", "micro_batch_tokens", "steps_per_epoch", "max_steps",
                     "checkpoint_every", "val_windows", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"recipe field {name} must be a positive integer, got {getattr(self, name)}")
        if self.schedule_steps is not None and self.schedule_steps < 1:
            raise ConfigError(f"recipe field schedule_steps must be a positive integer (or null: max_steps), got "
                              f"{self.schedule_steps}")
        check_seed(self.seed)
        check_precision(self.precision)
        check_gradient_clip(self.gradient_clip)
        check_learning_rate(self.optim)
        if self.offload_checkpoints and not self.activation_checkpointing:
            raise ConfigError("recipe field offload_checkpoints needs activation_checkpointing: true")
        if self.checkpoint_keeps_scan and (not self.activation_checkpointing or self.offload_checkpoints
                                           or self.cuda_graphs):
            raise ConfigError("recipe field checkpoint_keeps_scan needs activation_checkpointing: true, without "
                              "offload_checkpoints or cuda_graphs (it keeps the scan's outputs on the device "
                              "between forward and backward)")
        if self.cuda_graphs and self.offload_checkpoints:
            raise ConfigError("recipe fields cuda_graphs and offload_checkpoints exclude each other: host copies on "
                              "side streams cannot be captured in a CUDA graph; set one of them false")

    @property
    def horizon(self) -> int:
        """Number of optimiser steps the learning-rate schedule spans."""
        return int(self.schedule_steps or self.max_steps)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    """Tuples to lists so the YAML dump is plain and round-trips through ``safe_load``."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def from_mapping(cls: type, data: dict[str, Any], where: str, nested: dict[str, type] | None = None,
                 prefix: str = "") -> Any:
    """A dataclass ``cls`` from a YAML mapping: unknown keys are an error, lists become tuples, and the
    keys in ``nested`` are read into their own dataclasses (``{"optim": OptimConfig}``).

    Every error names the file ``where`` and the field (nested ones as ``optim.lr``, ``prefix`` being the
    enclosing field's name and a dot), including the value checks of the dataclass's ``__post_init__``."""
    if not isinstance(data, dict):
        what = f"field {prefix[:-1]} must be" if prefix else "expected"
        raise ConfigError(f"{where}: {what} a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = f"known in {prefix[:-1]}" if prefix else "known"
        raise ConfigError(f"{where}: unknown field(s) {[prefix + key for key in unknown]}; {known}: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        inner = (nested or {}).get(key)
        if inner is not None:
            value = from_mapping(inner, value or {}, where, prefix=f"{prefix}{key}.")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_seed(seed: int) -> None:
    """Refuse a recipe ``seed`` outside what numpy's seeding (so Lightning's ``seed_everything``) accepts, 0 to
    2**32 - 1, here rather than in numpy's traceback once the run has started (pretraining and fine-tuning
    recipes alike)."""
    if not 0 <= int(seed) <= 2**32 - 1:
        raise ConfigError(f"recipe field seed must be an integer from 0 to {2**32 - 1}, got {seed}")


#: Lightning's precision settings that a recipe may name (``null``: bf16-mixed on a GPU, 32-true on a CPU).
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")


def check_precision(precision: str | None) -> None:
    """Refuse a recipe ``precision`` that Lightning does not know, here rather than in its traceback (pretraining
    and fine-tuning recipes alike)."""
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"recipe field precision must be one of {PRECISIONS} (or null: bf16-mixed on a GPU, "
                          f"32-true on a CPU), got {precision!r}")


def check_learning_rate(optim: OptimConfig) -> None:
    """Refuse a recipe whose learning rate is 0: it would train nothing (pretraining and fine-tuning recipes
    alike; :class:`OptimConfig` itself allows it, for a model held still)."""
    if not optim.lr > 0:
        raise ConfigError(f"recipe field optim.lr must be a positive learning rate, got {optim.lr}")


def check_gradient_clip(gradient_clip: float) -> None:
    """Refuse a negative ``gradient_clip``, with which Lightning would silently not clip at all."""
    if not gradient_clip >= 0:
        raise ConfigError(f"recipe field gradient_clip must be a gradient norm >= 0 (0: no clipping), got "
                          f"{gradient_clip}")


def check_num_workers(num_workers: int, field: str = "num_workers") -> None:
    """Refuse a negative data-loader worker count (the recipe's ``field``), which torch refuses in a traceback."""
    if num_workers < 0:
        raise ConfigError(f"recipe field {field} must be 0 (load in the training process) or a positive integer, "
                          f"got {num_workers}")


def check_field_types(cls: type, data: dict[str, Any], where: str, prefix: str = "") -> None:
    """Refuse a value of the wrong type for a field of the dataclass ``cls`` (``max_epochs: one``,
    ``lr: 2e-3``, which YAML reads as a string) with a :class:`ConfigError` naming the key and the file
    ``where``, before the value reaches the optimiser or Lightning; nested dataclass fields are checked in
    turn. Unknown keys are left to :func:`from_mapping`."""
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        kind = hints.get(key)
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            check_field_types(kind, value, where, f"{prefix}{key}.")
        elif kind is not None and (error := type_error(kind, value)):
            raise ConfigError(f"{where}: field {prefix}{key} {error}")


def read_named_yaml(name_or_path: str | os.PathLike, dirs: list[Path], kind: str,
                    **overrides: Any) -> tuple[dict[str, Any], str]:
    """The mapping of a YAML file given by path or by name (``<dir>/<name>.yaml``, first of ``dirs``), with
    top-level ``overrides`` applied (``None`` values are ignored: unset CLI flags), and where its values came from,
    as errors about them name it: the file, and the fields set over it (so that ``--batch-size 0`` is not blamed on
    a shipped recipe file)."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        found = [c for c in (d / f"{name_or_path}.yaml" for d in dirs) if c.is_file()]
        if not found:
            known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")})
            raise ConfigError(f"unknown {kind} {str(name_or_path)!r}: not a YAML file and not one of {known}")
        path = found[0]
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {kind} must be a mapping of fields")
    given = {key: value for key, value in overrides.items() if value is not None}
    data.update(given)
    where = f"{path} with {', '.join(f'{key}={value!r}' for key, value in given.items())} set over it" if given \
        else str(path)
    return data, where


def config_dirs(env_var: str, shipped: str) -> list[Path]:
    """Where named YAML configs of one kind are looked up: the ``os.pathsep``-separated entries of
    ``$env_var``, then the shipped ``configs/<shipped>/``."""
    extra = [Path(p) for p in os.environ.get(env_var, "").split(os.pathsep) if p]
    return extra + [Path(__file__).resolve().parent.parent / "configs" / shipped]


def recipe_dirs() -> list[Path]:
    """Where named pretraining recipes are looked up: ``$GENOMIX_RECIPE_PATH`` entries, then the shipped ones."""
    return config_dirs("GENOMIX_RECIPE_PATH", "pretrain")


def available_recipes() -> list[str]:
    """The names of the pretraining recipes (the YAML files of :func:`recipe_dirs`: ``$GENOMIX_RECIPE_PATH``, then
    ``configs/pretrain/``), sorted."""
    return sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def load_recipe(name_or_path: str | os.PathLike, **overrides: Any) -> Recipe:
    """A recipe from a shipped name (``demo``, ``hyenadna-hg38``…) or a YAML path, with overrides.

    ``overrides`` replace top-level fields; ``None`` values are ignored (unset CLI flags).
    """
    data, where = read_named_yaml(name_or_path, recipe_dirs(), "pretraining recipe", **overrides)
    check_field_types(Recipe, data, where)
    return from_mapping(Recipe, data, where, {"optim": OptimConfig, "warmup": WarmupConfig, "data": DataConfig})


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
