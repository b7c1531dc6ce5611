"""Numerics: long training at a high learning rate, extreme initial scales, guards, and
the `check_numerics` mode.

The long run is 2,000 Adam steps at lr 1e-2 on scikit-learn's digits when the environment
variable TFP_MNF_NUMERICS_STEPS=2000 is set; the default suite runs 200 steps. Tests taking
the `frontend` fixture run for the tf_keras and the Keras 3 front-end (the extreme scales
for Keras 3 with TFP_MNF_ALL_FRONTENDS=1, tests/_frontends.py).
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf
from _frontends import EVERY_FRONTEND
from sklearn.datasets import load_digits

from tfp_mnf.posterior import MAX_ABS_R_LOG_PRECISION, MIN_LOG_STD

LONG_STEPS = int(os.environ.get("TFP_MNF_NUMERICS_STEPS", "200"))


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return (data.images / 16.0).astype("float32")[..., None], data.target.astype("int32")


def _model(frontend, n, **kwargs):
    kl = frontend.ScaledKL(1.0 / n)
    kwargs = dict(kernel_divergence_fn=kl, bias_divergence_fn=kl, **kwargs)
    return frontend.Sequential(
        [
            frontend.Input((8, 8, 1)),
            frontend.Conv2DMNF(8, 3, activation="relu", seed=1, **kwargs),
            frontend.keras.layers.MaxPooling2D(),
            frontend.keras.layers.Flatten(),
            frontend.DenseMNF(32, activation="relu", q_flow="iaf", seed=2, **kwargs),
            frontend.DenseMNF(10, r_flow="planar", seed=3, **kwargs),
        ]
    )


def _train(frontend, model, x, y, steps, lr=1e-2, batch_size=64, compiled=True):
    """Adam steps; asserts the loss, every layer's KL and every gradient are finite. A few
    steps run faster eagerly (`compiled=False`) than the tracing of a `tf.function` takes."""
    optimizer = frontend.optimizers.Adam(lr)
    loss_fn = frontend.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    optimizer.build(variables)  # Keras 3 optimizers create their variables here

    def step(xb, yb):
        with tf.GradientTape() as tape:
            nll = loss_fn(yb, model(xb))
            kls = tf.stack(model.losses)
            loss = nll + tf.reduce_sum(kls)
        grads = tape.gradient(loss, variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss, kls, finite

    if compiled:
        step = tf.function(step)
    rng = np.random.default_rng(0)
    losses = []
    for i in range(steps):
        idx = rng.integers(0, len(y), batch_size)
        loss, kls, finite = step(x[idx], y[idx])
        assert np.isfinite(loss.numpy()), f"loss at step {i}: {loss.numpy()}"
        assert np.all(np.isfinite(kls.numpy())), f"KL at step {i}: {kls.numpy()}"
        assert bool(finite), f"non-finite gradient at step {i}"
        losses.append(float(loss))
    return losses


def test_long_training_at_lr_1e_2_stays_finite_and_learns(digits, frontend):
    x, y = digits
    frontend.utils.set_random_seed(0)
    model = _model(frontend, len(y))
    losses = _train(frontend, model, x, y, LONG_STEPS)
    assert np.mean(losses[-20:]) < 0.8 * np.mean(losses[:20])
    for variable in model.trainable_variables:
        assert np.all(np.isfinite(variable.numpy())), frontend.variable_name(variable)


@pytest.mark.parametrize("frontend", EVERY_FRONTEND, indirect=True)
@pytest.mark.parametrize(
    "kernel_log_std_init, z_log_var_init",
    [(-20.0, 5.0), (5.0, -20.0), (5.0, 5.0), (-20.0, -20.0)],
)
def test_extreme_initial_scales_stay_finite(digits, frontend, kernel_log_std_init, z_log_var_init):
    x, y = digits
    frontend.utils.set_random_seed(0)
    model = _model(
        frontend, len(y), kernel_log_std_init=kernel_log_std_init, z_log_var_init=z_log_var_init
    )
    _train(frontend, model, x, y, steps=8, compiled=False)


def test_guards_keep_kl_and_gradients_finite_beyond_the_clips(frontend):
    """Variables far outside the clips: finite KL and gradients, zero gradient beyond."""
    layer = frontend.Conv2DMNF(3, 3, seed=0)
    x = tf.random.normal((4, 6, 6, 2), seed=1)
    layer(x)
    layer.kernel_log_std.assign(tf.fill(layer.kernel_log_std.shape, -80.0))
    layer.assign_parameters(
        bias_log_var=tf.fill(layer.bias_log_var.shape, -200.0),
        q0_log_var=tf.fill(layer.q0_log_var.shape, 40.0),
        r_b2=tf.fill(layer.r_b2.shape, 1e3),
    )
    layer.kernel_mean.assign(layer.kernel_mean * 1e3)  # a = c^T W is unbounded in conv layers
    with tf.GradientTape() as tape:
        kl = layer.kl_divergence(seed=[3, 4])
        out = tf.reduce_sum(layer(x))
    grads = tape.gradient([kl, out], layer.trainable_variables)
    assert np.isfinite(kl.numpy())
    for variable, grad in zip(layer.trainable_variables, grads, strict=True):
        assert np.all(np.isfinite(grad.numpy())), variable.name
    by_id = {id(v): g.numpy() for v, g in zip(layer.trainable_variables, grads, strict=True)}
    assert np.all(by_id[id(layer.kernel_log_std)] == 0)
    packed = layer._posterior_pack.unpack(by_id[id(layer.posterior_parameters)])
    assert np.all(packed["q0_log_var"].numpy() == 0)
    # The clipped values are what the posterior uses.
    np.testing.assert_allclose(layer.posterior.clipped_log_std().numpy(), MIN_LOG_STD)
    assert MAX_ABS_R_LOG_PRECISION == 15.0
    assert math.isclose(float(tf.reduce_max(layer.posterior.clipped_q0_log_var())), 10.0)


def test_check_numerics_is_off_by_default_and_in_the_config(frontend):
    layer = frontend.DenseMNF(2, check_numerics=True)
    assert layer.get_config()["check_numerics"] is True
    assert frontend.DenseMNF.from_config(layer.get_config()).check_numerics is True
    assert frontend.DenseMNF(2).check_numerics is False
    out = frontend.DenseMNF(2, seed=0)(np.full((2, 3), np.nan, "float32"))
    assert np.all(np.isnan(out.numpy()))


def _nan_variable(name):
    def poison(layer):
        if name in ("kernel_mean", "kernel_log_std"):
            getattr(layer, name).assign(tf.fill(getattr(layer, name).shape, np.nan))
        else:
            layer.assign_parameters(**{name: tf.fill(getattr(layer, name).shape, np.nan)})

    return poison


@pytest.mark.parametrize(
    "poison, tensor",
    [
        (None, "outputs"),
        (_nan_variable("q0_mean"), "z"),
        (_nan_variable("r_b1"), "KL"),
    ],
    ids=["outputs", "z", "kl"],
)
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_check_numerics_names_the_layer_and_the_tensor(frontend, poison, tensor, graph):
    layer = frontend.DenseMNF(2, seed=0, check_numerics=True, name="checked_dense")
    x = np.ones((2, 3), "float32")
    layer(x)
    if poison is None:
        x[0, 0] = np.nan
    else:
        poison(layer)
    call = tf.function(layer) if graph else layer
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"(?s)checked_dense.*'{tensor}'"):
        call(x)


def test_check_numerics_in_a_model_during_fit(digits, frontend):
    x, y = digits
    model = _model(frontend, len(y), check_numerics=True)
    model.compile("adam", frontend.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:64], y[:64], epochs=1, verbose=0)
    x_bad = x[:64].copy()
    x_bad[3] = np.nan
    first = model.layers[0].name
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"(?s){first}.*'outputs'"):
        model.fit(x_bad, y[:64], epochs=1, verbose=0)
