"""The weight-generation contract (docs/rng.md) as `@triton.jit` helpers, bit for bit.

All hashing is on tl.uint32: multiplication wraps mod 2^32 and `>>` is a logical shift only on
unsigned types. Scalar arguments are cast with `tl.cast`, which also accepts constexprs: Triton
turns an int argument equal to 1 into a constexpr unless the kernel lists it in
`do_not_specialize`, and types ints in [2^31, 2^32) as int64, so never assume a key's type.
Launch kernels with keys and thresholds in `do_not_specialize` anyway (fewer recompiles).

Per-weight helpers (`sign_bit`, `chunk16`, `weight_value`, `freeze_state`) take element tensors
`n`, `k` of any integer type; tile helpers (`sign_tile`, `chunk_tile`, `weight_tile`) take a
1-D tensor of rows and a column start and hash once per 32 (signed constant) or per 2 weights.
"""

import triton
import triton.language as tl

# Freeze states (same codes as slt_hw.reference.prng).
PRUNED: tl.constexpr = tl.constexpr(0)
LOCKED: tl.constexpr = tl.constexpr(1)
FREE: tl.constexpr = tl.constexpr(2)

# Dist codes (slt_hw.contract.Dist.code).
SIGNED_CONSTANT: tl.constexpr = tl.constexpr(0)
UNIFORM: tl.constexpr = tl.constexpr(1)
NORMAL: tl.constexpr = tl.constexpr(2)


@triton.jit
def lowbias32(x):
    x = tl.cast(x, tl.uint32)
    x ^= x >> 16
    x *= 0x7FEB352D
    x ^= x >> 15
    x *= 0x846CA68B
    x ^= x >> 16
    return x


@triton.jit
def hash32(k0, k1, c):
    """h(k0, k1, c) = lowbias32(lowbias32(c ^ k0) ^ k1) on uint32."""
    k0 = tl.cast(k0, tl.uint32)
    k1 = tl.cast(k1, tl.uint32)
    return lowbias32(lowbias32(tl.cast(c, tl.uint32) ^ k0) ^ k1)


@triton.jit
def _u32(x):
    # Truncating cast: counters are < 2^32 by contract and row*stride may only exceed int32.
    return tl.cast(x, tl.uint32)


# --------------------------------------------------------------------------- signed constant


@triton.jit
def sign_word(k0, k1, n, word, Kp):
    """Sign word (n, word): bit j is the sign of weight (n, 32*word + j); 1 means -scale."""
    W = Kp // 32
    return hash32(k0, k1, _u32(n) * _u32(W) + _u32(word))


@triton.jit
def sign_bit(k0, k1, n, k, Kp):
    """Per-weight sign bit (one hash per weight: use sign_tile where 32 weights share a word)."""
    k = _u32(k)
    return (sign_word(k0, k1, n, k >> 5, Kp) >> (k & 31)) & 1


@triton.jit
def expand_bits(words, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr):
    """(BLOCK_N, BLOCK_W) uint32 words -> (BLOCK_N, 32*BLOCK_W) uint32 bits, LSB first."""
    shifts = tl.arange(0, 32).to(tl.uint32)
    bits = (tl.cast(words, tl.uint32)[:, :, None] >> shifts[None, None, :]) & 1
    return tl.reshape(bits, (BLOCK_N, BLOCK_W * 32))


@triton.jit
def expand_bits_1d(words, BLOCK_W: tl.constexpr):
    """(BLOCK_W,) uint32 words -> (32*BLOCK_W,) uint32 bits, LSB first."""
    shifts = tl.arange(0, 32).to(tl.uint32)
    bits = (tl.cast(words, tl.uint32)[:, None] >> shifts[None, :]) & 1
    return tl.reshape(bits, (BLOCK_W * 32,))


@triton.jit
def sign_tile(k0, k1, rows, k_start, Kp, BLOCK_K: tl.constexpr):
    """(len(rows), BLOCK_K) sign bits of columns [k_start, k_start+BLOCK_K); k_start % 32 == 0.
    One hash per 32 weights."""
    BLOCK_W: tl.constexpr = BLOCK_K // 32
    BLOCK_N: tl.constexpr = rows.shape[0]
    words = _u32(k_start // 32) + tl.arange(0, BLOCK_W).to(tl.uint32)
    h = sign_word(k0, k1, rows[:, None], words[None, :], Kp)
    return expand_bits(h, BLOCK_N, BLOCK_W)


@triton.jit
def signed_value(bit, scale):
    return tl.where(bit != 0, -scale, scale)


# --------------------------------------------------------------------------- 16-bit chunks


@triton.jit
def chunk16(k0, k1, n, k, Kp):
    """16-bit chunk of weight (n, k): hash n*(Kp/2) + k/2, low half if k is even, else high."""
    k = _u32(k)
    h = hash32(k0, k1, _u32(n) * _u32(Kp // 2) + (k >> 1))
    return (h >> ((k & 1) << 4)) & 0xFFFF


@triton.jit
def chunk_tile(k0, k1, rows, k_start, Kp, BLOCK_K: tl.constexpr):
    """(len(rows), BLOCK_K) uint32 16-bit chunks of columns [k_start, k_start+BLOCK_K);
    k_start even. One hash per 2 weights."""
    BLOCK_H: tl.constexpr = BLOCK_K // 2
    BLOCK_N: tl.constexpr = rows.shape[0]
    pairs = _u32(k_start // 2) + tl.arange(0, BLOCK_H).to(tl.uint32)
    h = hash32(k0, k1, _u32(rows)[:, None] * _u32(Kp // 2) + pairs[None, :])
    halves = (tl.arange(0, 2) * 16).to(tl.uint32)
    x = (h[:, :, None] >> halves[None, None, :]) & 0xFFFF
    return tl.reshape(x, (BLOCK_N, BLOCK_K))


@triton.jit
def uniform_value(x16, scale):
    """f32(2x - 65535) * 2^-16 (exact) * scale (one rounding)."""
    v = (2 * tl.cast(x16, tl.int32) - 65535).to(tl.float32)
    return (v * 1.52587890625e-05) * scale


@triton.jit
def normal_value(x16, scale, table_ptr):
    """table[x >> 4] * scale, table the contract's 4096-entry float32 quantile table."""
    return tl.load(table_ptr + tl.cast(x16 >> 4, tl.int32)) * scale


# --------------------------------------------------------------------------- values and states


@triton.jit
def weight_value(k0, k1, n, k, Kp, DIST: tl.constexpr, scale, table_ptr):
    """W0[n, k] as float32 (per element; weight_tile shares hashes across a tile)."""
    if DIST == 0:
        return signed_value(sign_bit(k0, k1, n, k, Kp), scale)
    elif DIST == 1:
        return uniform_value(chunk16(k0, k1, n, k, Kp), scale)
    else:
        return normal_value(chunk16(k0, k1, n, k, Kp), scale, table_ptr)


@triton.jit
def weight_tile(k0, k1, rows, k_start, Kp, DIST: tl.constexpr, scale, table_ptr,
                BLOCK_K: tl.constexpr):
    """(len(rows), BLOCK_K) float32 W0 of columns [k_start, k_start+BLOCK_K); k_start % 32 == 0."""
    if DIST == 0:
        return signed_value(sign_tile(k0, k1, rows, k_start, Kp, BLOCK_K), scale)
    elif DIST == 1:
        return uniform_value(chunk_tile(k0, k1, rows, k_start, Kp, BLOCK_K), scale)
    else:
        return normal_value(chunk_tile(k0, k1, rows, k_start, Kp, BLOCK_K), scale, table_ptr)


@triton.jit
def state_of(x16, prune_thr, lock_thr):
    """PRUNED (0) if x < P, LOCKED (1) if x < P+L, else FREE (2), as int32.
    Thresholds go up to 65536, so compare in int32 (x < 2^16)."""
    x = tl.cast(x16, tl.int32)
    p = tl.cast(prune_thr, tl.int32)
    lk = tl.cast(lock_thr, tl.int32)
    return tl.where(x < p, 0, tl.where(x < lk, 1, 2))


@triton.jit
def freeze_state(fk0, fk1, n, k, Kp, prune_thr, lock_thr):
    """Freeze state of weight (n, k) from the FREEZE stream key; lock_thr is P + L."""
    return state_of(chunk16(fk0, fk1, n, k, Kp), prune_thr, lock_thr)


@triton.jit
def freeze_tile(fk0, fk1, rows, k_start, Kp, prune_thr, lock_thr, BLOCK_K: tl.constexpr):
    return state_of(chunk_tile(fk0, fk1, rows, k_start, Kp, BLOCK_K), prune_thr, lock_thr)
