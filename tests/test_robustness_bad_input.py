"""Bad input at the public API: a clear ValueError/TypeError naming the argument.

Also the documented NaN behaviour: NaNs in one example propagate to that example's outputs
only, and the KL stays finite. Tests taking the `frontend` fixture run for the tf_keras and
the Keras 3 front-end.
"""

import contextlib

import numpy as np
import pytest
import tensorflow as tf

from tfp_mnf.ops import force_composite, fused_available

BAD_ARGUMENTS = [
    ("DenseMNF", dict(units=0), ValueError, "`units` must be an int >= 1"),
    ("DenseMNF", dict(units=2.5), ValueError, "`units` must be an int >= 1"),
    ("DenseMNF", dict(units="3"), ValueError, "`units`"),
    ("Conv2DMNF", dict(filters=-1, kernel_size=3), ValueError, "`filters`"),
    ("Conv2DMNF", dict(filters=2, kernel_size=0), ValueError, "`kernel_size`"),
    ("Conv2DMNF", dict(filters=2, kernel_size=(3, 3, 3)), ValueError, "`kernel_size`"),
    ("Conv2DMNF", dict(filters=2, kernel_size=3, strides=0), ValueError, "`strides`"),
    ("Conv2DMNF", dict(filters=2, kernel_size=3, padding="full"), ValueError, "`padding`"),
    ("Conv2DMNF", dict(filters=2, kernel_size=3, data_format="NHWC"), ValueError, "`data_format`"),
    (
        "Conv2DMNF",
        dict(filters=2, kernel_size=3, dilation_rate=(1,)),
        ValueError,
        "`dilation_rate`",
    ),
    ("DenseMNF", dict(units=2, q_flow="glow"), ValueError, "`q_flow` must be one of"),
    ("DenseMNF", dict(units=2, r_flow=None), ValueError, "`r_flow` must be one of"),
    ("DenseMNF", dict(units=2, num_q_flows=-1), ValueError, "`num_q_flows`"),
    ("DenseMNF", dict(units=2, num_r_flows=1.0), ValueError, "`num_r_flows`"),
    ("DenseMNF", dict(units=2, flow_hidden_units=0), ValueError, "`flow_hidden_units`"),
    ("DenseMNF", dict(units=2, max_std=0.0), ValueError, "`max_std` must be a positive"),
    ("DenseMNF", dict(units=2, max_std=float("nan")), ValueError, "`max_std`"),
    ("DenseMNF", dict(units=2, prior_variance=-1.0), ValueError, "`prior_variance`"),
    ("DenseMNF", dict(units=2, bias_prior_variance=float("inf")), ValueError, "`bias_prior_var"),
    ("DenseMNF", dict(units=2, prior_variance=True), ValueError, "`prior_variance`"),
    ("DenseMNF", dict(units=2, kernel_log_std_init=float("nan")), ValueError, "`kernel_log_std"),
    ("DenseMNF", dict(units=2, z_log_var_init="-5"), ValueError, "`z_log_var_init`"),
    ("DenseMNF", dict(units=2, seed=-1), ValueError, "`seed` must be an int >= 0"),
    ("DenseMNF", dict(units=2, seed=1.5), ValueError, "`seed`"),
    ("DenseMNF", dict(units=2, kernel_divergence_fn="kl"), TypeError, "`kernel_divergence_fn`"),
    ("DenseMNF", dict(units=2, bias_divergence_fn=3), TypeError, "`bias_divergence_fn`"),
    ("DenseMNF", dict(units=2, check_numerics="yes"), ValueError, "`check_numerics`"),
    # tf_keras: "Unknown activation function", Keras 3: "Could not interpret activation".
    ("DenseMNF", dict(units=2, activation="nope"), ValueError, "(Unknown|interpret) activation"),
]


@pytest.mark.parametrize("cls, kwargs, error, message", BAD_ARGUMENTS)
def test_invalid_hyper_parameters_name_the_argument(frontend, cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        getattr(frontend, cls)(**kwargs)


def test_negative_kl_scale_is_rejected(frontend):
    with pytest.raises(ValueError, match="`scale` must be a non-negative"):
        frontend.ScaledKL(-1.0)


@pytest.mark.parametrize(
    "make, shape, message",
    [
        (lambda F: F.DenseMNF(2), (4,), "`inputs` must have rank 2"),
        (lambda F: F.DenseMNF(2), (4, 3, 2), "`inputs` must have rank 2"),
        (lambda F: F.Conv2DMNF(2, 3), (4, 6, 6), "`inputs` must have rank 4"),
        (lambda F: F.Conv1DMNF(2, 3), (4, 6, 6, 1), "`inputs` must have rank 3"),
    ],
)
def test_wrong_input_rank_before_build(frontend, make, shape, message):
    with pytest.raises(ValueError, match=message):
        make(frontend)(tf.ones(shape))


def test_unknown_last_dimension_is_rejected(frontend):
    with pytest.raises(ValueError, match="last dimension of `inputs` must be known"):
        frontend.DenseMNF(2)(frontend.Input((None,)))
    with pytest.raises(ValueError, match="channel dimension of `inputs` must be known"):
        frontend.Conv2DMNF(2, 3)(frontend.Input((6, 6, None)))


def test_wrong_rank_and_last_dimension_after_build(frontend):
    dense = frontend.DenseMNF(2)
    dense(tf.ones((3, 4)))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 4"):
        dense(tf.ones((3, 5)))
    with pytest.raises(ValueError, match="expected ndim=2"):
        dense(tf.ones((3, 4, 1)))
    conv = frontend.Conv2DMNF(2, 3)
    conv(tf.ones((1, 5, 5, 3)))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 3"):
        conv(tf.ones((1, 5, 5, 2)))


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64, tf.uint8, tf.bool])
def test_non_float_inputs_are_rejected_with_a_hint(frontend, dtype):
    with pytest.raises(TypeError, match="`inputs` must be a floating-point tensor.*cast"):
        frontend.DenseMNF(2)(tf.cast(tf.ones((2, 3)), dtype))


def test_integer_inputs_fail_when_the_model_is_built_or_called(frontend):
    """tf_keras runs the layers on the `Input`s, Keras 3 builds a `DenseMNF` from
    `compute_output_shape`: the error comes when the model is built, or at its first call."""
    with pytest.raises(TypeError, match="floating-point"):
        model = frontend.Sequential([frontend.Input((3,), dtype="int32"), frontend.DenseMNF(2)])
        model(np.ones((2, 3), "int32"))


def test_float64_inputs_are_cast_to_the_layer_dtype(frontend):
    layer = frontend.DenseMNF(2, seed=0)
    out = layer(np.ones((2, 3), "float64"))
    assert out.dtype == tf.float32


PATHS = [
    "composite",
    pytest.param(
        "fused", marks=pytest.mark.skipif(not fused_available(), reason="op library not built")
    ),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda F: F.DenseMNF(3, seed=0), (4, 5)),
        (lambda F: F.Conv2DMNF(3, 3, seed=0, padding="same"), (4, 5, 5, 2)),
    ],
    ids=["dense", "conv"],
)
def test_nan_inputs_propagate_per_example(frontend, path, make, shape):
    layer = make(frontend)
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    x[1].flat[0] = np.nan
    with force_composite() if path == "composite" else contextlib.nullcontext():
        layer.sample_by_default = True
        sampled = layer(x).numpy()
        kl = layer.losses[-1].numpy()
        mean = layer(x, sample=False).numpy()
    for out in (sampled, mean):
        assert np.isnan(out[1]).any()
        assert np.all(np.isfinite(np.delete(out, 1, axis=0)))
    assert np.isfinite(kl)
