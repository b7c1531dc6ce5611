"""Uncertainty evaluation of Bayesian networks: Monte Carlo predictions and their scores.

Classification works on Monte Carlo softmax samples `[S, N, C]` from a model that outputs
logits; regression on output samples `[S, N]`. Every score is computed in numpy (float64)
and is safe for probabilities that are exactly 0.

References:
  Louizos & Welling (2017), Multiplicative Normalizing Flows for Variational Bayesian Neural
  Networks, arXiv:1703.01961 (sections 4.1-4.2: predictive entropy, rotated digits, notMNIST).
  Guo et al. (2017), On Calibration of Modern Neural Networks, arXiv:1706.04599 (ECE).
  Depeweg et al. (2018), Decomposition of Uncertainty in Bayesian Deep Learning,
  arXiv:1710.07283 (mutual information as the epistemic part of the entropy).
"""

import math
from collections.abc import Callable
from statistics import NormalDist

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfp_mnf import models
from tfp_mnf.frontend import MNFLayerLogic
from tfp_mnf.layers.mode import sublayers


def _check_positive_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


def _check_prob_samples(prob_samples: np.ndarray) -> np.ndarray:
    prob_samples = np.asarray(prob_samples, dtype=np.float64)
    if prob_samples.ndim != 3:
        raise ValueError(
            "`prob_samples` must have shape [num_samples, num_examples, num_classes], "
            f"got shape {prob_samples.shape}."
        )
    return prob_samples


def _check_probs_labels(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2:
        raise ValueError(f"`probs` must have shape [num_examples, num_classes], got {probs.shape}.")
    if labels.shape != probs.shape[:1]:
        raise ValueError(
            f"`labels` must have shape [{probs.shape[0]}] to match `probs`, got {labels.shape}."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"`labels` must be integer class indices, got dtype {labels.dtype}.")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"`labels` must lie in [0, {probs.shape[1]}).")
    return probs, labels


def _safe_log(x: np.ndarray) -> np.ndarray:
    """log(x) with log(0) mapped to the log of the smallest positive float64."""
    return np.log(np.maximum(x, np.finfo(np.float64).tiny))


# Layers whose every row is an independent posterior sample: an MNF layer draws one z per
# row and one eps per output element, `MCDropout` one mask per row (when it has no
# `noise_shape` that could share it), a deep ensemble one member per row; in either Keras
# front-end (tf_keras, Keras 3).
_PER_ROW_SAMPLERS = (MNFLayerLogic, models.MCDropoutLogic, models.DeepEnsembleLogic)
# tfp.layers whose rows of one call share a sample: the Reparameterization layers and
# `DenseVariational` draw one kernel sample per call; Flipout multiplies one kernel
# perturbation by random signs per row, which leaves each row's marginal exact but the rows
# of one call dependent through it; every tfp variational layer, the local
# reparameterization one included, draws a non-deterministic bias posterior once per call.
_SHARED_SAMPLE_LAYERS = (
    tfp.layers.DenseReparameterization,
    tfp.layers.DenseLocalReparameterization,
    tfp.layers.DenseFlipout,
    tfp.layers.DenseVariational,
    tfp.layers.Convolution1DReparameterization,
    tfp.layers.Convolution2DReparameterization,
    tfp.layers.Convolution3DReparameterization,
    tfp.layers.Convolution1DFlipout,
    tfp.layers.Convolution2DFlipout,
    tfp.layers.Convolution3DFlipout,
)


def samples_per_row(model: Callable[..., tf.Tensor]) -> bool:
    """Whether every row of one call of `model` is known to be an independent sample.

    True when `model` (or a layer inside it) is an MNF layer, an `MCDropout` layer without
    `noise_shape` or a `DeepEnsembleLeNet`, and no layer inside it is a tfp.layers layer
    whose rows can share a weight sample (`*Reparameterization`, `*Flipout`,
    `DenseLocalReparameterization`, `DenseVariational`). A model without any known
    per-row sampler (a plain callable, a custom stochastic layer, a deterministic network)
    gives False: nothing says its rows are independent.

    Args:
      model: a callable, usually a Keras model.

    Returns:
      The default of `predictive_samples(..., vectorize=None)`.
    """
    modules = sublayers(model)
    if any(isinstance(m, _SHARED_SAMPLE_LAYERS) for m in modules):
        return False
    return any(
        isinstance(m, _PER_ROW_SAMPLERS)
        and not (isinstance(m, models.MCDropoutLogic) and m.noise_shape is not None)
        for m in modules
    )


def predictive_samples(
    model: Callable[..., tf.Tensor],
    x: np.ndarray,
    num_samples: int = 20,
    batch_size: int = 500,
    vectorize: bool | None = None,
) -> np.ndarray:
    """Draws Monte Carlo samples of a stochastic model's outputs.

    Vectorized (the default for MNF models, see `samples_per_row`), a forward pass holds g
    samples of each of b examples: the examples' batch tiled g times into `g * b` rows
    (sample-major), whose outputs reshape to `[g, b, ...]`. An MNF layer draws one z and
    one weight noise eps per row (local reparameterization), so every row is an independent
    posterior predictive sample of its example, distributed as a separate call's. Not
    vectorized, every sample is a separate forward pass over up to `batch_size` examples,
    the right way for a model that draws one weight sample per call and shares it across
    the rows, such as tfp's `*Reparameterization` layers (tiled, their S rows of an example
    would hold one sample S times) and `*Flipout` layers (tiled, each row's marginal is
    exact, but the rows of a pass share one weight perturbation up to random signs, so they
    are not independent samples).

    A forward pass is `model.predict_on_batch(rows)` for a tf_keras or Keras 3 model
    (Keras' cached predict function, `model(rows, training=False)`, which
    `posterior_mean(model)` resets on entry and exit), else `model(rows, training=False)`.
    Its random ops draw new noise on every call.

    Args:
      model: a callable model (e.g. an MNF-LeNet that outputs logits) returning one output
        row per input row.
      x: inputs, first axis the examples.
      num_samples: samples per example, >= 1.
      batch_size: rows per forward pass, >= 1: bounds the memory of a pass. Vectorized, a
        pass holds `g = min(num_samples, batch_size)` samples of `batch_size // g` examples
        (the samples split into several passes when `num_samples > batch_size`); not
        vectorized, one sample of `batch_size` examples.
      vectorize: True tiles the samples into the rows of a pass, False makes a separate
        pass per sample, None picks True exactly when `samples_per_row(model)`.

    Returns:
      float32 array `[num_samples, num_examples, ...]` of raw model outputs.

    Raises:
      ValueError: if `num_samples` or `batch_size` is not an integer >= 1, `x` holds no
        example, or the model does not return one output row per input row.
      TypeError: if `vectorize` is not a bool or None.
    """
    _check_positive_int(num_samples, "num_samples")
    _check_positive_int(batch_size, "batch_size")
    if vectorize is not None and not isinstance(vectorize, bool):
        raise TypeError(f"`vectorize` must be True, False or None, got {vectorize!r}.")
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"`x` must hold at least one example, got shape {x.shape}.")
    if vectorize is None:
        vectorize = samples_per_row(model)
    if isinstance(model, tf_keras.Model | keras.Model):
        forward = model.predict_on_batch
    else:
        forward = lambda rows: model(rows, training=False).numpy()  # noqa: E731
    samples_per_pass = min(num_samples, batch_size) if vectorize else 1
    groups = []
    for first_sample in range(0, num_samples, samples_per_pass):
        group = min(samples_per_pass, num_samples - first_sample)
        examples_per_pass = batch_size // group
        chunks = []
        for start in range(0, x.shape[0], examples_per_pass):
            batch = x[start : start + examples_per_pass]
            rows = np.broadcast_to(batch, (group, *batch.shape)).reshape(-1, *batch.shape[1:])
            outputs = np.asarray(forward(tf.convert_to_tensor(rows)))
            if outputs.ndim < 1 or outputs.shape[0] != rows.shape[0]:
                raise ValueError(
                    f"`model` must return one output row per input row: {rows.shape[0]} rows "
                    f"gave an output of shape {outputs.shape}."
                )
            chunks.append(outputs.reshape(group, batch.shape[0], *outputs.shape[1:]))
        groups.append(np.concatenate(chunks, axis=1))
    return np.concatenate(groups, axis=0).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def predictive_probs(
    model: Callable[..., tf.Tensor],
    x: np.ndarray,
    num_samples: int = 20,
    batch_size: int = 500,
    vectorize: bool | None = None,
) -> np.ndarray:
    """Monte Carlo softmax samples `[num_samples, num_examples, num_classes]` of a logit model.

    Args:
      model: a callable model returning logits, one row per input row.
      x: inputs, first axis the examples.
      num_samples: samples per example, >= 1.
      batch_size: rows per forward pass, >= 1.
      vectorize: as in `predictive_samples`.

    Returns:
      float64 softmax of `predictive_samples(model, x, num_samples, batch_size, vectorize)`.
    """
    return softmax(predictive_samples(model, x, num_samples, batch_size, vectorize))


def mean_probs(prob_samples: np.ndarray) -> np.ndarray:
    """Predictive distribution p(y|x) ~= 1/S sum_s p(y|x, w_s), shape `[N, C]`."""
    return _check_prob_samples(prob_samples).mean(axis=0)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy -sum_c p_c log p_c (nats) over the last axis, with 0 log 0 = 0."""
    probs = np.asarray(probs, dtype=np.float64)
    return -np.sum(probs * _safe_log(probs), axis=-1)


def predictive_entropy(prob_samples: np.ndarray) -> np.ndarray:
    """Entropy of the predictive mean, H[E_w p(y|x, w)], shape `[N]` (total uncertainty)."""
    return entropy(mean_probs(prob_samples))


def mutual_information(prob_samples: np.ndarray) -> np.ndarray:
    """Mutual information I[y; w | x] = H[E_w p] - E_w H[p], shape `[N]` (epistemic part).

    Non-negative by Jensen's inequality; float round-off below zero is clipped to 0.
    """
    prob_samples = _check_prob_samples(prob_samples)
    expected_entropy = entropy(prob_samples).mean(axis=0)
    return np.maximum(predictive_entropy(prob_samples) - expected_entropy, 0.0)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(y_true|x) (nats) of predictive probabilities `[N, C]`; log 0 stays finite."""
    probs, labels = _check_probs_labels(probs, labels)
    return float(-_safe_log(probs[np.arange(labels.size), labels]).mean())


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of examples whose most probable class is the label."""
    probs, labels = _check_probs_labels(probs, labels)
    return float(np.mean(np.argmax(probs, axis=-1) == labels))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins (Guo et al., 2017, eq. 3).

    ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|, confidence = max_c p_c, bins
    (0, 1/M], (1/M, 2/M], ..., ((M-1)/M, 1].

    Args:
      probs: predictive probabilities `[N, C]`.
      labels: integer labels `[N]`.
      num_bins: number of bins M, >= 1.

    Returns:
      The ECE, in [0, 1].
    """
    _check_positive_int(num_bins, "num_bins")
    probs, labels = _check_probs_labels(probs, labels)
    confidence = probs.max(axis=-1)
    correct = (np.argmax(probs, axis=-1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    counts = np.bincount(bins, minlength=num_bins)
    gap = np.bincount(bins, weights=correct - confidence, minlength=num_bins)
    # Per bin, |B| * |acc - conf| = |sum over the bin of (correct - confidence)|.
    return float(np.abs(gap).sum() / max(counts.sum(), 1))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    _, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    mean_rank_per_group = first + (counts + 1) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank_per_group, counts)
    return ranks


def auroc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """Area under the ROC curve for telling out- from in-distribution inputs by a score.

    Higher scores (e.g. predictive entropy) should mean out-of-distribution. Exact
    Mann-Whitney form: AUROC = P(s_out > s_in) + 1/2 P(s_out = s_in), from average ranks.

    Args:
      scores_in: scores of in-distribution inputs, `[N_in]`.
      scores_out: scores of out-of-distribution inputs, `[N_out]`.

    Returns:
      AUROC in [0, 1]: 1 perfectly separated, 0.5 chance, 0 reversed.
    """
    scores_in = np.asarray(scores_in, dtype=np.float64).ravel()
    scores_out = np.asarray(scores_out, dtype=np.float64).ravel()
    for name, scores in (("scores_in", scores_in), ("scores_out", scores_out)):
        if scores.size == 0:
            raise ValueError(f"`{name}` must hold at least one score.")
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"`{name}` must be finite.")
    ranks = _average_ranks(np.concatenate([scores_in, scores_out]))
    n_in, n_out = scores_in.size, scores_out.size
    u_statistic = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u_statistic / (n_in * n_out))


def classification_metrics(
    prob_samples: np.ndarray, labels: np.ndarray, num_bins: int = 15
) -> dict[str, float]:
    """Accuracy, NLL, ECE, mean predictive entropy and mean mutual information.

    Args:
      prob_samples: softmax samples `[S, N, C]` (S = 1 for a deterministic model).
      labels: integer labels `[N]`.
      num_bins: ECE bins.

    Returns:
      A dict with keys accuracy, nll, ece, mean_entropy, mean_mutual_information.
    """
    probs = mean_probs(prob_samples)
    return {
        "accuracy": accuracy(probs, labels),
        "nll": negative_log_likelihood(probs, labels),
        "ece": expected_calibration_error(probs, labels, num_bins),
        "mean_entropy": float(predictive_entropy(prob_samples).mean()),
        "mean_mutual_information": float(mutual_information(prob_samples).mean()),
    }


def regression_predictive(
    output_samples: np.ndarray, noise_std: float | np.ndarray = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and standard deviation from Monte Carlo regression outputs.

    std^2 = Var_s[f_s(x)] + noise_std^2 (epistemic spread plus observation noise).

    Args:
      output_samples: `[S, N]` or `[S, N, 1]` sampled outputs.
      noise_std: observation noise standard deviation, scalar or `[N]`, >= 0.

    Returns:
      (mean, std), each `[N]`.
    """
    samples = np.asarray(output_samples, dtype=np.float64)
    if samples.ndim == 3 and samples.shape[-1] == 1:
        samples = samples[..., 0]
    if samples.ndim != 2:
        raise ValueError(
            f"`output_samples` must have shape [S, N] or [S, N, 1], got {samples.shape}."
        )
    noise_std = np.asarray(noise_std, dtype=np.float64)
    if np.any(noise_std < 0):
        raise ValueError("`noise_std` must be >= 0.")
    return samples.mean(axis=0), np.sqrt(samples.var(axis=0) + noise_std**2)


def _check_regression(
    mean: np.ndarray, targets: np.ndarray, std: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    mean = np.asarray(mean, dtype=np.float64).ravel()
    targets = np.asarray(targets, dtype=np.float64).ravel()
    if mean.shape != targets.shape:
        raise ValueError(
            f"`mean` and `targets` must hold as many values, got {mean.size} and {targets.size}."
        )
    if std is None:
        return mean, targets
    std = np.asarray(std, dtype=np.float64).ravel()
    if std.shape != mean.shape or np.any(std <= 0):
        raise ValueError(f"`std` must be {mean.size} positive values.")
    return mean, targets, std


def rmse(mean: np.ndarray, targets: np.ndarray) -> float:
    """Root mean squared error of the predictive mean."""
    mean, targets = _check_regression(mean, targets)
    return float(np.sqrt(np.mean((mean - targets) ** 2)))


def gaussian_nll(mean: np.ndarray, std: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log density of the targets under N(mean, std^2), in nats."""
    mean, targets, std = _check_regression(mean, targets, std)
    return float(
        np.mean(0.5 * math.log(2 * math.pi) + np.log(std) + 0.5 * ((targets - mean) / std) ** 2)
    )


def interval_coverage(
    mean: np.ndarray, std: np.ndarray, targets: np.ndarray, level: float = 0.95
) -> float:
    """Fraction of targets inside the central `level` Gaussian interval mean +- z std."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"`level` must lie in (0, 1), got {level}.")
    mean, targets, std = _check_regression(mean, targets, std)
    half_width = NormalDist().inv_cdf(0.5 + level / 2.0) * std
    return float(np.mean(np.abs(targets - mean) <= half_width))


def rotate_images(image: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Rotates one image counter-clockwise about its centre by each angle (bilinear, zero fill).

    Args:
      image: `[H, W]` or `[H, W, C]` image.
      angles_deg: angles in degrees, `[A]`.

    Returns:
      float32 array `[A, H, W, C]` (C = 1 for a 2-D image).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"`image` must have shape [H, W] or [H, W, C], got {image.shape}.")
    angles = np.deg2rad(np.atleast_1d(np.asarray(angles_deg, dtype=np.float64)))
    height, width = image.shape[:2]
    centre_row, centre_col = (height - 1) / 2.0, (width - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    dy, dx = rows - centre_row, cols - centre_col
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)))
    out = []
    for angle in angles:
        cos, sin = math.cos(angle), math.sin(angle)
        # Inverse map, output pixel -> source pixel, with rows growing downwards.
        src_row = centre_row + cos * dy + sin * dx
        src_col = centre_col + cos * dx - sin * dy
        r0 = np.floor(src_row).astype(np.int64)
        c0 = np.floor(src_col).astype(np.int64)
        fr, fc = (src_row - r0)[..., None], (src_col - c0)[..., None]
        # Indices into the zero-padded image; anything outside reads the zero border.
        r0p = np.clip(r0 + 1, 0, height + 1)
        r1p = np.clip(r0 + 2, 0, height + 1)
        c0p = np.clip(c0 + 1, 0, width + 1)
        c1p = np.clip(c0 + 2, 0, width + 1)
        value = (
            padded[r0p, c0p] * (1 - fr) * (1 - fc)
            + padded[r0p, c1p] * (1 - fr) * fc
            + padded[r1p, c0p] * fr * (1 - fc)
            + padded[r1p, c1p] * fr * fc
        )
        out.append(value)
    return np.stack(out).astype(np.float32)


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over examples of sum_c (p_c - 1[c = y])^2 (Brier, 1950).

    Args:
      probs: predictive probabilities `[N, C]`.
      labels: integer labels `[N]`.

    Returns:
      The score, in [0, 2]: 0 for confident correct predictions.
    """
    probs, labels = _check_probs_labels(probs, labels)
    one_hot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - one_hot) ** 2, axis=-1)))
