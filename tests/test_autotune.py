"""Tests of the fused/composite choice by timing (`tfp_mnf.ops.autotune`) and of its use by
the policy (`tfp_mnf.ops.policy`). The measurement is replaced by fake timings or a fake
clock: no timing asserts."""

import json
import logging

import numpy as np
import pytest
import tensorflow as tf

from tfp_mnf import ops
from tfp_mnf.ops import _library, autotune, policy

needs_fused = pytest.mark.skipif(
    not ops.fused_available(), reason="fused op library not built (pip install -e .)"
)
SEED = tf.constant([3, 4], tf.int64)
CONV = dict(strides=(1, 1), padding="VALID", dilations=(1, 1))
DENSE_SHAPES = {"x": (4, 3), "z": (4, 3), "kernel_mean": (3, 2), "kernel_variance": (3, 2)}


class FakeMeasure:
    """Returns fixed seconds per path and records the labels it was asked to time."""

    def __init__(self, fused, composite):
        self.seconds = {autotune.FUSED: fused, autotune.COMPOSITE: composite}
        self.calls = []

    def __call__(self, paths):
        self.calls.append(sorted(paths))
        return self.seconds


def never_run(**inputs):
    raise AssertionError("a fake measure runs no op")


PATHS = {autotune.FUSED: never_run, autotune.COMPOSITE: never_run}


def choose(tuner, shapes=None, family="dense"):
    """`tuner.prefers_fused` for one key, with ops that a fake measure never runs."""
    return tuner.prefers_fused(family, shapes or DENSE_SHAPES, tf.float32, {}, PATHS)


@pytest.fixture
def install(monkeypatch, tmp_path):
    """Installs a tuner with fake timings (seconds of the fused and the composite path) as the
    one the policy asks, with TFP_MNF_FUSED=auto and the cache file in tmp_path."""
    monkeypatch.setenv(autotune.ENV, "auto")
    monkeypatch.delenv(policy.FORCE_ENV, raising=False)

    def install_timings(fused, composite):
        measure = FakeMeasure(fused, composite)
        tuner = autotune.Autotuner(measure, cache_file=tmp_path / "autotune.json")
        monkeypatch.setattr(autotune, "TUNER", tuner)
        return measure

    return install_timings


def dense_inputs(batch=4, dtype=np.float32):
    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(size=(batch, 3)),
        1 + 0.1 * rng.normal(size=(batch, 3)),
        rng.normal(size=(3, 2)),
        rng.uniform(0.01, 1.0, size=(3, 2)),
        rng.normal(size=2),
        rng.uniform(-4, 0, size=2),
    ]
    return [tf.constant(a.astype(dtype)) for a in arrays]


def dense_step(*args):
    return ops.dense_local_reparam_from_variance(*args, seed=SEED, max_std=1.0)


def conv_inputs(x_shape=(2, 6, 6, 3), dtype=np.float32):
    rng = np.random.default_rng(1)
    kernel = (3, 3, x_shape[-1], 5)
    arrays = [
        rng.normal(size=x_shape),
        rng.normal(size=kernel),
        rng.uniform(0.01, 1.0, size=kernel),
        rng.normal(size=5),
        rng.uniform(0.01, 1.0, size=5),
        1 + 0.1 * rng.normal(size=(x_shape[0], 5)),
    ]
    return [tf.constant(a.astype(dtype)) for a in arrays]


def conv_step(*args):
    return ops.conv_local_reparam(*args, seed=SEED, **CONV)


def op_types(fn, *specs):
    graph = tf.function(fn).get_concrete_function(*specs).graph
    return {op.type for op in graph.get_operations()}


# The policy and the key.


@pytest.mark.parametrize("value, expected", [(None, "auto"), ("", "auto"), (" Never ", "never")])
def test_policy_reads_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(autotune.ENV, raising=False)
    else:
        monkeypatch.setenv(autotune.ENV, value)
    assert autotune.policy() == expected


def test_bad_policy_names_the_variable_and_the_values(monkeypatch):
    monkeypatch.setenv(autotune.ENV, "sometimes")
    message = r"TFP_MNF_FUSED must be one of auto, always, never .*'sometimes'"
    with pytest.raises(ValueError, match=message):
        autotune.policy()
    with pytest.raises(ValueError, match=message):
        dense_step(*dense_inputs())


def test_timing_shapes_fill_in_the_batch_only():
    shapes = {"x": tf.TensorShape([None, 3]), "kernel_mean": tf.TensorShape([3, 2])}
    batch = autotune.REPRESENTATIVE_BATCH
    assert autotune.timing_shapes(shapes, ["x"]) == {"x": (batch, 3), "kernel_mean": (3, 2)}
    shapes["x"] = tf.TensorShape([0, 3])
    assert autotune.timing_shapes(shapes, ["x"])["x"] == (batch, 3)
    assert autotune.timing_shapes({"x": tf.TensorShape([None, None, 3])}, ["x"]) is None
    assert autotune.timing_shapes({"x": tf.TensorShape(None)}, ["x"]) is None


def test_key_names_family_shapes_dtype_and_attributes():
    key = autotune.make_key("conv", {"x": (2, 5, 5, 1)}, tf.float64, {"strides": (2, 1)})
    assert key == "conv x=2x5x5x1 float64 strides=2x1"


# The choice and the process-level cache.


@pytest.mark.parametrize(
    "fused, composite, prefers_fused", [(2.0, 1.0, False), (1.0, 2.0, True), (1.0, 1.0, True)]
)
def test_the_slower_path_is_not_chosen(tmp_path, fused, composite, prefers_fused):
    measure = FakeMeasure(fused, composite)
    tuner = autotune.Autotuner(measure, persist=False)
    assert choose(tuner) is prefers_fused
    assert measure.calls == [[autotune.COMPOSITE, autotune.FUSED]]
    (decision,) = tuner.decisions().values()
    assert (decision.fused_ms, decision.composite_ms) == (1e3 * fused, 1e3 * composite)


def test_a_key_is_timed_once(caplog):
    measure = FakeMeasure(2.0, 1.0)
    tuner = autotune.Autotuner(measure, persist=False)
    with caplog.at_level(logging.INFO, logger=autotune.__name__):
        assert not choose(tuner)
        assert not choose(tuner)
    assert len(measure.calls) == 1
    assert len(caplog.records) == 1 and "-> composite" in caplog.records[0].getMessage()
    choose(tuner, {**DENSE_SHAPES, "x": (5, 3)})
    choose(tuner, family="other")
    assert len(measure.calls) == 3


def test_time_paths_alternates_and_takes_medians():
    """A fake clock that advances 1 s per call of "a" and 3 s per call of "b"."""
    now = [0.0]
    calls = []

    def path(label, seconds):
        def run():
            calls.append(label)
            now[0] += seconds
            return tf.constant(0.0)

        return run

    medians = autotune.time_paths(
        {"a": path("a", 1.0), "b": path("b", 3.0)},
        clock=lambda: now[0],
        min_rounds=3,
        max_rounds=7,
        budget_s=10.0,
    )
    assert medians == {"a": 1.0, "b": 3.0}
    # One untimed call each, then rounds in a rotating order until 10 s are spent (3 rounds
    # make 12 s).
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]


@needs_fused
def test_real_measurement_while_a_training_step_is_traced(monkeypatch):
    """The default measurement, started while a step is traced inside its gradient tape:
    both paths run outside that graph, a decision results and the step's gradient is right."""
    monkeypatch.setenv(autotune.ENV, "auto")
    monkeypatch.setattr(autotune, "TUNER", autotune.Autotuner(persist=False))
    args = dense_inputs()
    kernel = tf.Variable(args[2])

    @tf.function
    def gradient(*a):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(dense_step(a[0], a[1], kernel, *a[3:]) ** 2)
        return tape.gradient(loss, kernel)

    grad = gradient(*args)
    (decision,) = autotune.TUNER.decisions().values()
    assert decision.choice in (autotune.FUSED, autotune.COMPOSITE)
    assert decision.fused_ms > 0 and decision.composite_ms > 0
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(dense_step(args[0], args[1], kernel, *args[3:]) ** 2)
    np.testing.assert_allclose(grad, tape.gradient(loss, kernel), rtol=1e-5, atol=1e-5)


def test_a_failing_measurement_keeps_the_fused_path():
    def failing(paths):
        raise ValueError("no such shape")

    assert choose(autotune.Autotuner(failing, persist=False))


# The cache file.


def test_cache_file_under_xdg_cache_home(monkeypatch, tmp_path):
    if autotune.machine_identity()["sources_digest"] is None:
        pytest.skip("the op library's metadata records no sources digest")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert autotune.cache_path() == tmp_path / "tfp_mnf" / "autotune.json"
    assert not choose(autotune.Autotuner(FakeMeasure(2.0, 1.0)))
    content = json.loads((tmp_path / "tfp_mnf" / "autotune.json").read_text())
    assert content["identity"] == autotune.machine_identity()
    (entry,) = content["choices"].values()
    assert entry["choice"] == autotune.COMPOSITE
    # A new process (a new tuner) reads the choice instead of timing again.
    measure = FakeMeasure(1.0, 2.0)
    assert not choose(autotune.Autotuner(measure))
    assert measure.calls == []


@pytest.mark.parametrize("field", ["cpu", "sources_digest", "tensorflow"])
def test_a_cache_of_another_machine_or_library_is_ignored(tmp_path, field):
    if autotune.machine_identity()["sources_digest"] is None:
        pytest.skip("the op library's metadata records no sources digest")
    cache_file = tmp_path / "autotune.json"
    choose(autotune.Autotuner(FakeMeasure(2.0, 1.0), cache_file=cache_file))
    content = json.loads(cache_file.read_text())
    content["identity"][field] = "something else"
    cache_file.write_text(json.dumps(content))
    measure = FakeMeasure(1.0, 2.0)
    assert choose(autotune.Autotuner(measure, cache_file=cache_file))
    assert len(measure.calls) == 1
    # Rewritten for this machine.
    assert json.loads(cache_file.read_text())["identity"] == autotune.machine_identity()


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"version": 1, "choices": 3}'])
def test_an_unreadable_cache_is_ignored(tmp_path, content):
    cache_file = tmp_path / "autotune.json"
    cache_file.write_text(content)
    measure = FakeMeasure(2.0, 1.0)
    assert not choose(autotune.Autotuner(measure, cache_file=cache_file))
    assert len(measure.calls) == 1


def test_an_unwritable_cache_does_not_fail(tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    measure = FakeMeasure(2.0, 1.0)
    tuner = autotune.Autotuner(measure, cache_file=blocker / "tfp_mnf" / "autotune.json")
    with caplog.at_level(logging.INFO, logger=autotune.__name__):
        assert not choose(tuner)
        assert not choose(tuner)
    assert len(measure.calls) == 1
    if autotune.machine_identity()["sources_digest"] is not None:
        assert any("not saving" in r.getMessage() for r in caplog.records)
    assert list(tmp_path.iterdir()) == [blocker]


# The policy.


@needs_fused
@pytest.mark.parametrize("policy", ["always", "never"])
def test_the_environment_pins_the_choice(install, monkeypatch, policy):
    """`always` builds the fused ops although the fake timings favour the composite path,
    `never` the composite ops although they favour the fused one; neither times anything."""
    measure = install(*((2.0, 1.0) if policy == "always" else (1.0, 2.0)))
    monkeypatch.setenv(autotune.ENV, policy)
    assert ops.fused_available() is (policy == "always")
    dense = op_types(dense_step, *dense_inputs())
    conv = op_types(conv_step, *conv_inputs())
    if policy == "always":
        assert "MnfDenseEpilogue" in dense and "MnfConv2DLocalReparam" in conv
    else:
        assert not any(t.startswith("Mnf") for t in dense | conv)
    assert measure.calls == []


@needs_fused
def test_force_composite_wins_over_always(install, monkeypatch):
    measure = install(1.0, 2.0)
    monkeypatch.setenv(autotune.ENV, "always")
    monkeypatch.setenv(policy.FORCE_ENV, "1")
    assert not any(t.startswith("Mnf") for t in op_types(dense_step, *dense_inputs()))
    assert measure.calls == []


@needs_fused
@pytest.mark.parametrize("fused_faster", [True, False])
def test_auto_builds_the_faster_path(install, fused_faster):
    measure = install(*((1.0, 2.0) if fused_faster else (2.0, 1.0)))
    dense = op_types(dense_step, *dense_inputs())
    conv = op_types(conv_step, *conv_inputs())
    assert ("MnfDenseEpilogue" in dense) is fused_faster
    assert ("MnfConv2DLocalReparam" in conv) is fused_faster
    # TensorFlow's convolutions still take the fused epilogue.
    assert "MnfConvLocalReparamEpilogue" in conv or fused_faster
    assert [len(c) for c in measure.calls] == [2, 2]
    families = {key.split()[0] for key in autotune.TUNER.decisions()}
    assert families == {"dense_local_reparam_from_variance", "conv_local_reparam"}


@needs_fused
@pytest.mark.parametrize("step, inputs", [(dense_step, dense_inputs), (conv_step, conv_inputs)])
def test_both_choices_give_the_same_numbers(install, step, inputs):
    args = inputs()
    outputs = []
    for timings in [(1.0, 2.0), (2.0, 1.0)]:
        install(*timings)
        with tf.GradientTape() as tape:
            tape.watch(args)
            out = step(*args)
            loss = tf.reduce_sum(out * out)
        outputs.append((out, tape.gradient(loss, args)))
    (fused_out, fused_grads), (composite_out, composite_grads) = outputs
    np.testing.assert_allclose(fused_out, composite_out, rtol=1e-5, atol=1e-5)
    for got, want in zip(fused_grads, composite_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@needs_fused
def test_an_unknown_batch_is_timed_at_the_representative_batch(install):
    measure = install(2.0, 1.0)
    specs = [tf.TensorSpec([None, *t.shape[1:]]) for t in dense_inputs()[:2]]
    specs += [tf.TensorSpec(t.shape) for t in dense_inputs()[2:]]
    assert "MnfDenseEpilogue" not in op_types(dense_step, *specs)
    (key,) = autotune.TUNER.decisions()
    assert f"x={autotune.REPRESENTATIVE_BATCH}x3" in key
    # An eager call at that batch uses the same decision.
    dense_step(*dense_inputs(batch=autotune.REPRESENTATIVE_BATCH))
    assert len(measure.calls) == 1


@needs_fused
def test_unknown_spatial_dimensions_keep_the_fused_conv_untimed(install):
    measure = install(2.0, 1.0)
    args = conv_inputs()
    specs = [tf.TensorSpec([2, None, None, 3])] + [tf.TensorSpec(a.shape) for a in args[1:]]
    assert "MnfConv2DLocalReparam" in op_types(conv_step, *specs)
    assert measure.calls == []


@needs_fused
def test_nothing_is_timed_inside_xla(install):
    measure = install(1.0, 2.0)
    args = dense_inputs()
    out = tf.function(dense_step, jit_compile=True)(*args)
    assert out.shape == (4, 2)
    assert measure.calls == []


def test_nothing_is_timed_without_the_library(install, monkeypatch):
    measure = install(1.0, 2.0)
    monkeypatch.setattr(_library, "load", lambda: None)
    assert not ops.fused_available()
    assert not any(t.startswith("Mnf") for t in op_types(conv_step, *conv_inputs()))
    assert measure.calls == []
