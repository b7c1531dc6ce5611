"""Config round trips and save/load of models with MNF layers (.keras, h5, SavedModel)."""

import numpy as np
import pytest
import tensorflow_probability as tfp
import tf_keras

from tfp_mnf.layers import Conv2DMNF, DenseMNF, ScaledKL, posterior_mean

tfd = tfp.distributions


@tf_keras.saving.register_keras_serializable(package="tests")
def kl_per_hundred(q, p, _):
    """A registered divergence function: saved by name."""
    return tfd.kl_divergence(q, p) / 100.0


def _model():
    kl = ScaledKL(1e-3)
    return tf_keras.Sequential(
        [
            tf_keras.Input((6, 6, 2)),
            Conv2DMNF(
                3,
                3,
                activation="relu",
                q_flow="iaf",
                r_flow="planar",
                seed=1,
                kernel_divergence_fn=kl,
            ),
            tf_keras.layers.Flatten(),
            DenseMNF(
                4,
                num_q_flows=1,
                r_flow="maf",
                learn_prior=True,
                seed=2,
                kernel_divergence_fn=kl_per_hundred,
            ),
        ]
    )


@pytest.fixture(scope="module")
def trained():
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 6, 2)).astype("float32")
    y = rng.integers(0, 4, size=32)
    model.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, verbose=0)
    return model, x


def test_layer_config_round_trip():
    layer = Conv2DMNF(
        5,
        (3, 2),
        strides=2,
        padding="same",
        q_flow="planar",
        num_q_flows=3,
        max_std=0.3,
        prior_variance=0.5,
        seed=4,
        activation="relu",
    )
    clone = Conv2DMNF.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    dense = DenseMNF(3, kernel_divergence_fn=ScaledKL(0.25))
    clone = DenseMNF.from_config(dense.get_config())
    assert isinstance(clone.kernel_divergence_fn, ScaledKL)
    assert clone.kernel_divergence_fn.scale == 0.25


@pytest.mark.parametrize("fmt", ["keras", "h5", "tf"])
def test_save_and_load_gives_same_posterior_mean(trained, tmp_path, fmt):
    model, x = trained
    path = str(tmp_path / ("model" if fmt == "tf" else f"model.{fmt}"))
    model.save(path, save_format=fmt if fmt != "keras" else None)
    loaded = (
        tf_keras.models.load_model(path, safe_mode=False)
        if fmt == "keras"
        else (tf_keras.models.load_model(path))
    )
    with posterior_mean(model, loaded):
        np.testing.assert_allclose(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6
        )
    # Still a Bayesian model: sampling calls differ and add one KL per MNF layer.
    a, b = loaded(x), loaded(x)
    assert not np.allclose(a, b)
    assert len(loaded.losses) == 2


def test_lambda_divergence_fn_is_rejected_at_save_time_with_a_clear_message(tmp_path):
    model = tf_keras.Sequential(
        [tf_keras.Input((3,)), DenseMNF(2, kernel_divergence_fn=lambda q, p, _: 0.0 * p.mean())]
    )
    model(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match="kernel_divergence_fn.*lambda"):
        model.save(str(tmp_path / "m.keras"))


def test_layers_build_inside_functional_models_and_clone():
    inputs = tf_keras.Input((4,))
    outputs = DenseMNF(2, seed=3)(DenseMNF(5, activation="relu", seed=4)(inputs))
    model = tf_keras.Model(inputs, outputs)
    clone = tf_keras.models.clone_model(model)
    assert [type(layer) for layer in clone.layers] == [type(layer) for layer in model.layers]
    assert len(clone.trainable_variables) == len(model.trainable_variables)
