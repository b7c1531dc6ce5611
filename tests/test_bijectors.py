"""Tests of the Planar bijector and the flow factory (tfp_mnf.bijectors).

Bijectors cache `forward`/`inverse` results keyed on the input tensor, so every round trip
and Jacobian below feeds a fresh tensor (a NumPy copy) to avoid reading back the cache.
"""

import contextlib
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfp_mnf.bijectors import FLOW_KINDS, Planar
from tfp_mnf.layers import Flow, make_flow

tfd = tfp.distributions
EVENT_SIZES = (1, 2, 5)


@contextlib.contextmanager
def _global_policy(dtype):
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(dtype)
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def _randomized_flow(kind, event_size, dtype="float32", num_layers=3, seed=0):
    """A built flow whose variables are moved far from their near-identity init."""
    flow = Flow(kind, num_layers, event_size, hidden_units=8, seed=seed, dtype=dtype)
    flow.build((None, event_size))
    rng = np.random.default_rng(seed)
    for variable in flow.trainable_variables:
        variable.assign_add(0.5 * rng.normal(size=variable.shape).astype(variable.dtype.name))
    return flow


def _points(event_size, dtype="float32", num=32, seed=1, scale=1.5):
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=(num, event_size))).astype(dtype)


def _autodiff_log_det(bijector, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = bijector.forward(x)
    jacobian = tape.batch_jacobian(y, x).numpy().astype(np.float64)
    return np.linalg.slogdet(jacobian)[1], jacobian


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-4), ("float64", 1e-9)])
@pytest.mark.parametrize("event_size", EVENT_SIZES)
@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_inverse_and_log_det(kind, event_size, dtype, tol):
    bijector = _randomized_flow(kind, event_size, dtype).bijector
    x = _points(event_size, dtype)
    y = bijector.forward(tf.constant(x)).numpy()
    assert np.abs(y - x).max() > 0.1, "parameters too close to the identity to test anything"
    np.testing.assert_allclose(bijector.inverse(tf.constant(y)).numpy(), x, atol=tol, rtol=tol)
    log_det, _ = _autodiff_log_det(bijector, x)
    np.testing.assert_allclose(
        bijector.forward_log_det_jacobian(tf.constant(x), event_ndims=1).numpy(),
        log_det,
        atol=tol,
        rtol=tol,
    )
    np.testing.assert_allclose(
        bijector.inverse_log_det_jacobian(tf.constant(y), event_ndims=1).numpy(),
        -log_det,
        atol=tol,
        rtol=tol,
    )


@pytest.mark.parametrize("kind", ["planar", "realnvp", "iaf"])
def test_forward_compiles_with_xla(kind):
    flow = _randomized_flow(kind, 4)
    x = _points(4)

    @tf.function(jit_compile=True)
    def forward(z):
        return flow.bijector.forward(z), flow.bijector.forward_log_det_jacobian(z, event_ndims=1)

    y, log_det = forward(tf.constant(x))
    np.testing.assert_allclose(y.numpy(), flow.bijector.forward(x).numpy(), atol=1e-4)
    np.testing.assert_allclose(
        log_det.numpy(),
        flow.bijector.forward_log_det_jacobian(x, event_ndims=1).numpy(),
        atol=1e-4,
    )


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_flows_compute_in_float32_under_mixed_precision(kind):
    with _global_policy("mixed_float16"):
        flow = _randomized_flow(kind, 3, dtype=None)
    x = _points(3)
    assert all(v.dtype == tf.float32 for v in flow.weights)
    np.testing.assert_allclose(
        flow.bijector.inverse(flow.bijector.forward(x).numpy()).numpy(), x, atol=1e-4
    )
    assert flow(x).dtype == tf.float32
    assert flow.bijector.forward_log_det_jacobian(x, event_ndims=1).dtype == tf.float32


def test_maf_runs_in_graph_mode():
    flow = _randomized_flow("maf", 4)
    x = _points(4)
    graph_forward = tf.function(lambda z: flow.bijector.forward(z))
    np.testing.assert_allclose(
        graph_forward(tf.constant(x)).numpy(), flow.bijector.forward(x).numpy(), atol=1e-5
    )


@pytest.mark.parametrize("event_size", [1, 4])
@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_flows_start_near_identity(kind, event_size):
    flow = make_flow(kind, 2, event_size, seed=0)
    flow.build((None, event_size))
    x = _points(event_size, scale=1.0)
    assert np.abs(flow(x).numpy() - x).max() < 0.05
    assert np.abs(flow.bijector.forward_log_det_jacobian(x, event_ndims=1).numpy()).max() < 0.05


@pytest.mark.parametrize("event_size", [1, 3])
@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_gradients_reach_every_variable(kind, event_size):
    flow = make_flow(kind, 2, event_size, hidden_units=6, seed=0)
    flow.build((None, event_size))
    x = tf.constant(_points(event_size))
    with tf.GradientTape() as tape:
        y = flow.bijector.forward(x)
        log_det = flow.bijector.forward_log_det_jacobian(x, event_ndims=1)
        loss = tf.reduce_sum(tf.sin(3.0 * y)) + tf.reduce_sum(log_det)
    (variable,) = flow.trainable_variables
    gradients = flow.flow.parameters().unpack(tape.gradient(loss, variable))
    assert gradients
    for name, gradient in gradients.items():
        assert np.any(gradient.numpy() != 0.0), name


@pytest.mark.parametrize("kind", ["iaf", "maf"])
def test_autoregressive_structure_holds_for_any_variable_values(kind):
    # Masks are applied in the network's call, not by optimizer constraints.
    flow = _randomized_flow(kind, 4, num_layers=1)
    for variable in flow.trainable_variables:
        variable.assign(tf.random.stateless_normal(variable.shape, seed=[1, 2]))
    _, jacobian = _autodiff_log_det(flow.bijector, _points(4, seed=2))
    assert np.abs(np.tril(jacobian, -1)).max() > 1e-3  # dependencies exist
    np.testing.assert_array_equal(np.triu(jacobian, 1), 0.0)  # y_i depends on z_<=i only


@pytest.mark.parametrize("event_size", [2, 5])
def test_realnvp_forward_caches_its_log_det_with_one_conditioner_pass(event_size):
    flow = _randomized_flow("realnvp", event_size, num_layers=2)
    calls = []
    for step in flow.flow.steps:
        make = step.conditioner

        def counted(params, make=make):
            conditioner = make(params)
            return lambda z1, units: calls.append(1) or conditioner(z1, units)

        step.conditioner = counted
    points = _points(event_size, seed=4)
    x = tf.constant(points)
    bijector = flow.bijector
    y = bijector.forward(x)
    log_det = bijector.forward_log_det_jacobian(x, event_ndims=1)
    assert len(calls) == 2  # one per step: the log-det came from the forward pass's cache
    # TFP's own log-det on a new tensor (no cache entry), and the autodiff one.
    fresh = flow.bijector.forward_log_det_jacobian(tf.constant(points), event_ndims=1)
    assert len(calls) == 4
    np.testing.assert_allclose(log_det, fresh, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_det, _autodiff_log_det(flow.bijector, points)[0], atol=1e-4)
    np.testing.assert_allclose(flow.bijector.inverse(tf.identity(y)), points, atol=1e-4)


@pytest.mark.parametrize("kind", ["realnvp", "iaf", "maf"])
@pytest.mark.parametrize("event_size", [4, 5])
def test_every_second_step_works_in_the_reverse_order(kind, event_size):
    # The steps alternate their order (no permutations between them): the first step's
    # Jacobian is lower triangular, the second's upper triangular.
    flow = _randomized_flow(kind, event_size, num_layers=2)
    first, second = flow.step_bijectors()
    x = _points(event_size, seed=3)
    _, jacobian_first = _autodiff_log_det(first, x)
    _, jacobian_second = _autodiff_log_det(second, x)
    np.testing.assert_array_equal(np.triu(jacobian_first, 1), 0.0)
    np.testing.assert_array_equal(np.tril(jacobian_second, -1), 0.0)
    assert np.abs(np.tril(jacobian_first, -1)).max() > 1e-3
    assert np.abs(np.triu(jacobian_second, 1)).max() > 1e-3


def test_made_variables_have_unique_names_in_a_model():
    model = tf_keras.Sequential(
        [tf_keras.Input((3,))]
        + [make_flow("iaf", 2, 3, hidden_units=4, name=f"flow_{i}") for i in range(2)]
    )
    names = [v.name for v in model.weights]
    assert len(names) == len(set(names)) == 2, names  # one packed variable per flow


def _planar(u, w, b=0.3, dtype=np.float64):
    return Planar(
        tf.constant(u, dtype=dtype), tf.constant(w, dtype=dtype), tf.constant(b, dtype=dtype)
    )


def _adversarial_planar_params(event_size, seed):
    """(u, w) pairs with u far against, along and across w: the constraint must act."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=event_size)
    across = rng.normal(size=event_size)
    return [
        (-1000.0 * w, w),
        (-3.0 * w, w),
        (50.0 * w, w),
        (100.0 * across, 0.01 * w),
        (rng.normal(size=event_size), rng.normal(size=event_size)),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("event_size", EVENT_SIZES)
def test_planar_invertibility_constraint_holds_for_adversarial_parameters(event_size, dtype):
    for u, w in _adversarial_planar_params(event_size, seed=event_size):
        bijector = _planar(u, w, b=0.0, dtype=dtype)
        # Far out along w, tanh(w^T z) = 1, so w^T (f(z) - z) = w^T u_hat.
        z = (40.0 / np.sum(w**2) * w)[np.newaxis].astype(dtype)
        w_dot_u_hat = np.sum(w * (bijector.forward(z).numpy() - z))
        assert w_dot_u_hat >= -1.0 - 1e-4
        _, jacobian = _autodiff_log_det(bijector, _points(event_size, dtype, scale=2.0))
        assert np.all(np.linalg.det(jacobian) >= -1e-6)


@pytest.mark.parametrize("event_size", EVENT_SIZES)
def test_planar_inverse_of_arbitrary_points(event_size):
    for u, w in _adversarial_planar_params(event_size, seed=10 + event_size)[1:]:
        bijector = _planar(u, w)
        y = _points(event_size, "float64", scale=5.0, seed=3)
        x = bijector.inverse(tf.constant(y)).numpy()
        np.testing.assert_allclose(bijector.forward(tf.constant(x)).numpy(), y, atol=1e-9)
        np.testing.assert_allclose(
            bijector.inverse_log_det_jacobian(tf.constant(y), event_ndims=1).numpy(),
            -bijector.forward_log_det_jacobian(tf.constant(x), event_ndims=1).numpy(),
            atol=1e-9,
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_planar_inverse_converges_on_a_dense_grid_of_hard_cases(dtype):
    # Along w = e_1 the inverse solves alpha + c tanh(alpha + b) = y_1; with a steep
    # tanh (large c = w^T u_hat) plain Newton steps cycle between the two branches.
    targets = np.linspace(-30.0, 30.0, 3001)
    y = np.stack([targets, np.ones_like(targets)], axis=-1).astype(dtype)
    for wu in (-5.0, 0.0, 0.5, 2.0, 7.7, 20.0, 1e3):
        # Round-off alone: forward(x) has slope up to 1 + c, x itself error ~ c ulp(30).
        atol = 8 * np.finfo(dtype).eps * 30 * (1 + abs(wu)) ** 2
        for b in (0.0, 0.0895, -1.0):
            bijector = _planar([wu, 3.0], [1.0, 0.0], b, dtype=dtype)
            x = bijector.inverse(tf.constant(y)).numpy()
            np.testing.assert_allclose(bijector.forward(tf.constant(x)).numpy(), y, atol=atol)


def test_planar_inverse_gradients_match_the_implicit_function():
    rng = np.random.default_rng(4)
    u, w, b = rng.normal(size=3), rng.normal(size=3), 0.2
    y = tf.constant(_points(3, "float64", scale=2.0))
    bijector = _planar(u, w, b)
    with tf.GradientTape() as tape:
        tape.watch(y)
        x = bijector.inverse(y)
    inverse_jacobian = tape.batch_jacobian(x, y).numpy()
    _, forward_jacobian = _autodiff_log_det(bijector, x.numpy())
    np.testing.assert_allclose(inverse_jacobian, np.linalg.inv(forward_jacobian), atol=1e-8)

    u_var = tf.Variable(u)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(Planar(u_var, w, b).inverse(tf.identity(y)) ** 3)
    gradient = tape.gradient(loss, u_var).numpy()
    step = 1e-6
    finite_difference = []
    for i in range(3):
        delta = step * np.eye(3)[i]
        plus = np.sum(_planar(u + delta, w, b).inverse(tf.identity(y)).numpy() ** 3)
        minus = np.sum(_planar(u - delta, w, b).inverse(tf.identity(y)).numpy() ** 3)
        finite_difference.append((plus - minus) / (2 * step))
    np.testing.assert_allclose(gradient, finite_difference, rtol=1e-5)


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_transformed_density_integrates_to_one_in_1d(kind):
    flow = _randomized_flow(kind, 1, "float64", num_layers=3)
    density = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(loc=tf.zeros([1], tf.float64)), flow.bijector
    )
    grid = np.linspace(-40.0, 40.0, 40001)[:, np.newaxis]
    mass = np.trapezoid(np.exp(density.log_prob(grid).numpy()), grid[:, 0])
    assert abs(mass - 1.0) < 1e-4


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_seeded_flows_are_reproducible_and_variables_distinct(kind):
    def values(seed):
        flow = make_flow(kind, 2, 3, hidden_units=4, seed=seed)
        flow.build((None, 3))
        return [v.numpy() for v in flow.parameter_values().values()]

    first, again, other = values(7), values(7), values(8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    random_inits = [v for v in first if np.any(v != 0.0)]
    assert len(random_inits) >= 2
    for v in random_inits:
        assert not any(np.array_equal(v, o) for o in other if o.shape == v.shape)
        assert sum(np.array_equal(v, o) for o in random_inits if o.shape == v.shape) == 1
    unseeded = [values(None) for _ in range(2)]
    assert not np.array_equal(
        [v for v in unseeded[0] if np.any(v != 0.0)][0],
        [v for v in unseeded[1] if np.any(v != 0.0)][0],
    )


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_config_round_trip(kind):
    flow = make_flow(kind, 2, 3, hidden_units=5, seed=3, name="q_flow")
    config = flow.get_config()
    assert {k: config[k] for k in ("kind", "num_layers", "event_size", "hidden_units")} == {
        "kind": kind,
        "num_layers": 2,
        "event_size": 3,
        "hidden_units": 5,
    }
    clone = Flow.from_config(config)
    assert clone.get_config() == config
    revived = tf_keras.layers.deserialize(tf_keras.layers.serialize(flow))
    assert isinstance(revived, Flow) and revived.get_config() == config
    for built in (flow, clone):
        built.build((None, 3))
    for a, b in zip(flow.weights, clone.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("kind", ["planar", "iaf"])
def test_weights_save_and_load_inside_a_model(kind, tmp_path):
    def model():
        return tf_keras.Sequential(
            [tf_keras.Input((3,)), make_flow(kind, 2, 3, hidden_units=4, seed=0, name="flow")]
        )

    original = model()
    for variable in original.trainable_variables:
        variable.assign_add(tf.fill(variable.shape, 0.1))
    x = _points(3)
    expected = original(x).numpy()
    original.save_weights(os.fspath(tmp_path / "weights.h5"))
    original.save(os.fspath(tmp_path / "model.keras"))
    restored = model()
    restored.load_weights(os.fspath(tmp_path / "weights.h5"))
    np.testing.assert_allclose(restored(x).numpy(), expected, atol=1e-6)
    loaded = tf_keras.models.load_model(os.fspath(tmp_path / "model.keras"))
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-6)


def test_zero_layers_is_the_identity():
    flow = make_flow("realnvp", 0, 3)
    flow.build((None, 3))
    assert not flow.weights
    x = _points(3)
    np.testing.assert_array_equal(flow.bijector.forward(x).numpy(), x)
    np.testing.assert_array_equal(flow.bijector.forward_log_det_jacobian(x, event_ndims=1), 0.0)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(kind="radial"), ValueError, "kind"),
        (dict(num_layers=-1), ValueError, "num_layers"),
        (dict(num_layers=1.5), ValueError, "num_layers"),
        (dict(event_size=0), ValueError, "event_size"),
        (dict(hidden_units=0), ValueError, "hidden_units"),
        (dict(hidden_units=-4), ValueError, "hidden_units"),
        (dict(seed=-1), ValueError, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    arguments = dict(kind="planar", num_layers=2, event_size=3, hidden_units=5, seed=None)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        make_flow(**arguments)


def test_unbuilt_flow_and_wrong_input_shape_raise():
    flow = make_flow("iaf", 2, 3)
    with pytest.raises(RuntimeError, match="build"):
        _ = flow.bijector
    with pytest.raises(ValueError, match="input_shape"):
        flow.build((None, 4))


@pytest.mark.parametrize(
    "u,w,b,match",
    [
        (np.ones((2, 2)), np.ones(2), 0.0, "`u`"),
        (np.ones(2), np.ones(3), 0.0, "`u` and `w`"),
        (np.ones(2), np.ones(2), np.ones(2), "`b`"),
    ],
)
def test_planar_rejects_bad_parameter_shapes(u, w, b, match):
    with pytest.raises(ValueError, match=match):
        _planar(u, w, b)
