"""Keras-3-specific tests of `tfp_mnf.keras` (the shared suites run both front-ends through
the `frontend` fixture): the issue's Sequential, subclassed models, the KL once per `fit`
step, `jit_compile` paths, the same numbers as the tf_keras layers, mixed-precision dtypes,
the ready-made models, `Flow`, and the weights-format and divergence-registration errors.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from keras.src.backend import AutocastScope

import tfp_mnf.layers
from tfp_mnf import evaluate, ops
from tfp_mnf.keras import (
    Conv2DMNF,
    DenseMNF,
    Flow,
    MNFLayer,
    ScaledKL,
    make_flow,
    mnf_layers,
    models,
    posterior_mean,
)
from tfp_mnf.ops import policy

tfd = tfp.distributions
SMALL = dict(input_shape=(12, 12, 1), filters=(2, 3), hidden_units=8, kernel_size=3)
TINY_FLOWS = dict(num_q_flows=1, num_r_flows=1, flow_hidden_units=8)


def _images(n=8, size=12):
    return np.random.default_rng(0).random((n, size, size, 1)).astype("float32")


def test_the_issue_model_builds_in_tf_keras_which_is_keras_3():
    model = tf.keras.Sequential(
        [
            tf.keras.Input((28, 28, 1)),
            Conv2DMNF(4, 5, activation="relu", **TINY_FLOWS),
            tf.keras.layers.Flatten(),
            DenseMNF(10, **TINY_FLOWS),
        ]
    )
    assert isinstance(model, keras.Model) and all(
        isinstance(layer, keras.layers.Layer) for layer in model.layers
    )
    assert model(_images(2, 28)).shape == (2, 10)
    assert len(model.losses) == 2


class SubclassedMNF(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = DenseMNF(8, activation="relu", seed=1, **TINY_FLOWS)
        self.out = DenseMNF(3, seed=2, learn_prior=True, **TINY_FLOWS)

    def call(self, inputs):
        return self.out(self.hidden(inputs))


def test_subclassed_model_trains_and_tracks_every_variable():
    model = SubclassedMNF()
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model(x)
    before = [v.numpy() for v in model.trainable_weights]
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert len(model.losses) == 2
    assert mnf_layers(model) == [model.hidden, model.out]
    # 3 + 4 trainable variables (the second layer learns its prior), all updated by Adam.
    assert len(model.trainable_weights) == 7
    for variable, value in zip(model.trainable_weights, before, strict=True):
        assert not np.array_equal(variable.numpy(), value), variable.path


def test_fit_counts_the_kl_once_per_step():
    """With a deterministic KL (use_z=False), a zero data loss and learning rate 0, every
    step's loss is exactly the sum of the layers' KLs."""
    kl = ScaledKL(1e-2)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            DenseMNF(6, use_z=False, seed=0, kernel_divergence_fn=kl, bias_divergence_fn=kl),
            DenseMNF(2, use_z=False, seed=1, kernel_divergence_fn=kl, bias_divergence_fn=kl),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), lambda y, pred: 0.0 * tf.reduce_mean(pred))
    x = np.ones((32, 4), "float32")
    expected = 1e-2 * sum(float(layer.kl_divergence()) for layer in mnf_layers(model))
    history = model.fit(x, np.zeros(32), epochs=1, batch_size=8, verbose=0)
    np.testing.assert_allclose(history.history["loss"], [expected], rtol=1e-5)
    np.testing.assert_allclose(model.evaluate(x, np.zeros(32), verbose=0), expected, rtol=1e-5)


@pytest.fixture
def dispatch_choices(monkeypatch):
    """Records (fused kernel applies?, inside XLA?) for every op the ops policy builds."""
    choices = []
    fused_applies = policy.fused_applies

    def recording(*args, **kwargs):
        fused = fused_applies(*args, **kwargs)
        choices.append((fused, policy._in_xla()))
        return fused

    monkeypatch.setattr(policy, "fused_applies", recording)
    return choices


@pytest.mark.parametrize("jit_compile", [True, False])
def test_jit_compile_takes_the_composite_path_and_both_settings_train(
    jit_compile, dispatch_choices
):
    keras.utils.set_random_seed(0)
    model = models.MNFMLP(4, hidden_units=(), output_units=1, kl_scale=1e-3, seed=0, **TINY_FLOWS)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x[:, :1] - x[:, 1:2]
    model.compile("adam", "mse", jit_compile=jit_compile)  # Keras 3's default Adam
    assert model.jit_compile is jit_compile
    before = [v.numpy() for v in model.trainable_weights]
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    for variable, value in zip(model.trainable_weights, before, strict=True):
        assert not np.array_equal(variable.numpy(), value), variable.path
    assert dispatch_choices
    if jit_compile:
        assert set(dispatch_choices) == {(False, True)}, "composite inside XLA"
    elif ops.fused_available():
        assert set(dispatch_choices) == {(True, False)}, "fused kernels outside XLA"


def test_jit_compile_auto_is_off_on_a_cpu_only_machine():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: Keras 3 turns XLA on")
    model = models.MNFMLP(3, hidden_units=(4,))
    model.compile("adam", "mse")
    assert model.jit_compile is False


@pytest.mark.parametrize("kind", ["planar", "realnvp", "iaf", "maf"])
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda module, kind: module.DenseMNF(4, seed=3, q_flow=kind, r_flow=kind), (6, 5)),
        (
            lambda module, kind: module.Conv2DMNF(3, 2, seed=4, q_flow=kind, r_flow=kind),
            (2, 5, 5, 2),
        ),
    ],
    ids=["dense", "conv"],
)
def test_the_same_numbers_as_the_tf_keras_layers(make, shape, kind):
    """Same seed: the same variables, KL bound, posterior mean and samples in both."""
    two, three = make(tfp_mnf.layers, kind), make(tfp_mnf.keras, kind)
    x = tf.random.stateless_normal(shape, seed=[1, 2])
    for layer in (two, three):
        layer.build(shape)
    for a, b in zip(two.weights, three.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    seed = tf.constant([5, 6])
    np.testing.assert_allclose(two.kl_divergence(seed=seed), three.kl_divergence(seed=seed))
    np.testing.assert_allclose(two(x, sample=False), three(x, sample=False), rtol=1e-6)
    draws = [layer.posterior.draw(shape[0], seed) for layer in (two, three)]
    samples = [
        layer._sample_outputs(x, draw.z, seed, draw.moments.variance)
        for layer, draw in zip((two, three), draws, strict=True)
    ]
    np.testing.assert_allclose(samples[0], samples[1], rtol=1e-6, atol=1e-6)


def test_the_same_flow_as_the_tf_keras_flow_layer():
    two, three = (
        module.make_flow("iaf", 2, 4, 8, seed=1) for module in (tfp_mnf.layers, tfp_mnf.keras)
    )
    z = tf.random.stateless_normal([3, 4], seed=[0, 1])
    for flow in (two, three):
        flow.build((None, 4))
    np.testing.assert_array_equal(two.parameters.numpy(), three.parameters.numpy())
    np.testing.assert_allclose(two(z), three(z), rtol=1e-6)
    np.testing.assert_allclose(
        two.bijector.forward_log_det_jacobian(z, 1),
        three.bijector.forward_log_det_jacobian(z, 1),
        rtol=1e-6,
    )


def test_flow_layer_trains_its_one_variable_and_round_trips_its_config():
    flow = make_flow("realnvp", 2, 4, hidden_units=8, seed=0, name="f")
    assert isinstance(flow, Flow) and isinstance(flow, keras.layers.Layer)
    flow.build((None, 4))
    assert [v.path for v in flow.trainable_weights] == ["f/parameters"]
    z = tf.random.stateless_normal([5, 4], seed=[2, 3])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(flow.bijector.forward_log_det_jacobian(z, 1))
    grad = tape.gradient(loss, flow.trainable_weights)[0]
    assert np.any(grad.numpy())
    assert Flow.from_config(flow.get_config()).get_config() == flow.get_config()


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_reads_variables_in_float32_where_the_maths_needs_it(policy, monkeypatch):
    """The adapter's scope reads float32 inside Keras 3's autocast; the sampling step runs
    in float32 under mixed_float16 and in the compute dtype under mixed_bfloat16."""
    seen = []
    step = ops.dense_local_reparam_from_variance

    def recording(x, *args, **kwargs):
        seen.append(x.dtype)
        return step(x, *args, **kwargs)

    monkeypatch.setattr(ops, "dense_local_reparam_from_variance", recording)
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = DenseMNF(3, seed=0)
        out = layer(np.ones((4, 5), "float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    compute = tf.as_dtype(policy.split("_")[1])
    assert out.dtype == compute
    assert seen == [tf.float32 if policy == "mixed_float16" else compute]
    assert layer.losses[0].dtype == tf.float32
    with AutocastScope(compute.name):
        assert tf.convert_to_tensor(layer.kernel_mean).dtype == compute
        with layer._keras.own_dtype_scope():
            assert tf.convert_to_tensor(layer.kernel_mean).dtype == tf.float32


def test_ready_made_models_are_keras_3_models_that_sample_per_row():
    images = _images()
    built = [
        models.MNFLeNet(**SMALL, seed=0, **TINY_FLOWS),
        models.LeNet(**SMALL),
        models.MCDropoutLeNet(**SMALL, seed=1),
        models.DeepEnsembleLeNet(2, **SMALL, seed=2),
        models.MNFMLP(3, hidden_units=(4,)),
    ]
    assert all(isinstance(model, keras.Model) for model in built)
    assert [evaluate.samples_per_row(model) for model in built] == [True, False, True, True, True]
    mnf, lenet, dropout, ensemble = built[:4]
    assert [type(layer).__name__ for layer in dropout.layers[-4:]] == [
        "MCDropout",
        "Dense",
        "MCDropout",
        "Dense",
    ]
    assert not np.allclose(dropout(images, training=False), dropout(images, training=False))
    members = ensemble.member_logits(images, batch_size=5)
    rows = ensemble(images).numpy()
    assert all(np.any(np.all(np.isclose(members[:, i], rows[i]), axis=-1)) for i in range(8))
    samples = evaluate.predictive_samples(mnf, images, num_samples=3, batch_size=12)
    assert samples.shape == (3, 8, 10) and not np.allclose(samples[0], samples[1])
    with posterior_mean(mnf):
        mean = evaluate.predictive_samples(mnf, images, num_samples=2)
    np.testing.assert_allclose(mean[0], mean[1], rtol=1e-6)
    assert evaluate.predictive_samples(lenet, images, num_samples=1).shape == (1, 8, 10)


def test_baselines_save_and_load(tmp_path):
    images = _images()
    dropout = models.MCDropoutLeNet(**SMALL, dropout_rate=0.3, seed=1)
    ensemble = models.DeepEnsembleLeNet(2, **SMALL, seed=5, name="ens")
    ensemble.save_weights(str(tmp_path / "unbuilt.weights.h5"))  # built at construction
    for name, model in (("dropout", dropout), ("ensemble", ensemble)):
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded) is type(model)
        for original, restored in zip(model.weights, loaded.weights, strict=True):
            np.testing.assert_array_equal(original.numpy(), restored.numpy())
    assert isinstance(loaded, models.DeepEnsembleLeNet) and loaded.name == "ens"
    np.testing.assert_allclose(
        loaded.member_logits(images), ensemble.member_logits(images), rtol=1e-6
    )


def test_a_file_of_another_weights_format_is_refused_with_a_clear_message():
    layer = DenseMNF(2)
    layer.build((None, 3))
    assert isinstance(layer, MNFLayer)
    old = {str(i): np.zeros(1, "float32") for i in range(25)}  # tfp_mnf 0.1: one per parameter
    with pytest.raises(ValueError, match="holds 25 variables.*weights format 2"):
        layer.load_own_variables(old)


@tf_keras.saving.register_keras_serializable(package="tests_keras3")
def kl_registered_with_tf_keras_only(q, p, _):
    return tfd.kl_divergence(q, p)


def test_a_divergence_function_must_be_registered_with_keras_3(tmp_path):
    model = keras.Sequential(
        [keras.Input((3,)), DenseMNF(2, kernel_divergence_fn=kl_registered_with_tf_keras_only)]
    )
    with pytest.raises(ValueError, match=r"keras\.saving\.register_keras_serializable"):
        model.save(str(tmp_path / "m.keras"))
