"""sw.ref.ops against ai-edge-litert 2.3.0 BUILTIN_REF kernels, op by op, bit for bit.

Each test writes a one-op .tflite with sw.export.tflite_builder (no TensorFlow) and compares
LiteRT's output with the reference op on random and corner-case inputs.
"""
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from sw.export.tflite_builder import TFLiteBuilder, run_litert  # noqa: E402
from sw.ref import ops  # noqa: E402


def _rng(seed):
    return np.random.default_rng(seed)


def _int8(rng, shape):
    return rng.integers(-128, 128, shape).astype(np.int8)


# ---------------------------------------------------------------- FULLY_CONNECTED (ternary)
def _fc_model(shape_x, trits, bias_q, s_x, zp_x, alpha, s_y, zp_y):
    o, k = trits.shape
    mb = TFLiteBuilder()
    x = mb.tensor("x", shape_x, "int8", scale=s_x, zero_point=zp_x)
    w = mb.tensor("w", (o, k), "int8", scale=alpha, zero_point=0, data=trits)
    b = mb.tensor("b", (o,), "int32", scale=np.float32(s_x) * np.asarray(alpha, np.float32),
                  zero_point=0, data=bias_q)
    y = mb.tensor("y", shape_x[:-1] + (o,), "int8", scale=s_y, zero_point=zp_y)
    mb.op("FULLY_CONNECTED", [x, w, b], [y])
    return mb.finish([x], [y])


def _check_fc(x, trits, bias_q, s_x, zp_x, alpha, s_y, zp_y):
    got = run_litert(_fc_model(x.shape, trits, bias_q, s_x, zp_x, alpha, s_y, zp_y), x)[0]
    p = ops.LinearParams.from_scales(s_x, zp_x, alpha, s_y, zp_y, trits, bias_q)
    want = ops.ternary_linear(x, trits, p.bias, p.m0, p.shift, p.out_zero_point)
    np.testing.assert_array_equal(got, want)
    return want


@pytest.mark.parametrize("k,o,seed", [(16, 8, 0), (64, 192, 1), (3072, 24, 2), (768, 40, 3)])
def test_fc_random(k, o, seed):
    rng = _rng(seed)
    x = _int8(rng, (33, k))
    trits = rng.integers(-1, 2, (o, k)).astype(np.int8)
    alpha = rng.uniform(0.005, 0.2, o).astype(np.float32)
    acc_std = 74 * np.sqrt(2 * k / 3)   # |x| ~ U(-128, 128), 2/3 of the trits non-zero
    bias_q = rng.integers(-acc_std, acc_std, o).astype(np.int32)
    s_y = 0.04 * 0.1 * acc_std / 40        # ~40 LSB per accumulator sigma
    y = _check_fc(x, trits, bias_q, 0.04, int(rng.integers(-20, 20)), alpha, s_y,
                  int(rng.integers(-10, 10)))
    assert len(np.unique(y)) > 20  # not all saturated: the comparison means something


def test_fc_rounding_ties_and_saturation():
    """acc = x exactly with multipliers k/2^n: every odd x is a tie; large ones saturate."""
    alpha = np.array([0.5, 0.25, 0.125, 0.375, 0.75, 1.5, 3.0, 2.5, 1 / 16, 7 / 8], np.float32)
    trits = np.ones((len(alpha), 1), np.int8)
    x = np.arange(-128, 128, dtype=np.int8)[:, None]
    y = _check_fc(x, trits, np.zeros(len(alpha), np.int32), 1.0, 0, alpha, 1.0, 0)
    assert y.min() == -128 and y.max() == 127
    # independent oracle of the tie rule (Python ints): round half away from zero
    for j, a in enumerate(alpha):
        num, den = float(a).as_integer_ratio()
        for i, v in enumerate(range(-128, 128)):
            q = (2 * abs(v) * num + den) // (2 * den)
            assert y[i, j] == max(-128, min(127, q if v >= 0 else -q)), (v, a)


def test_fc_corner_cases():
    rng = _rng(7)
    k, o = 256, 12
    trits = rng.integers(-1, 2, (o, k)).astype(np.int8)
    trits[0] = 0                       # all-zero trits: output = requantized bias only
    trits[1] = 1
    trits[2] = -1
    x = np.full((4, k), -128, np.int8)
    x[1] = 127
    x[2] = _int8(rng, k)
    alpha = np.concatenate([[0.01, 0.02, 0.02], rng.uniform(1e-4, 0.5, o - 3)]).astype(np.float32)
    bias_q = rng.integers(-2**20, 2**20, o).astype(np.int32)
    for s_y in (0.001, 0.05, 3.0):      # multipliers from > 1 down to tiny
        _check_fc(x, trits, bias_q, 0.02, -128, alpha, s_y, 5)
        _check_fc(x, trits, bias_q, 0.02, 127, alpha, s_y, -128)


def test_fc_batch_leading_axes():
    rng = _rng(8)
    x = _int8(rng, (2, 5, 64))
    trits = rng.integers(-1, 2, (48, 64)).astype(np.int8)
    alpha = rng.uniform(0.01, 0.1, 48).astype(np.float32)
    p = ops.LinearParams.from_scales(0.05, 3, alpha, 0.2, -2, trits)
    flat = ops.ternary_linear(x.reshape(10, 64), trits, p.bias, p.m0, p.shift, -2)
    _check_fc(x.reshape(10, 64), trits, np.zeros(48, np.int32), 0.05, 3, alpha, 0.2, -2)
    np.testing.assert_array_equal(
        ops.ternary_linear(x, trits, p.bias, p.m0, p.shift, -2).reshape(10, 48), flat)


# ---------------------------------------------------------------- ADD
def _add_model(shape_a, shape_b, qa, qb, qo):
    mb = TFLiteBuilder()
    a = mb.tensor("a", shape_a, "int8", *qa)
    b = mb.tensor("b", shape_b, "int8", *qb)
    shape_o = np.broadcast_shapes(shape_a, shape_b)
    y = mb.tensor("y", shape_o, "int8", *qo)
    mb.op("ADD", [a, b], [y])
    return mb.finish([a, b], [y])


@pytest.mark.parametrize("seed", range(6))
def test_add_random(seed):
    rng = _rng(seed)
    qa = (float(rng.uniform(0.01, 0.5)), int(rng.integers(-128, 128)))
    qb = (float(rng.uniform(0.01, 0.5)), int(rng.integers(-128, 128)))
    qo = (float(rng.uniform(0.02, 0.8)), int(rng.integers(-30, 30)))
    if seed == 0:
        qa, qb = (0.1, 0), (0.1, 0)    # equal scales: exact halves, ties in every rounding
    shape_b = (1, 50, 64) if seed % 2 else (1, 1, 64)   # broadcasting (position embedding)
    a = _int8(rng, (3, 50, 64))
    b = _int8(rng, shape_b)
    a[0, 0, :2] = -128
    got = run_litert(_add_model(a.shape, b.shape, qa, qb, qo), a, b)[0]
    p = ops.AddParams.from_scales(*qa, *qb, *qo)
    np.testing.assert_array_equal(got, ops.add(a, b, p))


def test_add_double_rounding_many_scales():
    """ADD rounds twice (gemmlowp); the single-rounding formula differs on rare inputs,
    so this sweeps 40 scale sets over every (a, b) pair of int8 values."""
    a = np.repeat(np.arange(-128, 128, dtype=np.int8), 256).reshape(256, 256)
    b = a.T.copy()
    for seed in range(40):
        rng = _rng(100 + seed)
        qa = (float(rng.uniform(0.01, 0.5)), int(rng.integers(-128, 128)))
        qb = (float(rng.uniform(0.01, 0.5)), int(rng.integers(-128, 128)))
        qo = (float(rng.uniform(0.02, 0.8)), int(rng.integers(-30, 30)))
        got = run_litert(_add_model(a.shape, b.shape, qa, qb, qo), a, b)[0]
        np.testing.assert_array_equal(got, ops.add(a, b, ops.AddParams.from_scales(*qa, *qb, *qo)))


# ---------------------------------------------------------------- BATCH_MATMUL
def _bmm_model(shape_a, shape_b, qa, qb, qo, adj_y=False):
    mb = TFLiteBuilder()
    a = mb.tensor("a", shape_a, "int8", *qa)
    b = mb.tensor("b", shape_b, "int8", *qb)
    n = shape_b[-2] if adj_y else shape_b[-1]
    y = mb.tensor("y", shape_a[:-1] + (n,), "int8", *qo)
    mb.op("BATCH_MATMUL", [a, b], [y], AdjY=adj_y)
    return mb.finish([a, b], [y])


@pytest.mark.parametrize("zero_points", [False, True])
@pytest.mark.parametrize("seed,m,k,n", [(0, 17, 16, 17), (1, 50, 64, 50), (2, 197, 197, 64)])
def test_batch_matmul(seed, m, k, n, zero_points):
    rng = _rng(seed)
    zpa, zpb, zpo = (map(int, rng.integers(-100, 100, 3)) if zero_points else (0, 0, 0))
    qa, qb = (0.05, zpa), (0.03, zpb)
    qo = (0.05 * 0.03 * np.sqrt(k) * 60, zpo)
    # values spread around their zero points, as real activations are
    a = np.clip(zpa + rng.integers(-128, 128, (2, 3, m, k)), -128, 127).astype(np.int8)
    b = np.clip(zpb + rng.integers(-128, 128, (2, 3, k, n)), -128, 127).astype(np.int8)
    got = run_litert(_bmm_model(a.shape, b.shape, qa, qb, qo), a, b)[0]
    p = ops.MatmulParams.from_scales(*qa, *qb, *qo)
    want = ops.matmul_p(a, b, p)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want)) > 20


def test_batch_matmul_adj_y_is_transpose():
    """q @ k^T as LiteRT computes it with adj_y: same as ops.matmul on the swapped axes."""
    rng = _rng(3)
    q, k = _int8(rng, (4, 2, 10, 16)), _int8(rng, (4, 2, 10, 16))
    qa, qb, qo = (0.1, 3), (0.07, -4), (0.4, 1)
    got = run_litert(_bmm_model(q.shape, k.shape, qa, qb, qo, adj_y=True), q, k)[0]
    p = ops.MatmulParams.from_scales(*qa, *qb, *qo)
    np.testing.assert_array_equal(got, ops.matmul_p(q, np.swapaxes(k, -1, -2), p))


# ---------------------------------------------------------------- SOFTMAX
def _softmax_model(shape, q_in):
    mb = TFLiteBuilder()
    x = mb.tensor("x", shape, "int8", *q_in)
    y = mb.tensor("y", shape, "int8", scale=1 / 256, zero_point=-128)
    mb.op("SOFTMAX", [x], [y], Beta=1.0)
    return mb.finish([x], [y])


@pytest.mark.parametrize("s_in", [0.01, 0.0625, 0.1, 0.2371, 1.0, 4.0, 40.0])
def test_softmax(s_in):
    rng = _rng(int(s_in * 1000))
    x = _int8(rng, (3, 4, 50, 50))
    x[0, 0, 0] = 7                     # a row of equal values
    x[0, 0, 1] = -128                  # equal and minimal
    x[0, 0, 2, :] = -128
    x[0, 0, 2, 3] = 127                # the largest range
    x[0, 0, 3] = rng.integers(120, 128, 50)  # narrow range near the top
    got = run_litert(_softmax_model(x.shape, (s_in, -5)), x)[0]
    want = ops.softmax(x, ops.SoftmaxParams.from_scales(s_in))
    np.testing.assert_array_equal(got, want)


def test_softmax_long_rows():
    rng = _rng(11)
    x = _int8(rng, (2, 197))
    x[1] = 3
    got = run_litert(_softmax_model(x.shape, (0.08, 0)), x)[0]
    np.testing.assert_array_equal(got, ops.softmax(x, ops.SoftmaxParams.from_scales(0.08)))


# ---------------------------------------------------------------- GELU
def _gelu_model(q_in, q_out, approximate):
    mb = TFLiteBuilder()
    x = mb.tensor("x", (256,), "int8", *q_in)
    y = mb.tensor("y", (256,), "int8", *q_out)
    mb.op("GELU", [x], [y], Approximate=approximate)
    return mb.finish([x], [y])


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_tables(approximate):
    rng = _rng(5 + approximate)
    x = np.arange(-128, 128, dtype=np.int8)
    for _ in range(40):
        q_in = (float(rng.uniform(0.005, 0.2)), int(rng.integers(-60, 60)))
        q_out = (float(rng.uniform(0.005, 0.1)), int(rng.integers(-128, -40)))
        got = run_litert(_gelu_model(q_in, q_out, approximate), x)[0]
        table = ops.gelu_table(*q_in, *q_out, approximate=approximate)
        np.testing.assert_array_equal(got, ops.gelu(x, table), err_msg=f"{q_in} {q_out}")


# ---------------------------------------------------------------- MEAN
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 49, 196])
def test_mean(n):
    rng = _rng(n)
    for same in (False, True):
        qi = (float(rng.uniform(0.01, 0.2)), int(rng.integers(-50, 50)))
        qo = qi if same else (float(rng.uniform(0.005, 0.1)), int(rng.integers(-20, 20)))
        mb = TFLiteBuilder()
        x = mb.tensor("x", (3, n, 40), "int8", *qi)
        y = mb.tensor("y", (3, 40), "int8", *qo)
        mb.op("MEAN", [x, mb.tensor("axis", (1,), "int32", data=[1])], [y], KeepDims=False)
        xv = _int8(rng, (3, n, 40))
        got = run_litert(mb.finish([x], [y]), xv)[0]
        np.testing.assert_array_equal(got, ops.mean(xv, 1, ops.MeanParams.from_scales(*qi, *qo)))
