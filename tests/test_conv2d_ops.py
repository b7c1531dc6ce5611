"""Tests of the fused 2-D conv step (MnfConv2DLocalReparam: the convolutions conv(x, M),
conv(x^2, sigma^2), the biases and the epilogue's sampling) against `tf.nn.convolution` and the
composite epilogue, of the gradient ops of its two convolutions, and of their errors."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_mnf import ops
from tfp_mnf.ops import _library, conv

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


SEED = tf.constant([7, 11], tf.int64)


def reparam_args(case, dtype=np.float32):
    """x, both kernels, both biases and z for `conv_local_reparam`."""
    (x, kernel_mean, kernel_variance), attrs = case_args(case, dtype)
    rng = np.random.default_rng(2)
    n = kernel_mean.shape[-1]
    extra = [
        rng.normal(size=n),
        rng.uniform(0.01, 0.5, size=n),
        1 + 0.3 * rng.normal(size=(x.shape[0], n)),
    ]
    args = [x, kernel_mean, kernel_variance, *(tf.constant(a.astype(dtype)) for a in extra)]
    return args, attrs


def reparam_value_and_grads(fn, args, attrs):
    """Output and the gradients of sum(out * w) for a fixed random weighting w."""
    with tf.GradientTape() as tape:
        tape.watch(args)
        out = fn(*args, seed=SEED, **attrs)
        w = tf.constant(np.random.default_rng(3).normal(size=out.shape), out.dtype)
        loss = tf.reduce_sum(out * w)
    return out, tape.gradient(loss, args)


@needs_fused
@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) + c[4] for c in CASES])
def test_local_reparam_fused_matches_composite_float32(case):
    args, attrs = reparam_args(case)
    out_f, grads_f = reparam_value_and_grads(conv.fused, args, attrs)
    out_c, grads_c = reparam_value_and_grads(conv.composite, args, attrs)
    np.testing.assert_allclose(out_f, out_c, atol=1e-5 * max(1, np.abs(out_c).max()), rtol=0)
    for got, want in zip(grads_f, grads_c, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5 * max(1, np.abs(want).max()), rtol=0)


@needs_fused
def test_local_reparam_draws_the_epilogue_noise():
    """The one-op step equals the fused epilogue on its own (mean, variance), eps for eps: the
    same stream."""
    args, attrs = reparam_args(CASES[1])
    z = args[5]
    out, mean, variance = _library.load().mnf_conv2d_local_reparam(
        *args,
        SEED,
        strides=[1, *attrs["strides"], 1],
        padding=attrs["padding"],
        dilations=[1, *attrs["dilations"], 1],
    )
    parts = conv.fused_epilogue(mean, variance, z, SEED)
    np.testing.assert_allclose(out, parts, atol=1e-5)
    np.testing.assert_allclose(conv.fused(*args, seed=SEED, **attrs), parts, atol=1e-5)
    other = conv.fused(*args, seed=tf.constant([7, 12], tf.int64), **attrs)
    assert np.abs(other - parts).max() > 0.1


@needs_fused
@pytest.mark.parametrize("case", GRAD_CASES.values(), ids=GRAD_CASES.keys())
def test_local_reparam_gradients_float64(case):
    args, attrs = reparam_args(case, dtype=np.float64)
    for i in range(len(args)):

        def f(arg, i=i):
            full = list(args)
            full[i] = arg
            return conv.fused(*full, seed=SEED, **attrs)

        theoretical, numerical = tf.test.compute_gradient(f, [args[i]], delta=1e-6)
        err = max(np.abs(t - n).max() for t, n in zip(theoretical, numerical, strict=True))
        assert err <= 1e-6, (i, err)


@needs_fused
def test_kernel_gradients_are_deterministic():
    args, attrs = reparam_args(((37, 12, 12, 20), (5, 5), 50, (1, 1), "VALID", (1, 1)))
    first = reparam_value_and_grads(conv.fused, args, attrs)[1][1:3]
    second = reparam_value_and_grads(conv.fused, args, attrs)[1][1:3]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_local_reparam_zero_batch_and_unknown_batch(op_path):
    args, attrs = reparam_args(((0, 9, 7, 3), (3, 2), 5, (2, 1), "SAME", (1, 1)))
    out, grads = reparam_value_and_grads(ops.conv_local_reparam, args, attrs)
    assert out.shape == (0, 5, 7, 5)
    assert [g.shape for g in grads] == [a.shape for a in args]
    np.testing.assert_array_equal(grads[1], np.zeros(grads[1].shape))
    args, attrs = reparam_args(CASES[2])
    specs = [tf.TensorSpec([None, 9, 7, 3], tf.float32), tf.TensorSpec([None, 5], tf.float32)]

    @tf.function(input_signature=specs)
    def f(x, z):
        out = ops.conv_local_reparam(x, *args[1:5], z, SEED, **attrs)
        assert out.shape.as_list() == [None, 5, 7, 5]
        return out

    want = conv.composite(*args, seed=SEED, **attrs)
    np.testing.assert_allclose(f(args[0], args[5]), want, atol=1e-5)


def test_first_layer_graph_skips_the_input_gradient():
    """With no gradient asked for x, the traced step holds no input-gradient op to run."""
    args, attrs = reparam_args(CASES[0])
    kernel = tf.Variable(args[1])

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(ops.conv_local_reparam(x, kernel, *args[2:], SEED, **attrs))
        return tape.gradient(loss, kernel)

    graph = step.get_concrete_function(args[0]).graph
    types = {op.type for op in graph.get_operations()}
    if ops.fused_available():
        assert "MnfConv2DLocalReparamKernelGrad" in types
    grad_x = [op for op in graph.get_operations() if op.type == "MnfConv2DLocalReparamInputGrad"]
    assert all(not any(out.consumers() for out in op.outputs) for op in grad_x)
    np.testing.assert_allclose(
        step(args[0]), _reference_kernel_grad(args, attrs), rtol=1e-5, atol=1e-3
    )


def _reference_kernel_grad(args, attrs):
    kernel_mean = args[1]
    with tf.GradientTape() as tape:
        tape.watch(kernel_mean)
        loss = tf.reduce_sum(conv.composite(args[0], kernel_mean, *args[2:], SEED, **attrs))
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
        ({"bias_mean": tf.zeros([4])}, "bias_mean must have shape"),
        ({"bias_variance": tf.zeros([5, 1])}, "bias_variance must have shape"),
        ({"z": tf.zeros([2, 4])}, "z must have shape"),
        ({"z": tf.zeros([3, 5])}, "z must have shape"),
    ],
)
def test_bad_arguments_are_named(change, message):
    args, attrs = reparam_args(CASES[2])
    names = ["x", "kernel_mean", "kernel_variance", "bias_mean", "bias_variance", "z"]
    named = dict(zip(names, args, strict=True), seed=SEED, **attrs)
    named.update(change)
    with pytest.raises(ValueError, match=message):
        ops.conv_local_reparam(**named)


def test_dtype_mismatch_is_named():
    args, attrs = reparam_args(CASES[2])
    args[2] = tf.cast(args[2], tf.float64)
    with pytest.raises(TypeError, match="kernel_variance must have x's dtype float32"):
        ops.conv_local_reparam(*args, seed=SEED, **attrs)


@needs_fused
@pytest.mark.parametrize("graph", [False, True], ids=["eager-kernel", "graph-shape-fn"])
def test_op_errors_name_the_argument(graph):
    library = _library.load()
    x, kernel = tf.zeros([2, 8, 8, 3]), tf.zeros([3, 3, 3, 4])
    bias, z = tf.zeros([4]), tf.zeros([2, 4])
    attrs = dict(strides=[1, 1, 1, 1], padding="VALID")
    step_calls = [
        ((x, kernel, kernel[:2], bias, bias, z, SEED), attrs, "kernel_var"),
        ((x[0], kernel, kernel, bias, bias, z, SEED), attrs, "x must be"),
        ((x, kernel[:, :, :2], kernel[:, :, :2], bias, bias, z, SEED), attrs, "in_channels"),
        (
            (x, kernel, kernel, bias, bias, z, SEED),
            dict(strides=[1, 1, 1], padding="VALID"),
            "strides must be",
        ),
        ((x, kernel, kernel, bias[:3], bias, z, SEED), attrs, "bias_mean"),
        ((x, kernel, kernel, bias, bias[:3], z, SEED), attrs, "bias_variance"),
        ((x, kernel, kernel, bias, bias, z[:1], SEED), attrs, "z"),
        ((x, kernel, kernel, bias, bias, z, tf.constant([1, 2, 3])), attrs, "seed must have shape"),
    ]
    calls = [
        (lambda inputs=inputs, kw=kw: library.mnf_conv2d_local_reparam(*inputs, **kw), message)
        for inputs, kw, message in step_calls
    ]
    calls += [
        (
            lambda: library.mnf_conv2d_local_reparam_kernel_grad(
                x, tf.zeros([2, 5, 6, 4]), tf.zeros([2, 5, 6, 4]), kernel_size=[3, 3], **attrs
            ),
            "grad_mean must have",
        ),
        (
            lambda: library.mnf_conv2d_local_reparam_input_grad(
                x, kernel, kernel, tf.zeros([2, 6, 6, 4]), tf.zeros([2, 6, 5, 4]), **attrs
            ),
            "grad_variance must have",
        ),
    ]
    for call, message in calls:
        run = tf.function(call) if graph else call
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=message):
            run()
