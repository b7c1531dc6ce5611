"""Config round trips and save/load of models with MNF layers (.keras, h5, SavedModel).

Every test runs for the tf_keras and the Keras 3 layers (the `frontend` fixture); the save
formats are each Keras' own (`.keras` and h5 in both, SavedModel in tf_keras; Keras 3's h5
here with TFP_MNF_ALL_FRONTENDS=1, and in fresh processes in test_robustness_saveload.py).
"""

import numpy as np
import pytest
import tensorflow_probability as tfp
from _frontends import EVERY_FRONTEND, FRONTENDS

tfd = tfp.distributions


def kl_per_hundred(q, p, _):
    """A divergence function registered with both Keras: saved by name."""
    return tfd.kl_divergence(q, p) / 100.0


for _frontend in FRONTENDS.values():
    _frontend.register(kl_per_hundred, package="tests")


def _model(frontend):
    kl = frontend.ScaledKL(1e-3)
    return frontend.Sequential(
        [
            frontend.Input((6, 6, 2)),
            frontend.Conv2DMNF(
                3,
                3,
                activation="relu",
                q_flow="iaf",
                r_flow="planar",
                seed=1,
                kernel_divergence_fn=kl,
            ),
            frontend.keras.layers.Flatten(),
            frontend.DenseMNF(
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
def trained_models():
    """Front-end name -> (trained model, inputs), each trained once per module."""
    return {}


@pytest.fixture
def trained(frontend, trained_models):
    if frontend.name not in trained_models:
        model = _model(frontend)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 6, 6, 2)).astype("float32")
        y = rng.integers(0, 4, size=32)
        model.compile("adam", frontend.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=2, verbose=0)
        trained_models[frontend.name] = model, x
    return trained_models[frontend.name]


def test_layer_config_round_trip(frontend):
    layer = frontend.Conv2DMNF(
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
    clone = frontend.Conv2DMNF.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    dense = frontend.DenseMNF(3, kernel_divergence_fn=frontend.ScaledKL(0.25))
    clone = frontend.DenseMNF.from_config(dense.get_config())
    assert isinstance(clone.kernel_divergence_fn, frontend.ScaledKL)
    assert clone.kernel_divergence_fn.scale == 0.25


@pytest.mark.parametrize(
    "frontend, fmt",
    [
        (name, fmt)
        for name, frontend in FRONTENDS.items()
        for fmt in frontend.formats
        if fmt == "keras" or name in EVERY_FRONTEND
    ],
    indirect=["frontend"],
)
def test_save_and_load_gives_same_posterior_mean(frontend, trained, tmp_path, fmt):
    model, x = trained
    path = frontend.model_path(tmp_path, fmt)
    frontend.save(model, path, fmt)
    loaded = frontend.load(path, fmt)
    with frontend.posterior_mean(model, loaded):
        np.testing.assert_allclose(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6
        )
    assert loaded.layers[-1].kernel_divergence_fn is kl_per_hundred
    # Still a Bayesian model: sampling calls differ and add one KL per MNF layer.
    a, b = loaded(x), loaded(x)
    assert not np.allclose(a, b)
    assert len(loaded.losses) == 2


def test_lambda_divergence_fn_is_rejected_at_save_time_with_a_clear_message(frontend, tmp_path):
    model = frontend.Sequential(
        [
            frontend.Input((3,)),
            frontend.DenseMNF(2, kernel_divergence_fn=lambda q, p, _: 0.0 * p.mean()),
        ]
    )
    model(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match="kernel_divergence_fn.*lambda"):
        model.save(str(tmp_path / "m.keras"))


def test_layers_build_inside_functional_models_and_clone(frontend):
    inputs = frontend.Input((4,))
    outputs = frontend.DenseMNF(2, seed=3)(frontend.DenseMNF(5, activation="relu", seed=4)(inputs))
    model = frontend.Model(inputs, outputs)
    clone = frontend.keras.models.clone_model(model)
    assert [type(layer) for layer in clone.layers] == [type(layer) for layer in model.layers]
    assert len(clone.trainable_variables) == len(model.trainable_variables)
