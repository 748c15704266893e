"""Where the suite runs its kernels.

By default everywhere, GPU machines included, Triton kernels run in Triton's CPU interpreter, exactly as
in CI, and the tests marked ``gpu`` are skipped. ``GENOMIX_TEST_GPU=1`` on a CUDA machine is a *GPU run*:
kernels are compiled for the GPU, and only the tests marked ``gpu`` (CUDA-only features) or
``any_device`` (tests written for whichever device :data:`TEST_DEVICE` names) run, since the rest hand
CPU tensors to kernels that only the interpreter can run on them.
"""
from __future__ import annotations

import os

import torch

GPU_RUN = os.environ.get("GENOMIX_TEST_GPU", "").strip() == "1" and torch.cuda.is_available()
TEST_DEVICE = "cuda" if GPU_RUN else "cpu"
