"""Tests of tfp_mnf.evaluate (scores against hand-computed values) and tfp_mnf.plotting."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfp_mnf import evaluate, models, plotting
from tfp_mnf.layers import DenseMNF, posterior_mean


def _one_hot(labels, num_classes):
    return np.eye(num_classes)[labels]


class TestEntropyAndMutualInformation:
    def test_uniform_probs_have_entropy_log_c(self):
        probs = np.full((4, 7), 1 / 7)
        np.testing.assert_allclose(evaluate.entropy(probs), math.log(7), rtol=1e-12)

    def test_one_hot_entropy_is_zero_and_finite(self):
        probs = _one_hot([0, 2, 1], 3)
        np.testing.assert_array_equal(evaluate.entropy(probs), 0.0)

    def test_hand_computed_entropy(self):
        probs = np.array([[0.5, 0.25, 0.25]])
        expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
        np.testing.assert_allclose(evaluate.entropy(probs), [expected], rtol=1e-12)

    def test_identical_samples_have_zero_mutual_information(self):
        one = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
        samples = np.stack([one, one, one])
        np.testing.assert_allclose(evaluate.mutual_information(samples), 0.0, atol=1e-12)
        np.testing.assert_allclose(
            evaluate.predictive_entropy(samples), evaluate.entropy(one), rtol=1e-12
        )

    def test_disagreeing_one_hot_samples(self):
        # Two confident samples that disagree: each has entropy 0, their mean is uniform on
        # two classes, so the whole entropy log 2 is epistemic.
        samples = np.stack([_one_hot([0], 3), _one_hot([1], 3)])
        np.testing.assert_allclose(evaluate.predictive_entropy(samples), [math.log(2)])
        np.testing.assert_allclose(evaluate.mutual_information(samples), [math.log(2)])

    def test_mutual_information_is_bounded_by_entropy(self):
        rng = np.random.default_rng(0)
        samples = evaluate.softmax(rng.normal(size=(10, 50, 4)) * 3)
        mi = evaluate.mutual_information(samples)
        assert np.all(mi >= 0)
        assert np.all(mi <= evaluate.predictive_entropy(samples) + 1e-12)
        assert mi.max() > 0.05

    def test_rejects_wrong_rank(self):
        with pytest.raises(ValueError, match="prob_samples"):
            evaluate.mutual_information(np.ones((3, 4)))


class TestClassificationScores:
    def test_nll_and_accuracy_by_hand(self):
        probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]])
        labels = np.array([0, 0, 1])
        expected = -(math.log(0.8) + math.log(0.4) + math.log(0.5)) / 3
        assert evaluate.negative_log_likelihood(probs, labels) == pytest.approx(expected)
        # argmax picks class 0 on the tie in row 3.
        assert evaluate.accuracy(probs, labels) == pytest.approx(1 / 3)

    def test_nll_of_zero_probability_is_finite_and_large(self):
        nll = evaluate.negative_log_likelihood(np.array([[1.0, 0.0]]), np.array([1]))
        assert np.isfinite(nll) and nll > 700

    def test_one_hot_model_ece_is_one_minus_accuracy(self):
        # Confidence 1 everywhere: the single occupied bin has |acc - 1| = 1 - acc.
        labels = np.array([0, 1, 2, 0, 1])
        predicted = np.array([0, 1, 2, 1, 2])
        probs = _one_hot(predicted, 3)
        acc = evaluate.accuracy(probs, labels)
        assert acc == pytest.approx(0.6)
        assert evaluate.expected_calibration_error(probs, labels) == pytest.approx(1 - acc)
        assert evaluate.mutual_information(probs[None]) == pytest.approx(np.zeros(5))

    def test_ece_hand_computed_two_bins(self):
        # Bin (0.5, 1] with 2 bins: confidences 0.9 (correct) and 0.7 (wrong) -> acc 0.5,
        # conf 0.8 -> 2/4 * 0.3. Bin (0, 0.5]: confidences 0.5, 0.5, both correct -> 2/4 * 0.5.
        probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.5, 0.5], [0.5, 0.5]])
        labels = np.array([0, 1, 0, 0])
        expected = 0.5 * 0.3 + 0.5 * 0.5
        ece = evaluate.expected_calibration_error(probs, labels, num_bins=2)
        assert ece == pytest.approx(expected)

    def test_perfectly_calibrated_bins_give_zero_ece(self):
        # 10 examples at confidence 0.8, 8 of them correct.
        probs = np.tile([0.8, 0.2], (10, 1))
        labels = np.array([0] * 8 + [1] * 2)
        assert evaluate.expected_calibration_error(probs, labels, 10) == pytest.approx(0.0)

    def test_label_validation(self):
        probs = np.full((3, 2), 0.5)
        with pytest.raises(ValueError, match="labels"):
            evaluate.accuracy(probs, np.array([0, 1]))
        with pytest.raises(ValueError, match="labels"):
            evaluate.accuracy(probs, np.array([0, 1, 2]))
        with pytest.raises(TypeError, match="labels"):
            evaluate.accuracy(probs, np.array([0.0, 1.0, 1.0]))
        with pytest.raises(ValueError, match="num_bins"):
            evaluate.expected_calibration_error(probs, np.array([0, 1, 1]), num_bins=0)

    def test_classification_metrics_keys_and_values(self):
        samples = np.stack([_one_hot([0, 1], 2), _one_hot([0, 0], 2)])
        metrics = evaluate.classification_metrics(samples, np.array([0, 0]))
        assert metrics["accuracy"] == pytest.approx(1.0)  # mean row 2 is a tie -> class 0
        assert metrics["mean_entropy"] == pytest.approx(math.log(2) / 2)
        assert metrics["mean_mutual_information"] == pytest.approx(math.log(2) / 2)


class TestAuroc:
    def test_perfectly_separated(self):
        assert evaluate.auroc([0.1, 0.2, 0.3], [0.5, 0.9]) == 1.0

    def test_reversed(self):
        assert evaluate.auroc([0.5, 0.9], [0.1, 0.2, 0.3]) == 0.0

    def test_all_tied(self):
        assert evaluate.auroc([1.0, 1.0, 1.0], [1.0, 1.0]) == 0.5

    def test_hand_computed_with_ties(self):
        # Pairs (out, in): 3 > 1, 3 > 2, 3 = 3 (1/2), 2 > 1, 2 = 2 (1/2), 2 < 3 -> 4 / 6.
        assert evaluate.auroc([1, 2, 3], [3, 2]) == pytest.approx(4 / 6)

    def test_matches_pairwise_count(self):
        rng = np.random.default_rng(1)
        s_in = rng.integers(0, 5, 40).astype(float)
        s_out = rng.integers(1, 7, 30).astype(float)
        diff = s_out[:, None] - s_in[None, :]
        expected = np.mean((diff > 0) + 0.5 * (diff == 0))
        assert evaluate.auroc(s_in, s_out) == pytest.approx(expected, abs=1e-12)

    def test_rejects_empty_and_nan(self):
        with pytest.raises(ValueError, match="scores_out"):
            evaluate.auroc([1.0], [])
        with pytest.raises(ValueError, match="scores_in"):
            evaluate.auroc([np.nan], [1.0])


class TestRegression:
    def test_predictive_mean_std(self):
        samples = np.array([[1.0, 2.0], [3.0, 2.0]])
        mean, std = evaluate.regression_predictive(samples, noise_std=1.0)
        np.testing.assert_allclose(mean, [2.0, 2.0])
        np.testing.assert_allclose(std, [math.sqrt(2.0), 1.0])
        mean3, _ = evaluate.regression_predictive(samples[..., None])
        np.testing.assert_allclose(mean3, mean)

    def test_rmse_nll_coverage(self):
        mean = np.zeros(4)
        targets = np.array([1.0, -1.0, 3.0, 0.0])
        std = np.ones(4)
        assert evaluate.rmse(mean, targets) == pytest.approx(math.sqrt(11 / 4))
        expected_nll = 0.5 * math.log(2 * math.pi) + 0.5 * 11 / 4
        assert evaluate.gaussian_nll(mean, std, targets) == pytest.approx(expected_nll)
        # 95% half width 1.96: 3.0 lies outside.
        assert evaluate.interval_coverage(mean, std, targets, 0.95) == pytest.approx(0.75)
        # 50% half width 0.674: only 0.0 is inside.
        assert evaluate.interval_coverage(mean, std, targets, 0.5) == pytest.approx(0.25)

    def test_coverage_of_gaussian_data_is_nominal(self):
        rng = np.random.default_rng(2)
        targets = rng.normal(size=20000)
        cover = evaluate.interval_coverage(np.zeros(20000), np.ones(20000), targets, 0.9)
        assert cover == pytest.approx(0.9, abs=0.01)

    def test_validation(self):
        with pytest.raises(ValueError, match="std"):
            evaluate.gaussian_nll(np.zeros(2), np.array([1.0, 0.0]), np.zeros(2))
        with pytest.raises(ValueError, match="level"):
            evaluate.interval_coverage(np.zeros(2), np.ones(2), np.zeros(2), 1.0)
        with pytest.raises(ValueError, match="mean"):
            evaluate.rmse(np.zeros(2), np.zeros(3))


class _NoisyLogits(tf_keras.Model):
    """Logits = x W + noise; records the `training` flag it is called with."""

    def __init__(self, noise_scale):
        super().__init__()
        self.noise_scale = noise_scale
        self.dense = tf_keras.layers.Dense(3, kernel_initializer="ones")
        self.training_flags = []

    def call(self, inputs, training=None):
        self.training_flags.append(training)
        logits = self.dense(tf_keras.layers.Flatten()(inputs))
        return logits + self.noise_scale * tf.random.normal(tf.shape(logits))


def _small_mnf(seed=1):
    """A 4 -> 3 MNF layer with visible posterior noise (log-std -1, z log-variance -2)."""
    return tf_keras.Sequential(
        [
            tf_keras.Input((4,)),
            DenseMNF(3, kernel_log_std_init=-1.0, z_log_var_init=-2.0, seed=seed),
        ]
    )


class _RowRecorder(tf_keras.Model):
    """Wraps a model; counts its forward passes and records the largest batch it saw."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.max_rows = tf.Variable(0, trainable=False)
        self.passes = tf.Variable(0, trainable=False)

    def call(self, inputs, training=None):
        self.max_rows.assign(tf.maximum(self.max_rows, tf.shape(inputs)[0]))
        self.passes.assign_add(1)
        return self.inner(inputs, training=training)


class TestPredictiveSamples:
    def test_shapes_batches_and_fresh_noise(self):
        model = _NoisyLogits(noise_scale=1.0)
        x = np.random.default_rng(0).normal(size=(7, 2, 2, 1)).astype(np.float32)
        for vectorize in (False, True):
            samples = evaluate.predictive_samples(
                model, x, num_samples=4, batch_size=3, vectorize=vectorize
            )
            assert samples.shape == (4, 7, 3)
            assert samples.dtype == np.float32
            # Fresh noise per sample: no two samples of an example agree.
            assert np.all(np.abs(samples[0] - samples[1]) > 0)
            # The noise-free part is recovered on average (noise std 1 / sqrt(4) per mean).
            clean = model.dense(x.reshape(7, 4)).numpy()
            assert np.abs(samples.mean(axis=0) - clean).max() < 3.0
        assert set(model.training_flags) == {False}

    def test_deterministic_model_and_probs(self):
        model = _NoisyLogits(noise_scale=0.0)
        x = np.ones((5, 4), dtype=np.float32)
        probs = evaluate.predictive_probs(model, x, num_samples=2, batch_size=2)
        assert probs.shape == (2, 5, 3)
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(probs[0], probs[1])
        np.testing.assert_allclose(probs, 1 / 3, rtol=1e-6)  # equal logits

    @pytest.mark.parametrize("vectorize", [None, True])
    def test_deterministic_model_gives_identical_rows(self, vectorize):
        model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3)])
        x = np.random.default_rng(1).normal(size=(9, 4)).astype(np.float32)
        samples = evaluate.predictive_samples(
            model, x, num_samples=6, batch_size=8, vectorize=vectorize
        )
        assert samples.shape == (6, 9, 3)
        expected = model(x).numpy()
        for sample in samples:
            np.testing.assert_allclose(sample, expected, rtol=1e-6, atol=1e-6)

    @pytest.mark.parametrize(
        ("num_samples", "batch_size", "max_rows", "passes"),
        [
            (4, 10, 8, 4),  # 2 examples of 4 samples per pass: chunks 2, 2, 2, 1
            (3, 7, 6, 4),  # 7 // 3 = 2 examples per pass, 6 rows
            (5, 3, 3, 14),  # samples split 3 + 2: one example per pass, 7 + 7 passes
            (10, 10, 10, 7),  # one example of all 10 samples per pass
            (1, 3, 3, 3),  # one sample: passes of up to 3 examples
        ],
    )
    def test_vectorized_shapes_and_rows_per_pass(self, num_samples, batch_size, max_rows, passes):
        tf_keras.utils.set_random_seed(0)
        model = _RowRecorder(_small_mnf())
        x = np.random.default_rng(2).normal(size=(7, 4)).astype(np.float32)
        samples = evaluate.predictive_samples(model, x, num_samples, batch_size)
        assert samples.shape == (num_samples, 7, 3)
        assert samples.dtype == np.float32
        assert int(model.max_rows.numpy()) == max_rows <= batch_size
        assert int(model.passes.numpy()) == passes

    def test_separate_calls_respect_batch_size(self):
        model = _RowRecorder(_small_mnf())
        x = np.random.default_rng(3).normal(size=(7, 4)).astype(np.float32)
        samples = evaluate.predictive_samples(model, x, 4, batch_size=3, vectorize=False)
        assert samples.shape == (4, 7, 3)
        assert int(model.max_rows.numpy()) == 3
        assert int(model.passes.numpy()) == 4 * 3  # ceil(7 / 3) passes per sample

    def test_vectorized_rows_are_distinct_samples_with_the_separate_statistics(self):
        tf_keras.utils.set_random_seed(0)
        model = _small_mnf()
        x = np.random.default_rng(4).normal(size=(3, 4)).astype(np.float32)
        num_samples = 200
        tiled = evaluate.predictive_samples(model, x, num_samples, batch_size=500)
        separate = evaluate.predictive_samples(model, x, num_samples, vectorize=False)
        # Every sample of an example differs from every other.
        for example in range(3):
            values = tiled[:, example, 0]
            assert np.unique(values).size == num_samples
        # Same mean within Monte Carlo error, and the same spread.
        standard_error = np.sqrt((tiled.var(axis=0) + separate.var(axis=0)) / num_samples)
        assert np.all(np.abs(tiled.mean(axis=0) - separate.mean(axis=0)) < 5 * standard_error)
        ratio = tiled.var(axis=0) / separate.var(axis=0)
        assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
        # The noise is not negligible: the samples spread around their mean.
        assert np.all(np.sqrt(separate.var(axis=0)) > 0.05)

    def test_posterior_mean_gives_identical_rows_then_sampling_resumes(self):
        model = _small_mnf()
        x = np.random.default_rng(5).normal(size=(5, 4)).astype(np.float32)
        evaluate.predictive_samples(model, x, 3)  # the predict function exists before
        with posterior_mean(model):
            samples = evaluate.predictive_samples(model, x, 3)
            expected = model(x).numpy()
        for sample in samples:
            np.testing.assert_allclose(sample, expected, rtol=1e-5, atol=1e-6)
        after = evaluate.predictive_samples(model, x, 3)
        assert np.all(np.abs(after[0] - after[1]) > 0)

    def test_plain_callable(self):
        model = _small_mnf()
        seen = []

        def forward(rows, training=None):
            seen.append(int(rows.shape[0]))
            return model(rows, training=training)

        x = np.random.default_rng(6).normal(size=(5, 4)).astype(np.float32)
        assert not evaluate.samples_per_row(forward)
        samples = evaluate.predictive_samples(forward, x, 4, batch_size=8, vectorize=True)
        assert samples.shape == (4, 5, 3)
        assert seen == [8, 8, 4]
        assert np.unique(samples[:, 0, 0]).size == 4

    def test_default_per_model_kind(self):
        small = dict(input_shape=(16, 16, 1))
        assert evaluate.samples_per_row(models.MNFLeNet(**small, seed=0))
        assert evaluate.samples_per_row(models.MNFMLP(3))
        assert evaluate.samples_per_row(models.MCDropoutLeNet(**small))
        assert evaluate.samples_per_row(models.DeepEnsembleLeNet(2, **small))
        assert evaluate.samples_per_row(_RowRecorder(_small_mnf()))  # a layer inside
        # One kernel sample per call, shared by the rows (Flipout: up to random signs).
        assert not evaluate.samples_per_row(models.FlipoutLeNet(**small))
        assert not evaluate.samples_per_row(models.ReparameterizationLeNet(**small))
        mixed = tf_keras.Sequential(
            [tf_keras.Input((4,)), DenseMNF(3), tfp.layers.DenseReparameterization(2)]
        )
        assert not evaluate.samples_per_row(mixed)
        # Nothing known to sample per row.
        assert not evaluate.samples_per_row(models.LeNet(**small))
        assert not evaluate.samples_per_row(_NoisyLogits(1.0))
        shared_mask = tf_keras.Sequential(
            [tf_keras.Input((4,)), models.MCDropout(0.5, noise_shape=(1, 4))]
        )
        assert not evaluate.samples_per_row(shared_mask)

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"num_samples": 0}, ValueError),
            ({"num_samples": 2.0}, ValueError),
            ({"batch_size": 0}, ValueError),
            ({"batch_size": True}, ValueError),
            ({"vectorize": "yes"}, TypeError),
            ({"vectorize": 1}, TypeError),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, error):
        with pytest.raises(error, match=next(iter(kwargs))):
            evaluate.predictive_samples(_NoisyLogits(0.0), np.ones((2, 4)), **kwargs)

    def test_rejects_empty_inputs_and_row_mismatch(self):
        with pytest.raises(ValueError, match="`x`"):
            evaluate.predictive_samples(_NoisyLogits(0.0), np.ones((0, 4)))

        def pooled(rows, training=None):
            return tf.reduce_mean(rows, axis=0, keepdims=True)

        with pytest.raises(ValueError, match="one output row per input row"):
            evaluate.predictive_samples(pooled, np.ones((3, 4)), 2, vectorize=True)

    def test_softmax_is_stable(self):
        probs = evaluate.softmax(np.array([[1000.0, 0.0, -1000.0]]))
        np.testing.assert_allclose(probs, [[1.0, 0.0, 0.0]])


class TestRotation:
    def test_right_angles_match_rot90(self):
        image = np.random.default_rng(3).random((6, 6, 1)).astype(np.float32)
        rotated = evaluate.rotate_images(image, [0, 90, 180, 270])
        assert rotated.shape == (4, 6, 6, 1)
        for k in range(4):
            np.testing.assert_allclose(rotated[k], np.rot90(image, k), atol=1e-5)

    def test_counter_clockwise_and_zero_fill(self):
        image = np.zeros((5, 5))
        image[0, 2] = 1.0  # top centre
        rotated = evaluate.rotate_images(image, [90, 45])[..., 0]
        assert rotated[0][2, 0] == pytest.approx(1.0)  # moves to the left centre
        # A 45-degree turn keeps the mass in the top-left quadrant, spread by interpolation.
        assert rotated[1][:3, :3].sum() == pytest.approx(rotated[1].sum())
        assert 0 < rotated[1].max() < 1

    def test_rejects_bad_rank(self):
        with pytest.raises(ValueError, match="image"):
            evaluate.rotate_images(np.zeros((1, 2, 2, 1)), [0])


class TestPlotting:
    def test_rotated_digit_violins_and_bars(self, tmp_path):
        rng = np.random.default_rng(4)
        angles = np.arange(0, 180, 20)
        images = evaluate.rotate_images(rng.random((8, 8)), angles)
        violins = evaluate.softmax(rng.normal(size=(9, 10, 10)))
        bars = violins[:, :1]
        for name, samples in (("mnf.png", violins), ("plain.png", bars)):
            path = plotting.plot_rotated_digit(images, angles, samples, str(tmp_path / name))
            assert (tmp_path / name).stat().st_size > 1000
            assert path.endswith(name)
        with pytest.raises(ValueError, match="images"):
            plotting.plot_rotated_digit(images[:3], angles, violins, str(tmp_path / "x.png"))

    def test_entropy_and_regression_band(self, tmp_path):
        rng = np.random.default_rng(5)
        ent_in = {"mnf": rng.random(50), "plain": rng.random(50)}
        ent_out = {"mnf": rng.random(40) + 1, "plain": rng.random(40)}
        plotting.plot_entropy(ent_in, ent_out, str(tmp_path / "sub" / "entropy.png"))
        assert (tmp_path / "sub" / "entropy.png").stat().st_size > 1000
        with pytest.raises(ValueError, match="same"):
            plotting.plot_entropy(ent_in, {"mnf": ent_out["mnf"]}, str(tmp_path / "e.png"))
        grid = np.linspace(-5, 5, 30)
        band = {"mnf": (np.sin(grid), np.abs(grid) / 5 + 0.1), "mlp": (grid * 0, grid * 0 + 0.1)}
        plotting.plot_regression_band(
            grid[:10], np.sin(grid[:10]), grid, band, str(tmp_path / "band.png")
        )
        assert (tmp_path / "band.png").stat().st_size > 1000
