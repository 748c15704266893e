"""Selective scan (Mamba-1): dispatch point, PyTorch reference and Triton kernels."""
from .reference import selective_scan_ref

selective_scan = selective_scan_ref

__all__ = ["selective_scan", "selective_scan_ref"]
