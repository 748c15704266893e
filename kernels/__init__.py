"""Triton kernels of genomix and their PyTorch references.

Imported as ``genomix.kernels`` (the package exposes this top-level ``kernels/`` folder through a
symlink, so it ships in wheels and works from a source tree). Nothing here imports the rest of genomix.
Each op has one dispatch function that picks the Triton kernel on CUDA and the reference elsewhere:

- :func:`fftconv` -- long causal (or bidirectional) FFT convolution with skip term and gates;
  :func:`fftconv_update` one new position of the causal form (generation); :func:`prepare_filter` and
  :func:`fftconv_prepared` reuse a fixed filter's spectrum across inference calls.
- :func:`selective_scan` -- Mamba-1 selective scan; :func:`selective_state_update` one token of it (generation).
- :func:`causal_conv1d` -- short causal depthwise convolution (Hyena/M2 short filter, Mamba conv1d);
  :func:`causal_conv1d_update` one new position of it (generation).
- :func:`layer_norm` -- LayerNorm over the last dim, output in a chosen dtype (the autocast dtype).
- :func:`gelu_glu` -- GELU-gated linear unit ``gelu_tanh(gate) * value`` (M2's MLP), fused forward and backward.
- :func:`implicit_filter` -- Hyena's and M2's implicit long filter (sine MLP, projection, decay), fused.
- :func:`channel_major` -- a time-major (batch, E, L) view copied channel-major (the selective scan's inputs).

When a checkout's root is on ``sys.path`` (``python -m ...`` run there puts the working directory first),
this folder is also importable as the top-level ``kernels``, which would shadow the Hugging Face ``kernels``
distribution that transformers (>= 5.25) imports at start-up. Imported under that name, the module loads
that distribution from the rest of ``sys.path`` into ``sys.modules["kernels"]`` (which the import statement
then returns) and exports nothing itself; without such a distribution it stays this package.
"""
import importlib.machinery
import importlib.util
import os
import sys


def _defer_to_installed() -> bool:
    """Replace ``sys.modules["kernels"]`` by the ``kernels`` found on ``sys.path`` outside this checkout;
    False (nothing changed) if there is none."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    elsewhere = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
    spec = importlib.machinery.PathFinder.find_spec("kernels", elsewhere)
    if spec is None or spec.loader is None:
        return False
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernels"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["kernels"]
        raise
    return True


if __name__ == "kernels" and _defer_to_installed():
    pass  # the import of top-level ``kernels`` returns the installed distribution
else:
    from .causal_conv import causal_conv1d, causal_conv1d_ref, causal_conv1d_update
    from .dispatch import use_triton
    from .fftconv import PreparedFilter, fftconv, fftconv_prepared, fftconv_ref, fftconv_update, prepare_filter
    from .gelu_glu import gelu_glu, gelu_glu_ref
    from .implicit_filter import implicit_filter, implicit_filter_ref
    from .layer_norm import layer_norm, layer_norm_ref
    from .scan import selective_scan, selective_scan_ref, selective_state_update
    from .transpose import channel_major

    __all__ = [
        "PreparedFilter", "causal_conv1d", "causal_conv1d_ref", "causal_conv1d_update", "channel_major", "fftconv",
        "fftconv_prepared", "fftconv_ref", "fftconv_update", "gelu_glu", "gelu_glu_ref", "implicit_filter",
        "implicit_filter_ref", "layer_norm", "layer_norm_ref", "prepare_filter", "selective_scan",
        "selective_scan_ref", "selective_state_update", "use_triton",
    ]
