"""Tests of the MNF layers: KL maths, sampling moments, Keras integration, bad input.

Tests taking the `frontend` fixture run for the tf_keras and the Keras 3 layers.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_mnf.distributions import MNFKernelPosterior

tfd = tfp.distributions


def _gauss_kl(mean, log_std, prior_var):
    var = np.exp(2 * log_std)
    return np.sum(0.5 * np.log(prior_var) - log_std + (var + mean**2) / (2 * prior_var) - 0.5)


def _randomize(layer, rng, log_std=(-3.0, -0.5)):
    """Gives the layer's Gaussian parameters non-trivial random values."""
    layer.kernel_mean.assign(rng.normal(0, 0.5, layer.kernel_mean.shape))
    layer.kernel_log_std.assign(rng.uniform(*log_std, layer.kernel_log_std.shape))
    layer.assign_parameters(
        bias_mean=rng.normal(0, 0.5, layer.bias_mean.shape),
        bias_log_var=rng.uniform(-4.0, -1.0, layer.bias_log_var.shape),
    )


@pytest.mark.parametrize(
    "make, input_shape",
    [
        (lambda F: F.DenseMNF(7, use_z=False, prior_variance=0.5, bias_prior_variance=2.0), (3, 5)),
        (
            lambda F: F.Conv2DMNF(4, 3, use_z=False, prior_variance=0.5, bias_prior_variance=2.0),
            (2, 6, 6, 3),
        ),
    ],
    ids=["dense", "conv"],
)
def test_kl_without_z_is_closed_form_gaussian_kl(make, input_shape, frontend):
    layer = make(frontend)
    layer.build(input_shape)
    rng = np.random.default_rng(0)
    # Some log-stds above log(max_std)=log(0.5): the KL must use the clipped value.
    _randomize(layer, rng, log_std=(-3.0, 0.0))
    log_std = np.minimum(layer.kernel_log_std.numpy(), math.log(layer.max_std))
    bias_log_var = np.minimum(layer.bias_log_var.numpy(), 2 * math.log(layer.max_std))
    expected = _gauss_kl(layer.kernel_mean.numpy(), log_std, 0.5) + _gauss_kl(
        layer.bias_mean.numpy(), 0.5 * bias_log_var, 2.0
    )
    np.testing.assert_allclose(layer.kl_divergence().numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(
        tfd.kl_divergence(layer.kernel_posterior, layer.kernel_prior)
        + tfd.kl_divergence(layer.bias_posterior, layer.bias_prior),
        expected,
        rtol=1e-5,
    )


def _check_moments(samples, mean, var):
    """Sample mean/variance within ~5 standard errors of the analytic moments."""
    n = samples.shape[0]
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), 5 * np.sqrt(var / n) + 1e-6)
    # The variance of the sample variance of a Gaussian is 2 var^2 / (n - 1).
    np.testing.assert_array_less(np.abs(samples.var(0) - var), 5 * var * np.sqrt(2 / (n - 1)))


def test_dense_sample_moments_with_fixed_z(op_path, frontend):
    layer = frontend.DenseMNF(6)
    layer.build((None, 4))
    rng = np.random.default_rng(1)
    _randomize(layer, rng)
    n = 20000
    x = np.tile(rng.normal(size=(1, 4)).astype("float32"), (n, 1))
    z = np.tile(rng.uniform(0.5, 1.5, size=(1, 4)).astype("float32"), (n, 1))
    variance = layer.posterior.kernel_moments().variance
    out = layer._sample_outputs(tf.constant(x), tf.constant(z), tf.constant([3, 4]), variance)
    out = out.numpy()
    sigma_sq = np.exp(2 * np.minimum(layer.kernel_log_std.numpy(), math.log(0.5)))
    mean = (x[0] * z[0]) @ layer.kernel_mean.numpy() + layer.bias_mean.numpy()
    var = (x[0] ** 2) @ sigma_sq + np.exp(layer.bias_log_var.numpy())
    _check_moments(out, mean, var)


def test_conv_sample_moments_with_fixed_z(op_path, frontend):
    layer = frontend.Conv2DMNF(3, 2, padding="same")
    layer.build((None, 3, 3, 2))
    rng = np.random.default_rng(2)
    _randomize(layer, rng)
    n = 20000
    x1 = rng.normal(size=(1, 3, 3, 2)).astype("float32")
    z1 = rng.uniform(0.5, 1.5, size=(1, 3)).astype("float32")
    out = layer._sample_outputs(
        tf.constant(np.tile(x1, (n, 1, 1, 1))),
        tf.constant(np.tile(z1, (n, 1))),
        tf.constant([5, 6]),
        layer.posterior.kernel_moments().variance,
    ).numpy()
    sigma_sq = np.exp(2 * np.minimum(layer.kernel_log_std.numpy(), math.log(0.5)))
    mu = tf.nn.conv2d(x1, layer.kernel_mean, 1, "SAME").numpy()[0] + layer.bias_mean.numpy()
    var = tf.nn.conv2d(x1**2, sigma_sq, 1, "SAME").numpy()[0] + np.exp(layer.bias_log_var.numpy())
    _check_moments(out, mu * z1[0], var)


def test_call_samples_and_posterior_mean_is_deterministic(op_path, frontend):
    layer = frontend.DenseMNF(5, seed=3)
    x = tf.random.stateless_normal([8, 4], seed=[1, 2])
    a, b = layer(x), layer(x)
    assert a.shape == (8, 5)
    assert not np.allclose(a, b), "two sampling calls must draw different noise"
    m1, m2 = layer(x, sample=False), layer(x, sample=False)
    np.testing.assert_array_equal(m1, m2)
    z = layer.posterior.mean_z().numpy()
    expected = (x.numpy() * z) @ layer.kernel_mean.numpy() + layer.bias_mean.numpy()
    np.testing.assert_allclose(m1, expected, rtol=1e-5, atol=1e-5)


def test_kl_bound_terms_are_consistent(frontend):
    """The MNF bound = Gaussian KL given z_T + log q(z_T) - log r(z_T | W), one shared z_T."""
    layer = frontend.DenseMNF(3, seed=11)
    layer.build((None, 4))
    seed = tf.constant([7, 8])
    kl = layer.posterior.kl_bound(0.0, 1.0, seed).numpy()
    again = layer.posterior.kl_bound(0.0, 1.0, seed).numpy()
    assert kl == again, "the bound must be a deterministic function of its seed"
    assert np.isfinite(kl)
    other = layer.posterior.kl_bound(0.0, 1.0, tf.constant([9, 9])).numpy()
    assert other != kl
    # q(z_0) entropy term: -1/2 sum(log 2 pi + log var + 1) - log det; with identity flows
    # (no flow layers) the draw's log det is 0 and log q(z_T) is exactly that expression.
    plain = frontend.DenseMNF(3, num_q_flows=0, num_r_flows=0, seed=11)
    plain.build((None, 4))
    draw = plain.posterior.draw(2, seed)
    assert float(draw.kl_log_det) == 0.0
    expected = -0.5 * np.sum(np.log(2 * np.pi) + plain.q0_log_var.numpy() + 1)
    np.testing.assert_allclose(plain.posterior.log_q_z(draw.kl_log_det), expected, rtol=1e-6)


def test_tfp_style_divergence_fn_matches_layer_kl(frontend):
    n = 1000.0
    layer = frontend.DenseMNF(
        3, kernel_divergence_fn=lambda q, p, _: tfd.kl_divergence(q, p) / n, seed=1
    )
    x = tf.ones([2, 4])
    layer(x)
    assert len(layer.losses) == 1
    # The registered KL returns the MNF bound: same seed, same value as the posterior maths.
    seed = tf.constant([1, 1])
    np.testing.assert_allclose(
        tfd.kl_divergence(MNFKernelPosterior(layer.posterior, seed=seed), layer.kernel_prior),
        layer.posterior.kl_bound(0.0, 1.0, seed),
        rtol=1e-6,
    )


def _mixed_model(frontend):
    """Two MNF layers after a first layer: in tf_keras a tfp.layers `DenseFlipout` (tfp.layers
    exist for tf_keras only), in Keras 3 a plain `Dense`."""
    if frontend.name == "tf_keras":
        first = tfp.layers.DenseFlipout(8, activation="relu")
    else:
        first = frontend.keras.layers.Dense(8, activation="relu")
    return frontend.Sequential(
        [
            frontend.Input((6,)),
            first,
            frontend.DenseMNF(8, activation="relu", learn_prior=True, seed=1),
            frontend.DenseMNF(3, seed=2, q_flow="iaf", r_flow="planar"),
        ]
    )


def test_mixed_sequential_trains_and_every_variable_gets_a_gradient(frontend):
    model = _mixed_model(frontend)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0)
    model.compile(
        frontend.optimizers.Adam(1e-2),
        frontend.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    model(x)
    bayesian = 3 if frontend.name == "tf_keras" else 2
    assert len(model.losses) == bayesian, "one KL per Bayesian layer"
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(x)) + tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    names = [frontend.variable_name(v) for v in model.trainable_variables]
    missing = [n for n, g in zip(names, grads, strict=True) if g is None]
    assert not missing, f"no gradient for {missing}"
    by_id = {id(v): g for v, g in zip(model.trainable_variables, grads, strict=True)}
    for layer in model.layers[1:]:
        # Every packed parameter (biases, q(z_0), r(z | W), each flow step's) gets a gradient.
        packed = layer._posterior_pack.unpack(by_id[id(layer.posterior_parameters)])
        assert any(name.startswith("q_flow_1/") for name in packed)
        assert any(name.startswith("r_flow_1/") for name in packed)
        zero = [name for name, g in packed.items() if not np.any(g.numpy())]
        assert not zero, f"{layer.name}: identically zero gradient for {zero}"
        assert (id(layer.prior_parameters) in by_id) == layer.learn_prior
        assert {id(v) for v in layer.trainable_weights} <= set(by_id)
    zero = [n for n, g in zip(names, grads, strict=True) if not np.any(tf.convert_to_tensor(g))]
    assert not zero, f"identically zero gradient for {zero}"


def test_posterior_mean_context_for_a_whole_model(frontend):
    model = _mixed_model(frontend)
    x = np.random.default_rng(1).normal(size=(5, 6)).astype("float32")
    model.predict(x, verbose=0)
    layers = model.layers[1:]
    with frontend.posterior_mean(model):
        p1 = model.predict(x, verbose=0)
        p2 = model.predict(x, verbose=0)
        assert all(not layer.sample_by_default for layer in layers)
    assert all(layer.sample_by_default for layer in layers)
    # DenseFlipout still samples, so build the expectation from a model without it.
    mnf_only = frontend.Sequential([frontend.Input((6,)), frontend.DenseMNF(4, seed=3)])
    with frontend.posterior_mean(mnf_only):
        np.testing.assert_array_equal(
            mnf_only.predict(x, verbose=0), mnf_only.predict(x, verbose=0)
        )
    assert p1.shape == p2.shape == (5, 3)


@pytest.mark.parametrize(
    "layer_cls, input_shape, expected",
    [
        (lambda F: F.Conv1DMNF(4, 3, padding="same"), (2, 7, 3), (2, 7, 4)),
        (lambda F: F.Conv2DMNF(4, (3, 2), strides=2), (2, 7, 6, 3), (2, 3, 3, 4)),
        (lambda F: F.Conv3DMNF(2, 2), (2, 4, 4, 4, 1), (2, 3, 3, 3, 2)),
        (lambda F: F.Conv2DMNF(4, 3, data_format="channels_first"), (2, 3, 5, 5), (2, 4, 3, 3)),
        (lambda F: F.Conv2DMNF(1, 3, dilation_rate=2), (2, 7, 7, 2), (2, 3, 3, 1)),
        (lambda F: F.DenseMNF(1), (3, 1), (3, 1)),
    ],
)
def test_output_shapes(layer_cls, input_shape, expected, op_path, frontend):
    layer = layer_cls(frontend)
    x = tf.random.stateless_normal(input_shape, seed=[0, 1])
    assert layer(x).shape == expected
    assert layer(x, sample=False).shape == expected
    assert np.isfinite(layer.kl_divergence().numpy())


def test_seeded_layers_are_reproducible_and_variables_distinct(frontend):
    a, b = frontend.DenseMNF(5, seed=42), frontend.DenseMNF(5, seed=42)
    a.build((None, 5))
    b.build((None, 5))
    for va, vb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    # One initializer instance per variable: same-shape variables must not be tied.
    for first, second in (("r_b1", "r_b2"), ("kernel_mean", "kernel_log_std")):
        assert not np.allclose(
            getattr(a, first).numpy() - getattr(a, first).numpy().mean(),
            getattr(a, second).numpy() - getattr(a, second).numpy().mean(),
        )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda F: F.DenseMNF(0), "units"),
        (lambda F: F.DenseMNF(-3), "units"),
        (lambda F: F.Conv2DMNF(0, 3), "filters"),
        (lambda F: F.Conv2DMNF(2, (3, 0)), "kernel_size"),
        (lambda F: F.Conv2DMNF(2, 3, padding="full"), "padding"),
        (lambda F: F.DenseMNF(3, q_flow="glow"), "q_flow"),
        (lambda F: F.DenseMNF(3, r_flow="nope"), "r_flow"),
        (lambda F: F.DenseMNF(3, num_q_flows=-1), "num_q_flows"),
        (lambda F: F.DenseMNF(3, num_r_flows=1.5), "num_r_flows"),
        (lambda F: F.DenseMNF(3, flow_hidden_units=0), "flow_hidden_units"),
        (lambda F: F.DenseMNF(3, max_std=0.0), "max_std"),
        (lambda F: F.DenseMNF(3, max_std=-1.0), "max_std"),
        (lambda F: F.DenseMNF(3, prior_variance=0.0), "prior_variance"),
        (lambda F: F.DenseMNF(3, bias_prior_variance=-2.0), "bias_prior_variance"),
        (lambda F: F.ScaledKL(-1.0), "scale"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(make, match, frontend):
    with pytest.raises(ValueError, match=match):
        make(frontend)


@pytest.mark.parametrize(
    "make, shape, match",
    [
        (lambda F: F.DenseMNF(3), (2, 3, 4), "rank 2"),
        (lambda F: F.DenseMNF(3), (4,), "rank 2"),
        (lambda F: F.Conv2DMNF(3, 2), (2, 5, 5), "rank 4"),
        (lambda F: F.Conv1DMNF(3, 2), (2, 5, 5, 1), "rank 3"),
    ],
)
def test_wrong_input_rank_raises(make, shape, match, frontend):
    with pytest.raises(ValueError, match=match):
        make(frontend)(tf.zeros(shape))


def test_unknown_last_dimension_raises(frontend):
    layer = frontend.DenseMNF(3)
    with pytest.raises(ValueError, match="last dimension"):
        layer.build(tf.TensorShape([None, None]))
    conv = frontend.Conv2DMNF(3, 2)
    with pytest.raises(ValueError, match="channel dimension"):
        conv.build(tf.TensorShape([None, 5, 5, None]))


def test_mismatched_last_dimension_after_build_raises(frontend):
    layer = frontend.DenseMNF(3)
    layer(tf.zeros([2, 4]))
    with pytest.raises(ValueError, match="expected axis -1"):
        layer(tf.zeros([2, 5]))


def test_integer_inputs_raise_a_clear_type_error(frontend):
    with pytest.raises(TypeError, match="inputs.*floating-point.*int32"):
        frontend.DenseMNF(2)(tf.ones([2, 3], tf.int32))


def test_mixed_precision_policy_computes_in_float32_and_returns_float16(frontend):
    frontend.mixed_precision.set_global_policy("mixed_float16")
    layer = frontend.DenseMNF(3, seed=0)
    out = layer(tf.ones([4, 5], tf.float16))
    assert out.dtype == tf.float16
    assert layer.kernel_mean.dtype == tf.float32
    assert layer.losses[0].dtype == tf.float32
    assert np.all(np.isfinite(out.numpy())) and np.isfinite(layer.losses[0].numpy())


def test_kl_is_added_on_every_sampling_call_and_not_for_the_posterior_mean(frontend):
    layer = frontend.DenseMNF(2, seed=0)
    x = tf.ones([3, 4])
    for training in (False, True, None):
        layer(x, training=training)
        assert len(layer.losses) == 1
    layer(x, sample=False)
    assert layer.losses == []


def test_evaluate_and_predict_work_on_an_input_built_model(frontend):
    """Models built on `Input` keep their construction-time KL: calls must keep adding it."""
    model = frontend.Sequential([frontend.Input((4,)), frontend.DenseMNF(3, seed=1)])
    model.compile("adam", frontend.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.ones((8, 4), "float32"), np.zeros(8)
    assert np.isfinite(model.evaluate(x, y, verbose=0))
    assert model.predict(x, verbose=0).shape == (8, 3)
