"""Forward and backward of one training micro-batch, eager or replayed from CUDA graphs.

With ``cuda_graphs: true`` in the recipe, :class:`~genomix.train.module.LanguageModelingModule`
optimises manually: per micro-batch a step runner back-propagates ``loss · weight`` (the module's
token weight over the accumulation; the gradients add up in ``.grad``) and the module does what
Lightning's automatic optimisation would do around it.
:class:`GraphedSteps` is what the path is for (small models are bound by the host's kernel launches,
see :mod:`genomix.train.cuda_graph`); :class:`EagerStep` runs the same step without graphs, so the
manual path can be checked against automatic optimisation on any device.

A runner is called as ``runner(inputs, loss_scale)`` (``loss_scale`` a number or a 0-dim tensor on the
model's device, so computing it needs no synchronisation) and returns the micro-batch's unscaled loss,
detached from autograd.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Mapping

import torch
from torch import nn

from ..errors import ConfigError
from .cuda_graph import GraphedTrainingStep

# Lightning precision -> autocast dtype of a graphed step. 16-mixed is left out: it needs Lightning's
# gradient scaler around the backward, which the graph captures without.
_GRAPH_AUTOCAST = {"bf16-mixed": torch.bfloat16, "32-true": None, "32": None, "bf16-true": None, "16-true": None,
                   "64-true": None}


def graph_autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype a graphed step uses under Lightning precision ``precision``."""
    if str(precision) not in _GRAPH_AUTOCAST:
        raise ConfigError(f"cuda_graphs does not support precision {precision!r} (16-mixed needs a gradient scaler, "
                          "which the captured backward does not apply); use bf16-mixed or 32-true")
    return _GRAPH_AUTOCAST[str(precision)]


class EagerStep:
    """The step without graphs: the forward in the caller's autocast (Lightning's precision context),
    ``backward`` (the module's ``manual_backward``, so precision plugins see it) outside autocast, as
    in automatic optimisation."""

    def __init__(self, model: nn.Module, backward: Callable[[torch.Tensor], None]) -> None:
        self.model, self.backward = model, backward

    def __call__(self, inputs: Mapping[str, torch.Tensor], loss_scale: float | torch.Tensor) -> torch.Tensor:
        loss = self.model(**inputs).loss
        with torch.autocast(loss.device.type, enabled=False):
            self.backward(loss * loss_scale)
        return loss.detach()


class GraphedSteps:
    """The step replayed from an accumulating :class:`GraphedTrainingStep`, one per batch shape.

    A new shape (a warm-up stage) is captured on first use; at most ``max_graphs`` graphs stay alive,
    the least recently used one is freed (with its memory pool) before another is captured.
    """

    def __init__(self, model: nn.Module, autocast_dtype: torch.dtype | None, max_graphs: int = 2) -> None:
        self.model, self.autocast_dtype, self.max_graphs = model, autocast_dtype, max_graphs
        self._graphs: OrderedDict[tuple, GraphedTrainingStep] = OrderedDict()

    def __call__(self, inputs: Mapping[str, torch.Tensor], loss_scale: float | torch.Tensor) -> torch.Tensor:
        key = tuple((name, tuple(t.shape)) for name, t in inputs.items())
        step = self._graphs.get(key)
        if step is None:
            while len(self._graphs) >= self.max_graphs:
                self._graphs.popitem(last=False)
            step = self._graphs[key] = GraphedTrainingStep(self.model, inputs, self.autocast_dtype, accumulate=True)
        self._graphs.move_to_end(key)
        return step(inputs, loss_scale).clone()  # the graph's loss is overwritten by the next replay


__all__ = ["EagerStep", "GraphedSteps", "graph_autocast_dtype"]
