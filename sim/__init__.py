"""The accelerator simulator package, imported as `slt_hw.sim` (never as top-level `sim`).

Submodules import numba; nothing heavy is imported here.
"""
