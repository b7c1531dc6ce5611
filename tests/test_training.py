"""MNF networks learn: scikit-learn's bundled 8x8 digits to >= 90% test accuracy.

tf_keras trains through the fused ops and the composite path, Keras 3 its conv net through
the fused ops (the ops are shared; Keras 3's composite path trains under XLA in
test_keras3.py) and its MLP too with TFP_MNF_ALL_FRONTENDS=1 (tests/_frontends.py).
"""

import numpy as np
import pytest
import tensorflow as tf
from _frontends import EVERY_FRONTEND
from sklearn.datasets import load_digits


def _paths(frontends):
    """(front-end, op path) pairs: tf_keras through both paths, Keras 3 the fused one."""
    pairs = [("tf_keras", "fused"), ("tf_keras", "composite"), ("keras3", "fused")]
    return pytest.mark.parametrize(
        "frontend, op_path", [p for p in pairs if p[0] in frontends], indirect=True
    )


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def _mc_accuracy(model, x, y, num_samples=10):
    probs = np.mean([tf.nn.softmax(model(x)).numpy() for _ in range(num_samples)], axis=0)
    return float(np.mean(np.argmax(probs, -1) == y))


def _fit(frontend, model, x, y, epochs):
    frontend.utils.set_random_seed(0)
    model.compile(
        frontend.optimizers.Adam(3e-3),
        frontend.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)


@_paths(EVERY_FRONTEND)
def test_mnf_mlp_learns_digits(digits, frontend, op_path):
    (x, y), (x_test, y_test) = digits
    model = frontend.models.MNFMLP(
        64, hidden_units=(64, 32), output_units=10, kl_scale=1 / len(y), seed=0
    )
    _fit(frontend, model, x.reshape(-1, 64), y, epochs=15)
    accuracy = _mc_accuracy(model, x_test.reshape(-1, 64), y_test)
    assert accuracy >= 0.9, f"MNF MLP test accuracy {accuracy:.3f}"


@_paths(["tf_keras", "keras3"])
def test_mnf_conv_net_learns_digits(digits, frontend, op_path):
    (x, y), (x_test, y_test) = digits
    kl = frontend.ScaledKL(1 / len(y))
    model = frontend.Sequential(
        [
            frontend.Input((8, 8, 1)),
            frontend.Conv2DMNF(
                16,
                3,
                padding="same",
                activation="relu",
                kernel_divergence_fn=kl,
                bias_divergence_fn=kl,
                seed=1,
            ),
            frontend.keras.layers.MaxPooling2D(2),
            frontend.keras.layers.Flatten(),
            frontend.DenseMNF(10, kernel_divergence_fn=kl, bias_divergence_fn=kl, seed=2),
        ]
    )
    _fit(frontend, model, x, y, epochs=10)
    accuracy = _mc_accuracy(model, x_test, y_test)
    assert accuracy >= 0.9, f"MNF conv net test accuracy {accuracy:.3f}"
