"""The one rule that decides between a Triton kernel and its PyTorch reference.

Every op in ``kernels`` asks :func:`use_triton` with its name and input tensors: the Triton path runs
only when all of them live on a CUDA device, Triton imports, ``GENOMIX_FORCE_REFERENCE`` is not set to
a true value, the op is not named in ``GENOMIX_REFERENCE_OPS`` (comma-separated: one kernel off, e.g.
to compare it with its reference inside a model), and the op's kernel is on by default
(:data:`TRITON_BY_DEFAULT`) or named in ``GENOMIX_TRITON_OPS`` (comma-separated).
``GENOMIX_FORCE_TRITON=1`` is the opposite override (beaten only by ``GENOMIX_REFERENCE_OPS``), used by
the CPU tests to run the Triton kernels under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator

import torch

_TRUE = {"1", "true", "yes", "on"}

#: Every op name the long convolution dispatches on (Monarch kernels, the on-chip short path, cuFFT with
#: fused passes): naming them all in ``GENOMIX_REFERENCE_OPS`` runs its PyTorch reference.
FFTCONV_OPS = ("fftconv", "fftconv-short", "fftconv-cufft")
#: Environments (for :func:`environment`) that pin the long convolution to one path, as the benchmarks
#: comparing the paths in one process use them: the PyTorch reference, cuFFT with fused passes (the CUDA
#: default for long calls), and the Triton Monarch kernels.
FFTCONV_PATHS = {
    "reference": {"GENOMIX_TRITON_OPS": "", "GENOMIX_REFERENCE_OPS": ",".join(FFTCONV_OPS)},
    "cufft": {"GENOMIX_TRITON_OPS": "", "GENOMIX_REFERENCE_OPS": "fftconv,fftconv-short"},
    "triton": {"GENOMIX_TRITON_OPS": "fftconv", "GENOMIX_REFERENCE_OPS": ""},
}


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Within the block, the environment variables ``values`` are set (the dispatch reads them per call),
    then each is restored to its previous value or unset."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """Whether ``import triton`` works here (it does not on macOS/Windows wheels of torch)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # pragma: no cover - depends on the platform
        return False
    return True


def interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return _flag("TRITON_INTERPRET")


# Ops whose Triton kernel is the default on CUDA. A kernel is listed only while BENCHMARKS.md shows it
# beating its PyTorch reference on the GPU at the sizes the models use: a user should never get a slower
# path for asking nothing. The others stay one environment variable away (GENOMIX_TRITON_OPS=fftconv).
# "fftconv" (long or fp32 convolutions) is not listed: there its Triton kernels lose to cuFFT (0.60x at
# L=1M, 0.87x at 256K; BENCHMARKS.md, "Long FFT convolution"); "fftconv-short" (16-bit, L <= 4096, the
# whole transform on chip) wins 2.2x and is. Long convolutions run on cuFFT with their elementwise work in
# fused Triton kernels ("fftconv-cufft"). "causal_conv1d" (the short depthwise convolution) reads the
# in-projection's channels-last output in place instead of PyTorch's strided copy plus depthwise kernel.
# "layer_norm" reads the fp32 residual once and writes the autocast dtype (PyTorch: fp32 out, then a cast).
# "gelu_glu" (M2's MLP gate) fuses gelu, multiply, their backward and split's torch.cat into one pass each
# way: 3.25x forward+backward at M2's (65536, 2048) in bf16 on an H200 (BENCHMARKS.md, "GELU-gated linear unit").
# "implicit_filter" (Hyena's and M2's filter) runs its sine MLP, projection and decay as one kernel forward
# and n + 3 backward instead of ~30 small ones, under 16-bit autocast only (BENCHMARKS.md, "Implicit filter").
# "transpose" (channel-major copies of time-major views, for the selective scan's inputs) replaces
# PyTorch's ~70 GB/s strided copy (kernels/transpose, BENCHMARKS.md "Mamba's layout copies").
# "add_norm" (a pre-norm block's residual add + RMSNorm/LayerNorm, Mamba's and Caduceus's blocks and
# HyenaDNA's adds) is one pass each way instead of ~8 PyTorch kernels: 6.7x forward+backward at
# (1, 1M, 256) on an H200 (BENCHMARKS.md, "Fused add-norm").
# "selective_state_update" and "causal_conv1d_update" (one generation step of Mamba's scan and conv) replace
# ~15 and ~6 tiny PyTorch kernels per layer (BENCHMARKS.md, "Fused generation-step kernels").
# "fftconv_update" (HyenaDNA's and M2's generation step of a long convolution) reads the history once: 0.649
# against 2.608 ms per `hyenadna-large-1m` token at 65,664 positions (BENCHMARKS.md, "HyenaDNA generates
# through a recurrent state").
TRITON_BY_DEFAULT = frozenset({
    "selective_scan", "fftconv-short", "fftconv-cufft", "causal_conv1d", "layer_norm", "add_norm", "gelu_glu",
    "implicit_filter", "transpose", "selective_state_update", "causal_conv1d_update", "fftconv_update",
})


def _listed(variable: str) -> set[str]:
    return {name.strip() for name in os.environ.get(variable, "").split(",")}


def _opted_in(op: str) -> bool:
    return op in TRITON_BY_DEFAULT or op in _listed("GENOMIX_TRITON_OPS")


def forcing_triton() -> bool:
    """Whether ``GENOMIX_FORCE_TRITON`` asks for every Triton path (the CPU tests under the interpreter)."""
    return _flag("GENOMIX_FORCE_TRITON")


def use_triton(*tensors: torch.Tensor | None, op: str) -> bool:
    """Decide whether ``op`` should take its Triton path for these inputs (``None`` inputs are ignored).
    Triton runs CUDA tensors, or CPU tensors in its interpreter; ``GENOMIX_FORCE_TRITON`` forces every op
    onto its kernels within those limits (CPU tensors on a GPU machine without the interpreter stay on the
    reference, which is all they can run on)."""
    if _flag("GENOMIX_FORCE_REFERENCE") or not triton_available() or op in _listed("GENOMIX_REFERENCE_OPS"):
        return False
    launchable = on_gpu(*tensors)
    if forcing_triton():
        return launchable or interpreting()
    return _opted_in(op) and launchable


def records_graph(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd would record a call on these inputs (else a path may skip what only a backward needs)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def on_gpu(*tensors: torch.Tensor | None) -> bool:
    """Whether every one of ``tensors`` (``None`` ignored) is on a CUDA device, where compiled kernels run. The
    dispatch asks here, as for :func:`compute_capability`, so that ``kernels/portability.py`` can answer for a GPU
    it stands in for."""
    return all(t.is_cuda for t in tensors if t is not None)


def compute_capability(*tensors: torch.Tensor | None) -> tuple[int, int] | None:
    """(major, minor) compute capability of the CUDA device of the first CUDA tensor in ``tensors``; None when
    none is on CUDA (the CPU, Triton's interpreter). Rules keyed on the GPU generation ask here, so that
    ``kernels/portability.py`` can answer for a GPU it stands in for."""
    device = next((t.device for t in tensors if t is not None and t.is_cuda), None)
    return None if device is None else torch.cuda.get_device_capability(device)


def l2_cache_bytes(device: torch.device) -> int:
    """The L2 cache's size of a CUDA ``device``; 0 elsewhere. Launch choices that depend on it ask here, so that
    ``kernels/portability.py`` can answer for a GPU it stands in for."""
    return torch.cuda.get_device_properties(device).L2_cache_size if device.type == "cuda" else 0


def fftconv_path() -> str:
    """Which path long (multi-pass) fftconv calls on CUDA take here, for benchmark records: "triton" (the
    opt-in Monarch kernels), "cufft" (cuFFT with fused Triton passes, the default) or "reference"."""
    if not torch.cuda.is_available():
        return "reference"
    probe = torch.empty(0, device="cuda")
    for op, name in (("fftconv", "triton"), ("fftconv-cufft", "cufft")):
        if use_triton(probe, op=op):
            return name
    return "reference"
