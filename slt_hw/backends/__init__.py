"""The backends, one module each; importing this package registers them with slt_hw.dispatch.

reference (pure PyTorch, the ground truth), cpu (slt_hw._C's CPU kernels, backend "cpp"),
cuda (slt_hw._C's CUDA kernels), triton (slt_hw.kernels), cupy (linear.cu through NVRTC).
None of them imports Triton, CuPy or the extension until it runs.
"""

from . import cpu, cuda, cupy, reference, triton

__all__ = ["cpu", "cuda", "cupy", "reference", "triton"]
