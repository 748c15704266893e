"""The LightningModule for causal and masked language-model pretraining of any genomix model.

The model does the modelling: it receives ``input_ids`` and ``labels`` and returns an output with
``.loss`` (causal heads shift labels inside; masked heads compare position-wise; ``-100`` is ignored,
and the window dataset already sets N and padding to ``-100``, so the loss counts real bases only).
This module adds what training needs around it: AdamW with no decay on filter/bias/norm parameters,
warm-up + cosine learning rate, gradient clipping by norm, a non-finite-loss guard, deterministic
per-step dropout seeds (so a resumed run reproduces the uninterrupted one), and token-weighted
validation perplexity and bits per base.

A step's gradient is token-weighted: the gradient of the mean loss over all target tokens of the step,
on all ranks, whatever the micro-batches (``micro_batch_tokens``) and device count. Each micro-batch's
mean loss is back-propagated weighted by its share of targets (its count over a per-step constant, so
the weights stay near 1 for mixed precision), and the summed gradient is rescaled once before the
optimiser step by the step's total count (one all-reduce of a scalar on several ranks). Masked-LM masks
and N bases make the counts differ between micro-batches; a plain mean of micro-batch means would
weigh their tokens unequally, and a short last window of an epoch would get a smaller gradient.

By default Lightning optimises automatically. With a step runner (``step_runner="graph"``, the recipe's
``cuda_graphs: true``) the module optimises manually: the runner does each micro-batch's forward and
backward (replayed from a CUDA graph), and the module does the rest as automatic optimisation would
(the same loss weights, optimiser and schedule step every ``accumulate`` micro-batches, clipping, the
same logs and global step); ``step_runner="eager"`` is the same path without graphs, to check it
against automatic optimisation.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

import lightning as L
import torch
from torch import nn

from ..errors import ConfigError, TrainingError
from ..models.fixed_filters import hold_fixed_filters
from .recipe import OptimConfig
from .step_runner import EagerStep, GraphedSteps, graph_autocast_dtype

IGNORE_INDEX = -100
LN2 = math.log(2.0)


def count_target_tokens(labels: torch.Tensor, causal: bool) -> torch.Tensor:
    """Number of positions that contribute to the loss (after the causal shift, if any)."""
    if causal:
        labels = labels[..., 1:]
    return (labels != IGNORE_INDEX).sum()


# Name parts that FSDP, checkpoint wrappers and torch.compile insert into parameter names.
_WRAPPER_PARTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def _plain_name(name: str) -> str:
    for part in _WRAPPER_PARTS:
        name = name.replace(part, "")
    return name


def no_decay_names(model: nn.Module, no_decay: tuple[str, ...]) -> set[str]:
    """Names of parameters that get no weight decay.

    A parameter skips decay if its name contains one of ``no_decay`` (case-insensitive) or it has
    fewer than two dimensions (biases, norm scales, per-channel skip terms). Decided on the unwrapped
    model: under FSDP the visible parameters are flat shards whose shapes say nothing.
    """
    patterns = tuple(p.lower() for p in no_decay)
    return {
        _plain_name(name)
        for name, param in model.named_parameters()
        if param.ndim < 2 or any(p in name.lower() for p in patterns)
    }


def decay_groups(model: nn.Module, weight_decay: float, skip: set[str]) -> list[dict[str, Any]]:
    """Two AdamW parameter groups: with weight decay, and without it for the names in ``skip``."""
    decay, plain = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (plain if _plain_name(name) in skip else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear from 0 over ``warmup_steps``, then cosine down to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adamw_warmup_cosine(model: nn.Module, optim: OptimConfig, schedule_steps: int,
                        skip: set[str] | None = None) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer: AdamW over :func:`decay_groups` (``skip``: names without
    decay, default :func:`no_decay_names` of ``model``) and a per-step :func:`warmup_cosine` schedule
    spanning ``schedule_steps`` optimiser steps."""
    skip = no_decay_names(model, tuple(optim.no_decay)) if skip is None else skip
    optimizer = torch.optim.AdamW(decay_groups(model, optim.weight_decay, skip), lr=optim.lr,
                                  betas=tuple(optim.betas), eps=optim.eps)
    warmup = max(1, round(optim.warmup_fraction * schedule_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup, schedule_steps, optim.min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def check_finite_loss(module: L.LightningModule, loss: torch.Tensor, batch_idx: int) -> None:
    """Raise :class:`TrainingError` naming the step and the last good checkpoint when ``loss`` is NaN or
    infinite (on any rank: every rank stops together), instead of training on into garbage."""
    trainer = module._trainer  # None when the module runs outside a Trainer
    bad = (~torch.isfinite(loss.detach())).float()
    if trainer is not None and trainer.world_size > 1:
        bad = trainer.strategy.reduce(bad, reduce_op="sum")
    if bad.item() > 0:
        callback = trainer.checkpoint_callback if trainer is not None else None
        last = getattr(callback, "last_model_path", None) or None
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
        raise TrainingError(
            f"non-finite training loss ({loss.item()}) at optimiser step {module.global_step}, "
            f"epoch {module.current_epoch}, micro-batch {batch_idx}; {kept}. Lower the learning rate, "
            "check the data, or resume from the checkpoint with --resume"
        )


def seed_step(seed: int, step: int, batch_idx: int, rank: int) -> None:
    """Seed torch's generator from (seed, optimiser step, micro-batch, rank) alone. Dropout masks then do not
    depend on how the process got to this batch, so a run resumed from a checkpoint draws exactly the masks
    the uninterrupted run drew."""
    torch.manual_seed(((seed * 1_000_003 + step * 1_009 + batch_idx) * 131 + rank) % (2**63 - 1))


class LanguageModelingModule(L.LightningModule):
    """Trains ``model`` (a genomix causal-LM or masked-LM head) on batches of windows.

    Args:
        model: any module whose ``forward(input_ids=..., labels=...)`` returns an object with ``.loss``.
        task: ``"causal-lm"`` or ``"masked-lm"`` (decides how target tokens are counted).
        optim: optimiser and schedule settings.
        schedule_steps: optimiser steps spanned by the learning-rate schedule.
        seed: base of the per-step dropout seeds.
        gradient_clip: maximum gradient norm (0: no clipping).
        step_runner: ``None`` (automatic optimisation), ``"graph"`` or ``"eager"`` (manual optimisation,
            see the module docstring).
    """

    def __init__(self, model: nn.Module, task: str, optim: OptimConfig, schedule_steps: int, seed: int = 0,
                 gradient_clip: float = 0.0, step_runner: str | None = None) -> None:
        super().__init__()
        if step_runner not in (None, "graph", "eager"):
            raise ConfigError(f"step_runner must be None, 'graph' or 'eager', got {step_runner!r}")
        self.model = model
        self.task = task
        self.optim = optim
        self.schedule_steps = schedule_steps
        self.seed = seed
        self.gradient_clip = gradient_clip
        self.step_runner = step_runner
        self.automatic_optimization = step_runner is None
        self._runner: Callable[[dict[str, torch.Tensor], int], torch.Tensor] | None = None
        self._log_every = 1
        self._no_decay = no_decay_names(model, tuple(optim.no_decay))
        self._val_sum = torch.zeros((), dtype=torch.float64)
        self._val_count = torch.zeros((), dtype=torch.float64)
        self._step_sum = torch.zeros((), dtype=torch.float64)
        self._step_count = torch.zeros((), dtype=torch.float64)
        self._weight_base = 1  # the step's per-micro-batch weights are target counts over this

    @property
    def causal(self) -> bool:
        return self.task == "causal-lm"

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        return self.model(input_ids=input_ids, labels=labels)

    # -- training -----------------------------------------------------------------------------
    def on_train_start(self) -> None:
        if self.step_runner == "graph":
            self._runner = GraphedSteps(self.model, graph_autocast_dtype(self.trainer.precision))
        elif self.step_runner == "eager":
            self._runner = EagerStep(self.model, self.manual_backward)
        self._log_every = self.trainer.log_every_n_steps

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        seed_step(self.seed, self.global_step, batch_idx, self.global_rank)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs = {"input_ids": batch["input_ids"], "labels": batch["labels"]}
        if self.automatic_optimization and self._trainer is not None:
            self.trainer.log_every_n_steps = self._log_interval()
        targets = self._count_step_targets(batch["labels"], batch_idx)
        weight = targets.float() / self._weight_base  # this micro-batch's share of the step's loss
        if self.automatic_optimization:
            loss = self.model(**inputs).loss
        else:
            loss = self._manual_forward_backward(inputs, weight, batch_idx)
        check_finite_loss(self, loss, batch_idx)
        step_loss = self._step_loss(loss, targets)
        self.log("train/loss", step_loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("train/bits_per_base", step_loss / LN2, on_step=True, on_epoch=False)
        self.log("train/seq_len", float(batch["input_ids"].shape[-1]), on_step=True, on_epoch=False)
        if not self.automatic_optimization:
            self._manual_optimizer_step(batch_idx)
        return loss * weight  # automatic optimisation divides it by the accumulation before the backward

    def _log_interval(self) -> int:
        """Lightning's step-metric interval for the optimiser step under way: the recipe's ``log_every``, but 1 at
        the run's last step, which is always logged: a run shorter than ``log_every`` (a smoke test, a quick look)
        would otherwise end without a single training row in its ``metrics.csv``."""
        max_steps = self.trainer.max_steps
        return 1 if 0 < max_steps <= self.global_step + 1 else self._log_every

    def _count_step_targets(self, labels: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """This micro-batch's target count, added to the optimiser step's (both on the device: no
        synchronisation per micro-batch). The step's first micro-batch restarts the step's sums and fixes
        the weights' base: its label positions, a host number equal on every rank."""
        targets = count_target_tokens(labels, self.causal).to(torch.float64)
        accumulate = self._trainer.accumulate_grad_batches if self._trainer is not None else 1  # None: a bare step
        if batch_idx % accumulate == 0:
            self._step_sum = torch.zeros((), dtype=torch.float64, device=labels.device)
            self._step_count = torch.zeros((), dtype=torch.float64, device=labels.device)
            self._weight_base = max(labels.numel(), 1)
        self._step_count += targets
        return targets

    def _step_loss(self, loss: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The optimiser step's loss so far: token-weighted over its micro-batches up to this one. Step metrics
        are written with the step's last logged value, so the last micro-batch's loss alone would stand for
        the step, noisier and changing with ``micro_batch_tokens``; this is the step's, whatever its split."""
        self._step_sum += torch.where(targets > 0, loss.detach().to(torch.float64) * targets, 0.0)  # no targets: no NaN
        return (self._step_sum / self._step_count.clamp_min(1)).float()

    def _manual_forward_backward(self, inputs: dict[str, torch.Tensor], weight: torch.Tensor,
                                 batch_idx: int) -> torch.Tensor:
        """The micro-batch's forward and backward through the step runner, its loss weighted as automatic
        optimisation's; gradients are zeroed (in place: graphs add into static buffers) before the first
        micro-batch of each optimiser step."""
        accumulate = self.trainer.accumulate_grad_batches  # the warm-up stage's, set by StageAccumulation
        if batch_idx % accumulate == 0:
            self.optimizers().zero_grad(set_to_none=False)
        return self._runner(inputs, weight / accumulate)

    def _manual_optimizer_step(self, batch_idx: int) -> None:
        """Optimiser and schedule step at the end of an accumulation window or of the epoch, as Lightning's
        automatic loop does (clipping runs in ``on_before_optimizer_step``)."""
        trainer = self.trainer
        steps = (batch_idx + 1) % trainer.accumulate_grad_batches == 0 or batch_idx + 1 == trainer.num_training_batches
        # Lightning's manual loop hands step metrics to the loggers after every micro-batch, the automatic
        # loop only after optimiser steps: hold them back while accumulating, so both write the same rows
        trainer.log_every_n_steps = self._log_interval() if steps else 0
        if steps:
            self.optimizers().step()
            self.lr_schedulers().step()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # after mixed precision's unscaling, right before the step, in either optimisation mode
        self._token_weight_gradients()
        if self.gradient_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm")

    def _token_weight_gradients(self) -> None:
        """Turn the summed gradient into the step's token-weighted mean. The backward passes added
        ``count / (base · accumulate)`` times each micro-batch's mean-loss gradient and data parallelism
        averaged over the ranks, so ``ranks · base · accumulate / total count`` makes it the gradient of
        the mean loss over all the step's targets."""
        total = self._step_count
        world = self.trainer.world_size
        if world > 1:
            total = self.trainer.strategy.reduce(total.clone(), reduce_op="sum")
        factor = (world * self._weight_base * self.trainer.accumulate_grad_batches / total.clamp_min(1)).float()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, factor)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # global_step counts optimiser steps in the automatic or the manual loop's progress, whichever
        # trains: a run resumed in the other mode (cuda_graphs switched) takes over the larger count
        loop = checkpoint.get("loops", {}).get("fit_loop", {})
        automatic = loop.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step")
        manual = loop.get("epoch_loop.manual_optimization.optim_step_progress")
        if automatic is None or manual is None:
            return
        mine, other = (automatic, manual) if self.automatic_optimization else (manual, automatic)
        if other["total"]["completed"] > mine["total"]["completed"]:
            mine.clear()
            mine.update(copy.deepcopy(other))

    # -- validation ---------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._val_count = torch.zeros((), dtype=torch.float64, device=self.device)
        self._val_filters = hold_fixed_filters(self.model)  # the weights are fixed for the whole run

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self.model(input_ids=batch["input_ids"], labels=batch["labels"])
        n = count_target_tokens(batch["labels"], self.causal).to(torch.float64)
        if n > 0:
            self._val_sum += out.loss.detach().to(torch.float64) * n
            self._val_count += n

    def on_validation_epoch_end(self) -> None:
        self._val_filters.close()
        total = self.trainer.strategy.reduce(self._val_sum, reduce_op="sum") if self.trainer.world_size > 1 else self._val_sum
        count = self.trainer.strategy.reduce(self._val_count, reduce_op="sum") if self.trainer.world_size > 1 else self._val_count
        if count.item() == 0:
            return
        loss = (total / count).float()
        # already token-weighted over all ranks, so identical everywhere; sync_dist averages identical
        # values (a no-op) and keeps Lightning's epoch-level bookkeeping consistent across ranks
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/perplexity", torch.exp(loss), sync_dist=True)
        self.log("val/bits_per_base", loss / LN2, prog_bar=True, sync_dist=True)
        self.log("val/step", float(self.global_step))  # a run that stops between validations reports which one

    # -- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_warmup_cosine(self.model, self.optim, self.schedule_steps, self._no_decay)
