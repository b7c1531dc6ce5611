"""Mixed precision: layers compute in the compute dtype, keep float32 variables and KL.

Under `mixed_float16` the weight variances (sigma ~ 1e-4 at the default init) flush to zero,
and sqrt(0) has an infinite gradient: the layers floor the forward-pass variances there
(see `MNFLayer`). These tests check the gradients are finite and that `fit` with Keras' loss
scaling really updates the weights (a non-finite gradient makes it skip every step). They
run for the tf_keras and the Keras 3 front-end.
"""

import contextlib

import numpy as np
import pytest
import tensorflow as tf

from tfp_mnf.ops import force_composite

POLICIES = ["mixed_float16", "mixed_bfloat16"]


@pytest.fixture(params=POLICIES)
def policy(request, frontend):
    """The front-end's Keras under a global mixed policy (`frontend` restores float32)."""
    frontend.mixed_precision.set_global_policy(request.param)
    return frontend.mixed_precision.global_policy()


def _model(frontend, flow="realnvp"):
    return frontend.Sequential(
        [
            frontend.Input((8, 8, 1)),
            frontend.Conv2DMNF(4, 3, activation="relu", q_flow=flow, seed=1),
            frontend.keras.layers.Flatten(),
            frontend.DenseMNF(10, q_flow=flow, r_flow="planar", seed=2),
            frontend.keras.layers.Activation("linear", dtype="float32"),
        ]
    )


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.uniform(size=(n, 8, 8, 1)).astype("float32"), rng.integers(0, 10, n)


@pytest.mark.parametrize("flow", ["realnvp", "iaf"])
def test_compute_dtype_float32_variables_and_kl(frontend, policy, flow):
    model = _model(frontend, flow)
    x, _ = _data(8)
    outputs = [layer.output for layer in model.layers[:3:2]]
    assert all(tf.as_dtype(o.dtype) == policy.compute_dtype for o in outputs)
    sampled = model.layers[0](x)
    assert sampled.dtype == policy.compute_dtype
    assert model.layers[0](x, sample=False).dtype == policy.compute_dtype
    assert {tf.as_dtype(v.dtype) for v in model.weights} == {tf.float32}
    model(x)
    assert len(model.losses) == 2
    assert all(loss.dtype == tf.float32 for loss in model.losses)
    assert all(np.isfinite(loss.numpy()) for loss in model.losses)
    # The KL of a float32 copy of the layer (same variables) is the same number.
    assert model.layers[0].kl_divergence(seed=[1, 2]).dtype == tf.float32


@pytest.mark.parametrize("composite", [False, True], ids=["dispatch", "composite"])
def test_gradients_are_finite(frontend, policy, composite):
    model = _model(frontend)
    x, y = _data(16)
    with force_composite() if composite else contextlib.nullcontext():
        with tf.GradientTape() as tape:
            logits = model(x)
            nll = frontend.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            loss = tf.reduce_mean(nll) + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
    for variable, grad in zip(model.trainable_variables, grads, strict=True):
        name = frontend.variable_name(variable)
        assert grad is not None, name
        assert np.all(np.isfinite(grad.numpy())), name


def test_short_fit_is_finite_and_updates_every_variance(frontend, policy):
    frontend.utils.set_random_seed(0)
    model = _model(frontend)
    x, y = _data(128)
    model.compile(
        frontend.optimizers.Adam(1e-2),
        frontend.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = [v.numpy() for v in model.trainable_variables]
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # Loss scaling skips steps whose gradients are not finite: every variable must move.
    for v, value in zip(model.trainable_variables, before, strict=True):
        assert not np.array_equal(v.numpy(), value), frontend.variable_name(v)
    with frontend.posterior_mean(model):
        assert np.all(np.isfinite(model.predict(x, verbose=0)))
