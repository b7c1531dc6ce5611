r"""Trains an MNF LeNet and baselines on MNIST and compares their uncertainty.

Reproduces the demonstrations of Louizos & Welling (2017), "Multiplicative Normalizing
Flows for Variational Bayesian Neural Networks", arXiv:1703.01961, section 4: test
accuracy, NLL and calibration, predictive entropy on notMNIST (out of distribution), and
the rotated-digit figure of the TF-MNF seed. The baselines (`--baselines`, any of
`plain`, `flipout`, `dropout`, `ensemble`; default `plain`) are the plain LeNet, the
tfp.layers Flipout LeNet, the MC-dropout LeNet (`--dropout_rate` before each Dense, on at
prediction) and a deep ensemble of `--ensemble_size` plain LeNets, each member trained for
`--epochs` on its own and scored as the exact mixture of its members.

`--keras` picks the front-end: `2` (the default) builds the models of `tfp_mnf.models` with
the tf_keras layers of `tfp_mnf.layers`, `3` those of `tfp_mnf.keras.models` with the
Keras 3 layers of `tfp_mnf.keras` (`import keras`), trained by Keras 3's `fit`. The flipout
baseline is built of `tfp.layers`, which exist for tf_keras only: `--keras=3` refuses it.

Writes to --model_dir: metrics.json, the model weights and their architecture
(config.json, reused by --eval_only), rotated_digit_<model>.png and entropy.png.

Example, with the offline copies of the data (8k/2k MNIST split, notMNIST):

  python examples/mnist_lenet.py --data_dir=../shared/data/mnist-small \
      --ood_dir=../shared/data/notmnist --model_dir=/tmp/mnist_lenet \
      --baselines=plain,dropout,ensemble,flipout

The same with the Keras 3 layers (no flipout baseline there):

  python examples/mnist_lenet.py --keras=3 --data_dir=../shared/data/mnist-small \
      --ood_dir=../shared/data/notmnist --model_dir=/tmp/mnist_lenet_keras3 \
      --baselines=plain,dropout,ensemble

Without --data_dir MNIST comes from the Keras download. --fake_data trains on synthetic
images (no files) for a smoke test.
"""

import itertools
import json
import os
import sys
import time

import keras
import mnf_flags
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from absl import app, flags, logging

import tfp_mnf.keras.models
import tfp_mnf.models
from tfp_mnf import data, evaluate, plotting
from tfp_mnf.layers import mnf_layers

flags.DEFINE_enum(
    "keras",
    "2",
    ["2", "3"],
    "Keras front-end: 2 = tf_keras (tfp_mnf.layers), 3 = Keras 3 (tfp_mnf.keras).",
)
flags.DEFINE_string("data_dir", None, "Folder of MNIST-format IDX files; None: Keras download.")
flags.DEFINE_enum("dataset", "mnist", ["mnist", "fashion_mnist"], "In-distribution data set.")
flags.DEFINE_string("ood_dir", None, "Folder of notMNIST t10k IDX files (out of distribution).")
flags.DEFINE_bool("fake_data", False, "Train on synthetic images instead (smoke test).")
flags.DEFINE_integer("num_train", None, "Use only the first N training images.")
flags.DEFINE_integer("num_test", None, "Use only the first N test images.")
flags.DEFINE_integer("epochs", 20, "Training epochs.")
flags.DEFINE_integer("batch_size", 100, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_float("kl_anneal_epochs", 0.0, "Epochs of linear KL warm-up from 0 to 1 (0: none).")
mnf_flags.define_mnf_flags()
flags.adopt_module_key_flags(mnf_flags)
flags.DEFINE_integer("num_monte_carlo", 20, "Posterior samples per test input.")
flags.DEFINE_integer("num_bins", 15, "Bins of the expected calibration error.")
flags.DEFINE_integer("eval_batch_size", 1000, "Inputs per Monte Carlo forward pass.")
flags.DEFINE_list(
    "baselines",
    ["plain"],
    "Models trained and scored next to MNF-LeNet: some of plain, flipout, dropout, ensemble.",
)
flags.DEFINE_integer("ensemble_size", 5, "Members of the deep-ensemble baseline.", lower_bound=1)
flags.DEFINE_float("dropout_rate", 0.5, "Dropout rate of the MC-dropout baseline.")
flags.DEFINE_string("model_dir", "/tmp/mnist_lenet", "Where weights, metrics and figures go.")
flags.DEFINE_bool("eval_only", False, "Load the models saved in --model_dir instead of training.")
flags.DEFINE_integer("seed", 0, "Random seed.")

FLAGS = flags.FLAGS

# --baselines entry -> model name (results, weights folder).
BASELINES = {
    "plain": "lenet",
    "flipout": "flipout_lenet",
    "dropout": "mc_dropout_lenet",
    "ensemble": "deep_ensemble_lenet",
}
flags.register_validator(
    "baselines",
    lambda values: set(values) <= set(BASELINES) and len(set(values)) == len(values),
    message=f"--baselines must be distinct entries of {sorted(BASELINES)}.",
)
flags.register_multi_flags_validator(
    ["keras", "baselines"],
    lambda values: values["keras"] == "2" or "flipout" not in values["baselines"],
    message="--baselines=flipout needs tfp.layers, which exist for tf_keras only: use "
    "--keras=2 for it, or leave flipout out of --baselines under --keras=3.",
)

# --keras -> (the Keras module, the ready-made models of that front-end).
FRONT_ENDS = {"2": (tf_keras, tfp_mnf.models), "3": (keras, tfp_mnf.keras.models)}

ROTATION_ANGLES = np.arange(0, 180, 20)
ROTATED_DIGIT = 9


class AnnealedKL:
    """Divergence function `weight * scale * KL(q || p)` with a `tf.Variable` weight."""

    def __init__(self, weight: tf.Variable, scale: float) -> None:
        self.weight = weight
        self.scale = scale

    def __call__(self, q, p, _):
        kl = tfp.distributions.kl_divergence(q, p)
        return tf.cast(self.weight * self.scale, kl.dtype) * kl


def kl_annealing(keras_module, weight, num_steps):
    """A callback of `keras_module` that raises the KL weight linearly from 0 to 1 over
    `num_steps` training batches."""
    steps = itertools.count()
    num_steps = max(num_steps, 1)
    return keras_module.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: weight.assign(min(1.0, next(steps) / num_steps))
    )


def fake_images(num, seed):
    """Synthetic 28x28 'digits': a fixed random blob pattern per class plus noise."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(1234).random((10, 28, 28)) > 0.7
    labels = rng.integers(0, 10, num)
    images = 0.8 * templates[labels] + 0.2 * rng.random((num, 28, 28))
    return images[..., None].astype(np.float32), labels.astype(np.int64)


def load_data():
    """Returns (x_train, y_train, x_test, y_test, x_ood or None)."""
    if FLAGS.fake_data:
        train = fake_images(FLAGS.num_train or 1000, FLAGS.seed)
        test = fake_images(FLAGS.num_test or 200, FLAGS.seed + 1)
    else:
        train = data.load_image_dataset(FLAGS.dataset, "train", FLAGS.data_dir)
        test = data.load_image_dataset(FLAGS.dataset, "test", FLAGS.data_dir)
    (x_train, y_train), (x_test, y_test) = train, test
    x_test, y_test = x_test[: FLAGS.num_test], y_test[: FLAGS.num_test]
    x_ood = None
    if FLAGS.ood_dir:
        # As many out-of-distribution images as test images: a balanced AUROC.
        x_ood = data.load_image_dataset("notmnist", "test", FLAGS.ood_dir)[0][: len(x_test)]
    return x_train[: FLAGS.num_train], y_train[: FLAGS.num_train], x_test, y_test, x_ood


def build_models(models, names, architecture, input_shape, num_train, ensemble_size, dropout_rate):
    """Model name (`mnf_lenet` or a value of `BASELINES`) -> uncompiled model, built with
    the ready-made models of one front-end (`models`: `tfp_mnf.models` or
    `tfp_mnf.keras.models`)."""
    mnf_kwargs = {k: v for k, v in architecture.items() if v is not None}
    kl_scale = 1.0 / num_train
    builders = {
        "mnf_lenet": lambda: models.MNFLeNet(
            input_shape, 10, kl_scale=kl_scale, seed=FLAGS.seed, **mnf_kwargs
        ),
        "lenet": lambda: models.LeNet(input_shape, 10),
        "flipout_lenet": lambda: models.FlipoutLeNet(input_shape, 10, kl_scale=kl_scale),
        "mc_dropout_lenet": lambda: models.MCDropoutLeNet(
            input_shape, 10, dropout_rate=dropout_rate, seed=FLAGS.seed
        ),
        "deep_ensemble_lenet": lambda: models.DeepEnsembleLeNet(
            ensemble_size, input_shape, 10, seed=FLAGS.seed
        ),
    }
    return {name: builders[name]() for name in names}


def is_ensemble(model):
    return isinstance(model, tfp_mnf.models.DeepEnsembleLogic)


def train(keras_module, name, model, x, y):
    """Fits one model, a deep ensemble member by member; returns the wall time."""
    if is_ensemble(model):
        return sum(
            fit(keras_module, f"{name} member {k}", member, x, y)
            for k, member in enumerate(model.members)
        )
    return fit(keras_module, name, model, x, y)


def fit(keras_module, name, model, x, y):
    """Fits one model (KL warm-up for MNF layers when asked) with `keras_module`'s Adam;
    returns the wall time."""
    callbacks = []
    layers = mnf_layers(model)
    if FLAGS.kl_anneal_epochs > 0 and layers:
        weight = tf.Variable(0.0, trainable=False, name="kl_weight")
        for layer in layers:
            scale = layer.kernel_divergence_fn.scale
            layer.kernel_divergence_fn = layer.bias_divergence_fn = AnnealedKL(weight, scale)
        steps = int(FLAGS.kl_anneal_epochs * np.ceil(len(x) / FLAGS.batch_size))
        callbacks.append(kl_annealing(keras_module, weight, steps))
    model.compile(
        keras_module.optimizers.Adam(FLAGS.learning_rate),
        loss=keras_module.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.time()
    model.fit(
        x,
        y,
        batch_size=FLAGS.batch_size,
        epochs=FLAGS.epochs,
        callbacks=callbacks,
        verbose=2,
    )
    seconds = time.time() - start
    logging.info("%s trained in %.1f s", name, seconds)
    return seconds


def weights_path(keras_module, name):
    """A tf_keras TensorFlow checkpoint, or a Keras 3 `.weights.h5` file (its only format)."""
    folder = os.path.join(FLAGS.model_dir, name)
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, "weights" if keras_module is tf_keras else "model.weights.h5")


def prob_samples(name, model, x):
    """Softmax samples `[S, N, C]` of model `name` on `x`.

    The ensemble's members (its exact mixture), one pass of the plain LeNet, or
    --num_monte_carlo passes of a stochastic model.
    """
    if is_ensemble(model):
        return evaluate.softmax(model.member_logits(x, FLAGS.eval_batch_size))
    num_samples = 1 if name == "lenet" else FLAGS.num_monte_carlo
    return evaluate.predictive_probs(model, x, num_samples, FLAGS.eval_batch_size)


def score(name, model, x_test, y_test, x_ood):
    """Metrics dict and (in, out) predictive entropies of one model."""
    samples = prob_samples(name, model, x_test)
    metrics = evaluate.classification_metrics(samples, y_test, FLAGS.num_bins)
    metrics["brier"] = evaluate.brier_score(evaluate.mean_probs(samples), y_test)
    entropy_in = evaluate.predictive_entropy(samples)
    entropy_out = None
    if x_ood is not None:
        ood_samples = prob_samples(name, model, x_ood)
        entropy_out = evaluate.predictive_entropy(ood_samples)
        metrics["ood_mean_entropy"] = float(entropy_out.mean())
        metrics["ood_auroc"] = evaluate.auroc(entropy_in, entropy_out)
        if samples.shape[0] > 1:
            metrics["ood_auroc_mutual_information"] = evaluate.auroc(
                evaluate.mutual_information(samples), evaluate.mutual_information(ood_samples)
            )
    return metrics, entropy_in, entropy_out


def rotated_digit_figure(name, model, x_test, y_test):
    """The seed's figure: a test-set 9 rotated 0..160 degrees, class probabilities per angle."""
    matches = np.flatnonzero(y_test == ROTATED_DIGIT)
    image = x_test[matches[0] if matches.size else 0]
    rotated = evaluate.rotate_images(image, ROTATION_ANGLES)
    samples = prob_samples(name, model, rotated)  # [S, A, C]
    path = os.path.join(FLAGS.model_dir, f"rotated_digit_{name}.png")
    plotting.plot_rotated_digit(rotated, ROTATION_ANGLES, samples.transpose(1, 0, 2), path, name)
    return path


def script_flags():
    """This script's flag values (not absl's own)."""
    return {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.argv[0])}


def print_table(results):
    columns = [
        "accuracy",
        "nll",
        "ece",
        "brier",
        "mean_entropy",
        "ood_mean_entropy",
        "ood_auroc",
        "ood_auroc_mutual_information",
    ]
    widths = [max(10, len(c) + 2) for c in columns]
    header = f"{'model':<20}" + "".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))
    lines = [header, "-" * len(header)]
    for name, metrics in results.items():
        cells = "".join(
            f"{metrics[c]:>{w}.4f}" if c in metrics else f"{'-':>{w}}"
            for c, w in zip(columns, widths, strict=True)
        )
        lines.append(f"{name:<20}{cells}")
    print("\n".join(lines))


def main(argv):
    del argv
    os.makedirs(FLAGS.model_dir, exist_ok=True)
    config_path = os.path.join(FLAGS.model_dir, "config.json")
    saved = {}
    if FLAGS.eval_only:
        with open(config_path, encoding="utf-8") as f:
            saved = json.load(f)
    keras_module, front_end_models = FRONT_ENDS[saved.get("keras", FLAGS.keras)]
    keras_module.utils.set_random_seed(FLAGS.seed)
    x_train, y_train, x_test, y_test, x_ood = load_data()
    if FLAGS.eval_only:
        architecture, names = saved["architecture"], saved["models"]
        num_train = saved["num_train"]
        ensemble_size = saved.get("ensemble_size", FLAGS.ensemble_size)
        dropout_rate = saved.get("dropout_rate", FLAGS.dropout_rate)
    else:
        architecture = mnf_flags.mnf_layer_kwargs()
        names = ["mnf_lenet", *(BASELINES[baseline] for baseline in FLAGS.baselines)]
        num_train = len(x_train)
        ensemble_size, dropout_rate = FLAGS.ensemble_size, FLAGS.dropout_rate
    models = build_models(
        front_end_models,
        names,
        architecture,
        x_train.shape[1:],
        num_train,
        ensemble_size,
        dropout_rate,
    )

    results, entropies = {}, ({}, {})
    for name, model in models.items():
        path = weights_path(keras_module, name)
        if FLAGS.eval_only:
            status = model.load_weights(path)
            if keras_module is tf_keras:
                status.expect_partial()
            train_seconds = None
        else:
            train_seconds = train(keras_module, name, model, x_train, y_train)
            model.save_weights(path)
        metrics, entropy_in, entropy_out = score(name, model, x_test, y_test, x_ood)
        metrics["train_seconds"] = train_seconds
        metrics["rotated_digit_figure"] = rotated_digit_figure(name, model, x_test, y_test)
        results[name] = metrics
        entropies[0][name], entropies[1][name] = entropy_in, entropy_out

    if not FLAGS.eval_only:
        with open(config_path, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "keras": FLAGS.keras,
                    "architecture": architecture,
                    "models": list(models),
                    "num_train": num_train,
                    "ensemble_size": ensemble_size,
                    "dropout_rate": dropout_rate,
                },
                f,
                indent=2,
            )
    if x_ood is not None:
        plotting.plot_entropy(*entropies, os.path.join(FLAGS.model_dir, "entropy.png"))
    with open(os.path.join(FLAGS.model_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"flags": script_flags(), "results": results}, f, indent=2)
    print_table(results)


if __name__ == "__main__":
    app.run(main)
