"""Tests of the fused 2-D conv ops against `tf.nn.convolution` and the composite epilogue: the
convolution pair conv(x, M), conv(x^2, sigma^2) (MnfConv2DMeanVariance), the whole sampling
step (MnfConv2DLocalReparam), their gradient ops and their errors."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_mnf import ops
from tfp_mnf.ops import _library, composite, fused

needs_fused = pytest.mark.skipif(
    not ops.fused_available(), reason="fused op library not built (pip install -e .)"
)

# (x shape, kernel size, out channels, strides, padding, dilations)
CASES = [
    ((4, 28, 28, 1), (5, 5), 20, (1, 1), "VALID", (1, 1)),  # MNF-LeNet's first layer
    ((3, 12, 12, 20), (5, 5), 50, (1, 1), "VALID", (1, 1)),  # and its second
    ((2, 9, 7, 3), (3, 2), 5, (2, 1), "SAME", (1, 1)),
    ((2, 9, 7, 3), (3, 3), 17, (1, 1), "SAME", (2, 3)),
    ((1, 5, 6, 2), (3, 3), 7, (3, 2), "VALID", (1, 1)),
    ((2, 6, 6, 3), (3, 3), 40, (1, 1), "SAME", (1, 1)),
    ((1, 1, 1, 1), (1, 1), 1, (1, 1), "VALID", (1, 1)),
    ((3, 4, 4, 7), (4, 4), 13, (1, 1), "VALID", (1, 1)),  # one output position
]


# Small cases for the numerical float64 gradient checks (Jacobians of every element).
GRAD_CASES = {
    "stride": ((2, 6, 5, 3), (3, 2), 4, (2, 1), "SAME", (1, 1)),
    "dilated": ((1, 7, 6, 2), (3, 3), 3, (1, 1), "SAME", (2, 1)),
    "valid": CASES[4],
}


def case_args(case, dtype=np.float32, seed=0):
    x_shape, kernel_size, n, strides, padding, dilations = case
    rng = np.random.default_rng(seed)
    kernel_shape = (*kernel_size, x_shape[-1], n)
    x = tf.constant(rng.normal(size=x_shape).astype(dtype))
    kernel_mean = tf.constant(rng.normal(size=kernel_shape).astype(dtype))
    kernel_variance = tf.constant(rng.uniform(0.01, 1.0, size=kernel_shape).astype(dtype))
    conv = dict(strides=strides, padding=padding, dilations=dilations)
    return [x, kernel_mean, kernel_variance], conv


def values_and_grads(impl, args, conv):
    """(mean, variance) and the gradients of sum(mean * u + variance * v) for fixed u, v."""
    with tf.GradientTape() as tape:
        tape.watch(args)
        mean, variance = impl.conv_mean_variance(*args, **conv)
        rng = np.random.default_rng(1)
        u = tf.constant(rng.normal(size=mean.shape), mean.dtype)
        v = tf.constant(rng.normal(size=mean.shape), mean.dtype)
        loss = tf.reduce_sum(mean * u + variance * v)
    return (mean, variance), tape.gradient(loss, args)


@needs_fused
@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) + c[4] for c in CASES])
def test_fused_matches_tf_convolution_float32(case):
    args, conv = case_args(case)
    outs_f, grads_f = values_and_grads(fused, args, conv)
    outs_c, grads_c = values_and_grads(composite, args, conv)
    for got, want in zip([*outs_f, *grads_f], [*outs_c, *grads_c], strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5 * max(1, np.abs(want).max()), rtol=0)


@needs_fused
@pytest.mark.parametrize("case", GRAD_CASES.values(), ids=GRAD_CASES.keys())
def test_gradients_float64(case):
    args, conv = case_args(case, dtype=np.float64)
    for output in range(2):
        for i in range(3):

            def f(arg, i=i, output=output):
                full = list(args)
                full[i] = arg
                return fused.conv_mean_variance(*full, **conv)[output]

            theoretical, numerical = tf.test.compute_gradient(f, [args[i]], delta=1e-6)
            err = max(np.abs(t - n).max() for t, n in zip(theoretical, numerical, strict=True))
            assert err <= 1e-6, (output, i, err)


@needs_fused
def test_kernel_gradients_are_deterministic():
    args, conv = case_args(((37, 12, 12, 20), (5, 5), 50, (1, 1), "VALID", (1, 1)))
    first = values_and_grads(fused, args, conv)[1]
    second = values_and_grads(fused, args, conv)[1]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


SEED = tf.constant([7, 11], tf.int64)


def reparam_args(case, dtype=np.float32):
    """x, both kernels, both biases and z for `conv_local_reparam`."""
    (x, kernel_mean, kernel_variance), conv = case_args(case, dtype)
    rng = np.random.default_rng(2)
    n = kernel_mean.shape[-1]
    extra = [
        rng.normal(size=n),
        rng.uniform(0.01, 0.5, size=n),
        1 + 0.3 * rng.normal(size=(x.shape[0], n)),
    ]
    return [x, kernel_mean, kernel_variance, *(tf.constant(a.astype(dtype)) for a in extra)], conv


def reparam_value_and_grads(fn, args, conv):
    """Output and the gradients of sum(out * w) for a fixed random weighting w."""
    with tf.GradientTape() as tape:
        tape.watch(args)
        out = fn(*args, seed=SEED, **conv)
        w = tf.constant(np.random.default_rng(3).normal(size=out.shape), out.dtype)
        loss = tf.reduce_sum(out * w)
    return out, tape.gradient(loss, args)


@needs_fused
@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) + c[4] for c in CASES])
def test_local_reparam_fused_matches_composite_float32(case):
    args, conv = reparam_args(case)
    out_f, grads_f = reparam_value_and_grads(fused.conv_local_reparam, args, conv)
    out_c, grads_c = reparam_value_and_grads(composite.conv_local_reparam, args, conv)
    np.testing.assert_allclose(out_f, out_c, atol=1e-5 * max(1, np.abs(out_c).max()), rtol=0)
    for got, want in zip(grads_f, grads_c, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5 * max(1, np.abs(want).max()), rtol=0)


@needs_fused
def test_local_reparam_draws_the_epilogue_noise():
    """The one-op step equals its two fused parts, eps for eps: the same stream."""
    args, conv = reparam_args(CASES[1])
    x, kernel_mean, kernel_variance, bias_mean, bias_variance, z = args
    mean, variance = fused.conv_mean_variance(x, kernel_mean, kernel_variance, **conv)
    parts = fused.conv_local_reparam_epilogue(mean + bias_mean, variance + bias_variance, z, SEED)
    np.testing.assert_allclose(fused.conv_local_reparam(*args, seed=SEED, **conv), parts, atol=1e-5)
    other = fused.conv_local_reparam(*args, seed=tf.constant([7, 12], tf.int64), **conv)
    assert np.abs(other - parts).max() > 0.1


@needs_fused
@pytest.mark.parametrize("case", [GRAD_CASES["stride"], GRAD_CASES["dilated"]], ids=["s", "d"])
def test_local_reparam_gradients_float64(case):
    args, conv = reparam_args(case, dtype=np.float64)
    for i in range(len(args)):

        def f(arg, i=i):
            full = list(args)
            full[i] = arg
            return fused.conv_local_reparam(*full, seed=SEED, **conv)

        theoretical, numerical = tf.test.compute_gradient(f, [args[i]], delta=1e-6)
        err = max(np.abs(t - n).max() for t, n in zip(theoretical, numerical, strict=True))
        assert err <= 1e-6, (i, err)


def test_local_reparam_zero_batch_and_unknown_batch(op_path):
    args, conv = reparam_args(((0, 9, 7, 3), (3, 2), 5, (2, 1), "SAME", (1, 1)))
    out, grads = reparam_value_and_grads(ops.conv_local_reparam, args, conv)
    assert out.shape == (0, 5, 7, 5)
    assert [g.shape for g in grads] == [a.shape for a in args]
    args, conv = reparam_args(CASES[2])
    specs = [tf.TensorSpec([None, 9, 7, 3], tf.float32), tf.TensorSpec([None, 5], tf.float32)]

    @tf.function(input_signature=specs)
    def f(x, z):
        out = ops.conv_local_reparam(x, *args[1:5], z, SEED, **conv)
        assert out.shape.as_list() == [None, 5, 7, 5]
        return out

    want = composite.conv_local_reparam(*args, seed=SEED, **conv)
    np.testing.assert_allclose(f(args[0], args[5]), want, atol=1e-5)


@pytest.mark.parametrize(
    "index, bad, message",
    [
        (3, tf.zeros([4]), "bias_mean must have shape"),
        (4, tf.zeros([5, 1]), "bias_variance must have shape"),
        (5, tf.zeros([2, 4]), "z must have shape"),
        (5, tf.zeros([3, 5]), "z must have shape"),
    ],
)
def test_local_reparam_bad_arguments_are_named(index, bad, message):
    args, conv = reparam_args(CASES[2])
    args[index] = bad
    with pytest.raises(ValueError, match=message):
        ops.conv_local_reparam(*args, seed=SEED, **conv)


@needs_fused
@pytest.mark.parametrize("graph", [False, True], ids=["eager-kernel", "graph-shape-fn"])
def test_local_reparam_op_errors_name_the_argument(graph):
    library = _library.load()
    x, kernel = tf.zeros([2, 8, 8, 3]), tf.zeros([3, 3, 3, 4])
    bias, z = tf.zeros([4]), tf.zeros([2, 4])
    attrs = dict(strides=[1, 1, 1, 1], padding="VALID")
    calls = [
        ((x, kernel, kernel, bias[:3], bias, z, SEED), "bias_mean"),
        ((x, kernel, kernel, bias, bias[:3], z, SEED), "bias_variance"),
        ((x, kernel, kernel, bias, bias, z[:1], SEED), "z"),
        ((x, kernel, kernel, bias, bias, z, tf.constant([1, 2, 3])), "seed must have shape"),
    ]
    for inputs, message in calls:

        def call(inputs=inputs):
            return library.mnf_conv2d_local_reparam(*inputs, **attrs)

        run = tf.function(call) if graph else call
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=message):
            run()


def test_zero_batch(op_path):
    args, conv = case_args(((0, 6, 6, 3), (3, 3), 4, (1, 1), "SAME", (1, 1)))
    (mean, variance), grads = values_and_grads(ops, args, conv)
    assert mean.shape == variance.shape == (0, 6, 6, 4)
    assert [g.shape for g in grads] == [a.shape for a in args]
    np.testing.assert_array_equal(grads[1], np.zeros(grads[1].shape))


def test_unknown_batch_in_graph(op_path):
    args, conv = case_args(CASES[2])

    @tf.function(input_signature=[tf.TensorSpec([None, 9, 7, 3], tf.float32)])
    def f(x):
        mean, variance = ops.conv_mean_variance(x, *args[1:], **conv)
        assert mean.shape.as_list() == variance.shape.as_list() == [None, 5, 7, 5]
        return mean, variance

    for got, want in zip(f(args[0]), composite.conv_mean_variance(*args, **conv), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_first_layer_graph_skips_the_input_gradient():
    """With no gradient asked for x, the traced step holds no input-gradient op to run."""
    args, conv = case_args(CASES[0])
    kernel = tf.Variable(args[1])

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            mean, variance = ops.conv_mean_variance(x, kernel, args[2], **conv)
            loss = tf.reduce_sum(mean) + tf.reduce_sum(variance)
        return tape.gradient(loss, kernel)

    graph = step.get_concrete_function(args[0]).graph
    types = {op.type for op in graph.get_operations()}
    if ops.fused_available():
        assert "MnfConv2DMeanVarianceKernelGrad" in types
    grad_x = [op for op in graph.get_operations() if op.type == "MnfConv2DMeanVarianceInputGrad"]
    assert all(not any(out.consumers() for out in op.outputs) for op in grad_x)
    np.testing.assert_allclose(
        step(args[0]), _reference_kernel_grad(args, conv), rtol=1e-5, atol=1e-3
    )


def _reference_kernel_grad(args, conv):
    x, kernel_mean, kernel_variance = args
    with tf.GradientTape() as tape:
        tape.watch(kernel_mean)
        mean, variance = composite.conv_mean_variance(x, kernel_mean, kernel_variance, **conv)
        loss = tf.reduce_sum(mean) + tf.reduce_sum(variance)
    return tape.gradient(loss, kernel_mean)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"x": tf.zeros([2, 9, 7, 4])}, "x must have shape"),
        ({"kernel_variance": tf.zeros([3, 2, 3, 4])}, "kernel_variance must have shape"),
        ({"kernel_mean": tf.zeros([3, 3, 5])}, "in_channels"),
        ({"padding": "same"}, "padding must be 'SAME' or 'VALID'"),
        ({"strides": (1, 0)}, "strides must be 2 positive ints"),
        ({"dilations": (1,)}, "dilations must be 2 positive ints"),
    ],
)
def test_bad_arguments_are_named(change, message):
    args, conv = case_args(CASES[2])
    named = dict(zip(["x", "kernel_mean", "kernel_variance"], args, strict=True), **conv)
    named.update(change)
    with pytest.raises(ValueError, match=message):
        ops.conv_mean_variance(**named)


def test_dtype_mismatch_is_named():
    args, conv = case_args(CASES[2])
    with pytest.raises(TypeError, match="kernel_variance must have x's dtype float32"):
        ops.conv_mean_variance(args[0], args[1], tf.cast(args[2], tf.float64), **conv)


@needs_fused
@pytest.mark.parametrize("graph", [False, True], ids=["eager-kernel", "graph-shape-fn"])
def test_op_errors_name_the_argument(graph):
    library = _library.load()
    x = tf.zeros([2, 8, 8, 3])
    kernel = tf.zeros([3, 3, 3, 4])
    attrs = dict(strides=[1, 1, 1, 1], padding="VALID")
    calls = [
        (lambda: library.mnf_conv2d_mean_variance(x, kernel, kernel[:2], **attrs), "kernel_var"),
        (lambda: library.mnf_conv2d_mean_variance(x[0], kernel, kernel, **attrs), "x must be"),
        (
            lambda: library.mnf_conv2d_mean_variance(
                x, kernel[:, :, :2], kernel[:, :, :2], **attrs
            ),
            "in_channels",
        ),
        (
            lambda: library.mnf_conv2d_mean_variance(
                x, kernel, kernel, strides=[1, 1, 1], padding="VALID"
            ),
            "strides must be",
        ),
        (
            lambda: library.mnf_conv2d_mean_variance_kernel_grad(
                x, tf.zeros([2, 5, 6, 4]), tf.zeros([2, 5, 6, 4]), kernel_size=[3, 3], **attrs
            ),
            "grad_mean must have",
        ),
        (
            lambda: library.mnf_conv2d_mean_variance_input_grad(
                x, kernel, kernel, tf.zeros([2, 6, 6, 4]), tf.zeros([2, 6, 5, 4]), **attrs
            ),
            "grad_variance must have",
        ),
    ]
    for call, message in calls:
        run = tf.function(call) if graph else call
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=message):
            run()
