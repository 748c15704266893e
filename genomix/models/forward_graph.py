"""An inference forward captured as a CUDA graph and replayed for every batch of one shape.

Scoring and embedding loops run a fixed model over many batches of one shape. For small and mid-sized models,
and for one long sequence at a time, the host needs longer to issue a forward's kernels than the GPU needs to
run them. Replaying a captured graph issues the whole forward at once: a single 32K sequence through HyenaDNA
``large-1m`` took 19.1 ms eagerly and 3.8 ms replayed on an H200 (BENCHMARKS.md, "Inference forwards replayed
from CUDA graphs").

The long filters are prepared before the capture (:func:`.fixed_filters.fixed_filters`), so the graph holds
only the convolutions with their kept spectra, and :class:`GraphedForward` keeps those spectra alive for as
long as it lives. The usual CUDA-graph rules apply: one graph per input shape, no attention mask (padding is
sorted on the host), outputs overwritten by every replay (each call returns copies). The weights must not
change after the capture: every call checks their versions and raises if they did.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..errors import ConfigError
from .fixed_filters import fixed_filters, tensor_versions
from .graph_capture import capture

log = logging.getLogger(__name__)


def _cloned(value):
    """``value`` with every tensor copied (a tensor, a tuple of tensors, or None)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple):
        return tuple(_cloned(v) for v in value)
    return value


class GraphedForward:
    """``model(input_ids=ids, output_hidden_states=...)`` for ids of one (batch, length), replayed from a CUDA
    graph. ``autocast_dtype``: the forward's mixed precision (None: none); ``warmup`` eager forwards run
    first on a side stream (kernel compilation, cuFFT plans, the filters' spectra), as the capture requires."""

    def __init__(self, model: nn.Module, input_ids: torch.Tensor, output_hidden_states: bool = False,
                 autocast_dtype: torch.dtype | None = torch.bfloat16, warmup: int = 2,
                 forward: Callable | None = None) -> None:
        device = next(model.parameters()).device
        if device.type != "cuda" or input_ids.device != device:
            raise ConfigError("GraphedForward needs the model and its input ids on one CUDA device (CUDA graphs)")
        if model.training:
            raise ConfigError("GraphedForward is for inference: call model.eval() first (dropout would be frozen "
                              "into the graph)")
        self.model, self.autocast_dtype, self.output_hidden_states = model, autocast_dtype, output_hidden_states
        self._forward_fn = forward or model  # graphed_forwards passes the model's own forward, past its wrapper
        self.ids = input_ids.clone()
        with fixed_filters(model), torch.no_grad():
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    self._forward()
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with capture(self.graph, device):
                self.output = self._forward()
            # the graph reads the prepared spectra by address: hold them for as long as it can be replayed
            self._spectra = [reuse.kept() for reuse in (getattr(m, "filter_reuse", None) for m in model.modules())
                             if reuse is not None]
        self._versions = tensor_versions(model)

    def _forward(self):
        # autocast's weight-cast cache would hold tensors from outside the graph: captured forwards run without it
        with torch.autocast("cuda", dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None,
                            cache_enabled=False):
            return self._forward_fn(input_ids=self.ids, output_hidden_states=self.output_hidden_states)

    def current(self) -> bool:
        """Whether the model's weights are still those the graph was captured with."""
        return tensor_versions(self.model) == self._versions

    def __call__(self, input_ids: torch.Tensor):
        """The model's output for ``input_ids`` (of the captured shape), its tensors copied out of the graph."""
        if input_ids.shape != self.ids.shape:
            raise ValueError(f"input ids of shape {tuple(input_ids.shape)}; the graph was captured for "
                             f"{tuple(self.ids.shape)}")
        if not self.current():
            raise ValueError("the model's weights changed after its forward was captured (the graph holds the "
                             "old filters' spectra); capture a new GraphedForward")
        self.ids.copy_(input_ids, non_blocking=True)
        self.graph.replay()
        return type(self.output)(**{name: _cloned(value) for name, value in self.output.items()})


#: "0" makes :func:`graphed_forwards` change nothing.
ENV_SWITCH = "GENOMIX_FORWARD_GRAPHS"


class _GraphedCalls:
    """``model.forward`` inside :func:`graphed_forwards`: eligible calls of a shape seen before replay its
    graph, everything else runs the model's own forward."""

    def __init__(self, model: nn.Module, forward: Callable, max_graphs: int) -> None:
        self.model, self.forward, self.max_graphs = model, forward, max_graphs
        self.graphs: OrderedDict[tuple, GraphedForward] = OrderedDict()
        self.seen: set[tuple] = set()
        self.eager_only: set[tuple] = set()  # shapes whose capture ran out of memory

    def __call__(self, *args, **kwargs):
        key = self._key(args, kwargs)
        if key is None or key in self.eager_only:
            return self.forward(*args, **kwargs)
        input_ids = args[0] if args else kwargs["input_ids"]
        graphed = self.graphs.get(key)
        if graphed is not None and not graphed.current():  # weights changed: capture again
            del self.graphs[key]
            graphed = None
        if graphed is None:
            if key not in self.seen:  # a shape seen once may never come back: no capture for it
                self.seen.add(key)
                return self.forward(*args, **kwargs)
            if len(self.graphs) >= self.max_graphs:
                self.graphs.popitem(last=False)  # the least recently used shape's graph and its memory
            try:
                graphed = GraphedForward(self.model, input_ids, key[1], key[2], forward=self.forward)
            except RuntimeError as exc:
                # A graph keeps its own copy of the activations, and a forward that synchronises with the host
                # cannot be captured: either way this shape runs eagerly (where a real error shows itself).
                reason = ("no memory for its own activations" if isinstance(exc, torch.cuda.OutOfMemoryError)
                          else f"the capture failed: {exc}")
                log.warning("no CUDA graph of the forward for input shape %s (%s); running it eagerly", key[0], reason)
                self.eager_only.add(key)
                torch.cuda.empty_cache()
                return self.forward(*args, **kwargs)
            self.graphs[key] = graphed
        self.graphs.move_to_end(key)
        return graphed(input_ids)

    def _key(self, args: tuple, kwargs: dict) -> tuple | None:
        """(shape, hidden states, autocast dtype) of a call a graph can serve, else None: CUDA ids (the one
        positional argument, or ``input_ids=``), at most ``output_hidden_states`` and a None attention mask
        besides, no gradients, eval mode."""
        if len(args) > 1 or (args and "input_ids" in kwargs) or set(kwargs) - {"input_ids", "attention_mask",
                                                                               "output_hidden_states"}:
            return None
        input_ids = args[0] if args else kwargs.get("input_ids")
        if (not isinstance(input_ids, torch.Tensor) or not input_ids.is_cuda or kwargs.get("attention_mask") is not None
                or torch.is_grad_enabled() or self.model.training):
            return None
        autocast = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
        return tuple(input_ids.shape), bool(kwargs.get("output_hidden_states")), autocast


@contextlib.contextmanager
def graphed_forwards(model: nn.Module, enabled: bool = True, max_graphs: int = 2) -> Iterator[nn.Module]:
    """Within the block, ``model(input_ids=...)`` calls on CUDA without gradients, in eval mode and without an
    attention mask, replay a :class:`GraphedForward` from the second call of each input shape on (a shape seen
    once is run eagerly, not captured); other calls run as always. Results equal eager forwards with the
    filters' spectra kept. At most ``max_graphs`` graphs are kept (the least recently used is dropped): each
    holds its shape's activations; a shape whose capture fails (out of memory, or a forward that synchronises
    with the host) is run eagerly from then on, with a warning. A weight change makes the next call capture again. Yields the model;
    ``enabled=False`` or ``GENOMIX_FORWARD_GRAPHS=0`` changes nothing."""
    if not enabled or os.environ.get(ENV_SWITCH) == "0" or "forward" in vars(model):
        yield model  # also inside an outer block, which already serves the calls
        return
    model.forward = _GraphedCalls(model, model.forward, max_graphs)
    try:
        yield model
    finally:
        del model.forward
