"""The settings of an inference loop over a model whose weights stay fixed (scoring, embedding, evaluation)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from .fixed_filters import fixed_filters
from .forward_graph import graphed_forwards


@contextlib.contextmanager
def inference_loop(model: nn.Module, reuse_filters: bool = True, cuda_graphs: bool = True) -> Iterator[nn.Module]:
    """Within the block, HyenaDNA's and M2's long filters' spectra are kept between forwards
    (:func:`.fixed_filters.fixed_filters`, unless ``reuse_filters`` is False) and, on CUDA, forwards of a
    repeated input shape replay a CUDA graph (:func:`.forward_graph.graphed_forwards`, unless ``cuda_graphs``
    is False). Results equal plain forward calls. Yields the model."""
    with fixed_filters(model, reuse_filters), graphed_forwards(model, cuda_graphs):
        yield model
