r"""Regression with an MNF MLP (100-50-10 hidden units, like the TF-MNF seed) vs a plain MLP.

Both networks output a mean and a noise scale per input and are trained on the Gaussian
negative log-likelihood; the MNF network adds its KL bound (Louizos & Welling 2017,
arXiv:1703.01961, eq. 15). The predictive std combines the spread of the Monte Carlo means
(epistemic) with the mean predicted noise variance (aleatoric). The MNF network's Monte Carlo
samples come from `tfp_mnf.evaluate.predictive_samples`, which tiles the samples of a batch
into the rows of one forward pass (every row of an MNF layer is an independent sample).

1. Held-out split of the band-gap data (--data_path, the seed's CSV with `Composition`,
   target `Eg (eV)` and numeric features) or scikit-learn's diabetes data by default:
   prints RMSE, NLL and coverage of the 95% predictive interval, in the target's units.
2. A 1-D toy problem (two clusters of sin(x) + noise): regression_band.png shows the
   predictive band of each model on a grid reaching beyond the data.

Example:

  python examples/regression.py --data_path=../shared/data/bandgaps/bandgaps.csv \
      --model_dir=/tmp/regression
"""

import json
import os
import sys

import mnf_flags
import numpy as np
import tensorflow as tf
import tf_keras
from absl import app, flags

from tfp_mnf import data, evaluate, plotting
from tfp_mnf.models import MNFMLP

HIDDEN_UNITS = (100, 50, 10)
MIN_NOISE_STD = 1e-3

flags.DEFINE_string("data_path", None, "Band-gap CSV; None: scikit-learn diabetes data.")
flags.DEFINE_float("test_fraction", 0.2, "Held-out fraction.")
flags.DEFINE_integer("num_train", None, "Use only the first N training rows.")
flags.DEFINE_integer("epochs", 200, "Training epochs on the tabular data.")
flags.DEFINE_integer("toy_epochs", 1000, "Training epochs on the 1-D toy data.")
flags.DEFINE_integer("toy_points", 40, "Points of the 1-D toy data.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
mnf_flags.define_mnf_flags()
flags.adopt_module_key_flags(mnf_flags)
flags.DEFINE_integer("num_monte_carlo", 50, "Posterior samples per test input.")
flags.DEFINE_integer("eval_batch_size", 500, "Rows (samples x inputs) per Monte Carlo pass.")
flags.DEFINE_float("coverage_level", 0.95, "Level of the central predictive interval.")
flags.DEFINE_string("model_dir", "/tmp/regression", "Where metrics and the figure go.")
flags.DEFINE_integer("seed", 0, "Random seed.")

FLAGS = flags.FLAGS


def gaussian_loss(y_true, outputs):
    """Mean Gaussian NLL of y under N(outputs[:, 0], softplus(outputs[:, 1])^2)."""
    mean, scale = split_outputs(outputs)
    y_true = tf.reshape(tf.cast(y_true, mean.dtype), tf.shape(mean))
    return tf.reduce_mean(
        0.5 * np.log(2 * np.pi) + tf.math.log(scale) + 0.5 * tf.square((y_true - mean) / scale)
    )


def split_outputs(outputs):
    """(mean, noise std) from the network's two output units."""
    return outputs[..., 0], tf.nn.softplus(outputs[..., 1]) + MIN_NOISE_STD


def build_models(input_dim, num_train):
    """Model name -> uncompiled model with two outputs (mean, raw noise scale)."""
    mnf_kwargs = mnf_flags.mnf_layer_kwargs()
    plain = tf_keras.Sequential(
        [tf_keras.Input(shape=(input_dim,))]
        + [tf_keras.layers.Dense(units, activation="relu") for units in HIDDEN_UNITS]
        + [tf_keras.layers.Dense(2)],
        name="mlp",
    )
    mnf = MNFMLP(
        input_dim,
        HIDDEN_UNITS,
        output_units=2,
        kl_scale=1.0 / num_train,
        seed=FLAGS.seed,
        **mnf_kwargs,
    )
    return {"mnf_mlp": (mnf, True), "mlp": (plain, False)}


def fit_and_predict(model, stochastic, x_train, y_train, x_eval, epochs):
    """Trains a model; returns its predictive (mean, std) at `x_eval`."""
    model.compile(tf_keras.optimizers.Adam(FLAGS.learning_rate), loss=gaussian_loss)
    model.fit(x_train, y_train, batch_size=FLAGS.batch_size, epochs=epochs, verbose=0)
    num_samples = FLAGS.num_monte_carlo if stochastic else 1
    outputs = evaluate.predictive_samples(model, x_eval, num_samples, FLAGS.eval_batch_size)
    means, noise_std = (t.numpy() for t in split_outputs(tf.constant(outputs)))
    noise_std = np.sqrt(np.mean(noise_std**2, axis=0))
    return evaluate.regression_predictive(means, noise_std)


def tabular_metrics(split, mean, std):
    """RMSE, NLL and interval coverage in the target's original units."""
    mean = mean * split.y_std + split.y_mean
    std = std * split.y_std
    targets = split.y_test * split.y_std + split.y_mean
    return {
        "rmse": evaluate.rmse(mean, targets),
        "nll": evaluate.gaussian_nll(mean, std, targets),
        "coverage": evaluate.interval_coverage(mean, std, targets, FLAGS.coverage_level),
    }


def main(argv):
    del argv
    os.makedirs(FLAGS.model_dir, exist_ok=True)
    tf_keras.utils.set_random_seed(FLAGS.seed)
    split = data.load_regression(FLAGS.data_path, FLAGS.test_fraction, FLAGS.seed)
    x_train, y_train = split.x_train[: FLAGS.num_train], split.y_train[: FLAGS.num_train]
    results = {}
    for name, (model, stochastic) in build_models(x_train.shape[1], len(x_train)).items():
        mean, std = fit_and_predict(model, stochastic, x_train, y_train, split.x_test, FLAGS.epochs)
        results[name] = tabular_metrics(split, mean, std)

    x_toy, y_toy = data.toy_regression_1d(FLAGS.toy_points, seed=FLAGS.seed)
    grid = np.linspace(-6.0, 6.0, 200, dtype=np.float32)[:, None]
    bands = {
        name: fit_and_predict(model, stochastic, x_toy, y_toy, grid, FLAGS.toy_epochs)
        for name, (model, stochastic) in build_models(1, len(x_toy)).items()
    }
    figure = os.path.join(FLAGS.model_dir, "regression_band.png")
    plotting.plot_regression_band(x_toy, y_toy, grid, bands, figure)
    for name, (_, std) in bands.items():
        inside = np.abs(grid[:, 0]) <= 3.0
        results[name]["toy_std_in_data_range"] = float(std[inside].mean())
        results[name]["toy_std_outside"] = float(std[~inside].mean())

    flag_values = {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.argv[0])}
    with open(os.path.join(FLAGS.model_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"flags": flag_values, "results": results, "figure": figure}, f, indent=2)
    data_name = FLAGS.data_path or "sklearn diabetes"
    print(f"{data_name}: {len(x_train)} train / {len(split.y_test)} test rows")
    columns = ["rmse", "nll", "coverage", "toy_std_in_data_range", "toy_std_outside"]
    print(f"{'model':<10}" + "".join(f"{c:>24}" for c in columns))
    for name, metrics in results.items():
        print(f"{name:<10}" + "".join(f"{metrics[c]:>24.4f}" for c in columns))


if __name__ == "__main__":
    app.run(main)
