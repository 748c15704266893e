"""Long FFT convolution: dispatch point and reference (the Triton path is filled in by its own module)."""
from .reference import fftconv_ref

fftconv = fftconv_ref

__all__ = ["fftconv", "fftconv_ref"]
