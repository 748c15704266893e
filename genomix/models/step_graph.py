"""One recurrent generation step captured as a CUDA graph and replayed for every token.

A recurrent model's :meth:`step` (Mamba: per layer an add-norm, the in-projection, the conv cache update,
the x- and Δ-projections, one step of the SSM recurrence, the gate and the out-projection) is hundreds of
small kernels per token. On a GPU the host needs far longer to issue them than the GPU needs to run them:
`mamba-7m-1m` (16 layers) stepped at ~13 ms per token on an H200, almost all of it Python and launch
overhead, and at 0.48 ms replayed from a graph (BENCHMARKS.md, "The generation step as a CUDA graph").

The graph is captured for one batch and one state: the state tensors (filled in place by ``prefill`` and
``step``) and the token buffer keep their addresses; each call copies the next tokens in, replays, and
returns a copy of the output (the logits). :func:`step_function` is the one place that picks it: graphs on
CUDA unless ``GENOMIX_STEP_GRAPHS=0``, the eager step elsewhere, with the same arithmetic either way.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .graph_capture import capture

#: "0" makes :func:`step_function` return the eager step on CUDA too.
ENV_SWITCH = "GENOMIX_STEP_GRAPHS"


def state_tensors(state: Sequence, written_only: bool = False) -> list[torch.Tensor]:
    """Every tensor of a list of per-layer states (dataclasses or tuples of tensors); with ``written_only``,
    without the fields a state class names in ``read_only_fields`` (a step never writes them, e.g. the long
    filters' taps of :class:`.long_conv_state.LongConvState`)."""
    tensors = []
    for layer_state in state:
        if hasattr(layer_state, "__dict__"):
            skipped = getattr(layer_state, "read_only_fields", ()) if written_only else ()
            values = [v for name, v in vars(layer_state).items() if name not in skipped]
        else:
            values = layer_state
        tensors.extend(v for v in values if isinstance(v, torch.Tensor))
    return tensors


class GraphedStep:
    """``model.step(ids, state)`` as a replayable CUDA graph for ``batch`` sequences.

    ``state`` is the model's per-layer recurrent state (:meth:`allocate_state`), possibly already filled by
    ``prefill``; the graph reads and updates those very tensors, so they must not be replaced (filling
    them in place is fine). Capturing needs a few eager warm-up steps (cuBLAS handles, allocator growth):
    they run on a side stream and the state is restored afterwards, so construction leaves it as it was.
    A caller's autocast is captured with the graph (without its weight-cast cache, whose tensors would live
    outside the graph)."""

    def __init__(self, model: nn.Module, state: Sequence, batch: int, warmup: int = 2) -> None:
        tensors = state_tensors(state)
        if not tensors or any(t.device.type != "cuda" for t in tensors):
            raise ConfigError("GraphedStep needs a recurrent state on a CUDA device (CUDA graphs)")
        device = tensors[0].device
        self.model, self.state = model, state
        self.ids = torch.zeros(batch, dtype=torch.long, device=device)
        self.autocast = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
        written = state_tensors(state, written_only=True)
        kept = [t.clone() for t in written]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(warmup):
                self._step()
        torch.cuda.current_stream(device).wait_stream(side)
        for tensor, value in zip(written, kept):
            tensor.copy_(value)
        self.graph = torch.cuda.CUDAGraph()
        with capture(self.graph, device), torch.no_grad():
            self.output = self._step()

    def _step(self) -> torch.Tensor:
        with torch.autocast("cuda", dtype=self.autocast or torch.float32, enabled=self.autocast is not None,
                            cache_enabled=False):
            return self.model.step(self.ids, self.state)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """``model.step(ids, state)`` for ``ids`` (batch,): the logits (batch, vocab) of a language model."""
        if ids.shape != self.ids.shape:
            raise ValueError(f"step ids of shape {tuple(ids.shape)}, the graph was captured for "
                             f"{tuple(self.ids.shape)}")
        self.ids.copy_(ids, non_blocking=True)
        self.graph.replay()
        return self.output.clone()


#: Fewest steps a caller must announce for :func:`step_function` to capture a graph: capturing (with its
#: warm-up) costs about as much as a few dozen eager steps.
GRAPH_MIN_STEPS = 16


def step_function(model: nn.Module, state: Sequence, batch: int,
                  steps: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The step to generate with after ``state`` has been allocated (and prefilled): a :class:`GraphedStep`
    when the state lives on a CUDA device (unless :data:`ENV_SWITCH` is "0", or the caller announces fewer
    than :data:`GRAPH_MIN_STEPS` ``steps``), else ``model.step`` on it."""
    on_cuda = all(t.device.type == "cuda" for t in state_tensors(state))
    if on_cuda and os.environ.get(ENV_SWITCH) != "0" and (steps is None or steps >= GRAPH_MIN_STEPS):
        return GraphedStep(model, state, batch)
    return lambda ids: model.step(ids, state)


__all__ = ["ENV_SWITCH", "GRAPH_MIN_STEPS", "GraphedStep", "state_tensors", "step_function"]
