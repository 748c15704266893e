"""A training step's forward and backward captured once as a CUDA graph and replayed.

Small and mid-sized DNA models at moderate lengths are bound by the host, not the GPU: on an H200 the
4-layer, width-256 M2 LM issues ~1,200 kernels per step and the host needed ~34 ms to issue them while
the GPU needed ~16 ms to run them (``pipelines/bench_m2.py``, ``host ms``). Replaying a captured graph
issues the whole forward and backward with one call, so the step runs at the GPU's speed.

The usual CUDA-graph rules apply: the batch shape is fixed (one graph per shape), nothing in the step
may synchronise with the host, and the captured tensors are static: each call copies the batch into the
graph's input buffers, and the loss is overwritten by every replay. By default each replay also
overwrites the parameters' ``.grad`` (the gradients are those of the latest batch); with
``accumulate=True`` it adds to them instead, for gradient accumulation over several calls (zero them
in place between optimiser steps). The optimizer step stays outside the graph.

    step = GraphedTrainingStep(model, {"input_ids": ids, "labels": ids})
    for batch in batches:
        loss = step(batch)          # forward + backward; param.grad now holds this batch's gradients
        optimizer.step()
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..errors import ConfigError
from ..models.graph_capture import capture


class GraphedTrainingStep:
    """``model(**batch).loss`` and its backward as one replayable CUDA graph (see the module docstring).

    ``autocast_dtype`` is the mixed-precision dtype of the forward (``None``: no autocast; a caller's
    autocast does not reach into the step); ``warmup`` eager steps run first on a side stream (kernel
    compilation, cuFFT plans, allocator growth), as the capture requires. Warm-up and capture leave the
    caller's random-number streams as they were, so a replay's dropout masks follow the seed set before it.

    ``accumulate=False``: every replay writes fresh gradients into static ``.grad`` tensors of the
    graph's memory pool. ``accumulate=True``: the graph adds into the ``.grad`` tensors that exist at
    capture (the parameters' current gradients, zeros where there were none), as autograd adds in place
    into a defined ``.grad``; a replay first takes over whatever ``.grad`` holds then (``None`` counts as
    zero), so ``zero_grad`` in either form works, in place being the cheaper.
    """

    def __init__(self, model: nn.Module, example: Mapping[str, torch.Tensor],
                 autocast_dtype: torch.dtype | None = torch.bfloat16, warmup: int = 3,
                 accumulate: bool = False) -> None:
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ConfigError("GraphedTrainingStep needs the model on a CUDA device (CUDA graphs)")
        if any(t.device != device for t in example.values()):
            raise ConfigError(f"the example batch must be on the model's device {device}")
        self.model, self.autocast_dtype, self.accumulate = model, autocast_dtype, accumulate
        self.inputs = {name: t.clone() for name, t in example.items()}
        self.scale = torch.ones((), device=device)  # the loss is multiplied by it before the backward
        params = [p for p in model.parameters() if p.requires_grad]
        kept = [p.grad for p in params]
        with torch.random.fork_rng(devices=[device]):
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    model.zero_grad(set_to_none=True)
                    self._forward_backward()
            torch.cuda.current_stream(device).wait_stream(side)
            used = [p.grad is not None for p in params]
            model.zero_grad(set_to_none=True)  # the captured backward writes fresh (static) gradients...
            if accumulate:  # ...or adds into these; parameters without a gradient stay without, as in eager steps
                for param, grad, has_grad in zip(params, kept, used):
                    param.grad = torch.zeros_like(param) if grad is None and has_grad else grad
            self.graph = torch.cuda.CUDAGraph()
            with capture(self.graph, device):
                self.loss = self._forward_backward()
        self.grads = [(p, p.grad) for p in params]

    def _forward_backward(self) -> torch.Tensor:
        # autocast's weight-cast cache would hold tensors from outside the graph: captured steps run without it
        with torch.autocast("cuda", dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None,
                            cache_enabled=False):
            loss = self.model(**self.inputs).loss
        with torch.autocast("cuda", enabled=False):  # a caller's autocast must not reach the backward
            (loss * self.scale).backward()
        return loss

    def __call__(self, batch: Mapping[str, torch.Tensor], loss_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Run the step on ``batch`` (same keys and shapes as the example), back-propagating
        ``loss · loss_scale`` (a number, or a 0-dim tensor copied on the device without synchronising);
        returns the (static, unscaled) loss."""
        if batch.keys() != self.inputs.keys():
            raise ValueError(f"batch keys {sorted(batch)} differ from the captured {sorted(self.inputs)}")
        for name, tensor in batch.items():
            if tensor.shape != self.inputs[name].shape:
                raise ValueError(f"{name}: shape {tuple(tensor.shape)} differs from the captured "
                                 f"{tuple(self.inputs[name].shape)} (one graph per shape)")
            self.inputs[name].copy_(tensor, non_blocking=True)
        if isinstance(loss_scale, torch.Tensor):
            self.scale.copy_(loss_scale, non_blocking=True)
        else:
            self.scale.fill_(loss_scale)
        if self.accumulate:
            for param, grad in self.grads:  # the graph adds into ``grad``: carry over what .grad holds now
                if param.grad is not grad and grad is not None:
                    if param.grad is None:
                        grad.zero_()
                    else:
                        grad.copy_(param.grad)
                    param.grad = grad
        self.graph.replay()
        if not self.accumulate:
            for param, grad in self.grads:  # zero_grad(set_to_none=True) may have dropped them in between
                param.grad = grad
        return self.loss


__all__ = ["GraphedTrainingStep"]
