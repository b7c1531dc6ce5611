"""Tests of the fused local-reparameterization ops against the composite TensorFlow path."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_mnf import ops
from tfp_mnf.ops import _library, conv, dense, noise, policy

MAX_STD = 1.0
needs_fused = pytest.mark.skipif(
    not ops.fused_available(), reason="fused op library not built (pip install -e .)"
)


def dense_args(b, k, n, dtype=np.float64, seed=0):
    """x, z, kernel_mean, kernel_variance, bias_mean, bias_log_var with some clipped entries
    (bias_log_var above 2 log MAX_STD)."""
    rng = np.random.default_rng(seed)
    arrays = [
        rng.normal(size=(b, k)),
        1 + 0.3 * rng.normal(size=(b, k)),
        rng.normal(size=(k, n)),
        np.exp(2 * rng.uniform(-3, 0.5, size=(k, n))),
        rng.normal(size=n),
        rng.uniform(-4, 0.5, size=n),
    ]
    return [tf.constant(a.astype(dtype)) for a in arrays]


def conv_args(shape, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [
        rng.normal(size=shape),
        rng.uniform(0.1, 2.0, size=shape),
        rng.normal(size=(shape[0], shape[-1])),
    ]
    return [tf.constant(a.astype(dtype)) for a in arrays]


SEED = tf.constant([7, 11], tf.int64)


def dense_of(op):
    return lambda *a: op(*a, seed=SEED, max_std=MAX_STD)


def conv_of(op):
    return lambda *a: op(*a, seed=SEED)


def value_and_grads(fn, args):
    """Output and gradients of sum(out * w) for a fixed random weighting w."""
    with tf.GradientTape() as tape:
        tape.watch(args)
        out = fn(*args)
        w = tf.constant(np.random.default_rng(1).normal(size=out.shape), out.dtype)
        loss = tf.reduce_sum(out * w)
    return out, tape.gradient(loss, args)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("shape", [[1000], [3, 5, 7], [1], [2, 1]])
def test_noise_equals_stateless_normal(dtype, shape):
    """Zero mean, unit variance, z = 0 leaves exactly eps: the op's noise is stateless_normal."""
    mu = tf.zeros(shape + [1], dtype)
    var = tf.ones(shape + [1], dtype)
    z = tf.zeros([shape[0], 1] if len(shape) > 1 else [shape[0], 1], dtype)
    mu = tf.reshape(mu, [shape[0], -1, 1])
    var = tf.reshape(var, mu.shape)
    eps = conv.fused_epilogue(mu, var, z, SEED) if ops.fused_available() else None
    if eps is None:
        pytest.skip("fused op library not built")
    expected = tf.random.stateless_normal(mu.shape, SEED, dtype=dtype)
    tol = 1e-6 if dtype == tf.float32 else 1e-13
    np.testing.assert_allclose(eps.numpy(), expected.numpy(), atol=tol, rtol=0)


@needs_fused
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("shape", [[1, 1], [3, 7], [5, 1030], [2, 2049]])
def test_dense_epilogue_noise_equals_stateless_normal(dtype, shape):
    """mu = 0, var = 1, b = 0 and a vanishing bias variance leave exactly eps."""
    library = _library.load()
    zeros = tf.zeros(shape[1:], dtype)
    out, stddev = library.mnf_dense_epilogue(
        tf.zeros(shape, dtype), tf.ones(shape, dtype), zeros, zeros - 1000, SEED, max_std=MAX_STD
    )
    expected = tf.random.stateless_normal(shape, SEED, dtype=dtype)
    tol = 1e-6 if dtype == tf.float32 else 1e-13
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=tol, rtol=0)
    np.testing.assert_array_equal(stddev.numpy(), 1)


@needs_fused
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("shape", [[1], [129, 800], [3, 1025], [2, 0, 3], [4, 3, 5]])
@pytest.mark.parametrize("seed_dtype", [tf.int32, tf.int64])
def test_stateless_normal_equals_tf(dtype, shape, seed_dtype):
    seed = tf.constant([5, 9], seed_dtype)
    eps = noise.fused(tf.constant(shape), seed, dtype)
    expected = tf.random.stateless_normal(shape, seed, dtype=dtype)
    assert eps.shape == expected.shape and eps.dtype == dtype
    tol = 1e-6 if dtype == tf.float32 else 1e-13
    np.testing.assert_allclose(eps.numpy(), expected.numpy(), atol=tol, rtol=0)


def test_stateless_normal_dispatch_and_errors(op_path):
    seed = tf.constant([1, 2])
    np.testing.assert_allclose(
        ops.stateless_normal([3, 4], seed, tf.float64),
        tf.random.stateless_normal([3, 4], seed, dtype=tf.float64),
        atol=1e-13,
    )
    half = ops.stateless_normal([6], seed, tf.float16)  # composite: no fused float16 kernel
    np.testing.assert_array_equal(half, tf.random.stateless_normal([6], seed, dtype=tf.float16))

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def draw(batch):
        eps = ops.stateless_normal(tf.stack([batch, 7]), seed)
        assert eps.shape.as_list() == [None, 7]
        return eps

    assert draw(tf.constant(3)).shape == (3, 7)
    with pytest.raises(TypeError, match="seed must be an int32 or int64"):
        ops.stateless_normal([2], tf.constant([1.0, 2.0]))
    with pytest.raises(TypeError, match="dtype must be a floating dtype"):
        ops.stateless_normal([2], seed, tf.int32)


@needs_fused
def test_stateless_normal_op_errors():
    library = _library.load()
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="seed must have"):
        library.mnf_stateless_normal([2, 3], tf.constant([1, 2, 3]), dtype=tf.float32)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="shape must be"):
        library.mnf_stateless_normal([[2, 3]], tf.constant([1, 2]), dtype=tf.float32)


@needs_fused
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_eps_statistics(dtype):
    shape = [1000, 1000, 1]
    eps = conv.fused_epilogue(
        tf.zeros(shape, dtype), tf.ones(shape, dtype), tf.zeros([1000, 1], dtype), SEED
    ).numpy()
    # 1e6 draws: the mean's std is 1e-3 and the variance's ~1.4e-3.
    assert abs(eps.mean()) < 5e-3
    assert abs(eps.var() - 1) < 7e-3
    assert abs((eps**4).mean() - 3) < 0.05  # Gaussian kurtosis
    assert abs((np.abs(eps) < 1).mean() - 0.6827) < 3e-3
    # Neighbouring elements (same Box-Muller pair, same Philox block) are uncorrelated.
    flat = eps.ravel()
    assert abs(np.mean(flat[:-1] * flat[1:])) < 5e-3


@needs_fused
@pytest.mark.parametrize("dims", [(8, 13, 5), (1, 3, 2), (3, 1, 1), (17, 9, 33)])
def test_dense_gradients_float64(dims):
    args = dense_args(*dims)
    for i in range(len(args)):

        def f(arg, i=i):
            full = list(args)
            full[i] = arg
            return dense.fused(*full, seed=SEED, max_std=MAX_STD)

        theoretical, numerical = tf.test.compute_gradient(f, [args[i]], delta=1e-6)
        err = max(np.abs(t - n).max() for t, n in zip(theoretical, numerical, strict=True))
        assert err <= 1e-6, (i, err)


@needs_fused
@pytest.mark.parametrize("shape", [(2, 3, 3, 4), (3, 5, 2), (1, 1, 1, 1)])
def test_conv_gradients_float64(shape):
    args = conv_args(shape)
    for i in range(len(args)):

        def f(arg, i=i):
            full = list(args)
            full[i] = arg
            return conv.fused_epilogue(*full, seed=SEED)

        theoretical, numerical = tf.test.compute_gradient(f, [args[i]], delta=1e-6)
        err = max(np.abs(t - n).max() for t, n in zip(theoretical, numerical, strict=True))
        assert err <= 1e-6, (i, err)


@needs_fused
@pytest.mark.parametrize("dims", [(64, 100, 30), (1, 7, 3), (5, 1, 1), (33, 65, 17)])
def test_dense_fused_matches_composite_float32(dims):
    args = dense_args(*dims, dtype=np.float32)
    out_f, grads_f = value_and_grads(dense_of(dense.fused), args)
    out_c, grads_c = value_and_grads(dense_of(dense.composite), args)
    np.testing.assert_allclose(out_f, out_c, atol=1e-5, rtol=0)
    for g_f, g_c in zip(grads_f, grads_c, strict=True):
        np.testing.assert_allclose(g_f, g_c, atol=1e-5 * max(1, np.abs(g_c).max()), rtol=0)


@needs_fused
@pytest.mark.parametrize("shape", [(4, 24, 24, 20), (3, 8, 8, 50), (2, 7, 3), (1, 1, 1)])
def test_conv_fused_matches_composite_float32(shape):
    args = conv_args(shape, dtype=np.float32)
    out_f, grads_f = value_and_grads(conv_of(conv.fused_epilogue), args)
    out_c, grads_c = value_and_grads(conv_of(conv.composite_epilogue), args)
    np.testing.assert_allclose(out_f, out_c, atol=1e-5, rtol=0)
    for g_f, g_c in zip(grads_f, grads_c, strict=True):
        np.testing.assert_allclose(g_f, g_c, atol=1e-5 * max(1, np.abs(g_c).max()), rtol=0)


def test_clip_zeroes_log_std_gradient(op_path):
    """The layers' dense step, kernel_moments' variances into the dense op: no gradient
    reaches a clipped log sigma or a clipped bias log variance."""
    x, z, m, _, b, _ = dense_args(4, 3, 2)
    log_std = tf.constant([[0.5, -1.0], [2.0, -2.0], [0.1, -0.5]], tf.float64)
    bias_log_var = tf.constant([1.0, -1.0], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch([log_std, bias_log_var])
        moments = ops.kernel_moments(m, log_std, z_axis=0, min_log_std=-20.0, max_std=1.0)
        out = ops.dense_local_reparam_from_variance(
            x, z, m, moments.variance, b, bias_log_var, SEED, 1.0
        )
        loss = tf.reduce_sum(out)
    g_ls, g_blv = tape.gradient(loss, [log_std, bias_log_var])
    np.testing.assert_array_equal(g_ls.numpy() == 0, log_std.numpy() > 0)
    assert g_blv[0] == 0 and g_blv[1] != 0


def test_seed_reproducible(op_path):
    args = dense_args(6, 5, 4, dtype=np.float32)
    a = ops.dense_local_reparam_from_variance(*args, seed=[1, 2], max_std=MAX_STD)
    b = ops.dense_local_reparam_from_variance(*args, seed=[1, 2], max_std=MAX_STD)
    c = ops.dense_local_reparam_from_variance(*args, seed=[1, 3], max_std=MAX_STD)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).min() > 0
    epilogue_args = conv_args((2, 3, 3, 4), dtype=np.float32)
    np.testing.assert_array_equal(
        ops.conv_local_reparam_epilogue(*epilogue_args, seed=[5, 6]),
        ops.conv_local_reparam_epilogue(*epilogue_args, seed=[5, 6]),
    )
    assert (
        np.abs(
            ops.conv_local_reparam_epilogue(*epilogue_args, seed=[5, 6])
            - ops.conv_local_reparam_epilogue(*epilogue_args, seed=[6, 5])
        ).min()
        > 0
    )


@needs_fused
def test_dispatch_chooses_composite_under_xla():
    args = dense_args(4, 3, 2, dtype=np.float32)
    graphs = {}

    def build(jit):
        @tf.function(jit_compile=jit)
        def f(*a):
            return ops.dense_local_reparam_from_variance(*a, seed=SEED, max_std=MAX_STD)

        graphs[jit] = f.get_concrete_function(*args).graph
        return f(*args)

    # XLA compiles stateless_normal with its own Philox layout: same distribution, other draw.
    assert build(True).shape == build(False).shape == (4, 2)
    op_types = {jit: {op.type for op in g.get_operations()} for jit, g in graphs.items()}
    assert "MnfDenseEpilogue" in op_types[False]
    assert "MnfDenseEpilogue" not in op_types[True]
    assert "StatelessRandomNormalV2" in op_types[True]


def test_xla_trains(op_path):
    """A dense layer's parameters get finite, nonzero gradients inside jit_compile."""
    x, z, m, var, b, blv = dense_args(8, 5, 3, dtype=np.float32)
    m, var = tf.Variable(m), tf.Variable(var)

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            out = ops.dense_local_reparam_from_variance(x, z, m, var, b, blv, SEED, MAX_STD)
            loss = tf.reduce_mean(tf.square(out))
        grads = tape.gradient(loss, [m, var])
        m.assign_sub(0.1 * grads[0])
        return loss, grads

    loss0, grads = step()
    assert all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in grads)
    assert step()[0] < loss0


def test_force_composite(monkeypatch):
    with ops.force_composite():
        assert not ops.fused_available()
    monkeypatch.setenv(policy.FORCE_ENV, "1")
    assert not ops.fused_available()
    graph = tf.function(
        lambda *a: ops.dense_local_reparam_from_variance(*a, seed=SEED, max_std=1.0)
    )
    types = {
        op.type for op in graph.get_concrete_function(*dense_args(2, 3, 4)).graph.get_operations()
    }
    assert not any(t.startswith("Mnf") for t in types)


def test_half_precision_uses_composite():
    args = dense_args(3, 4, 5, dtype=np.float16)
    out = ops.dense_local_reparam_from_variance(*args, seed=SEED, max_std=MAX_STD)
    assert out.dtype == tf.float16 and out.shape == (3, 5)


@pytest.mark.parametrize("dims", [(0, 5, 3), (1, 1, 1), (3, 0, 2)])
def test_dense_edge_shapes(op_path, dims):
    args = dense_args(*dims, dtype=np.float32)
    out, grads = value_and_grads(dense_of(ops.dense_local_reparam_from_variance), args)
    assert out.shape == (dims[0], dims[2])
    assert [g.shape for g in grads] == [a.shape for a in args]


def test_conv_zero_batch(op_path):
    args = conv_args((0, 4, 4, 3), dtype=np.float32)
    out, grads = value_and_grads(conv_of(ops.conv_local_reparam_epilogue), args)
    assert out.shape == (0, 4, 4, 3)
    assert [g.shape for g in grads] == [a.shape for a in args]


def test_unknown_batch_in_graph(op_path):
    args = dense_args(5, 4, 3, dtype=np.float32)
    spec = tf.TensorSpec([None, 4], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def f(x, z):
        out = ops.dense_local_reparam_from_variance(x, z, *args[2:], seed=SEED, max_std=MAX_STD)
        assert out.shape.as_list() == [None, 3]
        return out

    np.testing.assert_allclose(f(*args[:2]), dense_of(dense.composite)(*args), atol=1e-5)
    conv_spec = tf.TensorSpec([None, 3, 3, 2], tf.float32)

    @tf.function(input_signature=[conv_spec, conv_spec, tf.TensorSpec([None, 2], tf.float32)])
    def g(mu, var, z):
        out = ops.conv_local_reparam_epilogue(mu, var, z, SEED)
        assert out.shape.as_list() == [None, 3, 3, 2]
        return out

    epilogue_args = conv_args((2, 3, 3, 2), dtype=np.float32)
    np.testing.assert_allclose(
        g(*epilogue_args), conv_of(conv.composite_epilogue)(*epilogue_args), atol=1e-5
    )


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize(
    "index, bad, name",
    [
        (0, tf.zeros([2, 3, 1]), "x must be rank 2"),
        (1, tf.zeros([2, 4]), "z must have"),
        (2, tf.zeros([4, 2]), "kernel_mean must have"),
        (3, tf.zeros([3, 3]), "kernel_variance must have"),
        (4, tf.zeros([3]), "bias_mean must have"),
        (5, tf.zeros([1]), "bias_log_var must have"),
    ],
)
def test_dense_shape_errors(op_path, graph, index, bad, name):
    args = dense_args(2, 3, 2, dtype=np.float32)
    args[index] = bad
    fn = dense_of(ops.dense_local_reparam_from_variance)
    with pytest.raises(ValueError, match=name):
        (tf.function(fn) if graph else fn)(*args)


def _dense_op_calls(bad):
    """Calls of the dense element-wise ops with one argument of a bad shape, and its name."""
    lib = _library.load()
    x, mu, n = tf.zeros([2, 3]), tf.zeros([2, 4]), tf.zeros([4])
    return [
        (lambda: lib.mnf_dense_scaled_inputs(bad, bad), "x must be rank 2"),
        (lambda: lib.mnf_dense_scaled_inputs(x, bad), "z must have"),
        (lambda: lib.mnf_dense_scaled_inputs_grad(bad, x, x, x), "grad_x_z must have"),
        (lambda: lib.mnf_dense_epilogue(mu, bad, n, n, SEED, max_std=1.0), "var must have"),
        (lambda: lib.mnf_dense_epilogue(mu, mu, bad, n, SEED, max_std=1.0), "bias_mean must"),
        (lambda: lib.mnf_dense_epilogue(mu, mu, n, bad, SEED, max_std=1.0), "bias_log_var must"),
        (lambda: lib.mnf_dense_epilogue(mu, mu, n, n, SEED[:1], max_std=1.0), "seed must have"),
        (lambda: lib.mnf_dense_epilogue_grad(mu, bad, n, SEED, max_std=1.0), "stddev must"),
        (lambda: lib.mnf_dense_epilogue_grad(mu, mu, bad, SEED, max_std=1.0), "bias_log_var"),
    ]


@needs_fused
@pytest.mark.parametrize("graph", [False, True], ids=["eager-kernel", "graph-shape-fn"])
@pytest.mark.parametrize("case", range(9))
def test_dense_op_shape_errors(graph, case):
    call, name = _dense_op_calls(tf.zeros([3, 3, 1]))[case]
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=name):
        tf.function(call)() if graph else call()


@needs_fused
def test_max_std_must_be_positive():
    mu, n = tf.zeros([2, 3]), tf.zeros([3])
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_std must be > 0"):
        _library.load().mnf_dense_epilogue(mu, mu, n, n, SEED, max_std=0.0)


@needs_fused
def test_conv_and_seed_shape_errors():
    mu, var, z = conv_args((2, 3, 3, 4), dtype=np.float32)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="z must have shape"):
        conv.fused_epilogue(mu, var, tf.zeros([2, 3]), SEED)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="var must have"):
        conv.fused_epilogue(mu, var[:1], z, SEED)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="seed must have"):
        conv.fused_epilogue(mu, var, z, tf.constant([1, 2, 3]))


def test_dtype_errors():
    args = dense_args(2, 3, 2, dtype=np.float32)
    with pytest.raises(TypeError, match="z must have x's dtype float32"):
        ops.dense_local_reparam_from_variance(
            args[0], tf.cast(args[1], tf.float64), *args[2:], SEED, 1.0
        )
    with pytest.raises(TypeError, match="seed must be an int32 or int64"):
        ops.dense_local_reparam_from_variance(*args, seed=tf.constant([1.0, 2.0]), max_std=1.0)
    with pytest.raises(ValueError, match="max_std must be > 0"):
        ops.dense_local_reparam_from_variance(*args, seed=SEED, max_std=0.0)
    with pytest.raises(TypeError, match="mu must be a floating tensor"):
        ops.conv_local_reparam_epilogue(
            tf.zeros([1, 2], tf.int32), tf.zeros([1, 2], tf.int32), tf.zeros([1, 2], tf.int32), SEED
        )
