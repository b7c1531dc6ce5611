"""Mixed precision: layers compute in the compute dtype, keep float32 variables and KL.

Under `mixed_float16` the weight variances (sigma ~ 1e-4 at the default init) flush to zero,
and sqrt(0) has an infinite gradient: the layers floor the forward-pass variances there
(see `MNFLayer`). These tests check the gradients are finite and that `fit` with Keras' loss
scaling really updates the weights (a non-finite gradient makes it skip every step).
"""

import contextlib

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfp_mnf.layers import Conv2DMNF, DenseMNF, posterior_mean
from tfp_mnf.ops import force_composite

POLICIES = ["mixed_float16", "mixed_bfloat16"]


@pytest.fixture(params=POLICIES)
def policy(request):
    tf_keras.mixed_precision.set_global_policy(request.param)
    try:
        yield tf_keras.mixed_precision.global_policy()
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")


def _model(flow="realnvp"):
    return tf_keras.Sequential(
        [
            tf_keras.Input((8, 8, 1)),
            Conv2DMNF(4, 3, activation="relu", q_flow=flow, seed=1),
            tf_keras.layers.Flatten(),
            DenseMNF(10, q_flow=flow, r_flow="planar", seed=2),
            tf_keras.layers.Activation("linear", dtype="float32"),
        ]
    )


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.uniform(size=(n, 8, 8, 1)).astype("float32"), rng.integers(0, 10, n)


@pytest.mark.parametrize("flow", ["realnvp", "iaf"])
def test_compute_dtype_float32_variables_and_kl(policy, flow):
    model = _model(flow)
    x, _ = _data(8)
    outputs = [layer.output for layer in model.layers[:3:2]]
    assert all(o.dtype == policy.compute_dtype for o in outputs)
    sampled = model.layers[0](x)
    assert sampled.dtype == policy.compute_dtype
    assert model.layers[0](x, sample=False).dtype == policy.compute_dtype
    assert {v.dtype for v in model.weights} == {tf.float32}
    model(x)
    assert len(model.losses) == 2
    assert all(loss.dtype == tf.float32 for loss in model.losses)
    assert all(np.isfinite(loss.numpy()) for loss in model.losses)
    # The KL of a float32 copy of the layer (same variables) is the same number.
    assert model.layers[0].kl_divergence(seed=[1, 2]).dtype == tf.float32


@pytest.mark.parametrize("composite", [False, True], ids=["dispatch", "composite"])
def test_gradients_are_finite(policy, composite):
    model = _model()
    x, y = _data(16)
    with force_composite() if composite else contextlib.nullcontext():
        with tf.GradientTape() as tape:
            logits = model(x)
            nll = tf_keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            loss = tf.reduce_mean(nll) + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
    for variable, grad in zip(model.trainable_variables, grads, strict=True):
        assert grad is not None, variable.name
        assert np.all(np.isfinite(grad.numpy())), variable.name


def test_short_fit_is_finite_and_updates_every_variance(policy):
    tf_keras.utils.set_random_seed(0)
    model = _model()
    x, y = _data(128)
    model.compile(
        tf_keras.optimizers.Adam(1e-2),
        tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = {v.name: v.numpy() for v in model.trainable_variables}
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # Loss scaling skips steps whose gradients are not finite: every variable must move.
    for v in model.trainable_variables:
        assert not np.array_equal(v.numpy(), before[v.name]), v.name
    with posterior_mean(model):
        assert np.all(np.isfinite(model.predict(x, verbose=0)))
