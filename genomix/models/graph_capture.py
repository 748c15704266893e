"""The one CUDA-graph capture that every graph genomix records goes through (inference forwards, recurrent
generation steps, training steps), so that a capture that fails leaves the device usable.

PyTorch puts the device's default random generator into capture mode when a capture begins and takes it out
only when the capture ends cleanly. A capture that fails part way (a forward that reads a value back to the
host, an out-of-memory error) skips that, and from then on every random op on the device, dropout or
``torch.randn``, raises "Offset increment outside graph capture encountered unexpectedly". Callers that fall
back to eager execution after a failed capture (``graphed_forwards``) would hand the user a broken device.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def capture(graph: torch.cuda.CUDAGraph, device: torch.device) -> Iterator[None]:
    """``torch.cuda.graph(graph)`` on the current stream, in thread-local capture mode: other threads (a
    DataLoader's pin-memory thread) may call CUDA while this one captures. If the capture fails, ``device``'s
    default generator gets a copy of its own seed and offset outside capture mode before the error propagates,
    so random numbers continue where they were."""
    try:
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            yield
    except BaseException:
        restore_generator(device)
        raise


def restore_generator(device: torch.device) -> None:
    """Give ``device``'s default CUDA generator a fresh state with its current seed and offset (a clone is never
    in capture mode), replacing a state that a failed capture left in capture mode."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    generator = torch.cuda.default_generators[index]
    generator.graphsafe_set_state(generator.clone_state())
