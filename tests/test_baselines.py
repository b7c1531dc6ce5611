"""Tests of the uncertainty baselines in tfp_mnf.models: MC-dropout and deep-ensemble LeNets."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfp_mnf import evaluate, models

# Small LeNets on 16x16 inputs keep every test fast.
SMALL = dict(input_shape=(16, 16, 1), filters=(4, 8), hidden_units=16, kernel_size=3)


@pytest.fixture
def images():
    return np.random.default_rng(0).random((12, 16, 16, 1)).astype(np.float32)


def test_mc_dropout_samples_at_prediction(images):
    tf_keras.utils.set_random_seed(0)
    model = models.MCDropoutLeNet(**SMALL, dropout_rate=0.5, seed=3)
    kinds = [type(layer).__name__ for layer in model.layers[-4:]]
    assert kinds == ["MCDropout", "Dense", "MCDropout", "Dense"]  # dropout before each Dense
    first = model(images, training=False).numpy()
    second = model(images, training=False).numpy()
    assert first.shape == (12, 10)
    assert not np.allclose(first, second)
    samples = evaluate.predictive_samples(model, images, num_samples=3, batch_size=5)
    assert samples.shape == (3, 12, 10)
    assert not np.allclose(samples[0], samples[1])


def test_mc_dropout_rate_zero_is_deterministic(images):
    model = models.MCDropoutLeNet(**SMALL, dropout_rate=0.0)
    np.testing.assert_allclose(model(images).numpy(), model(images).numpy())


@pytest.mark.parametrize("rate", [-0.1, 1.0, True, float("nan")])
def test_mc_dropout_rate_validated(rate):
    with pytest.raises(ValueError, match="dropout_rate"):
        models.MCDropoutLeNet(**SMALL, dropout_rate=rate)


def test_mc_dropout_save_load(tmp_path, images):
    model = models.MCDropoutLeNet(**SMALL, dropout_rate=0.3, seed=1)
    path = str(tmp_path / "dropout.keras")
    model.save(path)
    loaded = tf_keras.models.load_model(path)
    dropouts = [layer for layer in loaded.layers if isinstance(layer, models.MCDropout)]
    assert [layer.rate for layer in dropouts] == [0.3, 0.3]
    for original, restored in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(original.numpy(), restored.numpy())
    assert not np.allclose(loaded(images).numpy(), loaded(images).numpy())


def test_ensemble_rows_come_from_single_members(images):
    tf_keras.utils.set_random_seed(0)
    model = models.DeepEnsembleLeNet(3, **SMALL, seed=1)
    members = model.member_logits(images, batch_size=5)
    assert members.shape == (3, 12, 10)
    # The members are initialized independently.
    assert not np.allclose(members[0], members[1])
    drawn = []
    for _ in range(6):
        out = model(images, training=False).numpy()
        assert out.shape == (12, 10)
        hits = np.isclose(out[None], members, atol=1e-5).all(axis=-1)  # [K, N]
        assert np.all(hits.sum(axis=0) == 1), "each row is exactly one member's logits"
        drawn.append(hits.argmax(axis=0))
    # Rows pick their members independently, and every member gets picked.
    assert len({tuple(d) for d in drawn}) > 1
    assert set(np.concatenate(drawn)) == {0, 1, 2}


def test_ensemble_through_predictive_samples_and_tiling(images):
    tf_keras.utils.set_random_seed(0)
    model = models.DeepEnsembleLeNet(2, **SMALL, seed=2)
    members = evaluate.softmax(model.member_logits(images))
    samples = evaluate.predictive_probs(model, images, num_samples=4, batch_size=5)
    assert samples.shape == (4, 12, 10)
    assert np.isclose(samples[:, None], members[None], atol=1e-5).all(axis=-1).any(axis=1).all()
    # A tiled batch (the same image in many rows) samples the mixture row by row.
    tiled = np.repeat(images[:1], 64, axis=0)
    rows = model.predict_on_batch(tiled)
    logits = model.member_logits(images[:1])[:, 0]
    counts = [np.isclose(rows, member, atol=1e-5).all(axis=-1).sum() for member in logits]
    assert sum(counts) == 64 and min(counts) > 10


def test_ensemble_config_and_save_load(tmp_path, images):
    model = models.DeepEnsembleLeNet(2, **SMALL, seed=5, name="ens")
    config = model.get_config()
    assert config == {
        "num_members": 2,
        "input_shape": (16, 16, 1),
        "num_classes": 10,
        "filters": (4, 8),
        "hidden_units": 16,
        "kernel_size": 3,
        "seed": 5,
        "name": "ens",
        "trainable": True,
    }
    clone = models.DeepEnsembleLeNet.from_config(config)
    assert clone.get_config() == config
    model(images)
    path = str(tmp_path / "ensemble.keras")
    model.save(path)
    loaded = tf_keras.models.load_model(path)
    assert isinstance(loaded, models.DeepEnsembleLeNet)
    np.testing.assert_allclose(loaded.member_logits(images), model.member_logits(images))


def test_ensemble_members_train_independently(images):
    tf_keras.utils.set_random_seed(0)
    model = models.DeepEnsembleLeNet(2, **SMALL)
    labels = np.arange(12) % 10
    member = model.members[0]
    member.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.numpy() for w in model.members[1].weights]
    member.fit(images, labels, epochs=1, verbose=0)
    for weight, value in zip(model.members[1].weights, before, strict=True):
        np.testing.assert_array_equal(weight.numpy(), value)
    assert len(model.trainable_variables) == 2 * len(member.trainable_variables)


def test_ensemble_argument_errors(images):
    with pytest.raises(ValueError, match="num_members"):
        models.DeepEnsembleLeNet(0, **SMALL)
    with pytest.raises(ValueError, match="num_members"):
        models.DeepEnsembleLeNet(2.0, **SMALL)
    model = models.DeepEnsembleLeNet(1, **SMALL)
    with pytest.raises(ValueError, match="batch_size"):
        model.member_logits(images, batch_size=0)
    with pytest.raises(ValueError, match="x"):
        model.member_logits(images[:0])


def test_architecture_arguments_of_the_tfp_peers(images):
    model = models.FlipoutLeNet(**SMALL, kl_scale=0.1)
    assert model(tf.constant(images)).shape == (12, 10)
    assert [layer.filters for layer in model.layers[:4:2]] == [4, 8]
    assert model.layers[-2].units == 16
    assert len(model.losses) == 4
