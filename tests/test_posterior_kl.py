"""The KL bound of MNFPosterior (from the kernel moments) against the element-wise eq. 15."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfp_mnf import ops
from tfp_mnf.layers import Conv2DMNF, DenseMNF
from tfp_mnf.posterior import MIN_LOG_STD, MNFPosterior, clip_r_log_precision


def _posterior(z_axis, shape=(3, 4, 5)):
    """A posterior without flows over a random float64 kernel (enough for the weight KL)."""
    rng = np.random.default_rng(0)
    return MNFPosterior(
        kernel_mean=tf.Variable(rng.normal(size=shape)),
        kernel_log_std=tf.Variable(-2.0 + 0.3 * rng.normal(size=shape)),
        q0_mean=None,
        q0_log_var=None,
        r_c=None,
        r_b1=None,
        r_b2=None,
        q_flow=None,
        r_flow=None,
        z_axis=z_axis,
        max_std=1.0,
        r_activation=tf.tanh,
    )


def _elementwise_kl(post, z, prior_mean, prior_var):
    """eq. 15, first term, summed element by element (the reference form)."""
    log_std = post.clipped_log_std()
    mean = post.kernel_mean if z is None else post.along_z(z) * post.kernel_mean
    return tf.reduce_sum(
        0.5 * tf.math.log(prior_var)
        - log_std
        + (tf.exp(2.0 * log_std) + tf.square(mean - prior_mean)) / (2.0 * prior_var)
        - 0.5
    )


def _priors(post):
    """(name, prior mean, prior variance) cases: scalars, along-z vectors, full tensors."""
    rng = np.random.default_rng(1)
    z_size, shape = post.z_size, post.kernel_mean.shape
    along = lambda v: post.along_z(tf.constant(v))  # noqa: E731
    return [
        ("scalars", tf.constant(0.0, tf.float64), tf.constant(1.0, tf.float64)),
        ("along_z", along(rng.normal(size=z_size)), along(rng.uniform(0.5, 2.0, size=z_size))),
        ("full_zeros_mean", tf.zeros(shape, tf.float64), along(rng.uniform(0.5, 2, z_size))),
        ("full_random", tf.constant(rng.normal(size=shape)), tf.constant(rng.uniform(1, 2, shape))),
    ]


@pytest.mark.parametrize("z_axis", [0, 1, 2])
@pytest.mark.parametrize("use_z", [True, False])
@pytest.mark.parametrize("graph", [False, True])
def test_kl_weights_and_gradients_match_elementwise(z_axis, use_z, graph):
    post = _posterior(z_axis)
    z = tf.Variable(np.random.default_rng(2).uniform(0.5, 1.5, size=post.z_size))
    for name, prior_mean, prior_var in _priors(post):
        prior_var = tf.Variable(prior_var)
        sources = [post.kernel_mean, post.kernel_log_std, prior_var] + ([z] if use_z else [])

        def both(prior_mean=prior_mean, prior_var=prior_var, sources=sources):
            zz = z if use_z else None
            with tf.GradientTape(persistent=True) as tape:
                fast = post.kl_weights_given_z(
                    None if zz is None else tf.convert_to_tensor(zz),
                    post.kernel_moments(),
                    prior_mean,
                    prior_var,
                )
                ref = _elementwise_kl(post, zz, prior_mean, prior_var)
            return fast, ref, tape.gradient(fast, sources), tape.gradient(ref, sources)

        fast, ref, fast_grads, ref_grads = (tf.function(both) if graph else both)()
        np.testing.assert_allclose(fast, ref, rtol=1e-12, err_msg=name)
        for fg, rg in zip(fast_grads, ref_grads, strict=True):
            np.testing.assert_allclose(fg, rg, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("z_axis", [0, 1, 2])
def test_kernel_moments_projections_sum_over_the_z_axis(z_axis):
    post = _posterior(z_axis)
    rng = np.random.default_rng(3)
    u, v = (tf.constant(rng.normal(size=post.z_size)) for _ in range(2))
    moments = ops.kernel_moments(
        post.kernel_mean,
        post.kernel_log_std,
        u,
        v,
        z_axis=z_axis,
        min_log_std=MIN_LOG_STD,
        max_std=post.max_std,
    )
    variance = tf.exp(2.0 * post.clipped_log_std())
    for got, weights, kernel in [
        (moments.projected_mean, u, post.kernel_mean),
        (moments.projected_variance, v, variance),
    ]:
        expected = tf.reduce_sum(post.along_z(weights) * kernel, axis=z_axis)
        np.testing.assert_allclose(got, tf.reshape(expected, [-1]), rtol=1e-12)


def _reference_bound(post, prior_mean, prior_var, seed):
    """eq. 15 with every term element-wise over the kernel, as in Algorithm 2: the KL's own
    z_0 drawn as `MNFPosterior.draw` draws it, log q(z_T) and log r(z_T | W) from the flows'
    own log-determinants."""
    z_seed, r_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    z0 = post.sample_z0(1, z_seed)
    z = post.q_flow.bijector.forward(z0)[0]
    q_log_det = post.q_flow.bijector.forward_log_det_jacobian(z0, event_ndims=1)[0]
    entropy_term = -0.5 * tf.reduce_sum(math.log(2 * math.pi) + post.clipped_q0_log_var() + 1.0)
    log_std = post.clipped_log_std()
    var = tf.exp(2.0 * log_std)
    c = post.along_z(post.r_c)
    mean = post.along_z(z) * post.kernel_mean
    a_mean = tf.reduce_sum(c * mean, axis=post.z_axis)
    a_var = tf.reduce_sum(tf.square(c) * var, axis=post.z_axis)
    eps = tf.random.stateless_normal([tf.size(a_mean)], seed=r_seed, dtype=a_mean.dtype)
    a = tf.reshape(a_mean, [-1]) + tf.sqrt(tf.reshape(a_var, [-1])) * eps
    a_bar = tf.reduce_mean(post.r_activation(a))
    r_mean = post.r_b1 * a_bar
    r_log_precision = clip_r_log_precision(post.r_b2 * a_bar)
    f_z = post.r_flow.bijector.forward(z[tf.newaxis])[0]
    log_det = post.r_flow.bijector.forward_log_det_jacobian(z[tf.newaxis], event_ndims=1)
    log_r = tf.reduce_sum(
        0.5
        * (
            r_log_precision
            - math.log(2 * math.pi)
            - tf.exp(r_log_precision) * tf.square(f_z - r_mean)
        )
    ) + tf.reduce_sum(log_det)
    log_q = entropy_term - q_log_det
    return _elementwise_kl(post, z, prior_mean, prior_var) + log_q - log_r


@pytest.mark.parametrize(
    ("layer", "input_shape"),
    [
        (DenseMNF(6, seed=4, dtype="float64"), (None, 7)),
        (Conv2DMNF(4, 3, seed=5, dtype="float64"), (None, 8, 8, 3)),
    ],
)
def test_kl_bound_matches_elementwise_reference_with_gradients(layer, input_shape):
    layer.build(input_shape)
    seed = tf.constant([3, 4])
    z_size = layer.posterior.z_size
    prior_var = tf.Variable(
        layer.posterior.along_z(tf.fill([z_size], tf.constant(0.7, tf.float64)))
    )

    @tf.function
    def both():
        with tf.GradientTape(persistent=True) as tape:
            post = layer.posterior  # unpacked from the variables inside the traced function
            # The KL of a sampling call's draw: its own z_T sample, whatever the batch size.
            draw = post.draw(5, seed)
            zeros = tf.zeros(post.kernel_mean.shape, tf.float64)
            fast = post.kl_bound(zeros, prior_var, draw=draw)
            ref = _reference_bound(post, 0.0, prior_var, seed)
        sources = [*layer.trainable_variables, prior_var]
        return fast, ref, tape.gradient(fast, sources), tape.gradient(ref, sources)

    fast, ref, fast_grads, ref_grads = both()
    np.testing.assert_allclose(fast, ref, rtol=1e-10)
    sources = [*layer.trainable_variables, prior_var]
    assert len(sources) == 4  # kernel_mean, kernel_log_std, the packed parameters, the prior
    for v, fg, rg in zip(sources, fast_grads, ref_grads, strict=True):
        assert fg is not None and rg is not None, v.name
        np.testing.assert_allclose(fg, rg, rtol=1e-8, atol=1e-10, err_msg=v.name)
    packed = layer._posterior_pack.unpack(fast_grads[2])
    for name in ("bias_mean", "bias_log_var"):  # the bias is not in the kernel bound
        np.testing.assert_array_equal(packed[name], 0.0)
    assert np.any(packed["q0_mean"].numpy() != 0) and np.any(packed["r_b2"].numpy() != 0)
