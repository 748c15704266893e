"""A training step's forward and backward captured once as a CUDA graph and replayed.

Small and mid-sized DNA models at moderate lengths are bound by the host, not the GPU: on an H200 the
4-layer, width-256 M2 LM issues ~1,200 kernels per step and the host needed ~34 ms to issue them while
the GPU needed ~16 ms to run them (``pipelines/bench_m2.py``, ``host ms``). Replaying a captured graph
issues the whole forward and backward with one call, so the step runs at the GPU's speed.

The usual CUDA-graph rules apply: the batch shape is fixed (one graph per shape), nothing in the step
may synchronise with the host, and the captured tensors are static: each call copies the batch into the
graph's input buffers, and the loss and the parameters' ``.grad`` are overwritten by every replay (the
gradients are those of the latest batch, not accumulated). The optimizer step stays outside the graph.

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


class GraphedTrainingStep:
    """``model(**batch).loss`` and its backward as one replayable CUDA graph (see the module docstring).

    ``autocast_dtype`` is the mixed-precision dtype of the step (``None``: no autocast); ``warmup``
    eager steps run first on a side stream (kernel compilation, cuFFT plans, allocator growth), as the
    capture requires. The parameters' gradients after construction are those of the example batch.
    """

    def __init__(self, model: nn.Module, example: Mapping[str, torch.Tensor],
                 autocast_dtype: torch.dtype | None = torch.bfloat16, warmup: int = 3) -> None:
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ConfigError("GraphedTrainingStep needs the model on a CUDA device (CUDA graphs)")
        if any(t.device != device for t in example.values()):
            raise ConfigError(f"the example batch must be on the model's device {device}")
        self.model, self.autocast_dtype = model, autocast_dtype
        self.inputs = {name: t.clone() for name, t in example.items()}
        params = [p for p in model.parameters() if p.requires_grad]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                model.zero_grad(set_to_none=True)
                self._loss().backward()
        torch.cuda.current_stream(device).wait_stream(side)
        model.zero_grad(set_to_none=True)  # the captured backward then writes fresh (static) gradients
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss = self._loss()
            self.loss.backward()
        self.grads = [(p, p.grad) for p in params]

    def _loss(self) -> torch.Tensor:
        # autocast's weight-cast cache would hold tensors from outside the graph: captured steps run without it
        with torch.autocast("cuda", dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None,
                            cache_enabled=False):
            return self.model(**self.inputs).loss

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Run the step on ``batch`` (same keys and shapes as the example); returns the (static) loss."""
        if batch.keys() != self.inputs.keys():
            raise ValueError(f"batch keys {sorted(batch)} differ from the captured {sorted(self.inputs)}")
        for name, tensor in batch.items():
            if tensor.shape != self.inputs[name].shape:
                raise ValueError(f"{name}: shape {tuple(tensor.shape)} differs from the captured "
                                 f"{tuple(self.inputs[name].shape)} (one graph per shape)")
            self.inputs[name].copy_(tensor, non_blocking=True)
        self.graph.replay()
        for param, grad in self.grads:  # zero_grad(set_to_none=True) may have dropped them in between
            param.grad = grad
        return self.loss


__all__ = ["GraphedTrainingStep"]
