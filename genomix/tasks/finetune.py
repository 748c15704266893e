"""Fine-tune a genomix model on a sequence-classification task, select on dev, report on test.

Layout of ``out_dir``::

    recipe.yaml                 the resolved recipe, with the model, its weights' fingerprint, the task it ran
                                on and its examples' fingerprint (``# model: ...``, ``# weights: sha256:...``,
                                ``# task_data: sha256:...``, :mod:`.identity`)
    checkpoints/last.ckpt       Lightning checkpoint at the end of every epoch (atomic; --resume auto)
    checkpoints/best-*.ckpt     the epoch with the best development ``monitor`` metric
    logs/csv/version_N/         training loss and development metrics per epoch; logs/tensorboard/
    predictions/{dev,test}.tsv  row, source (file:line), label, prediction and class probabilities of the best model
    metrics.json                development and test metrics of the best model, where it came from, the epochs
                                run (max_epochs), and the seconds spent training (summed over resumed runs, each
                                up to its last finished epoch) and predicting
    model/                      the best model (``genomix.from_pretrained(out_dir / "model")``)

Every file is written to a temporary name and renamed when complete, so an interrupted run leaves the
previous complete file, and ``--resume auto`` continues from the last finished epoch, provided the recipe,
the task and the model's weights (wherever the model now is) are the ones in ``recipe.yaml``.

``devices`` > 1 trains data-parallel (DDP). The recipe's ``batch_size`` stays the global batch: each of
the ``devices`` processes takes ``batch_size / devices`` rows of the same per-epoch permutation
(:class:`.batches.EpochOrder`), so a step sees the rows a one-device step would, and the learning-rate
schedule is unchanged. Every process scores the whole development split, which keeps model selection
identical on all of them; the test predictions, metrics and exported model are written by rank 0.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import Timer

from ..devices import require_devices, training_precision
from ..errors import ConfigError, InputFormatError, TrainingError
from ..models.fixed_filters import hold_fixed_filters
from ..models.inference_loop import inference_loop
from ..outputs import atomic_write_text, check_output_dir, make_output_dir
from ..resume import changed_settings, flat_settings, weights_fingerprint
from ..train.callbacks import EpochCheckpoint
from ..train.checkpoint_io import AtomicCheckpointIO
from ..train.module import adamw_warmup_cosine, check_finite_loss, seed_step
from ..train.quiet import quiet_when_asked
from ..train.run import (LAST, check_checkpoint_fits, export_pretrained, fit_telling_interrupts, read_checkpoint,
                         refuse_other_run_in, refuse_used_out, resolve_resume, resume_source, run_loggers)
from .batches import fit_lengths, loader
from .identity import BASE_MODEL_KEYS, check_base_model, check_task_data, run_identity, task_fingerprint
from .labelled import LabelledSequences, TaskData, load_task, warn_of_training_rows_in
from .metrics import classification_metrics, require_finite_logits, softmax
from .recipe import FinetuneRecipe, dump_finetune_recipe

log = logging.getLogger(__name__)
PADDING_SIDE = "right"  # a causal model's real tokens then never see padding; pooling skips the pads


@dataclasses.dataclass
class FinetuneResult:
    """What a finished run produced: the best model's folder, its metrics and the checkpoint behind it."""

    model_dir: Path
    metrics: dict[str, dict[str, float]]
    best_checkpoint: Path
    best_epoch: int
    global_rank: int = 0  # data-parallel runs: only rank 0 scores, exports and reports (the others: no metrics)


def epoch_steps(rows: int, batch_size: int, world: int) -> int:
    """Optimizer steps per epoch for ``rows`` training rows at global ``batch_size`` over ``world``
    data-parallel processes (each takes ``rows // world`` rows in batches of ``batch_size // world``)."""
    return -(-(rows // world) // (batch_size // world))


class ClassificationModule(L.LightningModule):
    """Trains a genomix ``classification`` model with cross-entropy on ``train`` (this process's share of
    it, when data-parallel); after each epoch scores the whole ``dev`` split and logs ``dev/<metric>`` for
    every metric of :mod:`.metrics`."""

    def __init__(self, model: torch.nn.Module, recipe: FinetuneRecipe, train: LabelledSequences,
                 dev: LabelledSequences) -> None:
        super().__init__()
        self.model = model
        self.recipe = recipe
        self.train_rows, self.dev_rows = train, dev
        self._dev_logits: list[torch.Tensor] = []
        self._dev_labels: list[torch.Tensor] = []

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        world = self.trainer.world_size
        return loader(self.train_rows, self.recipe.batch_size // world, train=True, padding_side=PADDING_SIDE,
                      rc_aug=self.recipe.rc_aug, num_workers=self.recipe.num_workers, seed=self.recipe.seed,
                      rank=self.trainer.global_rank, world=world)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return loader(self.dev_rows, self.recipe.evaluation_batch_size, train=False,
                      padding_side=PADDING_SIDE, num_workers=self.recipe.num_workers)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        seed_step(self.recipe.seed, self.global_step, batch_idx, self.global_rank)  # resumes draw the same dropout

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        check_finite_loss(self, out.loss, batch_idx)
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch["labels"]))
        return out.loss

    def on_validation_epoch_start(self) -> None:
        self._dev_logits, self._dev_labels = [], []
        self._dev_filters = hold_fixed_filters(self.model)  # the weights are fixed for the whole pass

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        self._dev_logits.append(logits.detach().float().cpu())
        self._dev_labels.append(batch["labels"].cpu())

    def on_validation_epoch_end(self) -> None:
        self._dev_filters.close()
        if not self._dev_logits:
            return
        logits = torch.cat(self._dev_logits)
        if not bool(torch.isfinite(logits).all()):
            raise TrainingError(f"non-finite development logits after epoch {self.current_epoch}: the model diverged "
                                "without a non-finite loss; lower the learning rate or use --precision 32-true")
        scores = classification_metrics(logits.numpy(), torch.cat(self._dev_labels).numpy())
        monitor = self.recipe.monitor
        sync = self.trainer.world_size > 1  # the same numbers on every rank: the reduction only confirms them
        self.log_dict({f"dev/{k}": v for k, v in scores.items() if k != monitor}, sync_dist=sync)
        self.log(f"dev/{monitor}", scores[monitor], prog_bar=True, sync_dist=sync)

    def configure_optimizers(self) -> dict[str, Any]:
        steps = self.recipe.max_epochs * epoch_steps(len(self.train_rows), self.recipe.batch_size,
                                                     self.trainer.world_size)
        return adamw_warmup_cosine(self.model, self.recipe.optim, steps)


def load_classifier(model: str, num_labels: int, label_names: list[str], recipe: FinetuneRecipe,
                    revision: str | None = None) -> torch.nn.Module:
    """A ``classification`` model with ``num_labels`` outputs: a checkpoint's backbone (local dir or Hub
    id, any layout) with a fresh head, or a named size with fresh weights throughout (training from
    scratch, logged as such)."""
    from ..hub import from_pretrained
    from ..models.registry import available_models, build

    overrides: dict[str, Any] = {"num_labels": num_labels, "id2label": dict(enumerate(label_names)),
                                 "label2id": {name: i for i, name in enumerate(label_names)}}
    if recipe.pooling is not None:
        overrides["pooling"] = recipe.pooling
    if recipe.classifier_dropout is not None:
        overrides["classifier_dropout"] = recipe.classifier_dropout
    if not Path(model).is_dir() and model in available_models():
        log.warning("%s is a named size: fine-tuning it from random weights (training from scratch)", model)
        return build(model, task="classification", **overrides)
    # from_pretrained returns an inference model (eval mode): training needs dropout back on
    # a fine-tuned classifier's own head belongs to its task: this task's head starts fresh all the same
    return from_pretrained(model, revision=revision, task="classification", fresh_head=True, **overrides).train()


def _split_dev(train: LabelledSequences, seed: int, fraction: float = 0.1) -> tuple[LabelledSequences, LabelledSequences]:
    """A task without a development split: hold out ``fraction`` of train (seeded) for model selection."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    cut = max(1, int(round(fraction * len(train))))
    return train.take(np.sort(order[cut:])), train.take(np.sort(order[:cut]))


@torch.no_grad()
def predict_logits(model: torch.nn.Module, data: LabelledSequences, batch_size: int, device: torch.device,
                   quiet: bool = True, desc: str = "predict", cuda_graphs: bool = True) -> np.ndarray:
    """(n, num_labels) float32 logits of ``data`` in row order (bf16 autocast on a GPU; repeated batch shapes
    replayed from CUDA graphs unless ``cuda_graphs`` is False)."""
    from tqdm.auto import tqdm

    model.eval().to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    out = []
    with inference_loop(model, cuda_graphs=cuda_graphs):  # the weights are fixed for the whole pass
        for batch in tqdm(loader(data, batch_size, train=False, padding_side=PADDING_SIDE), desc=desc, disable=quiet):
            mask = batch["attention_mask"]
            mask = None if bool(mask.all()) else mask.to(device)  # unpadded batches can replay a CUDA graph
            with autocast:
                logits = model(input_ids=batch["input_ids"].to(device), attention_mask=mask).logits
            out.append(logits.float().cpu())
    return torch.cat(out).numpy()


#: Files and folders only a fine-tuning run writes into its output folder.
FINETUNE_ONLY = ("checkpoints", "model", "recipe.yaml")


def refuse_finished_out(out: Path) -> None:
    """Refuse a new run (fine-tuning, in-context) in ``out`` when a finished task run's ``metrics.json`` is there
    (its results are kept, never replaced), saying which kind of run it is: in-context (its metrics name a
    verbalizer), fine-tuning (it left files only fine-tuning writes) or, when neither shows, just a finished run."""
    metrics = out / "metrics.json"
    if not metrics.is_file():
        return
    try:
        summary = json.loads(metrics.read_text())
    except (OSError, ValueError):
        summary = None
    if isinstance(summary, dict) and "verbalizer" in summary:
        held = "a finished in-context run"
    elif any((out / name).exists() for name in FINETUNE_ONLY):
        held = "a finished fine-tuning run"
    else:
        held = "a finished run's metrics.json"
    raise ConfigError(f"{out} already holds {held} ({metrics}); choose another --out, or remove that folder to run "
                      "again")


def refuse_task_folder(out: Path, task: str | os.PathLike | TaskData) -> None:
    """Refuse an ``out`` that is the folder of the ``task`` itself: a run's files would be written among the task's
    CSV files (and a later task load might take them for its own)."""
    if not isinstance(task, TaskData) and out.resolve() == Path(task).expanduser().resolve():
        raise ConfigError(f"{out} is the task folder; choose another --out for the results, which would be written "
                          "among the task's files")


def write_predictions(path: Path, logits: np.ndarray, data: LabelledSequences, label_names: list[str]) -> None:
    """TSV: row, source (where the example was read: ``file:line``, which traces a development split held out of
    train back to its rows), label, prediction (names) and one probability column per class; written atomically."""
    probs = softmax(logits)
    header = ["row", "source", "label", "prediction"] + [f"p_{name}" for name in label_names]
    lines = ["\t".join(header)]
    for row, (label, p) in enumerate(zip(data.labels, probs)):
        source = " ".join(data.origin(row).split())  # no tab or line break inside the column
        lines.append("\t".join([str(row), source, label_names[label], label_names[int(p.argmax())]]
                               + [f"{x:.6g}" for x in p]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _recipe_text(recipe: FinetuneRecipe, identity: dict[str, str]) -> str:
    """``recipe.yaml``: the recipe, then the run's identity as comment lines (``# model: ...``), so that
    the file stays a recipe that ``--recipe`` reads."""
    return dump_finetune_recipe(recipe) + "".join(f"# {key}: {value}\n" for key, value in identity.items())


def saved_settings(out: Path) -> dict[str, str] | None:
    """The recipe (as ``recipe <dotted key>``) and identity (``model``, ``task``, ``task_data``, ``weights``) of the
    run in ``out``, from its ``recipe.yaml``; ``None`` without one."""
    path = out / "recipe.yaml"
    if not path.is_file():
        return None
    text = path.read_text()
    saved = flat_settings(yaml.safe_load(text) or {}, "recipe ")
    saved.update(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# ") and ": " in line)
    return saved


def check_resumable(out: Path, saved: dict[str, str], recipe: FinetuneRecipe, identity: dict[str, str]) -> None:
    """Refuse to resume the run in ``out`` (its ``saved_settings``) with another recipe or task than it was
    started with, naming every setting that differs. ``num_workers`` and ``max_epochs`` (training longer) may
    change. The model is compared by its weights once loaded (:func:`.identity.check_base_model`), and the task by
    its examples' fingerprint once read (:func:`.identity.check_task_data`), or, for a run saved without one, by its
    path here."""
    now = {**flat_settings(yaml.safe_load(dump_finetune_recipe(recipe)), "recipe "), **identity}
    free = ("recipe num_workers", "recipe max_epochs", *BASE_MODEL_KEYS)
    if "task_data" in saved:  # the examples are compared by their fingerprint once read, not the task by its path
        free += ("task",)
    changed = changed_settings(saved, now, [key for key in sorted(saved) if key in now and key not in free])
    if changed:
        raise ConfigError(f"cannot resume {out}: it was started with other settings ({'; '.join(changed)}); resume "
                          f"with the run's settings (see {out / 'recipe.yaml'}), or start a new run with another --out")


def check_epoch_budget(state: dict[str, Any], checkpoint: Path, recipe: FinetuneRecipe,
                       saved: dict[str, str] | None) -> None:
    """Refuse to resume from ``checkpoint`` (``state``: :func:`read_checkpoint`) with a ``max_epochs`` that ends
    before the epoch it was saved in (Lightning's traceback otherwise, after the run's recipe was rewritten), and
    warn that a changed ``max_epochs`` re-spreads the learning-rate schedule over the new total from this step."""
    epoch = int(state.get("epoch", 0)) + 1  # the epoch the checkpoint was saved in (at its end, or during it)
    if recipe.max_epochs < epoch:
        raise ConfigError(f"cannot resume from {checkpoint} with max_epochs {recipe.max_epochs}: it was saved in "
                          f"epoch {epoch}; resume with max_epochs (--max-epochs) {epoch} or more")
    before = (saved or {}).get("recipe max_epochs")
    if before is not None and str(before) != str(recipe.max_epochs):
        log.warning("resuming with max_epochs %d instead of %s: the learning-rate schedule now spans %d epochs, so "
                    "from here the rate follows that schedule (it rises again where the run had decayed it), and the "
                    "result matches neither run length trained from the start", recipe.max_epochs, before,
                    recipe.max_epochs)


def _resumed_settings(checkpoint: Path, source: Path) -> dict[str, str] | None:
    """The settings (:func:`saved_settings`) of the run in ``source`` that wrote ``checkpoint``, which a resume must
    keep; ``None``, with a warning, for a checkpoint kept without its run's ``recipe.yaml``, whose recipe, task
    and base model then go unchecked (its weights' names and shapes are still checked)."""
    saved = saved_settings(source)
    if saved is None:
        log.warning("%s has no recipe.yaml beside its checkpoints folder: resuming from %s without checking that it "
                    "was made with this recipe, task and model", source, checkpoint)
    return saved


def _finished_result(out: Path, source: Path, recipe: FinetuneRecipe) -> FinetuneResult | None:
    """The result a finished run in ``out`` recorded, when ``--resume`` asks to continue it with the epochs it
    finished (its ``metrics.json`` records them): nothing is left to do, and a job script that always passes
    ``--resume auto`` must not train, score and export it again. None otherwise: more epochs (also a longer run
    stopped before its end, whose ``metrics.json`` is still the shorter run's) train on."""
    metrics = out / "metrics.json"
    if out.resolve() != source.resolve() or not metrics.is_file():
        return None
    summary = json.loads(metrics.read_text())
    if summary.get("max_epochs") != recipe.max_epochs:  # also a metrics.json written before it was recorded
        return None
    log.info("%s already finished its %d epochs (%s): nothing to do; pass a larger --max-epochs to train on",
             out, recipe.max_epochs, metrics)
    return FinetuneResult(out / "model", summary["metrics"], out / "checkpoints" / summary["best_checkpoint"],
                          int(summary["best_epoch"]))


def check_devices(recipe: FinetuneRecipe, accelerator: str, devices: int) -> None:
    """Refuse ``devices`` this machine cannot run (:func:`genomix.devices.require_devices`), a precision they cannot
    train in (:func:`genomix.devices.training_precision`), or devices that cannot split the recipe's batch:
    ``batch_size`` is the global batch, shared evenly by the data-parallel processes. A suite of runs
    (``pipelines/finetune_gue.py``) asks once, before its first task trains."""
    require_devices(devices, accelerator)
    training_precision(recipe.precision, accelerator)
    if devices < 1 or recipe.batch_size % devices:
        raise ConfigError(f"batch size {recipe.batch_size} cannot be split over {devices} devices: the recipe's "
                          "batch_size is the global batch and must be a multiple of --devices")


@quiet_when_asked
def finetune(model: str, task: str | os.PathLike | TaskData, out_dir: str | os.PathLike, recipe: FinetuneRecipe,
             *, revision: str | None = None, resume: str | os.PathLike | None = None, accelerator: str = "auto",
             devices: int = 1, strategy: str = "auto", quiet: bool = False,
             cuda_graphs: bool = True) -> FinetuneResult:
    """Fine-tune ``model`` (checkpoint dir, Hub id or named size) on ``task`` (a folder that
    :func:`.labelled.load_task` reads, or its result) as ``recipe`` says; see the module docstring for what
    lands in ``out_dir``. ``resume``: ``None``, ``"auto"`` (continue ``out_dir``'s run if it has a
    checkpoint) or a checkpoint path. ``devices`` > 1: data-parallel over that many GPUs, or CPU processes with
    ``accelerator="cpu"`` (asked for by name, as in pretraining: :func:`genomix.devices.require_devices` refuses
    several devices on a machine without a CUDA GPU otherwise), with ``strategy`` "auto" meaning DDP.
    ``cuda_graphs``: the dev and test predictions replay repeated batch shapes from CUDA graphs on a GPU
    (:func:`genomix.models.inference_loop`). Everything that can refuse the run (devices, resume point, task,
    recipe values, model, trainer) is checked before ``out_dir`` is created, so a refused run leaves no empty output
    folder behind; only an ``out_dir`` that cannot be made for another reason than a file in its way (no
    permission, a read-only file system) is found after the model has loaded."""
    check_devices(recipe, accelerator, devices)
    out = check_output_dir(out_dir)  # a file in the way: refused before the task and model load
    refuse_task_folder(out, task)
    ckpt_path = resolve_resume(resume, out)
    identity = run_identity(model, task)
    if ckpt_path is None:
        refuse_finished_out(out)  # with or without its checkpoints
        refuse_used_out(out, "fine-tuning")
        source, saved = out, None
    else:
        source = resume_source(ckpt_path, "fine-tuning")
        refuse_other_run_in(out, source)
        saved = _resumed_settings(ckpt_path, source)
    if saved is not None:
        check_resumable(source, saved, recipe, identity)
    task = task if isinstance(task, TaskData) else load_task(task)
    identity["task_data"] = task_fingerprint(task)
    if saved is not None:
        check_task_data(saved, identity, source / "recipe.yaml")
    L.seed_everything(recipe.seed, workers=True, verbose=False)

    train = task.split("train")
    if recipe.train_rows is not None:
        train = train.head(recipe.train_rows)
        if len(np.unique(train.labels)) < 2:
            raise InputFormatError(f"the first {recipe.train_rows} rows of {train.source} hold only one class; "
                                   "train on more rows (--train-rows) or shuffle the file")
    dev = task.splits.get("dev")
    if dev is None:
        log.warning("task %s has no development split: holding out 10%% of train for model selection", task.name)
        train, dev = _split_dev(train, recipe.seed)
        if len(np.unique(train.labels)) < 2:
            raise InputFormatError(f"holding out 10% of {train.source} for model selection (the task has no dev "
                                   "split) leaves one class to train on; add a dev file, or more training rows")
    test = task.splits.get("test")
    if test is None:
        log.warning("task %s has no test split: metrics.json will hold the development split's metrics only, which "
                    "chose the best epoch and so overstate held-out performance; add a test file to measure it",
                    task.name)
    warn_of_training_rows_in(train, {"dev": task.splits.get("dev"), "test": test})
    if recipe.monitor == "auroc" and task.num_labels != 2:
        raise ConfigError(f"monitor auroc needs two classes; {task.name} has {task.num_labels}: use mcc or accuracy")
    if recipe.monitor == "auroc" and len(np.unique(dev.labels)) < 2:  # no AUROC to select the best epoch by
        raise ConfigError(f"monitor auroc needs both classes in the development split; {dev.source} has only "
                          f"{task.label_names[int(dev.labels[0])]!r}: use mcc or accuracy, or a dev split with both")

    classifier = load_classifier(model, task.num_labels, task.label_names, recipe, revision)
    identity["weights"] = weights_fingerprint(classifier.base_model)  # the pretrained backbone; the head is new
    if saved is not None:
        check_base_model(saved, identity, source / "recipe.yaml")
    finished = _finished_result(out, source, recipe) if ckpt_path is not None else None
    if finished is not None:  # after every check of the recipe, task and model that a resume must pass
        return finished
    limit = getattr(classifier.config, "max_seq_len", None)
    max_length = recipe.max_length or limit
    if max_length is None:
        raise ConfigError(f"{model} has no max_seq_len; set max_length in the recipe")
    if limit is not None and max_length > limit:
        raise ConfigError(f"recipe max_length {max_length} exceeds {model}'s max_seq_len {limit}")
    train, dev = fit_lengths(train, max_length, recipe.truncation), fit_lengths(dev, max_length, recipe.truncation)
    test = fit_lengths(test, max_length, recipe.truncation) if test is not None else None

    module = ClassificationModule(classifier, recipe, train, dev)
    if ckpt_path is not None:
        state = read_checkpoint(ckpt_path)
        check_checkpoint_fits(state, ckpt_path, module)
        check_epoch_budget(state, ckpt_path, recipe, saved)

    best = EpochCheckpoint(dirpath=out / "checkpoints", filename="best-{epoch}", monitor=f"dev/{recipe.monitor}",
                           mode="max", save_top_k=1, save_last=True, save_on_train_epoch_end=False)
    timer = Timer(verbose=False)  # its elapsed time travels in the checkpoints, so a resumed run counts it all
    callbacks: list[L.Callback] = [best, timer]
    if not quiet:
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks.append(TQDMProgressBar())
    precision = training_precision(recipe.precision, accelerator)
    if devices > 1 and strategy == "auto":
        strategy = "ddp"
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
        max_epochs=recipe.max_epochs, gradient_clip_val=recipe.gradient_clip or None, callbacks=callbacks,
        logger=run_loggers(out), plugins=[AtomicCheckpointIO()], use_distributed_sampler=False,
        log_every_n_steps=max(1, min(50, epoch_steps(len(train), recipe.batch_size, devices))),
        num_sanity_val_steps=0, enable_progress_bar=not quiet, enable_model_summary=not quiet,
        default_root_dir=out,
    )
    make_output_dir(out)  # the first write: the trainer only names its folders
    atomic_write_text(out / "recipe.yaml", _recipe_text(recipe, identity))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        fit_telling_interrupts(
            trainer, module, lambda: f"stopped in epoch {trainer.current_epoch}", out / "checkpoints" / LAST,
            ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)

    best_path = Path(best.best_model_path) if best.best_model_path else out / "checkpoints" / LAST
    if trainer.global_rank != 0:
        return FinetuneResult(out / "model", {}, best_path, -1, trainer.global_rank)
    state = AtomicCheckpointIO().load_checkpoint(best_path)
    module.load_state_dict(state["state_dict"])
    best_epoch = int(state.get("epoch", -1))
    device = trainer.strategy.root_device  # fit's teardown left the model on the CPU; predictions move it back
    metrics, predictions, predict_start = {}, out / "predictions", time.monotonic()
    predictions.mkdir(exist_ok=True)
    for split, data in (("dev", dev), ("test", test)):
        if data is None:
            continue
        logits = predict_logits(classifier, data, recipe.evaluation_batch_size, device, quiet,
                                desc=f"{split} predictions", cuda_graphs=cuda_graphs)
        write_predictions(predictions / f"{split}.tsv", logits, data, task.label_names)  # kept, non-finite or not
        require_finite_logits(logits, f"the fine-tuned model ({best_path.name})", split)
        metrics[split] = classification_metrics(logits, data.labels)
    export_pretrained(classifier, {k: v.cpu() for k, v in classifier.state_dict().items()}, out / "model")
    summary = {"model": model, "task": task.name, "label_names": task.label_names, "max_epochs": recipe.max_epochs,
               "best_epoch": best_epoch,
               "best_checkpoint": best_path.name, "monitor": recipe.monitor, "max_length": max_length,
               "examples": {"train": len(train), "dev": len(dev), "test": len(test) if test is not None else 0},
               "metrics": metrics, "seconds": {"train": round(timer.time_elapsed("train"), 1),
                                               "predict": round(time.monotonic() - predict_start, 1)}}
    atomic_write_text(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
    return FinetuneResult(out / "model", metrics, best_path, best_epoch)
