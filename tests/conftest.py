"""Test set-up: Triton's interpreter where there is no GPU (set before any kernel is defined),
and tests/ on sys.path for the shared golden-vector helpers."""

import os
import pathlib
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(pathlib.Path(__file__).parent))
