"""Exact numeric primitives of docs/numerics.md, in numpy (no torch).

bf16 / e4m3 / e2m1 rounding, power-of-two scales, FP8/FP4 block quantisation and the
checkpoint encodings (E4M3 bytes, E8M0 scale bytes, packed FP4 nibbles). Shared by
tools/make_tiny_model.py (weights) and tools/reference/v4ref.py (activations).

Official counterparts (yafengge/DeepSeek-V4-Flash @ 60d8d70):
  inference/kernel.py  fast_log2_ceil / fast_pow2 / fast_round_scale  -> pow2_scale
  inference/kernel.py  act_quant_kernel (round_scale, inplace)         -> fp8_act_quant / fake_fp8
  inference/kernel.py  fp4_quant_kernel (inplace)                      -> fake_fp4
  inference/convert.py FP4_TABLE, cast_e2m1fn_to_e4m3fn (nibble order) -> fp4_unpack
Run this file to execute the self-checks.
"""
import numpy as np

F32 = np.float32
F64 = np.float64

# e4m3fn: all 256 byte codes -> value (0x7F / 0xFF are NaN)
def _e4m3_table():
    t = np.zeros(256, F64)
    for b in range(256):
        s = -1.0 if b & 0x80 else 1.0
        e = (b >> 3) & 0xF
        m = b & 7
        if e == 15 and m == 7:
            t[b] = np.nan
        elif e == 0:
            t[b] = s * m * 2.0 ** -9
        else:
            t[b] = s * (1 + m / 8) * 2.0 ** (e - 7)
    return t

E4M3_TABLE = _e4m3_table()
# e2m1: nibble code -> value (bit 3 = sign), as convert.py FP4_TABLE
E2M1_TABLE = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                       -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], F64)

INV448 = F32(1.0) / F32(448.0)   # 0x3B124925
INV6 = F32(1.0) / F32(6.0)       # 0x3E2AAAAB


def f32(x):
    """round (fp64) to fp32, RNE."""
    return np.asarray(x, F64).astype(F32)


def bf16(x):
    """fp32 -> bf16 value (returned as fp32 array), round to nearest even. Input must be fp32."""
    x = np.asarray(x)
    assert x.dtype == F32, x.dtype
    b = x.view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return (b.astype(np.uint32) << 16).view(F32)


def bf16_bits(x):
    """bf16 value held in fp32 -> uint16 bits (exact: low 16 bits must be 0)."""
    u = np.ascontiguousarray(x, F32).view(np.uint32)
    assert not np.any(u & 0xFFFF)
    return (u >> 16).astype(np.uint16)


def bf16_from_bits(u16):
    return (np.asarray(u16, np.uint16).astype(np.uint32) << 16).view(F32)


def e4m3(v):
    """Round to the e4m3fn grid, RNE, subnormals 2^-9*m. Input already clamped to +-448.
    Returns fp32 values (exact)."""
    v = np.asarray(v, F64)
    a = np.abs(v)
    _, ex = np.frexp(a)                # a = m * 2^ex, m in [0.5, 1) -> floor(log2 a) = ex - 1
    q = np.where(a < 2.0 ** -6, 2.0 ** -9, np.ldexp(1.0, ex - 1 - 3))
    r = np.round(a / q) * q           # np.round: half to even; a/q exact (power of two)
    return (np.sign(v) * r).astype(F32)


def e2m1(v):
    """Round to the e2m1 grid {0,.5,1,1.5,2,3,4,6}, RNE (ties to even mantissa). Input clamped to +-6."""
    v = np.asarray(v, F64)
    a = np.abs(v)
    _, ex = np.frexp(a)
    q = np.where(a < 2.0, 0.5, np.ldexp(1.0, ex - 1 - 1))
    r = np.round(a / q) * q
    return (np.sign(v) * r).astype(F32)


def pow2_exp(amax, inv_fmax):
    """Exponent e of pow2_scale: y = f32(amax * inv_fmax); e = exp(y) - 127 + (mant(y) != 0).
    amax fp32 array. (kernel.py fast_log2_ceil)"""
    y = (np.asarray(amax, F32) * inv_fmax).astype(F32)
    b = y.view(np.uint32).astype(np.int64)
    return ((b >> 23) & 0xFF) - 127 + ((b & 0x7FFFFF) != 0)


def fp8_act_quant(x, block):
    """FP8 act quant along the last axis in blocks of `block`. x: bf16 values in fp32.
    Returns (q fp32 e4m3 values, s fp32 power-of-two scales [..., n/block])."""
    x = np.asarray(x, F32)
    xb = x.reshape(x.shape[:-1] + (x.shape[-1] // block, block))
    amax = np.maximum(np.abs(xb).max(-1), F32(1e-4)).astype(F32)
    s = np.ldexp(F32(1.0), pow2_exp(amax, INV448)).astype(F32)
    q = e4m3(np.clip(xb / s[..., None], -448.0, 448.0))   # fp32 division by a power of two: exact
    return q.reshape(x.shape), s


def fake_fp8(x, block):
    """x <- bf16(q*s) (act_quant inplace=True)."""
    q, s = fp8_act_quant(x, block)
    qb = q.reshape(s.shape + (block,))
    return bf16((qb * s[..., None]).astype(F32)).reshape(q.shape)


def fake_fp4(x, block=32):
    """x <- bf16(e2m1(clamp(x/s, +-6)) * s), s = pow2_scale(max(amax, 6*2^-126), 6) (fp4_act_quant inplace)."""
    x = np.asarray(x, F32)
    xb = x.reshape(x.shape[:-1] + (x.shape[-1] // block, block))
    amax = np.maximum(np.abs(xb).max(-1), F32(6 * 2.0 ** -126)).astype(F32)
    s = np.ldexp(F32(1.0), pow2_exp(amax, INV6)).astype(F32)
    q = e2m1(np.clip(xb / s[..., None], -6.0, 6.0))
    return bf16((q * s[..., None]).astype(F32)).reshape(x.shape)


# ---------------------------------------------------------------- checkpoint encodings

def e4m3_to_bytes(q):
    """e4m3 values (exactly representable) -> uint8 codes."""
    q = np.asarray(q, F64)
    a = np.abs(q)
    sign = (np.signbit(q)).astype(np.uint8) << 7
    _, ex = np.frexp(a)
    e = ex - 1
    sub = a < 2.0 ** -6
    mant_sub = np.round(a / 2.0 ** -9)
    expf = np.where(sub, 0, e + 7)
    mant = np.where(sub, mant_sub, np.ldexp(a, -(e - 3)) - 8)
    code = (expf.astype(np.int64) << 3) | mant.astype(np.int64)
    code = np.where(a == 0, 0, code).astype(np.uint8)
    out = code | sign
    assert np.array_equal(E4M3_TABLE[out], q.astype(F64)) or np.allclose(E4M3_TABLE[out], q)
    return out


_E2M1_POS = {0.0: 0, 0.5: 1, 1.0: 2, 1.5: 3, 2.0: 4, 3.0: 5, 4.0: 6, 6.0: 7}


def e2m1_to_nibbles(q):
    q = np.asarray(q, F64)
    a = np.abs(q)
    idx = np.searchsorted(E2M1_TABLE[:8], a)
    assert np.array_equal(E2M1_TABLE[idx], a)
    return (idx | (np.signbit(q) & (a != 0)).astype(np.int64) << 3).astype(np.uint8)


def fp4_pack(q):
    """[out, in] e2m1 values -> int8 [out, in/2]; byte m holds col 2m in the low nibble, 2m+1 high."""
    n = e2m1_to_nibbles(q)
    return (n[:, 0::2] | (n[:, 1::2] << 4)).astype(np.uint8).view(np.int8)


def fp4_unpack(packed, scale_e8m0):
    """int8 [out, in/2] + E8M0 bytes [out, in/32] -> fp32 weight values [out, in] (exact)."""
    u = np.asarray(packed).view(np.uint8)
    lo = E2M1_TABLE[u & 0xF]
    hi = E2M1_TABLE[u >> 4]
    w = np.stack([lo, hi], -1).reshape(u.shape[0], u.shape[1] * 2)
    e = np.asarray(scale_e8m0, np.uint8).astype(np.int64) - 127
    return (w * np.repeat(np.ldexp(1.0, e), 32, axis=1)).astype(F32)


def fp8_dequant(wq_bytes, scale_e8m0):
    """e4m3 bytes [out, in] + E8M0 [ceil(out/128), ceil(in/128)] -> fp32 values (exact)."""
    w = E4M3_TABLE[np.asarray(wq_bytes, np.uint8)]
    e = np.asarray(scale_e8m0, np.uint8).astype(np.int64) - 127
    s = np.ldexp(1.0, e)
    s = np.repeat(np.repeat(s, 128, 0), 128, 1)[:w.shape[0], :w.shape[1]]
    return (w * s).astype(F32)


def quantize_weight_fp8(w):
    """fp32 weight [out, in] -> (e4m3 bytes, E8M0 bytes per 128x128 tile); pow2 scale per tile."""
    out_f, in_f = w.shape
    to, ti = -(-out_f // 128), -(-in_f // 128)
    q = np.zeros(w.shape, F32)
    sc = np.zeros((to, ti), np.uint8)
    for i in range(to):
        for j in range(ti):
            t = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            amax = np.maximum(np.abs(t).max(), F32(1e-4)).astype(F32)
            e = int(pow2_exp(amax, INV448))
            q[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = e4m3(np.clip(t / np.ldexp(1.0, e), -448, 448))
            sc[i, j] = e + 127
    return e4m3_to_bytes(q), sc


def quantize_weight_fp4(w):
    """fp32 weight [out, in] -> (packed int8 [out, in/2], E8M0 [out, in/32]); pow2 scale per 1x32."""
    out_f, in_f = w.shape
    wb = w.reshape(out_f, in_f // 32, 32)
    amax = np.maximum(np.abs(wb).max(-1), F32(6 * 2.0 ** -126)).astype(F32)
    e = pow2_exp(amax, INV6)
    q = e2m1(np.clip(wb / np.ldexp(1.0, e)[..., None], -6, 6)).reshape(out_f, in_f)
    return fp4_pack(q), (e + 127).astype(np.uint8)


# ---------------------------------------------------------------- self-checks

def _selfcheck():
    rng = np.random.default_rng(1)
    # bf16 RNE: ties to even, against an fp64 reference
    x = rng.standard_normal(100000).astype(F32) * F32(3.7)
    x = np.concatenate([x, np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 1 + 2 ** -8 + 2 ** -20], F32)])
    b = bf16(x)
    assert b[-4] == 1.0 and b[-3] == 1 + 2 ** -6 and b[-2] == -1.0 and b[-1] == 1 + 2 ** -7
    hi = np.nextafter(b, np.inf * np.sign(x))
    assert np.all(np.abs(b.astype(F64) - x) <= np.abs(x - b.astype(F64)) + 0)  # trivially
    # every bf16 result is within half a bf16 ulp
    ulp = np.ldexp(1.0, np.frexp(np.abs(b.astype(F64)))[1] - 8)
    assert np.all(np.abs(b.astype(F64) - x) <= ulp / 2 + 1e-30)
    del hi
    # e4m3: every finite code round-trips; midpoints round to even; subnormals
    fin = E4M3_TABLE[np.isfinite(E4M3_TABLE)]
    fin = np.unique(fin[np.abs(fin) <= 448])
    assert np.array_equal(e4m3(fin).astype(F64), fin)
    pos = np.unique(fin[fin >= 0])
    assert len(pos) == 127  # 0 .. 448: 126 nonzero finite magnitudes + 0
    mids = (pos[:-1] + pos[1:]) / 2
    r = e4m3(mids).astype(F64)
    codes = e4m3_to_bytes(r)
    assert np.all((codes & 1) == 0), "ties must go to even mantissa"
    assert np.all((r == pos[:-1]) | (r == pos[1:]))
    # random values: nearest grid point
    v = rng.uniform(-448, 448, 200000)
    v = np.concatenate([v, rng.uniform(-0.03, 0.03, 20000)])
    r = e4m3(v).astype(F64)
    idx = np.searchsorted(pos, np.abs(v))
    lo = pos[np.clip(idx - 1, 0, 126)]
    hi = pos[np.clip(idx, 0, 126)]
    best = np.minimum(np.abs(np.abs(v) - lo), np.abs(hi - np.abs(v)))
    assert np.all(np.abs(np.abs(r) - np.abs(v)) <= best + 1e-300)
    assert e4m3(np.array([2.0 ** -10]))[0] == 0.0 and e4m3(np.array([3 * 2.0 ** -10]))[0] == 2.0 ** -8
    assert e4m3(np.array([2.0 ** -9]))[0] == 2.0 ** -9
    # e4m3 byte codes
    assert e4m3_to_bytes(np.array([448.0]))[0] == 0x7E and e4m3_to_bytes(np.array([-2.0 ** -9]))[0] == 0x81
    allc = np.array([c for c in range(256) if c not in (0x7F, 0xFF, 0x80)], np.uint8)
    assert np.array_equal(e4m3_to_bytes(E4M3_TABLE[allc]), allc)
    # e2m1: grid and ties to even
    g = E2M1_TABLE[:8]
    assert np.array_equal(e2m1(g).astype(F64), g)
    tie_in = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -5.0])
    tie_out = np.array([0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 0.0, -4.0])
    assert np.array_equal(np.abs(e2m1(tie_in)), np.abs(tie_out)) and np.all(np.sign(e2m1(tie_in)) * np.sign(tie_out) >= 0)
    v = rng.uniform(-6, 6, 100000)
    r = e2m1(v).astype(F64)
    d = np.abs(np.abs(v)[:, None] - g[None, :]).min(1)
    assert np.all(np.abs(np.abs(r) - np.abs(v)) <= d + 1e-15)
    # pow2 scale: constants and bit trick
    assert INV448.view(np.uint32) == 0x3B124925 and INV6.view(np.uint32) == 0x3E2AAAAB
    assert pow2_exp(np.array([448.0], F32), INV448)[0] == 0
    assert pow2_exp(np.array([448.1], F32), INV448)[0] == 1
    assert pow2_exp(np.array([1e-4], F32), INV448)[0] == -22
    assert pow2_exp(np.array([6.0], F32), INV6)[0] == 0 and pow2_exp(np.array([3.0], F32), INV6)[0] == -1
    # ceil(log2(amax/448)) check where the fp32 product is not near a power of two
    a = rng.uniform(1e-3, 1e3, 10000).astype(F32)
    e = pow2_exp(a, INV448)
    ref = np.ceil(np.log2(a.astype(F64) / 448.0))
    ok = np.abs(np.log2(a.astype(F64) / 448.0) - np.round(np.log2(a.astype(F64) / 448.0))) > 1e-5
    assert np.array_equal(e[ok], ref[ok].astype(np.int64))
    # weight encodings round-trip
    w = (rng.standard_normal((256, 384)) * 0.05).astype(F32)
    qb, sc = quantize_weight_fp8(w)
    wd = fp8_dequant(qb, sc)
    assert np.max(np.abs(wd - w)) <= np.max(np.abs(w)) * 2 ** -4
    qp, sp = quantize_weight_fp4(w)
    wd4 = fp4_unpack(qp, sp)
    assert np.max(np.abs(wd4 - w)) < np.max(np.abs(w)) * 0.26
    # nibble order: low nibble = even column
    t = np.array([[0.5, -6.0, 0, 0] + [0] * 28], F32)
    p, s = quantize_weight_fp4(t)
    assert p.view(np.uint8)[0, 0] == (0x1 | (0xF << 4)) and s[0, 0] == 127
    # fake quant idempotent
    xb = bf16((rng.standard_normal((4, 256)) * 3).astype(F32))
    f8 = fake_fp8(xb, 64)
    assert np.array_equal(fake_fp8(f8, 64), f8)
    f4 = fake_fp4(xb, 32)
    assert np.array_equal(fake_fp4(f4, 32), f4)
    print("v4num self-checks passed")


if __name__ == "__main__":
    _selfcheck()
