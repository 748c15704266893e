"""Lightning callbacks of training runs: sampler progress for exact resume, checkpoint cadence (pretraining's
periodic checkpoints and the one where it stops, fine-tuning's checkpoint of every epoch) and throughput/MFU."""
from __future__ import annotations

import glob
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from .flops import device_peak_tflops, flops_per_token
from .sampler import ResumableSampler
from .warmup import Stage, stage_at

log = logging.getLogger(__name__)


class SamplerProgress(L.Callback):
    """Advances the :class:`ResumableSampler` by each *trained* batch.

    Lightning runs checkpoint callbacks after all others, so a checkpoint saved at this batch already
    counts it, and a resume starts with the next one.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, ResumableSampler):
            sampler.advance(int(batch["input_ids"].shape[0]))


class StageAccumulation(L.Callback):
    """Sets gradient accumulation to the warm-up stage of the current epoch.

    Unlike Lightning's ``GradientAccumulationScheduler`` (which only acts at epoch starts) it also
    acts when training starts, so a run resumed in the middle of an epoch accumulates as the
    interrupted run did.
    """

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages

    def _apply(self, trainer: L.Trainer) -> None:
        trainer.accumulate_grad_batches = stage_at(self.stages, trainer.current_epoch).accumulate

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(trainer)


#: The signals that ask a training run to stop after the optimiser step in progress, by the name a message gives them.
_STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class StopCheckpoint(L.Callback):
    """Saves ``path`` at the batch where the run stops, from inside the training loop: the batch that reaches
    ``max_steps``, or, after Ctrl-C, the batch that ends the optimiser step in progress.

    A checkpoint written after ``fit`` returns would record the epoch as finished, so a later resume would skip
    the rest of it; saved here, where the periodic checkpoint is saved, the loop state says "mid-epoch, after
    this batch". In the middle of a step (a forward, a backward, the gradients of part of an accumulation) there
    is no state a resume could continue from exactly, so the first Ctrl-C only asks for a stop: the step in
    progress is finished and saved, and ``KeyboardInterrupt`` is raised at the next hook (once the step's metrics
    are logged). Asked during the epoch-end validation, the run saves when the validation ends (where Lightning's
    own checkpoints are saved, so a resume goes on with the next epoch's first step) instead of after one more
    step. A second Ctrl-C stops at once (the checkpoint I/O writes atomically, so a stop during the save keeps the
    previous checkpoint). SIGTERM, which batch schedulers send at a time limit or pre-emption some
    seconds before they kill the job (SLURM's ``KillWait``, 30 s by default), is taken the same way.

    Several processes see a terminal's Ctrl-C each at another point of a step, or (a signal to one process) only
    one of them sees it, and saving is collective. So at the end of every optimiser step they agree, in one
    all-reduce of a flag, whether any of them was asked to stop, and all stop and save at the same step.
    """

    def __init__(self, path: str, skip_every: int = 0) -> None:
        self.path = path
        self.skip_every = skip_every  # steps where the periodic ModelCheckpoint already writes ``path``
        self._saved_at = -1
        self._step_at_batch_start = 0
        self._stop_saved_at: int | None = None
        self._stop_signal: str | None = None  # the name of the signal that asked for a stop, once one has
        self._previous_handlers: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # signal handlers can only be set from the main thread; Lightning's own SIGTERM handler (set before this
        # hook) would end the fit after the micro-batch in progress, mid-step, so it only takes a second SIGTERM
        if threading.current_thread() is threading.main_thread():
            self._previous_handlers = {signum: signal.signal(signum, self._ask_stop) for signum in _STOP_SIGNALS}

    def _ask_stop(self, signum: int, frame: Any) -> None:
        """The first Ctrl-C or SIGTERM: stop after the step in progress; the previous handler takes the next one."""
        self._stop_signal = _STOP_SIGNALS[signum]
        signal.signal(signum, self._previous_handlers[signum])
        if rank_zero_only.rank == 0:  # of several processes, one says it
            log.warning("%s: stopping after the optimiser step in progress (during validation, once it ends), "
                        "which is saved; %s again stops at once, keeping the last checkpoint", self._stop_signal,
                        self._stop_signal)

    def _restore_handler(self) -> None:
        for signum, previous in self._previous_handlers.items():
            if signal.getsignal(signum) == self._ask_stop:
                signal.signal(signum, previous)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handler()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handler()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._stop_if_saved()
        self._step_at_batch_start = trainer.global_step

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_saved()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_saved()

    def _stop_if_saved(self) -> None:
        if self._stop_saved_at is not None:
            raise KeyboardInterrupt(f"stopped by {self._stop_signal} after step {self._stop_saved_at}, saved to "
                                    f"{self.path}")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        final = 0 < trainer.max_steps <= step
        stepped = step > self._step_at_batch_start
        stop = stepped and self._asked_everywhere(trainer) and not final
        periodic = self.skip_every > 0 and step % self.skip_every == 0
        if (final or stop) and step != self._saved_at and not periodic:
            self._save(trainer)
        if stop:
            self._stop_saved_at = step

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # asked during the validation (or between the epoch's last step and it): save now, not a step later
        final = 0 < trainer.max_steps <= trainer.global_step  # the run ends here anyway, with its model
        if trainer.sanity_checking or final or self._stop_saved_at is not None or not self._asked_everywhere(trainer):
            return
        self._save(trainer)  # again if the step was saved before the validation: this state has its metrics
        self._stop_saved_at = trainer.global_step

    def _asked_everywhere(self, trainer: L.Trainer) -> bool:
        """Whether any process was asked to stop: a collective, made by every process at the same point."""
        asked = self._stop_signal is not None
        if trainer.world_size > 1:
            asked = trainer.strategy.reduce_boolean_decision(asked, all=False)
        return asked

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_at = trainer.global_step


class PeriodicCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` without its end-of-training save: :class:`StopCheckpoint` writes the step-limit
    checkpoint mid-epoch, and a second one written after the loop (Lightning saves ``last`` again on train end,
    versioned as ``last-v1.ckpt`` beside the first) would record the epoch as finished."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        return None


class EpochCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (with ``save_last``) that rewrites ``last`` after every validation, so ``last`` is
    always the last finished epoch. Lightning >= 2.6 writes ``last`` only when a new top-k checkpoint is saved,
    which leaves it at the best epoch: a resume would then train every later epoch again."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Remove the top-k checkpoints in ``dirpath`` that this callback does not track (after a resume restored
        what it tracks). A run killed outright (kill -9, the OOM killer) after saving a new best but before removing
        the one it replaces, or before its first ``last``, leaves them: nothing else would ever remove them, and
        each looks like a best checkpoint of this run."""
        if not trainer.is_global_zero or not self.dirpath or not self.filename:
            return
        tracked = {Path(path).resolve() for path in self.best_k_models}
        prefix = self.filename.split("{", 1)[0]
        for path in Path(self.dirpath).glob(f"{glob.escape(prefix)}*{self.FILE_EXTENSION}"):
            if path.name != f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}" and path.resolve() not in tracked:
                log.info("removing %s, a checkpoint that an interrupted run left and no longer tracks", path)
                path.unlink(missing_ok=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)  # top-k, and ``last`` when it saved a new best
        if not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class ThroughputMonitor(L.Callback):
    """Logs tokens/s, model TFLOP/s and MFU every ``log_every`` optimiser steps.

    Tokens are counted over all devices; FLOPs come from :func:`flops_per_token` at the batch's
    length (so the long-convolution term follows the warm-up). MFU needs a peak: ``peak_tflops`` per
    device, or the bf16 peak of a known CUDA device.
    """

    def __init__(self, log_every: int = 10, peak_tflops: float | None = None) -> None:
        self.log_every = max(1, log_every)
        self.peak_tflops = peak_tflops
        self._tokens = 0
        self._flops = 0.0
        self._start: float | None = None
        self._last_step = -1
        self._fpt_cache: dict[int, float] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.peak_tflops is None and torch.cuda.is_available() and pl_module.device.type == "cuda":
            self.peak_tflops = device_peak_tflops(torch.cuda.get_device_name(pl_module.device))
        self._reset()

    def _reset(self) -> None:
        self._tokens, self._flops, self._start = 0, 0.0, time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        ids = batch["input_ids"]
        length = int(ids.shape[-1])
        if length not in self._fpt_cache:
            self._fpt_cache[length] = flops_per_token(getattr(pl_module, "model", pl_module), length)
        tokens = ids.numel() * trainer.world_size
        self._tokens += tokens
        self._flops += tokens * self._fpt_cache[length]
        step = trainer.global_step
        if step == self._last_step or step % self.log_every:
            return
        self._last_step = step
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        elapsed = time.perf_counter() - (self._start or time.perf_counter())
        if elapsed <= 0:
            return
        tflops = self._flops / elapsed / 1e12
        metrics = {"perf/tokens_per_s": self._tokens / elapsed, "perf/tflops": tflops}
        if self.peak_tflops:
            metrics["perf/mfu"] = tflops / (self.peak_tflops * trainer.world_size)
        if pl_module.device.type == "cuda":
            metrics["perf/peak_mem_gib"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)
        self._reset()
