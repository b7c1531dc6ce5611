r"""Trains an MNF LeNet and a plain LeNet on MNIST and compares their uncertainty.

Reproduces the demonstrations of Louizos & Welling (2017), "Multiplicative Normalizing
Flows for Variational Bayesian Neural Networks", arXiv:1703.01961, section 4: test
accuracy, NLL and calibration, predictive entropy on notMNIST (out of distribution), and
the rotated-digit figure of the TF-MNF seed.

Writes to --model_dir: metrics.json, the model weights and their architecture
(config.json, reused by --eval_only), rotated_digit_<model>.png and entropy.png.

Example, with the offline copies of the data (8k/2k MNIST split, notMNIST):

  python examples/mnist_lenet.py --data_dir=../shared/data/mnist-small \
      --ood_dir=../shared/data/notmnist --model_dir=/tmp/mnist_lenet

Without --data_dir MNIST comes from the Keras download. --fake_data trains on synthetic
images (no files) for a smoke test.
"""

import json
import os
import sys
import time

import mnf_flags
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from absl import app, flags, logging

from tfp_mnf import data, evaluate, plotting
from tfp_mnf.layers import mnf_layers
from tfp_mnf.models import FlipoutLeNet, LeNet, MNFLeNet

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
flags.DEFINE_bool("compare_flipout", False, "Also train a tfp.layers Flipout LeNet.")
flags.DEFINE_string("model_dir", "/tmp/mnist_lenet", "Where weights, metrics and figures go.")
flags.DEFINE_bool("eval_only", False, "Load the models saved in --model_dir instead of training.")
flags.DEFINE_integer("seed", 0, "Random seed.")

FLAGS = flags.FLAGS

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


class KLAnnealing(tf_keras.callbacks.Callback):
    """Raises the KL weight linearly from 0 to 1 over `num_steps` training batches."""

    def __init__(self, weight: tf.Variable, num_steps: int) -> None:
        super().__init__()
        self.weight = weight
        self.num_steps = max(num_steps, 1)
        self.step = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.weight.assign(min(1.0, self.step / self.num_steps))
        self.step += 1


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


def build_models(architecture, input_shape, num_train):
    """Model name -> (uncompiled model, whether it is stochastic)."""
    mnf_kwargs = {k: v for k, v in architecture.items() if v is not None}
    kl_scale = 1.0 / num_train
    models = {
        "mnf_lenet": (
            MNFLeNet(input_shape, 10, kl_scale=kl_scale, seed=FLAGS.seed, **mnf_kwargs),
            True,
        ),
        "lenet": (LeNet(input_shape, 10), False),
    }
    if FLAGS.compare_flipout:
        models["flipout_lenet"] = (FlipoutLeNet(input_shape, 10, kl_scale=kl_scale), True)
    return models


def train(name, model, x, y):
    """Fits one model (KL warm-up for MNF layers when asked); returns the wall time."""
    callbacks = []
    layers = mnf_layers(model)
    if FLAGS.kl_anneal_epochs > 0 and layers:
        weight = tf.Variable(0.0, trainable=False, name="kl_weight")
        for layer in layers:
            scale = layer.kernel_divergence_fn.scale
            layer.kernel_divergence_fn = layer.bias_divergence_fn = AnnealedKL(weight, scale)
        steps = int(FLAGS.kl_anneal_epochs * np.ceil(len(x) / FLAGS.batch_size))
        callbacks.append(KLAnnealing(weight, steps))
    model.compile(
        tf_keras.optimizers.Adam(FLAGS.learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
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


def weights_path(name):
    return os.path.join(FLAGS.model_dir, name, "weights")


def score(model, stochastic, x_test, y_test, x_ood):
    """Metrics dict and (in, out) predictive entropies of one model."""
    num_samples = FLAGS.num_monte_carlo if stochastic else 1
    samples = evaluate.predictive_probs(model, x_test, num_samples, FLAGS.eval_batch_size)
    metrics = evaluate.classification_metrics(samples, y_test, FLAGS.num_bins)
    entropy_in = evaluate.predictive_entropy(samples)
    entropy_out = None
    if x_ood is not None:
        entropy_out = evaluate.predictive_entropy(
            evaluate.predictive_probs(model, x_ood, num_samples, FLAGS.eval_batch_size)
        )
        metrics["ood_mean_entropy"] = float(entropy_out.mean())
        metrics["ood_auroc"] = evaluate.auroc(entropy_in, entropy_out)
    return metrics, entropy_in, entropy_out


def rotated_digit_figure(name, model, stochastic, x_test, y_test):
    """The seed's figure: a test-set 9 rotated 0..160 degrees, class probabilities per angle."""
    matches = np.flatnonzero(y_test == ROTATED_DIGIT)
    image = x_test[matches[0] if matches.size else 0]
    rotated = evaluate.rotate_images(image, ROTATION_ANGLES)
    num_samples = FLAGS.num_monte_carlo if stochastic else 1
    samples = evaluate.predictive_probs(model, rotated, num_samples)  # [S, A, C]
    path = os.path.join(FLAGS.model_dir, f"rotated_digit_{name}.png")
    plotting.plot_rotated_digit(rotated, ROTATION_ANGLES, samples.transpose(1, 0, 2), path, name)
    return path


def script_flags():
    """This script's flag values (not absl's own)."""
    return {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.argv[0])}


def print_table(results):
    columns = ["accuracy", "nll", "ece", "mean_entropy", "ood_mean_entropy", "ood_auroc"]
    header = f"{'model':<15}" + "".join(f"{c:>18}" for c in columns)
    lines = [header, "-" * len(header)]
    for name, metrics in results.items():
        cells = "".join(f"{metrics[c]:>18.4f}" if c in metrics else f"{'-':>18}" for c in columns)
        lines.append(f"{name:<15}{cells}")
    print("\n".join(lines))


def main(argv):
    del argv
    tf_keras.utils.set_random_seed(FLAGS.seed)
    os.makedirs(FLAGS.model_dir, exist_ok=True)
    x_train, y_train, x_test, y_test, x_ood = load_data()
    config_path = os.path.join(FLAGS.model_dir, "config.json")
    if FLAGS.eval_only:
        with open(config_path, encoding="utf-8") as f:
            saved = json.load(f)
        architecture, names = saved["architecture"], saved["models"]
        num_train = saved["num_train"]
    else:
        architecture = mnf_flags.mnf_layer_kwargs()
        names, num_train = None, len(x_train)
    models = build_models(architecture, x_train.shape[1:], num_train)
    if names is not None:
        models = {name: models[name] for name in names if name in models}

    results, entropies = {}, ({}, {})
    for name, (model, stochastic) in models.items():
        if FLAGS.eval_only:
            model.load_weights(weights_path(name)).expect_partial()
            train_seconds = None
        else:
            train_seconds = train(name, model, x_train, y_train)
            model.save_weights(weights_path(name))
        metrics, entropy_in, entropy_out = score(model, stochastic, x_test, y_test, x_ood)
        metrics["train_seconds"] = train_seconds
        metrics["rotated_digit_figure"] = rotated_digit_figure(
            name, model, stochastic, x_test, y_test
        )
        results[name] = metrics
        entropies[0][name], entropies[1][name] = entropy_in, entropy_out

    if not FLAGS.eval_only:
        with open(config_path, "w", encoding="utf-8") as f:
            json.dump(
                {"architecture": architecture, "models": list(models), "num_train": num_train},
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
