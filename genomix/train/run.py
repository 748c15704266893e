"""One pretraining run: recipe + model + genome store -> Lightning Trainer -> checkpoints and a model.

Layout of ``out_dir``::

    recipe.yaml            the resolved recipe of the run
    checkpoints/last.ckpt  Lightning checkpoint (atomic), every ``checkpoint_every`` steps, at the end and at
                           Ctrl-C (the step in progress is finished first)
    checkpoints/model/     the same weights as ``save_pretrained`` output (``from_pretrained`` loads it)
    logs/csv/version_N/    CSV metrics, one folder per run segment (resumes add one); logs/tensorboard/
    model/                 ``save_pretrained`` output: ``genomix.from_pretrained(out_dir / "model")``, and
                           ``trainer_state.json``, the step it was exported at (how a resume tells a finished run)
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ..devices import require_devices, training_precision
from ..errors import CheckpointError, ConfigError
from ..kernels.scan.ops import checkpoint_keeps_scan
from ..outputs import atomic_write_text, check_output_dir, make_output_dir, temp_sibling
from .callbacks import PeriodicCheckpoint, SamplerProgress, StageAccumulation, StopCheckpoint, ThroughputMonitor
from .checkpoint_io import AtomicCheckpointIO
from .data import SPLIT_RECORD, GenomeDataModule, resolve_store
from .module import LanguageModelingModule
from .quiet import quiet_when_asked
from .recipe import Recipe, dump_recipe
from .step_runner import graph_autocast_dtype
from .warmup import Stage, plan_warmup

log = logging.getLogger(__name__)
LAST = "last.ckpt"
TRAINER_STATE = "trainer_state.json"  # beside an exported final model: the optimiser step it holds


@dataclass
class RunResult:
    """Where a finished run put its outputs, and its last logged metrics."""

    model_dir: Path
    checkpoint: Path | None
    metrics: dict[str, float]
    stages: list[Stage]
    global_rank: int = 0
    #: the step of a run that had already finished before this call, which then trained and wrote nothing
    finished_at: int | None = None


def build_model(recipe: Recipe) -> torch.nn.Module:
    """The recipe's model with fresh weights, its head chosen by the task, with activation checkpointing."""
    from ..models import build

    model = build(recipe.model, task=recipe.task, **dict(recipe.model_overrides))
    if recipe.activation_checkpointing:
        enable_activation_checkpointing(model, offload=recipe.offload_checkpoints,
                                        keep_scan=recipe.checkpoint_keeps_scan)
    return model


def check_seq_len_fits(recipe: Recipe) -> None:
    """Refuse a recipe whose ``seq_len`` exceeds its model's ``max_seq_len`` (with the recipe's overrides), from
    the config alone."""
    from ..models.registry import load_config

    max_len = getattr(load_config(recipe.model, **dict(recipe.model_overrides)), "max_seq_len", None)
    if max_len is not None and recipe.seq_len > max_len:
        raise ConfigError(f"seq_len {recipe.seq_len} exceeds {recipe.model}'s max_seq_len {max_len}; "
                          "pick a longer model or pass model_overrides: {max_seq_len: ...}")


def enable_activation_checkpointing(model: torch.nn.Module, offload: bool = False, keep_scan: bool = False) -> None:
    """Per-block activation checkpointing through transformers' switch (each family honours it).

    transformers >= 5 names it ``activation_checkpointing_enable``; older versions
    ``gradient_checkpointing_enable``. Non-reentrant checkpointing works with FSDP and bf16 autocast.
    ``offload`` keeps the block-boundary checkpoints in host memory (longer contexts, slower steps).
    ``keep_scan`` keeps the selective scan's forward outputs (Mamba, Caduceus) instead of recomputing them
    in the backward (:func:`genomix.kernels.scan.ops.checkpoint_keeps_scan`): faster steps, more memory.
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(f"{type(model).__name__} does not support activation checkpointing; "
                          "set activation_checkpointing: false in the recipe")
    kwargs: dict[str, Any] = {"use_reentrant": False}
    if keep_scan:
        if offload:
            raise ConfigError("keeping the scan's outputs needs on-device checkpoints; "
                              "checkpoint_keeps_scan and offload_checkpoints exclude each other")
        kwargs["context_fn"] = checkpoint_keeps_scan
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    for module in model.modules():  # the backbones that run the blocks (models.base.run_layer reads it)
        if hasattr(module, "gradient_checkpointing"):
            module.offload_checkpoints = offload


def resolve_resume(resume: str | os.PathLike | None, out_dir: Path) -> Path | None:
    """``auto`` -> ``out_dir/checkpoints/last.ckpt`` if present (else a fresh start); a path must exist."""
    if resume is None:
        return None
    if str(resume) == "auto":
        last = out_dir / "checkpoints" / LAST
        if last.is_file():
            return last
        log.info("no checkpoint in %s; starting a fresh run", last.parent)
        return None
    path = Path(resume).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / LAST if (path / "checkpoints" / LAST).is_file() else path / LAST
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} does not exist; pass a .ckpt file, a run folder or 'auto'")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise CheckpointError(f"cannot resume from {path}: not a checkpoint (a .ckpt that genomix wrote)")
    return path


#: A field that only one kind of training run's ``recipe.yaml`` has, and the kind it names in messages.
_KIND_FIELDS = (("global_batch", "pretraining"), ("max_epochs", "fine-tuning"))


def recorded_run_kind(run_dir: Path) -> str | None:
    """The kind of training run (``pretraining``, ``fine-tuning``) that ``run_dir`` holds, by a field only
    that kind's ``recipe.yaml`` has; ``None`` without a readable one."""
    try:
        recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(recipe, dict):
        return None
    return next((kind for field, kind in _KIND_FIELDS if field in recipe), None)


def refuse_used_out(out: Path, kind: str) -> None:
    """Refuse to start a new ``kind`` run in ``out`` when a run there has written a checkpoint: a run of the
    same kind can be continued (--resume auto), one of another kind cannot and is named as what it is."""
    if not (out / "checkpoints" / LAST).is_file():
        return
    held = recorded_run_kind(out)
    if held is not None and held != kind:
        raise ConfigError(f"{out} holds a {held} run, not a {kind} run; choose another --out")
    raise ConfigError(f"{out} already holds a {kind} run; pass --resume auto to continue it, or choose another --out")


def resume_source(checkpoint: Path, kind: str) -> Path:
    """The run folder that wrote ``checkpoint`` (``RUN/checkpoints/last.ckpt`` -> ``RUN``), after refusing a
    checkpoint of another kind of run than ``kind``, whose recipe and weights could only fail to fit."""
    run_dir = checkpoint.parent.parent
    held = recorded_run_kind(run_dir)
    if held is not None and held != kind:
        hint = f"; to fine-tune its model, pass --model {run_dir / 'model'}" if held == "pretraining" else ""
        raise CheckpointError(f"cannot resume from {checkpoint}: it is a checkpoint of a {held} run ({run_dir}), "
                              f"not of a {kind} run{hint}")
    return run_dir


def refuse_other_run_in(out: Path, source: Path) -> None:
    """Refuse to continue the run in ``source`` (:func:`resume_source`) into ``out`` when ``out`` is another run's
    folder: its recipe, checkpoints and model would be overwritten. Continuing into its own folder or a new
    one is fine."""
    if out.resolve() == source.resolve():
        return
    if (out / "checkpoints" / LAST).is_file() or (out / "recipe.yaml").is_file():
        raise ConfigError(f"{out} holds another run, which continuing {source} there would overwrite; continue it in "
                          f"its own folder (--out {source}) or in a new one")


def read_checkpoint(checkpoint: Path) -> dict[str, Any]:
    """The Lightning checkpoint at ``checkpoint``, its tensors memory-mapped rather than read: what the checks
    before a resume look at (:func:`finished_step`, :func:`check_checkpoint_fits`, :func:`check_same_split`),
    read once for all of them. Drop it before training: Lightning reads the checkpoint itself."""
    return AtomicCheckpointIO().load_checkpoint(checkpoint, mmap=True)


def finished_step(saved: dict[str, Any], checkpoint: Path, out: Path, max_steps: int) -> int | None:
    """Where a resume from ``checkpoint`` (``saved``: :func:`read_checkpoint`) stands against ``max_steps``, from
    the step it holds.

    Returns the step at which the run in ``out`` finished, when ``checkpoint`` is its own last checkpoint, holds
    ``max_steps`` or more, and the final model (``out/model``) was exported at that step (its
    ``trainer_state.json`` says so; file times would mislead in a copied run folder); otherwise ``None``: there
    are steps left, or the run was stopped between its last checkpoint and the final export, which a resume
    then redoes. A checkpoint holding more than ``max_steps`` steps that is not such a finished run is refused
    (an earlier command gave a larger ``--max-steps``, this one none): Lightning would stop at once and export
    that state as the final model, which is seldom what the resume was for; saying where to stop is one flag."""
    step = saved.get("global_step")
    if not isinstance(step, int) or step < max_steps:
        return None
    own = checkpoint.resolve() == (out / "checkpoints" / LAST).resolve()
    if own and exported_step(out / "model") == step:
        return step
    if step > max_steps:
        raise ConfigError(f"{checkpoint} holds step {step}, past this run's max_steps {max_steps} (--max-steps applies "
                          f"to one command; a resume without it stops at the recipe's): pass --max-steps with the step "
                          f"to train to, or --max-steps {step} to finish the run where it is")
    return None


def check_checkpoint_fits(saved: dict[str, Any], checkpoint: Path, module: L.LightningModule) -> None:
    """Refuse to resume ``module`` from ``checkpoint`` (``saved``: :func:`read_checkpoint`) when the weights it
    holds have other names or shapes (a checkpoint of another model size or head), naming the first differences,
    before Lightning's size-mismatch traceback."""
    weights = saved.get("state_dict", {})
    expected = module.state_dict()
    differences = [f"{key} missing" for key in expected if key not in weights]
    differences += [f"{key} unexpected" for key in weights if key not in expected]
    differences += [f"{key}: {tuple(weights[key].shape)} there, {tuple(value.shape)} here"
                    for key, value in expected.items() if key in weights and weights[key].shape != value.shape]
    if differences:
        shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
        raise CheckpointError(f"cannot resume from {checkpoint}: its weights do not fit this run's model ({shown}); "
                              "it was made for another model or task: resume from a checkpoint of this run")


def check_same_split(saved: dict[str, Any], checkpoint: Path, datamodule: GenomeDataModule) -> None:
    """Refuse to resume from ``checkpoint`` (``saved``: :func:`read_checkpoint`) on other train/valid intervals
    than those it was trained on (their digest, which the checkpoint records:
    :meth:`GenomeDataModule.split_digest`), before the output folder is
    touched. The recipe's settings are compared by the command (``genomix pretrain``); this catches what they do
    not name: a BED file edited in place, a genome store prepared again with other splits.

    A checkpoint written before genomix recorded the split is resumed as it is. If the recipe holds
    ``data.holdout_fraction``, a warning says that genomix once ignored that field (recipes of that time hold
    ``0.05``), so a run begun then would continue on another split than it began with."""
    state = saved.get(type(datamodule).__qualname__, {})
    recorded = state.get(SPLIT_RECORD) if isinstance(state, dict) else None
    if recorded is None:
        if datamodule.data.holdout_fraction is not None:
            log.warning("%s does not record its data split (an older genomix wrote it), and genomix once ignored "
                        "data.holdout_fraction (recipes of that time hold 0.05); this resume holds out %s of every "
                        "contig: if the run began without it, remove the field from its recipe.yaml to continue on "
                        "the split it began with", checkpoint, datamodule.data.holdout_fraction)
        return
    here = datamodule.split_digest()
    if recorded != here:
        raise CheckpointError(f"cannot resume from {checkpoint}: it was trained on other train/valid intervals than "
                              f"this run's genome store ({datamodule.store_path}) and recipe give (split digest "
                              f"{recorded[:12]}... there, {here[:12]}... here): its BED file or store was changed since, "
                              "or the recipe holds out other contigs; continuing would validate on windows it may "
                              "have trained on. Restore the split it was trained on, or pass another --out to start "
                              "a new run")


def interrupted(stopped: str, last: Path, step: int | None = None) -> str:
    """What a run that Ctrl-C ``stopped`` (where, e.g. ``stopped at step 6``) keeps, truthfully: its ``last``
    checkpoint and how to continue from it, or, stopped before the first one, that nothing is kept.

    ``step`` is the optimiser step the run stopped at, for runs that checkpoint between steps (pretraining): the
    message then says whether ``last`` holds that step (nothing trained is lost) or an earlier one (read from the
    checkpoint, whose later steps a resume trains again)."""
    if not last.is_file():
        return f"{stopped}, before the run wrote a checkpoint: nothing is kept, so the same command starts it again"
    saved = None if step is None else checkpoint_step(last)
    if saved is not None and saved == step:
        return f"{stopped}; its state is saved in {last}: the same command with --resume auto continues from it"
    at = "" if saved is None else f" at step {saved}, training the steps after it again"
    return f"{stopped}; the last checkpoint, {last}, is kept: the same command with --resume auto continues from it{at}"


def checkpoint_step(path: Path) -> int | None:
    """The optimiser step a Lightning checkpoint holds (its tensors are memory-mapped, not read); ``None`` for a
    file that is not one."""
    try:
        step = read_checkpoint(path).get("global_step")
    except CheckpointError:
        return None
    return step if isinstance(step, int) else None


def run_loggers(out_dir: Path) -> list[Logger]:
    """CSV (and, when installed, TensorBoard) loggers under ``out_dir/logs``."""
    # each run segment (first run, every resume) gets its own logs/csv/version_N/metrics.csv, because
    # Lightning's CSV writer truncates an existing file; TensorBoard appends to one folder
    loggers: list[Logger] = [CSVLogger(out_dir / "logs", name="csv")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(out_dir / "logs", name="tensorboard", version="", default_hp_metric=False))
    except ModuleNotFoundError:
        log.warning("TensorBoard is not installed; logging to CSV only (pip install tensorboard)")
    return loggers


def export_pretrained(model: torch.nn.Module, weights: dict[str, torch.Tensor], model_dir: Path,
                      step: int | None = None) -> None:
    """``save_pretrained`` of ``model`` with ``weights`` (+ the tokenizer, and with ``step`` a
    ``trainer_state.json`` naming the optimiser step, as transformers' Trainer does), written to a temporary
    folder and renamed, so ``model_dir`` holds one complete model or, for a run killed between the two renames
    (a folder cannot replace another in one step), none; the next export removes what such a run left."""
    from ..tokenizer import Tokenizer

    tmp = temp_sibling(model_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=weights)
    Tokenizer().save_pretrained(tmp)
    if step is not None:
        (tmp / TRAINER_STATE).write_text(json.dumps({"global_step": step}) + "\n")
    old = temp_sibling(model_dir, "old")
    if model_dir.exists():
        os.replace(model_dir, old)
    os.replace(tmp, model_dir)
    shutil.rmtree(old, ignore_errors=True)


def _model_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The wrapped model's entries of a LightningModule state dict (``model.`` prefix removed)."""
    prefix = "model."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


class PretrainedExport(L.Callback):
    """Next to every Lightning checkpoint, the same weights in ``save_pretrained`` form
    (``checkpoints/model``), so ``genomix.from_pretrained`` loads the latest checkpoint directly."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.global_rank == 0 and "state_dict" in checkpoint and hasattr(pl_module.model, "save_pretrained"):
            export_pretrained(pl_module.model, _model_weights(checkpoint["state_dict"]), self.model_dir)


def save_final_model(trainer: L.Trainer, module: LanguageModelingModule, model_dir: Path) -> None:
    """``save_pretrained`` of the trained model; the full state dict is gathered through the strategy
    (FSDP shards are collected on rank 0)."""
    state = trainer.strategy.lightning_module_state_dict()
    if trainer.global_rank == 0:
        export_pretrained(module.model, _model_weights(state), model_dir, step=trainer.global_step)


def exported_step(model_dir: Path) -> int | None:
    """The optimiser step of the final model exported to ``model_dir``; ``None`` without one (no export, an
    export by an older genomix, an unreadable record)."""
    try:
        step = json.loads((model_dir / TRAINER_STATE).read_text()).get("global_step")
    except (OSError, ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


@quiet_when_asked
def pretrain(
    recipe: Recipe,
    out_dir: str | os.PathLike,
    *,
    devices: int | str = "auto",
    num_nodes: int = 1,
    strategy: str = "auto",
    accelerator: str = "auto",
    resume: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    quiet: bool = False,
    peak_tflops: float | None = None,
) -> RunResult:
    """Run (or continue) pretraining as the recipe says; returns where the model was saved.

    ``resume`` is ``None``, ``"auto"`` (continue from ``out_dir`` if it has a checkpoint) or a path.
    Resuming a run of ``out_dir`` that already reached ``max_steps`` and saved its final model trains and writes
    nothing: the result says where the model is and, in ``finished_at``, the step it finished at.
    A resumed run continues mid-epoch with the same data order and dropout masks as an uninterrupted run.
    Everything that can refuse the run (devices, resume point, genome data, batch plan, model, trainer) is
    checked before ``out_dir`` is created, so a refused run leaves no empty output folder behind. A file where
    ``out_dir`` or a folder above it should be is refused before the genome store is resolved
    (:func:`genomix.outputs.check_output_dir`); only an ``out_dir`` that cannot be created for another reason (no
    permission, a read-only file system) is found after it (a download is kept in the cache for the next run).
    """
    require_devices(devices, accelerator)
    recipe.data.check_split()  # again: a command's --bed is set after the recipe was read
    world_size = _world_size(devices, num_nodes, accelerator)
    if recipe.offload_checkpoints and world_size > 1:
        raise ConfigError("offload_checkpoints back-propagates inside the backward (like reentrant checkpointing), "
                          "which DDP/FSDP gradient hooks do not support: use it on one device, or set it false")
    precision = training_precision(recipe.precision, accelerator)
    if recipe.max_steps > recipe.horizon:
        log.warning("max_steps %d goes past the learning-rate schedule, which ends at step %d: the steps after it "
                    "train at the schedule's floor (min_lr_ratio x lr); set schedule_steps in the recipe to stretch "
                    "the schedule over the whole run", recipe.max_steps, recipe.horizon)
    if recipe.cuda_graphs:
        if world_size > 1:
            raise ConfigError("cuda_graphs captures the backward in a CUDA graph, where DDP/FSDP gradient hooks "
                              "cannot run: use it on one device, or set it false")
        if accelerator not in ("auto", "gpu", "cuda") or not torch.cuda.is_available():
            raise ConfigError(f"cuda_graphs needs a CUDA GPU (accelerator {accelerator!r}, CUDA available: "
                              f"{torch.cuda.is_available()}); leave out --cuda-graphs, or set cuda_graphs: false in "
                              "the recipe, to train without graphs")
        graph_autocast_dtype(precision)  # refuses 16-mixed before any work is done
    out = check_output_dir(out_dir)
    ckpt_path = resolve_resume(resume, out)
    if ckpt_path is None:
        refuse_used_out(out, "pretraining")
    else:
        refuse_other_run_in(out, resume_source(ckpt_path, "pretraining"))
    # from the recipe alone, before the genome store, which may mean downloading a genome
    check_seq_len_fits(recipe)
    stages = plan_warmup(recipe.seq_len, recipe.global_batch, recipe.micro_batch_tokens, world_size,
                         recipe.warmup.start_seq_len, recipe.warmup.stage_epochs)
    saved = None if ckpt_path is None else read_checkpoint(ckpt_path)
    done = None if saved is None else finished_step(saved, ckpt_path, out, recipe.max_steps)
    if done is not None:
        return RunResult(out / "model", ckpt_path, {}, stages, rank_zero_only.rank, finished_at=done)
    L.seed_everything(recipe.seed, workers=True, verbose=False)

    store = resolve_store(recipe.data.genome, bed=recipe.data.bed, cache=cache, quiet=quiet)
    # checks the recipe's source weights against the store: before the model, which may be large
    datamodule = GenomeDataModule(store, recipe.data, stages, recipe.task, recipe.steps_per_epoch, recipe.seed,
                                  val_windows=recipe.val_windows)
    datamodule.check_windows()
    model = build_model(recipe)
    module = LanguageModelingModule(model, recipe.task, recipe.optim, recipe.horizon, seed=recipe.seed,
                                    gradient_clip=recipe.gradient_clip,
                                    step_runner="graph" if recipe.cuda_graphs else None)
    if saved is not None:
        check_checkpoint_fits(saved, ckpt_path, module)
        check_same_split(saved, ckpt_path, datamodule)
        del saved  # its memory map; Lightning reads the checkpoint again to resume

    checkpoint = PeriodicCheckpoint(dirpath=out / "checkpoints", every_n_train_steps=recipe.checkpoint_every,
                                 save_top_k=0, save_last=True, save_on_train_epoch_end=False)
    callbacks: list[L.Callback] = [
        SamplerProgress(),
        StopCheckpoint(str(out / "checkpoints" / LAST), skip_every=recipe.checkpoint_every),
        PretrainedExport(out / "checkpoints" / "model"),
        ThroughputMonitor(recipe.log_every, peak_tflops),
        StageAccumulation(stages),
        checkpoint,
    ]
    if not quiet:
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks.append(TQDMProgressBar(refresh_rate=max(1, recipe.log_every // 2)))
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision,
        max_steps=recipe.max_steps, max_epochs=-1,  # the module clips (Lightning refuses Trainer clipping when manual)
        check_val_every_n_epoch=1,
        reload_dataloaders_every_n_epochs=1, use_distributed_sampler=False, num_sanity_val_steps=0,
        callbacks=callbacks, logger=run_loggers(out), plugins=[AtomicCheckpointIO()], log_every_n_steps=recipe.log_every,
        enable_progress_bar=not quiet, enable_model_summary=not quiet, default_root_dir=out,
    )
    if trainer.world_size != world_size:
        raise ConfigError(f"the batch plan assumed {world_size} process(es) but Lightning runs {trainer.world_size}; "
                          "pass --devices and --num-nodes explicitly")
    make_output_dir(out)  # the first write: the trainer only names its folders
    if trainer.global_rank == 0:
        atomic_write_text(out / "recipe.yaml", dump_recipe(recipe))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # with cuda_graphs (manual optimisation) a checkpoint holds the weights after the step, as without
        warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
        fit_telling_interrupts(
            trainer, module, lambda: f"stopped at step {trainer.global_step}", out / "checkpoints" / LAST,
            step=lambda: trainer.global_step, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None,
            weights_only=True)
    model_dir = out / "model"
    save_final_model(trainer, module, model_dir)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    metrics["step"] = float(trainer.global_step)
    return RunResult(model_dir, out / "checkpoints" / LAST, metrics, stages, trainer.global_rank)


def fit_telling_interrupts(trainer: L.Trainer, module: L.LightningModule, stopped: Callable[[], str], last: Path,
                           step: Callable[[], int] | None = None, **fit_kwargs: Any) -> None:
    """``trainer.fit(module, **fit_kwargs)``, where Ctrl-C ends in a ``KeyboardInterrupt`` whose message says
    where the run stopped (``stopped()``), whether its ``last`` checkpoint is kept, up to which ``step()`` when
    given, and how to continue (:func:`interrupted`). Lightning turns Ctrl-C into a shutdown and ``exit(1)`` that
    says nothing, and leaves Ctrl-C ignored; the handler is restored."""
    try:
        trainer.fit(module, **fit_kwargs)
    except SystemExit:
        if not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt(interrupted(stopped(), last, None if step is None else step())) from None


def _world_size(devices: int | str, num_nodes: int, accelerator: str) -> int:
    """Number of processes the trainer will run (needed before the trainer exists to plan batches)."""
    if isinstance(devices, int) or str(devices).isdigit():
        count = int(devices)
    elif accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        count = torch.cuda.device_count()
    else:
        count = 1
    return max(count, 1) * max(num_nodes, 1)
