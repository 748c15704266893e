"""Long filters held fixed through an inference loop.

HyenaDNA's and M2's long filters depend only on the weights and the length, yet every forward computes them
(the implicit filter's MLP over all L positions) and the long convolution transforms them again. In a loop
of forward calls on a fixed model (scoring variants, embedding windows) both are repeated work: at L = 1M and
batch 1 they are about a third of each long convolution on the GPU. Inside :func:`fixed_filters`, each
long-convolution mixer prepares its filters' spectra once per input shape
(:func:`genomix.kernels.prepare_filter`) and reuses them until a filter parameter or buffer changes.

The reuse applies only where it cannot change a result: gradients off (``torch.no_grad`` or
``torch.inference_mode``) and the mixer in eval mode (no filter dropout). Otherwise the mixers compute their
filters as always. The kept spectra cost about one filter's memory per layer (at L = 1M: 1 GiB per
HyenaDNA layer for bf16 inputs) and are released when the block ends.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


def tensor_versions(module: nn.Module) -> tuple:
    """Identity, storage and in-place version of each of ``module``'s parameters and buffers: equal tuples mean
    that no tensor was replaced, moved or written in place in between (as optimisers, ``load_state_dict`` and
    ``copy_`` write; a write through ``.data`` bypasses the version counter and is not seen)."""
    return tuple((id(t), t.data_ptr(), t._version) for t in (*module.parameters(), *module.buffers()))


class FilterReuse:
    """What one mixer keeps inside :func:`fixed_filters`: per filter module, the prepared filters of the
    latest input signature, with the parameter versions they were made from."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[tuple, object]] = {}

    def kept(self) -> list:
        """The prepared values kept now (a reference to them keeps their tensors alive)."""
        return [value for _, value in self._entries.values()]

    def prepared(self, owner: nn.Module, like: torch.Tensor, length: int, build: Callable[[], T]) -> T:
        """``build()``'s value for ``owner``'s filters at ``length`` positions and inputs like ``like``, made
        again only when the signature, the autocast state or any of ``owner``'s parameters and buffers changed
        (:func:`tensor_versions`)."""
        device_type = like.device.type
        autocast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        key = (length, tuple(like.shape), like.dtype, like.device, autocast, tensor_versions(owner))
        entry = self._entries.get(id(owner))
        if entry is None or entry[0] != key:
            self._entries.pop(id(owner), None)  # release the old spectra before making new ones
            entry = (key, build())
            self._entries[id(owner)] = entry
        return entry[1]


def active_reuse(mixer: nn.Module) -> FilterReuse | None:
    """The mixer's :class:`FilterReuse` when its filters may be reused now (inside :func:`fixed_filters`,
    gradients off, eval mode), else None."""
    reuse = getattr(mixer, "filter_reuse", None)
    if reuse is None or mixer.training or torch.is_grad_enabled():
        return None
    return reuse


@contextlib.contextmanager
def fixed_filters(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Within the block, ``model``'s long-convolution mixers (those with a ``filter_reuse`` attribute:
    HyenaDNA's and M2's) reuse their filters' spectra across forward calls, under the conditions in the
    module docstring; results are those of plain forward calls. Yields the model. Nested blocks share the
    outer block's spectra. ``enabled=False`` changes nothing (for callers that let users trade the speed
    for the spectra's memory)."""
    mixers = [m for m in model.modules() if enabled and hasattr(m, "filter_reuse") and m.filter_reuse is None]
    for mixer in mixers:
        mixer.filter_reuse = FilterReuse()
    try:
        yield model
    finally:
        for mixer in mixers:
            mixer.filter_reuse = None


def hold_fixed_filters(model: nn.Module) -> contextlib.ExitStack:
    """:func:`fixed_filters` entered now, for code that cannot wrap a block in it (Lightning's validation
    hooks: one starts the run, another ends it); ``close()`` on the returned stack leaves it."""
    stack = contextlib.ExitStack()
    stack.enter_context(fixed_filters(model))
    return stack
