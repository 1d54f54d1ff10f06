"""A scalar re-implementation of docs/rng.md, written from the document alone.

Slow on purpose (one Python int at a time): it exists to check that the document and the
vectorised reference say the same thing.
"""

from __future__ import annotations

import math
import struct
from statistics import NormalDist

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


def mix64(z):
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def splitmix64(z):
    return mix64((z + 0x9E3779B97F4A7C15) & M64)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def key(seed, name, stream):
    k = splitmix64(splitmix64(splitmix64(seed) ^ fnv1a64(name.encode())) ^ stream)
    return k & M32, k >> 32


def lowbias32(x):
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def h(k0, k1, c):
    return lowbias32(lowbias32(c ^ k0) ^ k1)


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def normal_table():
    half = [NormalDist().inv_cdf((i + 0.5) / 4096) for i in range(2048, 4096)]
    c = 1.0 / math.sqrt(math.fsum(q * q for q in half) / 2048)
    up = [f32(c * q) for q in half]
    return [-v for v in reversed(up)] + up


def chunk16(k0, k1, n, k, K):
    kp = 32 * ((K + 31) // 32)
    hv = h(k0, k1, n * (kp // 2) + k // 2)
    return hv & 0xFFFF if k % 2 == 0 else hv >> 16


def weight(k0, k1, n, k, K, dist, s, table=None):
    """Weight (n, k) as a Python float holding a float32 value."""
    if dist == "signed_constant":
        w = (K + 31) // 32
        bit = (h(k0, k1, n * w + k // 32) >> (k % 32)) & 1
        return -s if bit else s
    x = chunk16(k0, k1, n, k, K)
    if dist == "uniform":
        return f32(f32(float(2 * x - 65535) * 2.0**-16) * s)
    return f32(table[x >> 4] * s)


def freeze_state(k0, k1, n, k, K, P, PL):
    x = chunk16(k0, k1, n, k, K)
    return 0 if x < P else (1 if x < PL else 2)
