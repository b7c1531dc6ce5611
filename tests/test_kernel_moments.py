"""Tests of the kernel-moments op (one pass over a kernel for the forward pass and the KL)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfp_mnf import ops
from tfp_mnf.layers import Conv2DMNF, DenseMNF
from tfp_mnf.ops import _library, moments

MIN_LOG_STD, MAX_STD = -6.0, 0.5
needs_fused = pytest.mark.skipif(
    not ops.fused_available(), reason="fused op library not built (pip install -e .)"
)
# (kernel shape, z axis): dense [K, N] (z first), conv [kh, kw, C_in, C_out] (z last), a vector.
LAYOUTS = [((7, 5), 0), ((3, 3, 4, 6), 3), ((5,), 0), ((1, 1), 1), ((2, 9), 1)]


def moments_args(shape, z_axis, dtype=np.float64, seed=0):
    """kernel_mean, kernel_log_std (some entries beyond both clips), mean/variance weights."""
    rng = np.random.default_rng(seed)
    log_std = rng.uniform(-4.0, 0.0, size=shape)
    flat = log_std.reshape(-1)
    flat[::7] = rng.uniform(0.0, 1.0, size=flat[::7].shape)  # above log(0.5)
    flat[3::11] = rng.uniform(-9.0, -7.0, size=flat[3::11].shape)  # below MIN_LOG_STD
    z = shape[z_axis]
    arrays = [rng.normal(size=shape), log_std, rng.normal(size=z), rng.uniform(0.1, 2.0, size=z)]
    return [tf.constant(a.astype(dtype)) for a in arrays]


def reference(mean, log_std, u, v, z_axis):
    """The moments element by element in numpy (csrc/moments/moments.h)."""
    mean, log_std, u, v = (np.asarray(a, np.float64) for a in (mean, log_std, u, v))
    clipped = np.clip(log_std, MIN_LOG_STD, math.log(MAX_STD))
    variance = np.exp(2 * clipped)
    other = tuple(a for a in range(mean.ndim) if a != z_axis)
    along = [1] * mean.ndim
    along[z_axis] = -1
    return [
        variance,
        clipped.sum(),
        variance.sum(other),
        (mean**2).sum(other),
        mean.sum(other),
        (u.reshape(along) * mean).sum(z_axis).reshape(-1),
        (v.reshape(along) * variance).sum(z_axis).reshape(-1),
    ]


def call(op, args, z_axis):
    return op(*args, z_axis=z_axis, min_log_std=MIN_LOG_STD, max_std=MAX_STD)


def values_and_grads(op, args, z_axis):
    """The moments and the gradients of sum_k <output_k, w_k> for fixed random weights w."""
    rng = np.random.default_rng(5)
    with tf.GradientTape() as tape:
        tape.watch(args)
        out = call(op, args, z_axis)
        loss = sum(tf.reduce_sum(o * tf.constant(rng.normal(size=o.shape), o.dtype)) for o in out)
    return [o.numpy() for o in out], [g.numpy() for g in tape.gradient(loss, args)]


@pytest.mark.parametrize("shape, z_axis", LAYOUTS)
def test_moments_match_elementwise_reference(op_path, shape, z_axis):
    args = moments_args(shape, z_axis)
    got = call(ops.kernel_moments, args, z_axis)
    for name, g, r in zip(got._fields, got, reference(*args, z_axis), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12, err_msg=name)


@needs_fused
@pytest.mark.parametrize("shape, z_axis", LAYOUTS + [((800, 500), 0), ((5, 5, 20, 50), 3)])
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_fused_matches_composite_with_gradients(shape, z_axis, dtype, tol):
    args = moments_args(shape, z_axis, dtype)
    out_f, grads_f = values_and_grads(moments.fused, args, z_axis)
    out_c, grads_c = values_and_grads(moments.composite, args, z_axis)
    for f, c in zip(out_f + grads_f, out_c + grads_c, strict=True):
        scale = max(1.0, np.abs(c).max()) if c.size else 1.0
        np.testing.assert_allclose(f, c, atol=tol * scale, rtol=0)


@needs_fused
@pytest.mark.parametrize("shape, z_axis", [((4, 3), 0), ((2, 2, 3, 4), 3), ((3, 5), 1)])
def test_gradients_float64(shape, z_axis):
    # log sigma away from the clips: finite differences across the kink are not a gradient.
    args = moments_args(shape, z_axis)
    args[1] = tf.clip_by_value(args[1], -3.5, -1.0)
    for output in range(7):
        for i in range(4):

            def f(arg, i=i, output=output):
                full = list(args)
                full[i] = arg
                return call(moments.fused, full, z_axis)[output]

            theoretical, numerical = tf.test.compute_gradient(f, [args[i]], delta=1e-6)
            err = max(np.abs(t - n).max() for t, n in zip(theoretical, numerical, strict=True))
            assert err <= 1e-6, (output, i, err)


def test_clipped_entries_get_no_log_std_gradient(op_path):
    args = moments_args((6, 4), 0)
    _, (_, grad_log_std, _, _) = values_and_grads(ops.kernel_moments, args, 0)
    log_std = args[1].numpy()
    clipped = (log_std < MIN_LOG_STD) | (log_std > math.log(MAX_STD))
    assert clipped.any() and (~clipped).any()
    np.testing.assert_array_equal(grad_log_std[clipped], 0.0)
    assert np.all(grad_log_std[~clipped] != 0.0)


def test_without_weights_no_projections(op_path):
    mean, log_std, _, _ = moments_args((4, 3), 0)
    got = ops.kernel_moments(mean, log_std, z_axis=0, min_log_std=MIN_LOG_STD, max_std=0.5)
    assert got.projected_mean is None and got.projected_variance is None
    np.testing.assert_allclose(got.variance_sum, reference(*moments_args((4, 3), 0), 0)[2])


@pytest.mark.parametrize(
    "shape, z_axis", [((0, 4), 0), ((3, 0), 0), ((0, 2, 3), 2)], ids=["rows", "cols", "conv"]
)
def test_empty_kernels(op_path, shape, z_axis):
    args = moments_args(shape, z_axis)
    out, grads = values_and_grads(ops.kernel_moments, args, z_axis)
    assert out[1] == 0.0
    assert [g.shape for g in grads] == [tuple(a.shape) for a in args]


@needs_fused
def test_layer_call_is_one_pass_shared_by_forward_and_kl():
    """A sampling call builds one MnfKernelMoments (no other op over the kernel's log sigma)
    and its variance output feeds the forward pass."""
    for layer, shape in [(DenseMNF(5), (3, 4)), (Conv2DMNF(3, 2), (2, 5, 5, 2))]:
        layer.build(shape)
        graph = tf.function(layer).get_concrete_function(tf.TensorSpec(shape)).graph
        moment_ops = [op for op in graph.get_operations() if op.type == "MnfKernelMoments"]
        assert len(moment_ops) == 1, layer.name
        consumers = {c.type for c in moment_ops[0].outputs[0].consumers()}
        assert consumers & {"MatMul", "Conv2D", "Reshape"}, consumers


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(z_axis=2), ValueError, "z_axis must be in"),
        (dict(max_std=0.0), ValueError, "max_std must be > 0"),
        (dict(min_log_std=1.0), ValueError, "log\\(max_std\\) > min_log_std"),
        (dict(kernel_log_std=tf.zeros([4, 2], tf.float64)), ValueError, "kernel_log_std must"),
        (dict(mean_weights=tf.zeros([3], tf.float64)), ValueError, "mean_weights must have"),
        (dict(variance_weights=None), ValueError, "both be given"),
        (dict(kernel_log_std=tf.zeros([4, 3], tf.float32)), TypeError, "kernel_log_std must"),
        (dict(kernel_mean=tf.zeros([4, 3], tf.int32)), TypeError, "kernel_mean must be a float"),
    ],
)
def test_bad_arguments(op_path, kwargs, error, match):
    mean, log_std, u, v = moments_args((4, 3), 0)
    args = dict(
        kernel_mean=mean,
        kernel_log_std=log_std,
        mean_weights=u,
        variance_weights=v,
        z_axis=0,
        min_log_std=MIN_LOG_STD,
        max_std=MAX_STD,
    )
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.kernel_moments(**args)


def _op_calls():
    """Direct calls of the ops with one argument of a bad shape, and the name in the error."""
    lib = _library.load()
    m, z, o = tf.zeros([4, 3]), tf.zeros([4]), tf.zeros([3])
    attrs = dict(z_axis=0, min_log_std=MIN_LOG_STD, max_std=MAX_STD)
    grads = [m, tf.zeros([]), z, z, z, o, o]
    bad = tf.zeros([2, 2, 2])
    return [
        (lambda: lib.mnf_kernel_moments(bad, bad, z, z, **attrs), "kernel_mean must be rank 2"),
        (lambda: lib.mnf_kernel_moments(m, o, z, z, **attrs), "kernel_log_std must have"),
        (lambda: lib.mnf_kernel_moments(m, m, o, z, **attrs), "mean_weights must have"),
        (lambda: lib.mnf_kernel_moments(m, m, z, o, **attrs), "variance_weights must have"),
        (lambda: lib.mnf_kernel_moments_grad(o, *grads[1:], m, m, z, z, **attrs), "grad_variance"),
        (
            lambda: lib.mnf_kernel_moments_grad(*grads[:2], o, *grads[3:], m, m, z, z, **attrs),
            "grad_variance_sum",
        ),
        (
            lambda: lib.mnf_kernel_moments_grad(*grads[:5], z, o, m, m, z, z, **attrs),
            "grad_projected_mean",
        ),
    ]


@needs_fused
@pytest.mark.parametrize("graph", [False, True], ids=["eager-kernel", "graph-shape-fn"])
@pytest.mark.parametrize("case", range(7))
def test_op_shape_errors(graph, case):
    fn, name = _op_calls()[case]
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=name):
        tf.function(fn)() if graph else fn()


@needs_fused
def test_op_attribute_errors():
    lib = _library.load()
    m, z = tf.zeros([4, 3]), tf.zeros([4])
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="z_axis must be 0 or 1"):
        lib.mnf_kernel_moments(m, m, z, z, z_axis=2, min_log_std=-1.0, max_std=1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="min_log_std must be < log"):
        lib.mnf_kernel_moments(m, m, z, z, z_axis=0, min_log_std=1.0, max_std=1.0)
