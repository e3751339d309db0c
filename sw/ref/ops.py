"""Integer ops of the TerViT reference: the definition of the project's integer arithmetic.

Pure NumPy, vectorised over leading axes, no float on the data path. Floats appear only in
the ``*Params.from_scales`` / ``from_float`` constructors, which run at pack time and
reproduce LiteRT's own parameter computation (float32 scales, float64 arithmetic where
LiteRT uses double). The algorithms are documented op by op in docs/numerics.md and
checked bit for bit against ai-edge-litert 2.3.0's BUILTIN_REF kernels in
tests/test_ops_litert.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# ----------------------------------------------------------------------------------------
# Multipliers and requantization
# ----------------------------------------------------------------------------------------
def quantize_multiplier(real: float, bits: int = 31) -> tuple[int, int]:
    """(m0, shift) with real ~= m0 * 2^(shift - 31), m0 in [2^30, 2^31): TFLite QuantizeMultiplier.

    frexp, round half away from zero to 31 bits, renormalise a rounded-up mantissa, flush
    multipliers below 2^-32 to (0, 0), clamp multipliers >= 2^30 to (2^31 - 1, 30) (the
    single-rounding requantizer needs shift <= 30; no layer comes near).
    bits < 31 rounds the mantissa to that many significant bits instead (m0 is then a
    multiple of 2^(31 - bits)): bits=31 is TFLite's rule exactly.
    """
    real = float(real)
    if real < 0 or not math.isfinite(real):
        raise ValueError(f"multiplier must be finite and >= 0, got {real}")
    m0, shift = quantize_multipliers(np.array([real]), bits)
    return int(m0[0]), int(shift[0])


def quantize_multipliers(real: np.ndarray, bits: int = 31) -> tuple[np.ndarray, np.ndarray]:
    """quantize_multiplier of every element (the same double operations): int64 (m0, shift)."""
    real = np.asarray(real, dtype=np.float64)
    if real.size and not (np.all(np.isfinite(real)) and real.min() >= 0):
        raise ValueError("multipliers must be finite and >= 0")
    if not 1 <= bits <= 31:
        raise ValueError(f"multiplier bits must be 1..31, got {bits}")
    q, shift = np.frexp(real)
    q_fixed = np.floor(q * 2.0**bits + 0.5).astype(np.int64)  # std::round: half away from zero
    up = q_fixed == 2**bits                                     # mantissa rounded up to 1.0
    m0 = np.where(up, q_fixed // 2, q_fixed) << (31 - bits)
    shift = shift.astype(np.int64) + up
    flush, clamp = (real == 0) | (shift < -31), shift > 30
    return (np.where(flush, 0, np.where(clamp, 2**31 - 1, m0)),
            np.where(flush, 0, np.where(clamp, 30, shift)))


def _as_int64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


def _owned_result(acc, m0, shift) -> np.ndarray:
    """A fresh int64 copy of acc, broadcast to the shape of the result."""
    shape = np.broadcast_shapes(np.shape(acc), np.shape(m0), np.shape(shift))
    return np.array(np.broadcast_to(np.asarray(acc, dtype=np.int64), shape))


def _mbqm_single_(p: np.ndarray, m0, shift) -> np.ndarray:
    """In place on an owned int64 array: p <- round_half_away(p * m0 / 2^(31 - shift))."""
    total = 31 - _as_int64(shift)
    p *= _as_int64(m0)
    sign = p >> 63                                   # -1 where p < 0, else 0
    sign += np.int64(1) << (total - 1)
    p += sign
    p >>= total
    return p


def _mbqm_double_(x: np.ndarray, m0, shift) -> np.ndarray:
    """In place on an owned int64 array: gemmlowp's double rounding (see the public twin)."""
    shift = _as_int64(shift)
    m0 = _as_int64(m0)
    if np.any(shift > 0):
        x <<= np.maximum(shift, 0)
        x[...] = _wrap32(x)                          # C's int32 shift wraps
    right = np.maximum(-shift, 0)
    # SaturatingRoundingDoublingHighMul(x, m0): (x m0 + nudge) / 2^31 toward zero
    sat = bool(np.any(m0 == INT32_MIN)) and bool(np.any(x == INT32_MIN))
    if sat:
        both = (x == INT32_MIN) & (m0 == INT32_MIN)
    x *= m0
    t = x >> 63
    t &= 1 - (1 << 31)                               # nudge - 2^30: 0 or 1 - 2^31
    x += t
    x += 1 << 30
    np.right_shift(x, 63, out=t)
    t &= (1 << 31) - 1
    x += t
    x >>= 31
    if sat:
        x[both] = INT32_MAX
    # RoundingDivideByPOT(x, right): half away from zero
    mask = (np.int64(1) << right) - 1
    np.right_shift(x, 63, out=t)
    thr = (mask >> 1) - t                            # + 1 where x < 0
    rem = x & mask
    x >>= right
    x += rem > thr
    return x


def multiply_by_quantized_multiplier(acc, m0, shift) -> np.ndarray:
    """round(acc * m0 * 2^(shift - 31)), ties away from zero, as LiteRT 2.3.0 BUILTIN_REF's
    per-channel FULLY_CONNECTED (int64 result).

    Single rounding of the exact int64 product p = acc * m0:
    (p + 2^(30 - shift) - [p < 0]) >> (31 - shift) == sign(p) ((|p| + 2^(30-shift)) >> (31-shift)).
    acc int32-range, m0 in [0, 2^31), shift in [-31, 30]: |p| < 2^62, so int64 never overflows.
    """
    return _mbqm_single_(_owned_result(acc, m0, shift), m0, shift)


def multiply_by_quantized_multiplier_double(acc, m0, shift) -> np.ndarray:
    """TFLite's double-rounding MultiplyByQuantizedMultiplier (gemmlowp), int64 result.

    RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc << max(shift, 0), m0),
    max(-shift, 0)): first round(acc * m0 / 2^31) half up, then / 2^-shift half away from
    zero. LiteRT 2.3.0 uses this in per-tensor kernels (BATCH_MATMUL, ADD, MEAN, SOFTMAX's input
    scaling); per-channel FULLY_CONNECTED uses the single rounding above.
    """
    return _mbqm_double_(_owned_result(acc, m0, shift), m0, shift)


def _saturate_int8_(y: np.ndarray, zero_point) -> np.ndarray:
    y += np.int64(zero_point)
    np.clip(y, INT8_MIN, INT8_MAX, out=y)
    return y.astype(np.int8)


def requantize(acc, m0, shift, out_zero_point) -> np.ndarray:
    """int32 accumulator -> int8: zp + MultiplyByQuantizedMultiplier(acc, m0, shift), clamped.

    m0/shift are scalars or per-channel arrays broadcast over the last axis of acc.
    """
    return _saturate_int8_(multiply_by_quantized_multiplier(acc, m0, shift), out_zero_point)


def _exact_float_matmul(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """a @ b for integer-valued arrays, exactly, via BLAS.

    `bound` bounds |any partial sum| (sum of |products| over K). Every product and partial
    sum of integers below 2^24 (float32) / 2^53 (float64) is representable, so BLAS's
    float matmul (any summation order, FMA or not) returns the exact integer result.
    """
    if bound < 2**24:
        dt = np.float32
    elif bound < 2**53:
        dt = np.float64
    else:  # pragma: no cover - K beyond 2^37 is not a layer anyone builds
        return np.matmul(a.astype(np.int64), b.astype(np.int64))
    # C-contiguous operands: numpy's matmul falls off BLAS for transposed stacked views.
    a = np.ascontiguousarray(a, dtype=dt)
    b = np.ascontiguousarray(b, dtype=dt)
    if b.ndim == 2:  # one GEMM over all leading axes
        out = a.reshape(-1, a.shape[-1]) @ b
        return out.reshape(a.shape[:-1] + (b.shape[1],)).astype(np.int64)
    return np.matmul(a, b).astype(np.int64)


# ----------------------------------------------------------------------------------------
# Ternary linear (per-channel int8 FULLY_CONNECTED with weights in {-1, 0, 1})
# ----------------------------------------------------------------------------------------
def fold_input_zero_point(bias_q, trits, x_zero_point) -> np.ndarray:
    """bias_q - zp_x * sum_k trits[o, k]: the bias the hardware adds to sum_k t * x_raw."""
    trits = np.asarray(trits)
    folded = _as_int64(bias_q) - np.int64(x_zero_point) * trits.astype(np.int64).sum(axis=1)
    if folded.min(initial=0) < INT32_MIN or folded.max(initial=0) > INT32_MAX:
        raise ValueError("folded bias does not fit in int32")
    return folded.astype(np.int32)


def ternary_accumulate(x, trits, bias) -> np.ndarray:
    """int64 acc[..., o] = sum_k x[..., k] * trits[o, k] + bias[o] (exact)."""
    x = np.asarray(x)
    trits = np.asarray(trits)
    k = x.shape[-1]
    if trits.ndim != 2 or trits.shape[1] != k:
        raise ValueError(f"trits shape {trits.shape} does not match input depth {k}")
    acc = _exact_float_matmul(x, trits.T, bound=128 * k)
    acc += _as_int64(bias)
    return acc


def ternary_linear(x, trits, bias, m0, shift, out_zero_point) -> np.ndarray:
    """Ternary FULLY_CONNECTED: requantize(x @ trits.T + bias) per output channel.

    x int8 [..., K]; trits int8 [O, K] in {-1, 0, 1}; bias int32 [O] with the input zero
    point folded in (fold_input_zero_point); m0 int32 [O]; shift int [O].
    """
    acc = ternary_accumulate(x, trits, bias)
    return _saturate_int8_(_mbqm_single_(acc, m0, shift), out_zero_point)


# ----------------------------------------------------------------------------------------
# Integer parameter records
# ----------------------------------------------------------------------------------------
class _IntParams:
    """Mixin for frozen dataclasses of int fields / int arrays: named integer arrays for .tvt."""

    def to_arrays(self) -> dict[str, np.ndarray]:
        """{field name: integer ndarray} (scalars as 0-d int64 arrays)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = np.array(v, dtype=np.int64) if np.ndim(v) == 0 else np.asarray(v).copy()
        return out

    @classmethod
    def from_arrays(cls, d: dict):
        """Inverse of to_arrays; raises ValueError naming a missing or non-integer field."""
        kw = {}
        for f in fields(cls):
            if f.name not in d:
                raise ValueError(f"{cls.__name__}: missing field {f.name!r}")
            v = np.asarray(d[f.name])
            if v.dtype.kind not in "iu":
                raise ValueError(f"{cls.__name__}.{f.name}: expected integers, got {v.dtype}")
            kw[f.name] = int(v) if v.ndim == 0 else v
        return cls(**kw)

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented
        a, b = self.to_arrays(), other.to_arrays()
        return all(np.array_equal(a[k], b[k]) for k in a)

    __hash__ = None


def _f32(v) -> float:
    """A scale as the .tflite file stores it (float32), back as a Python float (double)."""
    return float(np.float32(v))


@dataclass(frozen=True, eq=False)
class LinearParams(_IntParams):
    """Per-output-channel requantization of a ternary FULLY_CONNECTED layer."""
    bias: np.ndarray          # int32 [O], input zero point folded in
    m0: np.ndarray            # int32 [O]
    shift: np.ndarray         # int32 [O]
    out_zero_point: int

    @classmethod
    def from_scales(cls, s_x, zp_x, alpha, s_y, zp_y, trits, bias_q=None, multiplier_bits=31):
        """M[o] = s_x * alpha[o] / s_y in double from float32 scales, as LiteRT's per-channel
        FULLY_CONNECTED; bias_q int32 in units of s_x * alpha[o] (None: zero);
        multiplier_bits: significant bits kept of each M[o] (31: LiteRT's own m0)."""
        alpha = np.asarray(alpha, dtype=np.float32).reshape(-1)
        m0, shift = quantize_multipliers(_f32(s_x) * alpha.astype(np.float64) / _f32(s_y),
                                         multiplier_bits)
        bias_q = np.zeros(len(alpha), np.int64) if bias_q is None else bias_q
        return cls(fold_input_zero_point(bias_q, trits, zp_x), m0.astype(np.int32),
                   shift.astype(np.int32), int(zp_y))


# ----------------------------------------------------------------------------------------
# gemmlowp fixed-point primitives (int32 values held in int64 arrays)
# ----------------------------------------------------------------------------------------
def _wrap32(x):
    return ((x + 2**31) & (2**32 - 1)) - 2**31


def _srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul: (a*b + nudge) / 2^31, toward zero."""
    a, b = _as_int64(a), _as_int64(b)
    ab = a * b
    neg = ab >> 63                                   # 0 or -1
    v = ab + (1 << 30) + (neg & (1 - (1 << 31)))     # nudge: 2^30 or 1 - 2^30
    r = (v + ((v >> 63) & ((1 << 31) - 1))) >> 31    # C division by 2^31 (toward zero)
    if np.any(a == INT32_MIN):                       # the one saturating case
        r = np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), r)
    return r


def _rdbpot(x, e):
    """gemmlowp RoundingDivideByPOT: x / 2^e rounded half away from zero."""
    x = _as_int64(x)
    e = _as_int64(e)
    mask = (np.int64(1) << e) - 1
    thr = (mask >> 1) - (x >> 63)                    # + 1 for negative x
    return (x >> e) + ((x & mask) > thr)


def _sat_shl(x, e: int):
    """gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent."""
    thr = (1 << (31 - e)) - 1
    return np.where(x > thr, INT32_MAX, np.where(x < -thr, INT32_MIN, _wrap32(x << e)))


def _bit_length(n):
    """Vectorised int.bit_length for 0 <= n < 2^63."""
    n = _as_int64(n)
    b = np.frexp(n.astype(np.float64))[1].astype(np.int64)  # may be 1 too big near 2^k
    b = np.where((b > 0) & ((n >> np.maximum(b - 1, 0)) == 0), b - 1, b)
    return np.where(n == 0, 0, b)


def isqrt(n) -> np.ndarray:
    """floor(sqrt(n)) exactly, vectorised, for 0 <= n < 2^62 (int64)."""
    n = _as_int64(n)
    s = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    for _ in range(2):
        s = np.where(s * s > n, s - 1, s)
        s = np.where((s + 1) * (s + 1) <= n, s + 1, s)
    return s


def round_div(num, den) -> np.ndarray:
    """num / den rounded half away from zero (den > 0), exact int64."""
    num, den = _as_int64(num), _as_int64(den)
    q = (2 * np.abs(num) + den) // (2 * den)
    return np.where(num < 0, -q, q)


# ----------------------------------------------------------------------------------------
# ADD (int8 TFLite: left_shift 20, per-input multipliers < 1)
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AddParams(_IntParams):
    a_zero_point: int
    b_zero_point: int
    out_zero_point: int
    a_m0: int
    a_shift: int
    b_m0: int
    b_shift: int
    out_m0: int
    out_shift: int
    left_shift: int = 20

    @classmethod
    def from_scales(cls, s_a, zp_a, s_b, zp_b, s_out, zp_out):
        """LiteRT add.cc Prepare: twice_max = 2 max(s_a, s_b); inputs scaled by s/twice_max,
        output by twice_max / (2^20 s_out); float32 scales, double arithmetic."""
        sa, sb, so = _f32(s_a), _f32(s_b), _f32(s_out)
        twice_max = 2.0 * max(sa, sb)
        am, ash = quantize_multiplier(sa / twice_max)
        bm, bsh = quantize_multiplier(sb / twice_max)
        om, osh = quantize_multiplier(twice_max / ((1 << 20) * so))
        if osh > 0:
            raise ValueError("ADD output scale too small: output multiplier must be < 1")
        return cls(int(zp_a), int(zp_b), int(zp_out), am, ash, bm, bsh, om, osh, 20)


def add_input_tables(p: AddParams) -> tuple[np.ndarray, np.ndarray]:
    """The scaled inputs of ADD as 256-entry int32 tables (index q + 128): each input's
    term depends on its own int8 value only, which is also how hardware can do it."""
    q = np.arange(-128, 128, dtype=np.int64)
    mul = multiply_by_quantized_multiplier_double
    ta = mul((q - p.a_zero_point) << p.left_shift, p.a_m0, p.a_shift)
    tb = mul((q - p.b_zero_point) << p.left_shift, p.b_m0, p.b_shift)
    return ta, tb


def add(a, b, p: AddParams) -> np.ndarray:
    """TFLite int8 ADD (broadcasting as numpy), LiteRT's double rounding:
    raw = mul((a - zp_a) << 20, a_m0, a_shift) + mul((b - zp_b) << 20, b_m0, b_shift);
    y = clamp(mul(raw, out_m0, out_shift) + zp_out), mul = multiply_by_quantized_multiplier_double.
    """
    ta, tb = add_input_tables(p)
    a, b = np.asarray(a), np.asarray(b)
    raw = ta[a.astype(np.int16) + 128] + tb[b.astype(np.int16) + 128]
    return _saturate_int8_(_mbqm_double_(raw, p.out_m0, p.out_shift), p.out_zero_point)


# ----------------------------------------------------------------------------------------
# BATCH_MATMUL (int8 x int8 -> int8, per-tensor)
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MatmulParams(_IntParams):
    a_zero_point: int
    b_zero_point: int
    m0: int
    shift: int
    out_zero_point: int

    @classmethod
    def from_scales(cls, s_a, zp_a, s_b, zp_b, s_out, zp_out, extra: float = 1.0):
        """M = float32(s_a * s_b) / s_out as LiteRT's GetQuantizedConvolutionMultipler
        (product in float32, division in double). `extra` (e.g. 1/sqrt(d)) must already be
        folded into s_a or s_b to match LiteRT; it is multiplied in double otherwise."""
        prod = float(np.float32(s_a) * np.float32(s_b))
        m0, shift = quantize_multiplier(prod / _f32(s_out) * extra)
        return cls(int(zp_a), int(zp_b), m0, shift, int(zp_out))


def matmul(a, b, a_zp, b_zp, m0, shift, out_zp) -> np.ndarray:
    """int8 BATCH_MATMUL: sum_k (a - a_zp)[..., m, k] (b - b_zp)[..., k, n], requantized with
    LiteRT's double rounding (multiply_by_quantized_multiplier_double), + out_zp, clamped.

    Exact via float matmul: |(a - zp)(b - zp)| <= 255^2, so float32 while K * 255^2 < 2^24
    (K <= 258: every head dim and ViT token count here), float64 beyond.
    """
    a, b = np.asarray(a), np.asarray(b)
    k = a.shape[-1]
    if b.shape[-2] != k:
        raise ValueError(f"matmul: inner dimensions differ ({a.shape} @ {b.shape})")
    bound = k * (128 + abs(int(a_zp))) * (128 + abs(int(b_zp)))
    dt = np.float32 if bound < 2**24 else np.float64
    # int8 - zero point is exact in float32
    acc = _exact_float_matmul(a.astype(dt) - dt(a_zp), b.astype(dt) - dt(b_zp), bound)
    return _saturate_int8_(_mbqm_double_(acc, m0, shift), out_zp)


def matmul_p(a, b, p: MatmulParams) -> np.ndarray:
    """matmul with a MatmulParams record."""
    return matmul(a, b, p.a_zero_point, p.b_zero_point, p.m0, p.shift, p.out_zero_point)


# ----------------------------------------------------------------------------------------
# SOFTMAX (int8 -> int8, out scale 1/256, zero point -128), LiteRT reference kernel
# ----------------------------------------------------------------------------------------
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def _exp_on_interval_neg_quarter_0(a):
    """gemmlowp exp(x) for x in [-1/4, 0), Q0.31 in and out."""
    const_term, one_third = 1895147668, 715827883
    x = _wrap32(a + (1 << 28))
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = _rdbpot(x4, 2)
    poly = _rdbpot(_wrap32(_srdhm(_wrap32(x4_over_4 + x3), one_third) + x2), 1)
    return _wrap32(const_term + _srdhm(const_term, _wrap32(x + poly)))


def _exp_on_negative_values_q5_26(a):
    """gemmlowp exp_on_negative_values for a Q5.26 input; Q0.31 result."""
    a = _as_int64(a)
    quarter = 1 << 24
    a_mod = _wrap32((a & (quarter - 1)) - quarter)
    result = _exp_on_interval_neg_quarter_0(_sat_shl(a_mod, 5))
    remainder = _wrap32(a_mod - a)
    for exponent, mult in _EXP_BARREL:
        bit = (remainder >> (26 + exponent)) & 1
        result = np.where(bit == 1, _srdhm(result, mult), result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1: Q0.31 in [0, 1) -> Q0.31 1/(1+a)."""
    half_den = (_as_int64(a) + INT32_MAX + 1) >> 1  # RoundingHalfSum(a, One), a >= 0
    x = _wrap32(1515870810 + _srdhm(half_den, -1010580540))
    for _ in range(3):
        one_minus = _wrap32((1 << 29) - _srdhm(half_den, x))
        x = _wrap32(x + _sat_shl(_srdhm(x, one_minus), 2))
    return _sat_shl(x, 1)


@dataclass(frozen=True, eq=False)
class SoftmaxParams(_IntParams):
    """exp_table[d] = Q0.31 exp of the int8 difference -d (d = max - x in 0..255), 0 where
    -d < diff_min; acc_table[d] = exp_table[d] rounded to Q12.19 (the row-sum terms)."""
    input_multiplier: int
    input_left_shift: int
    diff_min: int
    exp_table: np.ndarray   # int32 [256]
    acc_table: np.ndarray   # int32 [256]

    @classmethod
    def from_scales(cls, s_in, beta: float = 1.0):
        """LiteRT PreprocessSoftmaxScaling (Q5.26 input, double-rounding cap 2^31 - 1) and
        CalculateInputRadius; then the 256-entry exp table."""
        real = min(float(beta) * _f32(s_in) * (1 << (31 - 5)), (1 << 31) - 1.0)
        mult, left = quantize_multiplier(real)
        if left < 0:
            raise ValueError("softmax input scale too small")
        radius = math.floor(((1 << 5) - 1) * (1 << (31 - 5)) / (1 << left))
        return cls.from_multiplier(mult, left, -radius)

    @classmethod
    def from_multiplier(cls, input_multiplier: int, input_left_shift: int, diff_min: int):
        """Build the tables from the integer parameters (no float)."""
        diff = -np.arange(256, dtype=np.int64)
        # MultiplyByQuantizedMultiplierGreaterThanOne: SRDHM(diff << left_shift, multiplier)
        rescaled = multiply_by_quantized_multiplier_double(diff, input_multiplier,
                                                           input_left_shift)
        exp = _exp_on_negative_values_q5_26(rescaled)
        exp = np.where(diff >= diff_min, exp, 0)
        return cls(int(input_multiplier), int(input_left_shift), int(diff_min),
                   exp.astype(np.int32), _rdbpot(exp, 12).astype(np.int32))


def softmax(x, p: SoftmaxParams) -> np.ndarray:
    """LiteRT reference int8 SOFTMAX over the last axis (gemmlowp fixed point; out 1/256, -128).

    Rows longer than 4096 could overflow the Q12.19 sum (as in LiteRT) and are refused.
    """
    x = _as_int64(x)
    if x.shape[-1] > 4096:
        raise ValueError("softmax rows longer than 4096 overflow the Q12.19 sum")
    d = x.max(axis=-1, keepdims=True) - x
    exp = np.asarray(p.exp_table, np.int64)[d]
    total = np.asarray(p.acc_table, np.int64)[d].sum(axis=-1, keepdims=True)
    headroom = 32 - _bit_length(total)                     # CountLeadingZeros(uint32)
    bits_over_unit = 12 - headroom
    shifted_minus_one = ((total << headroom) & (2**32 - 1)) - 2**31
    scale = _one_over_one_plus_x(shifted_minus_one)
    # scale > 0 and exp >= 0, so SRDHM and RoundingDivideByPOT reduce to round-half-up shifts
    e = bits_over_unit + 31 - 8
    y = ((((scale * exp + (1 << 30)) >> 31) + (np.int64(1) << (e - 1))) >> e) - 128
    return np.clip(y, INT8_MIN, INT8_MAX).astype(np.int8)


# ----------------------------------------------------------------------------------------
# GELU (a 256-entry table, built as LiteRT's int8 GELU Prepare builds it)
# ----------------------------------------------------------------------------------------
def _gelu_f32(x: np.ndarray, approximate: bool) -> np.ndarray:
    f = np.float32
    if approximate:
        k = f(math.sqrt(2.0 / math.pi))
        inner = k * (x + f(0.044715) * x * x * x)
        t = np.array([math.tanh(float(v)) for v in inner], dtype=np.float32)
        return f(0.5) * x * (f(1.0) + t)
    e = np.array([math.erf(float(v)) for v in (x * f(-math.sqrt(0.5)))], dtype=np.float32)
    return f(0.5) * x * (f(1.0) - e)


def gelu_table(s_in, zp_in, s_out, zp_out, approximate: bool = False) -> np.ndarray:
    """int8 [256] table, index q + 128: clamp(round(gelu(s_in (q - zp_in)) / s_out) + zp_out),
    in float32 as LiteRT's LUT populate (round half away from zero)."""
    f = np.float32
    q = np.arange(-128, 128, dtype=np.int32)
    deq = f(s_in) * (q - np.int32(zp_in)).astype(np.float32)
    y = _gelu_f32(deq, approximate)
    inv = f(1.0) / f(s_out)
    r = y * inv
    whole = np.trunc(r)                       # std::round: half away from zero, exactly
    rounded = whole + np.sign(r) * (np.abs(r - whole) >= f(0.5))
    out = (rounded + f(zp_out)).astype(np.int64)
    return np.clip(out, INT8_MIN, INT8_MAX).astype(np.int8)


def gelu(x, table) -> np.ndarray:
    """y = table[x + 128]."""
    return np.asarray(table, dtype=np.int8)[_as_int64(x) + 128]


# ----------------------------------------------------------------------------------------
# LayerNorm (no int8 builtin: this project's integer algorithm, docs/numerics.md)
# ----------------------------------------------------------------------------------------
LN_FRAC_BITS = 16        # z = y_hat * 2^16 / sqrt(C): |z| <= 2^16
_LN_MIN_GAIN = 2.0**-24  # |M_c| floor so a zero gamma still carries beta


@dataclass(frozen=True, eq=False)
class LayerNormParams(_IntParams):
    """Integer LayerNorm over the last axis (C channels).

    eps_q: eps in the integer variance units (C^3 / s_in^2); sign: gamma's sign per channel;
    offset: beta in units of the channel's output multiplier; m0/shift: |gamma| sqrt(C) 2^-16
    / s_out per channel.
    """
    eps_q: int
    sign: np.ndarray      # int32 [C], +1 / -1
    offset: np.ndarray    # int32 [C]
    m0: np.ndarray        # int32 [C]
    shift: np.ndarray     # int32 [C]
    out_zero_point: int

    @classmethod
    def from_float(cls, gamma, beta, eps, s_in, s_out, zp_out):
        """Fold float gamma/beta/eps and the scales into integers (pack time)."""
        gamma = np.asarray(gamma, np.float64).reshape(-1)
        beta = np.asarray(beta, np.float64).reshape(-1)
        c = len(gamma)
        if beta.shape != gamma.shape:
            raise ValueError("gamma and beta differ in length")
        if c >= 4096:  # keeps sum d^2 exact in float64 and D * r below 2^63
            raise ValueError(f"LayerNorm over {c} channels is too wide")
        eps_q = min(round(float(eps) * c**3 / _f32(s_in) ** 2), 2**61)
        gain = np.maximum(np.abs(gamma) * math.sqrt(c) * 2.0**-LN_FRAC_BITS / _f32(s_out),
                          _LN_MIN_GAIN)
        m0, shift = quantize_multipliers(gain)
        offset = np.clip(np.round(beta / _f32(s_out) / gain), -(2**30), 2**30)
        return cls(int(eps_q), np.where(gamma < 0, -1, 1).astype(np.int32),
                   offset.astype(np.int32), m0.astype(np.int32), shift.astype(np.int32), int(zp_out))


def layernorm(x, p: LayerNormParams) -> np.ndarray:
    """Integer LayerNorm over the last axis; int8 in, int8 out (algorithm: docs/numerics.md).

    D = C x - sum(x) (int32); N = sum D^2 + eps_q (int64); per row f = (62 - bitlen N) // 2,
    sigma = isqrt(N << 2f) in [2^30, 2^31), r = 2^62 // sigma;
    z = round(D r / 2^(46 - f)) ~ y_hat 2^16 / sqrt(C); y = requantize(sign z + offset).
    """
    x = np.asarray(x)
    c = x.shape[-1]
    if c != len(p.m0):
        raise ValueError(f"layernorm: input has {c} channels, parameters {len(p.m0)}")
    x32 = x.astype(np.int32)
    d32 = c * x32 - x32.sum(axis=-1, keepdims=True, dtype=np.int32)   # |d| <= 255 C
    df = d32.astype(np.float64)
    # sum d^2 <= 65025 C^3 < 2^53 for C < 5000: float64 sums it exactly
    n = np.einsum("...i,...i->...", df, df)[..., None].astype(np.int64) + p.eps_q
    d = d32.astype(np.int64)
    f = np.maximum((62 - _bit_length(n)) // 2, 0)
    sigma = np.maximum(isqrt(n << (2 * f)), 1)
    r = (np.int64(1) << 62) // sigma
    prod = d * r                                   # |d| r < 255 C 2^32 < 2^63
    sh = 62 - LN_FRAC_BITS - f                     # >= 16 (f <= 30)
    z = prod >> 63                                 # round half away from zero:
    z += np.int64(1) << (sh - 1)                   # (prod + 2^(sh-1) - [prod < 0]) >> sh
    z += prod
    z >>= sh
    z *= _as_int64(p.sign)
    z += _as_int64(p.offset)
    return _saturate_int8_(_mbqm_single_(z, p.m0, p.shift), p.out_zero_point)


# ----------------------------------------------------------------------------------------
# Mean over an axis (Swin's token pooling)
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MeanParams(_IntParams):
    """(m0, shift) = quantize_multiplier(s_in / s_out); 1/n is applied at run time."""
    in_zero_point: int
    m0: int
    shift: int
    out_zero_point: int

    @classmethod
    def from_scales(cls, s_in, zp_in, s_out, zp_out):
        m0, shift = quantize_multiplier(_f32(s_in) / _f32(s_out))
        return cls(int(zp_in), m0, shift, int(zp_out))


def mean_multiplier(m0: int, shift: int, n: int) -> tuple[int, int]:
    """LiteRT's integer division of the multiplier by n: k = min(floor(log2 n), 32, 31 + shift),
    m0' = (m0 << k) // n, shift' = shift - k."""
    if n < 1:
        raise ValueError("mean over an empty axis")
    k = min(n.bit_length() - 1, 32, 31 + int(shift))
    return (int(m0) << k) // n, int(shift) - k


def mean(x, axis, p: MeanParams) -> np.ndarray:
    """int8 MEAN over `axis` (removed), as LiteRT 2.3.0's int8 MEAN:
    y = clamp(zp_out + mbqm2(sum(x) - n zp_in, mean_multiplier(m0, shift, n))), with the
    double rounding of multiply_by_quantized_multiplier_double."""
    x = np.asarray(x)
    n = x.shape[axis]
    s = x.sum(axis=axis, dtype=np.int64) - np.int64(n) * p.in_zero_point
    m0, shift = mean_multiplier(p.m0, p.shift, n)
    return _saturate_int8_(_mbqm_double_(np.array(s, dtype=np.int64), m0, shift), p.out_zero_point)
