"""`tfp_mnf.convert`: a trained Keras model becomes an MNF model with the trained weights."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as K

import tfp_mnf
from tfp_mnf import conversion
from tfp_mnf.layers import Conv1DMNF, Conv2DMNF, Conv3DMNF, DenseMNF, ScaledKL, posterior_mean

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_FLOWS = dict(num_q_flows=1, num_r_flows=1, flow_hidden_units=8)


def _inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _perturb(model, seed=0):
    """Gives every weight a value that no initializer would (a "trained" model)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([w + 0.3 * rng.normal(size=w.shape) for w in layer.get_weights()])
    return model


def _mean_prediction(model, x):
    with posterior_mean(model):
        return model(x).numpy()


def _lenet():
    return _perturb(
        K.Sequential(
            [
                K.Input((10, 10, 1)),
                K.layers.Conv2D(4, 3, activation="relu", name="conv_a"),
                K.layers.MaxPooling2D(2),
                K.layers.Conv2D(6, 2, padding="same", activation="relu", name="conv_b"),
                K.layers.Flatten(),
                K.layers.Dense(12, activation="relu", name="hidden"),
                K.layers.Dense(3, name="logits"),
            ],
            name="lenet",
        )
    )


# -- each layer kind ------------------------------------------------------------------------

LAYER_KINDS = [
    (K.layers.Dense(5, activation="tanh", use_bias=False), (7,), DenseMNF),
    (
        K.layers.Conv1D(4, 3, strides=2, padding="same", activation="relu"),
        (11, 2),
        Conv1DMNF,
    ),
    (K.layers.Conv2D(3, (3, 2), dilation_rate=(2, 1), activation="elu"), (9, 8, 2), Conv2DMNF),
    (K.layers.Conv3D(2, 2, strides=(1, 2, 1), padding="same"), (5, 6, 4, 2), Conv3DMNF),
]


@pytest.mark.parametrize(("layer", "input_shape", "mnf_class"), LAYER_KINDS)
def test_each_layer_kind_keeps_its_arguments_and_its_mean_prediction(layer, input_shape, mnf_class):
    model = _perturb(K.Sequential([K.Input(input_shape), layer]))
    converted = tfp_mnf.convert(model, kl_scale=0.01, seed=3, **SMALL_FLOWS)
    (new,) = converted.layers
    assert type(new) is mnf_class and new.name == layer.name
    old_config, new_config = layer.get_config(), new.get_config()
    for key in ("units", "filters", "kernel_size", "strides", "padding", "dilation_rate"):
        if key in old_config:
            assert tuple(np.atleast_1d(new_config[key])) == tuple(np.atleast_1d(old_config[key]))
    assert new_config["activation"] == old_config["activation"]
    x = _inputs((4, *input_shape))
    np.testing.assert_allclose(_mean_prediction(converted, x), model(x).numpy(), atol=2e-5)
    assert not np.allclose(converted(x).numpy(), model(x).numpy(), atol=1e-3)  # it samples
    assert len(converted.losses) == 1


def test_channels_first_data_format_is_kept():
    model = K.Sequential([K.Input((2, 6, 6)), K.layers.Conv2D(3, 3, data_format="channels_first")])
    (new,) = tfp_mnf.convert(model, kl_scale=0.01).layers
    assert new.data_format == "channels_first"
    np.testing.assert_allclose(
        new.kernel_mean * new.posterior.along_z(new.posterior.mean_z()),
        model.layers[0].kernel.numpy(),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "mnf_kwargs",
    [
        dict(q_flow="realnvp", num_q_flows=2),
        dict(q_flow="iaf", num_q_flows=2),
        dict(q_flow="maf", num_q_flows=1),
        dict(q_flow="planar", num_q_flows=3),
        dict(use_z=False),
    ],
    ids=["realnvp", "iaf", "maf", "planar", "mean_field"],
)
def test_posterior_mean_prediction_equals_the_original_model(mnf_kwargs):
    model = _lenet()
    converted = tfp_mnf.convert(model, kl_scale=1e-3, seed=0, flow_hidden_units=8, **mnf_kwargs)
    assert [type(layer).__name__ for layer in converted.layers] == [
        "Conv2DMNF",
        "MaxPooling2D",
        "Conv2DMNF",
        "Flatten",
        "DenseMNF",
        "DenseMNF",
    ]
    x = _inputs((6, 10, 10, 1))
    expected = model(x).numpy()
    np.testing.assert_allclose(_mean_prediction(converted, x), expected, rtol=1e-5, atol=1e-5)


def test_weights_carry_over_as_posterior_means():
    model = _lenet()
    converted = tfp_mnf.convert(
        model, kl_scale=1e-3, moped_delta=None, kernel_log_std_init=-4.0, seed=1
    )
    for old, new in zip(model.layers, converted.layers, strict=True):
        if not isinstance(new, (DenseMNF, Conv2DMNF)):
            continue
        kernel, bias = old.get_weights()
        post = new.posterior
        z = post.mean_z()
        np.testing.assert_allclose(new.kernel_posterior.mean(), kernel, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(new.q0_mean, np.ones(post.z_size))
        np.testing.assert_allclose(new.q0_log_var, new.z_log_var_init, atol=0.1)
        np.testing.assert_allclose(new.kernel_log_std.numpy().mean(), -4.0, atol=0.01)
        bias_mean = new.bias_mean.numpy() * (z.numpy() if isinstance(new, Conv2DMNF) else 1.0)
        np.testing.assert_allclose(bias_mean, bias, rtol=1e-6, atol=1e-7)
        assert isinstance(new.kernel_divergence_fn, ScaledKL)
        assert new.kernel_divergence_fn.scale == new.bias_divergence_fn.scale == 1e-3
        assert not new.empirical_prior
    seeds = [layer.seed for layer in converted.layers if isinstance(layer, (DenseMNF, Conv2DMNF))]
    assert len(set(seeds)) == 4  # each converted layer its own seed


def test_original_model_is_left_untouched_and_unshared():
    model = _lenet()
    before = [w.copy() for w in model.get_weights()]
    converted = tfp_mnf.convert(model, kl_scale=1e-3, layers=["logits"])
    converted.compile("adam", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    converted.fit(_inputs((8, 10, 10, 1)), np.arange(8) % 3, epochs=1, verbose=0)
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    assert converted.layers[0] is not model.layers[0]


def test_moped_sets_sigma_from_the_trained_weights():
    model = _lenet()
    delta = 0.05
    model.get_layer("hidden").kernel[0, :3].assign([0.0, 1e-7, -1.0])
    converted = tfp_mnf.convert(model, kl_scale=1e-3, moped_delta=delta)
    layer = converted.get_layer("hidden")
    kernel, bias = model.get_layer("hidden").get_weights()
    expected = np.log(np.maximum(delta * np.abs(kernel), conversion.MOPED_MIN_STD))
    np.testing.assert_allclose(layer.kernel_log_std.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(
        layer.bias_log_var,
        2 * np.log(np.maximum(delta * np.abs(bias), conversion.MOPED_MIN_STD)),
        rtol=1e-5,
    )
    x = _inputs((5, 10, 10, 1))
    np.testing.assert_allclose(_mean_prediction(converted, x), model(x).numpy(), atol=2e-5)
    default = tfp_mnf.convert(model, kl_scale=1e-3).get_layer("hidden")  # MOPED, delta 0.1
    np.testing.assert_allclose(
        default.kernel_log_std.numpy(),
        np.log(np.maximum(0.1 * np.abs(kernel), conversion.MOPED_MIN_STD)),
        rtol=1e-5,
    )


def test_empirical_prior_is_centred_at_the_trained_weights():
    model = _lenet()
    converted = tfp_mnf.convert(model, kl_scale=1e-3, empirical_prior=True, prior_variance=0.1)
    plain = tfp_mnf.convert(model, kl_scale=1e-3)
    for name in ("conv_a", "hidden"):
        layer = converted.get_layer(name)
        kernel, _ = model.get_layer(name).get_weights()
        np.testing.assert_allclose(layer.kernel_prior.mean(), kernel, rtol=1e-6)
        np.testing.assert_allclose(layer.bias_prior.mean(), layer.bias_mean, rtol=1e-6)
        np.testing.assert_allclose(
            layer.kernel_prior.variance(), 0.1 * np.ones(kernel.shape), rtol=1e-6
        )
        assert "prior_means:0" in [v.name.split("/")[-1] for v in layer.non_trainable_variables]
        assert len(layer.trainable_variables) == 3
        # The prior at the trained weights: a smaller KL than N(0, v) around the same means.
        seed = tf.constant([1, 2])
        assert float(layer.kl_divergence(seed)) < float(plain.get_layer(name).kl_divergence(seed))
    assert len(plain.get_layer("hidden").variables) == 4  # no prior means by default


def test_empirical_prior_layer_on_its_own_starts_at_zero_means():
    layer = DenseMNF(3, empirical_prior=True, seed=0)
    reference = DenseMNF(3, seed=0)
    layer.build((None, 4))
    reference.build((None, 4))
    np.testing.assert_array_equal(layer.parameter_values()["kernel_prior_mean"], np.zeros((4, 3)))
    seed = tf.constant([3, 4])
    np.testing.assert_allclose(layer.kl_divergence(seed), reference.kl_divergence(seed), rtol=1e-6)
    layer.assign_parameters(bias_prior_mean=np.ones(3, np.float32))
    np.testing.assert_array_equal(layer.bias_prior.mean(), np.ones(3))


# -- which layers ---------------------------------------------------------------------------


def _kinds(model):
    return {layer.name: type(layer).__name__ for layer in model.layers}


def test_layers_by_name_predicate_and_last_k():
    model = _lenet()
    by_name = tfp_mnf.convert(model, kl_scale=1e-3, layers=["conv_b", "logits"])
    assert _kinds(by_name)["conv_b"] == "Conv2DMNF" and _kinds(by_name)["conv_a"] == "Conv2D"
    assert _kinds(by_name)["logits"] == "DenseMNF" and _kinds(by_name)["hidden"] == "Dense"
    one = tfp_mnf.convert(model, kl_scale=1e-3, layers="hidden")
    assert [n for n, k in _kinds(one).items() if k.endswith("MNF")] == ["hidden"]
    dense_only = tfp_mnf.convert(
        model, kl_scale=1e-3, layers=lambda layer: isinstance(layer, K.layers.Dense)
    )
    assert [n for n, k in _kinds(dense_only).items() if k.endswith("MNF")] == ["hidden", "logits"]
    assert [layer.name for layer in conversion.last_layers(model, 1)] == ["logits"]
    last = tfp_mnf.convert(model, kl_scale=1e-3, layers=conversion.last_layers(model, 1))
    assert [n for n, k in _kinds(last).items() if k.endswith("MNF")] == ["logits"]
    # The kept layers keep their trained weights.
    for name in ("conv_a", "conv_b", "hidden"):
        for old, new in zip(
            model.get_layer(name).get_weights(), last.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(old, new)
    x = _inputs((3, 10, 10, 1))
    np.testing.assert_allclose(_mean_prediction(last, x), model(x).numpy(), atol=2e-5)


def test_functional_and_nested_models():
    inner = K.Sequential(
        [K.layers.Dense(6, activation="tanh", name="inner_a"), K.layers.Dense(4, name="inner_b")],
        name="inner",
    )
    inputs = K.Input((5,))
    branch = K.layers.Dense(4, activation="relu", name="branch")(inputs)
    features = K.layers.Add()([inner(inputs), branch])
    features = K.layers.BatchNormalization(name="norm")(features)
    block_in = K.Input((4,))
    block = K.Model(block_in, K.layers.Dense(3, name="block_dense")(block_in), name="block")
    model = _perturb(K.Model(inputs, block(features), name="outer"))
    inner.trainable = False
    norm = model.get_layer("norm")
    norm.set_weights([w + 1.0 for w in norm.get_weights()])  # moving statistics carry over too
    converted = tfp_mnf.convert(model, kl_scale=1e-3, **SMALL_FLOWS)
    assert isinstance(converted.get_layer("inner"), K.Sequential)
    assert _kinds(converted.get_layer("inner")) == {"inner_a": "DenseMNF", "inner_b": "DenseMNF"}
    assert not converted.get_layer("inner").trainable
    assert _kinds(converted.get_layer("block"))["block_dense"] == "DenseMNF"
    assert type(converted.get_layer("branch")) is DenseMNF
    for old, new in zip(norm.get_weights(), converted.get_layer("norm").get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    x = _inputs((7, 5))
    np.testing.assert_allclose(_mean_prediction(converted, x), model(x).numpy(), atol=2e-5)
    # A nested model's name selects its convertible layers.
    only_inner = tfp_mnf.convert(model, kl_scale=1e-3, layers=["inner"])
    assert _kinds(only_inner.get_layer("inner")) == {"inner_a": "DenseMNF", "inner_b": "DenseMNF"}
    assert type(only_inner.get_layer("branch")) is K.layers.Dense
    assert _kinds(only_inner.get_layer("block"))["block_dense"] == "Dense"


def test_unbuilt_sequential_built_later_and_transposed_convs_are_kept():
    model = K.Sequential([K.layers.Conv2DTranspose(2, 3), K.layers.Flatten(), K.layers.Dense(2)])
    model.build((None, 4, 4, 1))
    converted = tfp_mnf.convert(model, kl_scale=1e-3)
    assert [type(layer).__name__ for layer in converted.layers] == [
        "Conv2DTranspose",
        "Flatten",
        "DenseMNF",
    ]


# -- errors ---------------------------------------------------------------------------------


class _Subclassed(K.Model):
    def __init__(self):
        super().__init__()
        self.dense = K.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def test_subclassed_model_cannot_be_rebuilt():
    model = _Subclassed()
    model(np.zeros((1, 3), np.float32))
    with pytest.raises(
        ValueError,
        match=r"subclassed tf_keras model \(_Subclassed\).*cannot be "
        r"rebuilt from its config",
    ):
        tfp_mnf.convert(model, kl_scale=1e-3)
    inputs = K.Input((3,))
    outer = K.Model(inputs, K.layers.Dense(2)(model(inputs)))
    with pytest.raises(ValueError, match="subclassed"):
        tfp_mnf.convert(outer, kl_scale=1e-3)
    # Kept whole when none of its layers is chosen.
    kept = tfp_mnf.convert(outer, kl_scale=1e-3, layers=conversion.last_layers(outer, 1))
    assert type(kept.layers[-1]) is DenseMNF


@pytest.mark.parametrize(
    ("layers", "error", "match"),
    [
        (["flatten_x"], ValueError, r"layer 'flatten_x' \(Flatten\) cannot be converted"),
        (["pool"], ValueError, r"'pool' \(MaxPooling2D\) cannot be converted"),
        (["nope"], ValueError, "'nope', which is not a layer of model"),
        (lambda layer: False, ValueError, "selects no layer"),
        (3, TypeError, "`layers` must be None, a predicate"),
    ],
)
def test_bad_layer_selections(layers, error, match):
    model = K.Sequential(
        [
            K.Input((6, 6, 1)),
            K.layers.Conv2D(2, 3),
            K.layers.MaxPooling2D(name="pool"),
            K.layers.Flatten(name="flatten_x"),
            K.layers.Dense(2),
        ]
    )
    with pytest.raises(error, match=match):
        tfp_mnf.convert(model, kl_scale=1e-3, layers=layers)


def test_unsupported_convolution_arguments_are_named():
    causal = K.Sequential([K.Input((8, 2)), K.layers.Conv1D(2, 3, padding="causal", name="c")])
    with pytest.raises(ValueError, match=r"layer 'c' \(Conv1D\) has padding='causal'"):
        tfp_mnf.convert(causal, kl_scale=1e-3)
    grouped = K.Sequential([K.Input((6, 6, 4)), K.layers.Conv2D(4, 3, groups=2, name="g")])
    with pytest.raises(ValueError, match=r"layer 'g' \(Conv2D\) has groups=2"):
        tfp_mnf.convert(grouped, kl_scale=1e-3)
    transposed = K.Sequential([K.Input((4, 4, 1)), K.layers.Conv2DTranspose(2, 3, name="t")])
    with pytest.raises(ValueError, match=r"'t' \(Conv2DTranspose\) cannot be converted"):
        tfp_mnf.convert(transposed, kl_scale=1e-3, layers=["t"])


def test_argument_errors():
    model = _lenet()
    with pytest.raises(TypeError, match="kl_scale"):
        tfp_mnf.convert(model)
    with pytest.raises(ValueError, match="`kl_scale`"):
        tfp_mnf.convert(model, kl_scale=-1.0)
    with pytest.raises(ValueError, match="`moped_delta`"):
        tfp_mnf.convert(model, kl_scale=1e-3, moped_delta=0.0)
    with pytest.raises(TypeError, match="`kernel_log_std_init` would be unused"):
        tfp_mnf.convert(model, kl_scale=1e-3, kernel_log_std_init=-5.0)
    with pytest.raises(ValueError, match="`num_q_flows`"):
        tfp_mnf.convert(model, kl_scale=1e-3, num_q_flows=-1)
    with pytest.raises(TypeError, match=r"unknown MNF layer arguments \['units', 'warp'\]"):
        tfp_mnf.convert(model, kl_scale=1e-3, units=3, warp=1)
    with pytest.raises(TypeError, match=r"\['activation', 'kernel_divergence_fn'\] are set by"):
        tfp_mnf.convert(model, kl_scale=1e-3, activation="relu", kernel_divergence_fn=None)
    with pytest.raises(TypeError, match="must be a built tf_keras or Keras 3 model, got Dense"):
        tfp_mnf.convert(K.layers.Dense(2), kl_scale=1e-3)
    with pytest.raises(ValueError, match="is not built"):
        tfp_mnf.convert(K.Sequential([K.layers.Dense(2)]), kl_scale=1e-3)
    with pytest.raises(ValueError, match="`k`"):
        conversion.last_layers(model, 0)


# -- the result is an ordinary model --------------------------------------------------------


def test_converted_model_fits_saves_and_loads(tmp_path):
    model = _lenet()
    converted = tfp_mnf.convert(
        model, kl_scale=1e-2, empirical_prior=True, moped_delta=0.1, seed=0, **SMALL_FLOWS
    )
    converted.compile(
        K.optimizers.Adam(1e-2), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x, y = _inputs((16, 10, 10, 1)), np.arange(16) % 3
    history = converted.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = str(tmp_path / "converted.keras")
    converted.save(path)
    loaded = K.models.load_model(path)
    np.testing.assert_allclose(_mean_prediction(loaded, x), _mean_prediction(converted, x))
    for name in ("conv_a", "logits"):
        np.testing.assert_array_equal(
            loaded.get_layer(name).kernel_prior.mean(),
            converted.get_layer(name).kernel_prior.mean(),
        )
    weights = str(tmp_path / "weights.h5")
    converted.save_weights(weights)
    fresh = tfp_mnf.convert(model, kl_scale=1e-2, empirical_prior=True, seed=5, **SMALL_FLOWS)
    fresh.load_weights(weights)
    np.testing.assert_allclose(_mean_prediction(fresh, x), _mean_prediction(converted, x))


# -- Keras 3 --------------------------------------------------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("tfp_mnf.keras") is None, reason="tfp_mnf.keras does not exist yet"
)
def test_keras3_models_convert_to_tfp_mnf_keras_layers(tmp_path):
    import keras

    import tfp_mnf.keras as mnf_keras

    inner = keras.Sequential([keras.layers.Dense(6, activation="relu", name="inner_dense")])
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, name="logits")(inner(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([w + 0.3 * rng.normal(size=w.shape) for w in layer.get_weights()])
    converted = tfp_mnf.convert(model, kl_scale=1e-3, empirical_prior=True, **SMALL_FLOWS)
    assert type(converted.get_layer("conv")) is mnf_keras.Conv2DMNF
    assert type(converted.get_layer("logits")) is mnf_keras.DenseMNF
    assert type(converted.get_layer(inner.name).layers[0]) is mnf_keras.DenseMNF
    data = _inputs((4, 8, 8, 1))
    with mnf_keras.posterior_mean(converted):
        mean = np.asarray(converted(data))
    np.testing.assert_allclose(mean, np.asarray(model(data)), atol=2e-5)
    path = str(tmp_path / "converted3.keras")
    converted.save(path)
    loaded = keras.models.load_model(path)
    with mnf_keras.posterior_mean(loaded):
        np.testing.assert_allclose(np.asarray(loaded(data)), mean, atol=1e-6)


def test_keras3_model_without_the_keras3_front_end_is_a_clear_error(monkeypatch):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])

    def missing(name, *args, **kwargs):
        if name == "tfp_mnf.keras":
            raise ImportError("No module named 'tfp_mnf.keras'")
        return real_import(name, *args, **kwargs)

    real_import = conversion.importlib.import_module
    monkeypatch.setattr(conversion.importlib, "import_module", missing)
    with pytest.raises(ImportError, match="Keras 3 model .*tfp_mnf.keras"):
        tfp_mnf.convert(model, kl_scale=1e-3)


# -- the example ----------------------------------------------------------------------------


@pytest.mark.slow
def test_convert_pretrained_example_tiny_run(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "convert_pretrained.py"),
            "--tiny",
            f"--output_dir={tmp_path}",
            "--num_train=400",
            "--num_test=120",
            "--pretrain_epochs=2",
            "--finetune_epochs=1",
            "--scratch_budget=epochs",
            "--num_monte_carlo=3",
            "--curve_monte_carlo=2",
            "--num_q_flows=1",
            "--num_r_flows=1",
            "--flow_hidden_units=8",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["results"]) == {"lenet", "converted", "converted_finetuned", "mnf_scratch"}
    for values in metrics["results"].values():
        assert 0.0 <= values["accuracy"] <= 1.0 and values["nll"] > 0
        assert 0.0 <= values["ood_auroc"] <= 1.0
    # Conversion keeps the plain model's posterior-mean predictions.
    assert metrics["posterior_mean_max_abs_diff"] < 1e-4
    curves = metrics["curves"]
    points = {name: len(curve["nll"]) for name, curve in curves.items()}
    assert points == {"lenet": 2, "converted_finetuned": 2, "mnf_scratch": 3}
    # The default target is an NLL that both MNF models reach.
    reached = metrics["seconds_to_target_nll"]
    assert reached["converted_finetuned"] is not None and reached["mnf_scratch"] is not None
    assert (tmp_path / "convert_pretrained.png").stat().st_size > 1000
    assert "converted_finetuned" in result.stdout
