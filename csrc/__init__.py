"""The C++/CUDA sources, installed as package data of slt_hw.csrc (cuda/linear.cu and core/*.h):
the cupy backend compiles linear.cu at run time with NVRTC (slt_hw/backends/cupy.py)."""
