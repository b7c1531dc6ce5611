r"""Trains a plain LeNet, converts it to MNF (`tfp_mnf.convert`), fine-tunes it, and compares.

The pipeline a practitioner with a trained deterministic model follows: train a plain LeNet
(`--pretrain_epochs`), convert its Dense/Conv layers to MNF layers whose means are the
trained weights (all of them, or only the last with `--convert_layers=last`) and whose
weight noise starts at sigma = delta * |w| (MOPED, `--moped_delta`), fine-tune for
`--finetune_epochs`. Compared, on the test set and against out-of-distribution inputs:
the plain LeNet, the converted model before and after fine-tuning, and an MNF LeNet trained
from scratch on the same budget (`--scratch_budget`: the pipeline's training seconds, plain
plus fine-tuning, or its number of epochs). Scores: accuracy, NLL, ECE, Brier score and OOD
AUROC by predictive entropy and by mutual information, with `--num_monte_carlo` posterior
samples. After every epoch each model's test NLL is recorded against its training seconds,
which gives the training time each needs to reach `--target_nll` (default: the higher of
the two MNF models' best NLLs, which both reach).

Writes to --output_dir: metrics.json (flags, results, curves, seconds to the target NLL),
convert_pretrained.png (test NLL and accuracy against training seconds) and entropy.png.

Example, with the offline copies of the data (8k/2k MNIST split, notMNIST):

  python examples/convert_pretrained.py --data_root=../shared/data \
      --output_dir=/tmp/convert_pretrained

--tiny runs in seconds without files: scikit-learn's 8x8 digits as 16x16 images, uniform
noise out of distribution, a small LeNet.

Reference for the conversion: Krishnan et al. (2020), "Specifying Weight Priors in Bayesian
Deep Neural Networks with Empirical Bayes" (MOPED), arXiv:1906.05323, and bayesian-torch's
`dnn_to_bnn`.
"""

import json
import os
import sys
import time

import mnf_flags
import numpy as np
import tf_keras
from absl import app, flags, logging

import tfp_mnf
from tfp_mnf import conversion, data, evaluate, models, plotting
from tfp_mnf.layers import posterior_mean

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string(
    "data_root",
    os.path.join(ROOT, "..", "shared", "data"),
    "Folder holding mnist-small/ (8k/2k MNIST IDX files) and notmnist/ (out of distribution).",
)
flags.DEFINE_bool("tiny", False, "sklearn digits 16x16, uniform-noise OOD, a small LeNet.")
flags.DEFINE_integer("num_train", None, "Use only the first N training images.")
flags.DEFINE_integer("num_test", None, "Use only the first N test (and OOD) images.")
flags.DEFINE_integer("pretrain_epochs", 10, "Epochs of the plain LeNet.", lower_bound=1)
flags.DEFINE_integer("finetune_epochs", 3, "Epochs of the converted model.", lower_bound=0)
flags.DEFINE_enum(
    "scratch_budget",
    "seconds",
    ["seconds", "epochs"],
    "Budget of MNF from scratch: the pipeline's training seconds (whole epochs, at least "
    "one) or its number of epochs (pretrain + finetune).",
)
flags.DEFINE_integer("batch_size", 100, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (plain and from-scratch MNF).")
flags.DEFINE_float(
    "finetune_learning_rate",
    3e-4,
    "Adam learning rate of the fine-tuning (1e-3 undid part of the trained weights' fit).",
)
flags.DEFINE_enum(
    "convert_layers", "all", ["all", "last"], "Convert every Dense/Conv2D, or the last only."
)
flags.DEFINE_float(
    "moped_delta",
    0.1,
    "MOPED: the converted weights' initial sigma = delta * |w|; 0: exp(--kernel_log_std_init).",
    lower_bound=0.0,
)
flags.DEFINE_bool("empirical_prior", False, "Priors N(w, v) at the trained weights w.")
mnf_flags.define_mnf_flags()
flags.adopt_module_key_flags(mnf_flags)
flags.DEFINE_float("target_nll", None, "Test NLL whose training time is reported.")
flags.DEFINE_integer("num_monte_carlo", 20, "Posterior samples per input for the final scores.")
flags.DEFINE_integer("curve_monte_carlo", 5, "Posterior samples per input after each epoch.")
flags.DEFINE_integer("num_bins", 15, "Bins of the expected calibration error.")
flags.DEFINE_integer("eval_batch_size", 1000, "Inputs per Monte Carlo forward pass.")
flags.DEFINE_string("output_dir", "/tmp/convert_pretrained", "Where metrics and figures go.")
flags.DEFINE_integer("seed", 0, "Random seed.")

FLAGS = flags.FLAGS

FULL_ARCHITECTURE = {"filters": (20, 50), "hidden_units": 500, "kernel_size": 5}
TINY_ARCHITECTURE = {"filters": (6, 12), "hidden_units": 32, "kernel_size": 3}
NUM_CLASSES = 10
COLUMNS = ("accuracy", "nll", "ece", "brier", "ood_auroc", "ood_auroc_mutual_information")


def load_data():
    """Returns (x_train, y_train, x_test, y_test, x_ood, description)."""
    if FLAGS.tiny:
        (x_train, y_train), (x_test, y_test) = data.load_digits_images(test_fraction=0.25)

        def upsample(images):
            return np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)

        x_train, x_test = upsample(x_train), upsample(x_test)
        x_ood = np.random.default_rng(FLAGS.seed).random(x_test.shape).astype(np.float32)
        description = "sklearn digits 16x16 (tiny), uniform noise out of distribution"
    else:
        mnist_dir = os.path.join(FLAGS.data_root, "mnist-small")
        ood_dir = os.path.join(FLAGS.data_root, "notmnist")
        for folder in (mnist_dir, ood_dir):
            if not os.path.isdir(folder):
                raise app.UsageError(
                    f"{folder} not found: give --data_root the folder holding mnist-small/ "
                    "and notmnist/, or run --tiny."
                )
        x_train, y_train = data.load_image_dataset("mnist", "train", mnist_dir)
        x_test, y_test = data.load_image_dataset("mnist", "test", mnist_dir)
        x_ood = data.load_image_dataset("notmnist", "test", ood_dir)[0]
        description = "MNIST (mnist-small 8k/2k), notMNIST out of distribution"
    x_test, y_test = x_test[: FLAGS.num_test], y_test[: FLAGS.num_test]
    x_ood = x_ood[: len(x_test)]  # as many OOD as test images: a balanced AUROC
    return (
        x_train[: FLAGS.num_train],
        y_train[: FLAGS.num_train],
        x_test,
        y_test,
        x_ood,
        description,
    )


def compile_model(model, learning_rate):
    model.compile(
        tf_keras.optimizers.Adam(learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def prob_samples(model, x, num_samples):
    """Softmax samples `[S, N, C]`: one pass of the plain LeNet, S of an MNF model."""
    stochastic = bool(tfp_mnf.layers.mnf_layers(model))
    return evaluate.predictive_probs(
        model, x, num_samples if stochastic else 1, FLAGS.eval_batch_size
    )


class Curve:
    """Test NLL and accuracy of one model after each epoch, against its training seconds."""

    def __init__(self, x_test, y_test, start_seconds=0.0):
        self.x_test, self.y_test = x_test, y_test
        self.seconds, self.nll, self.accuracy = [], [], []
        self.clock = start_seconds

    def record(self, model):
        probs = evaluate.mean_probs(prob_samples(model, self.x_test, FLAGS.curve_monte_carlo))
        self.seconds.append(self.clock)
        self.nll.append(evaluate.negative_log_likelihood(probs, self.y_test))
        self.accuracy.append(evaluate.accuracy(probs, self.y_test))

    def seconds_to(self, target):
        """The first recorded training seconds at which the NLL is <= target, or None."""
        for seconds, nll in zip(self.seconds, self.nll, strict=True):
            if nll <= target:
                return seconds
        return None

    def as_dict(self):
        return {"seconds": self.seconds, "nll": self.nll, "accuracy": self.accuracy}


def train(name, model, x, y, curve, epochs=None, seconds=None):
    """Fits `model` one epoch at a time, recording `curve` after each (evaluation untimed).

    Stops after `epochs` epochs, or once `seconds` of training have passed (at least one
    epoch). Returns the training seconds.
    """
    spent, epoch = 0.0, 0
    while (epochs is not None and epoch < epochs) or (
        seconds is not None and (epoch == 0 or spent < seconds)
    ):
        start = time.perf_counter()
        model.fit(x, y, batch_size=FLAGS.batch_size, epochs=1, verbose=0, shuffle=True)
        elapsed = time.perf_counter() - start
        spent += elapsed
        curve.clock += elapsed
        epoch += 1
        curve.record(model)
        logging.info("%s epoch %d: %.1f s, test NLL %.4f", name, epoch, spent, curve.nll[-1])
    return spent


def score(model, x_test, y_test, x_ood):
    """Metrics dict and (in, out) predictive entropies of one model."""
    samples = prob_samples(model, x_test, FLAGS.num_monte_carlo)
    ood_samples = prob_samples(model, x_ood, FLAGS.num_monte_carlo)
    metrics = evaluate.classification_metrics(samples, y_test, FLAGS.num_bins)
    metrics["brier"] = evaluate.brier_score(evaluate.mean_probs(samples), y_test)
    entropy_in = evaluate.predictive_entropy(samples)
    entropy_out = evaluate.predictive_entropy(ood_samples)
    metrics["ood_auroc"] = evaluate.auroc(entropy_in, entropy_out)
    if samples.shape[0] > 1:
        metrics["ood_auroc_mutual_information"] = evaluate.auroc(
            evaluate.mutual_information(samples), evaluate.mutual_information(ood_samples)
        )
    return metrics, entropy_in, entropy_out


def plot_curves(curves, target, path):
    """Test NLL and accuracy against training seconds, one line per model."""
    plt = plotting.plt
    fig, (ax_nll, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, curve in curves.items():
        ax_nll.plot(curve.seconds, curve.nll, "o-", markersize=3, label=name)
        ax_acc.plot(curve.seconds, curve.accuracy, "o-", markersize=3, label=name)
    ax_nll.axhline(target, color="gray", linestyle="--", linewidth=1, label="target NLL")
    ax_nll.set_yscale("log")
    ax_nll.set_xlabel("training seconds (the converted model's include the plain LeNet's)")
    ax_nll.set_ylabel("test NLL (nats)")
    ax_nll.legend(fontsize=7)
    ax_acc.set_xlabel("training seconds")
    ax_acc.set_ylabel("test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def print_table(results, seconds_to_target, target):
    widths = {c: max(10, len(c) + 2) for c in (*COLUMNS, "train_seconds")}
    header = f"{'model':<22}" + "".join(f"{c:>{w}}" for c, w in widths.items())
    lines = [header, "-" * len(header)]
    for name, metrics in results.items():
        cells = "".join(
            f"{metrics[c]:>{widths[c]}.4f}" if c in metrics else f"{'-':>{widths[c]}}"
            for c in COLUMNS
        )
        lines.append(f"{name:<22}{cells}{metrics['train_seconds']:>{widths['train_seconds']}.1f}")
    lines.append(f"\ntraining seconds to reach test NLL <= {target:.4f}:")
    for name, seconds in seconds_to_target.items():
        lines.append(f"  {name:<27}{'not reached' if seconds is None else f'{seconds:.1f}'}")
    print("\n".join(lines))


def script_flags():
    """This script's flag values (not absl's own)."""
    return {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.argv[0])}


def main(argv):
    del argv
    tf_keras.utils.set_random_seed(FLAGS.seed)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    x_train, y_train, x_test, y_test, x_ood, description = load_data()
    architecture = TINY_ARCHITECTURE if FLAGS.tiny else FULL_ARCHITECTURE
    input_shape = x_train.shape[1:]
    mnf_kwargs = mnf_flags.mnf_layer_kwargs()
    kl_scale = 1.0 / len(x_train)
    curves, results, entropies = {}, {}, ({}, {})

    def finish(name, model, train_seconds):
        metrics, entropy_in, entropy_out = score(model, x_test, y_test, x_ood)
        metrics["train_seconds"] = train_seconds
        results[name] = metrics
        entropies[0][name], entropies[1][name] = entropy_in, entropy_out

    plain = models.LeNet(input_shape, NUM_CLASSES, **architecture)
    compile_model(plain, FLAGS.learning_rate)
    curves["lenet"] = Curve(x_test, y_test)
    plain_seconds = train("lenet", plain, x_train, y_train, curves["lenet"], FLAGS.pretrain_epochs)
    finish("lenet", plain, plain_seconds)

    layers = conversion.last_layers(plain, 1) if FLAGS.convert_layers == "last" else None
    moped_delta = FLAGS.moped_delta or None
    converted = tfp_mnf.convert(
        plain,
        kl_scale=kl_scale,
        layers=layers,
        moped_delta=moped_delta,
        empirical_prior=FLAGS.empirical_prior,
        seed=FLAGS.seed,
        # With MOPED the initial sigma comes from the weights, not from the flag.
        **{
            k: v for k, v in mnf_kwargs.items() if moped_delta is None or k != "kernel_log_std_init"
        },
    )
    with posterior_mean(converted):
        mean_logits = converted.predict(x_test, batch_size=FLAGS.eval_batch_size, verbose=0)
    plain_logits = plain.predict(x_test, batch_size=FLAGS.eval_batch_size, verbose=0)
    max_abs_diff = float(np.abs(mean_logits - plain_logits).max())
    logging.info("posterior-mean logits of the converted model: max |diff| %.2e", max_abs_diff)
    finish("converted", converted, plain_seconds)
    compile_model(converted, FLAGS.finetune_learning_rate)
    curves["converted_finetuned"] = Curve(x_test, y_test, start_seconds=plain_seconds)
    curves["converted_finetuned"].record(converted)
    finetune_seconds = train(
        "converted",
        converted,
        x_train,
        y_train,
        curves["converted_finetuned"],
        FLAGS.finetune_epochs,
    )
    finish("converted_finetuned", converted, plain_seconds + finetune_seconds)

    scratch = models.MNFLeNet(
        input_shape, NUM_CLASSES, **architecture, kl_scale=kl_scale, seed=FLAGS.seed, **mnf_kwargs
    )
    compile_model(scratch, FLAGS.learning_rate)
    curves["mnf_scratch"] = Curve(x_test, y_test)
    budget = (
        dict(seconds=plain_seconds + finetune_seconds)
        if FLAGS.scratch_budget == "seconds"
        else dict(epochs=FLAGS.pretrain_epochs + FLAGS.finetune_epochs)
    )
    scratch_seconds = train(
        "mnf_scratch", scratch, x_train, y_train, curves["mnf_scratch"], **budget
    )
    finish("mnf_scratch", scratch, scratch_seconds)

    target = FLAGS.target_nll
    if target is None:
        target = max(min(curves[name].nll) for name in ("converted_finetuned", "mnf_scratch"))
    seconds_to_target = {name: curve.seconds_to(target) for name, curve in curves.items()}
    if seconds_to_target["converted_finetuned"] is not None:
        seconds_to_target["converted_finetuning_only"] = (
            seconds_to_target["converted_finetuned"] - plain_seconds
        )

    figure = plot_curves(curves, target, os.path.join(FLAGS.output_dir, "convert_pretrained.png"))
    plotting.plot_entropy(*entropies, os.path.join(FLAGS.output_dir, "entropy.png"))
    with open(os.path.join(FLAGS.output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "flags": script_flags(),
                "data": description,
                "num_train": len(x_train),
                "results": results,
                "posterior_mean_max_abs_diff": max_abs_diff,
                "target_nll": target,
                "seconds_to_target_nll": seconds_to_target,
                "curves": {name: curve.as_dict() for name, curve in curves.items()},
                "figure": figure,
            },
            f,
            indent=2,
        )
    print(f"{description}; {len(x_train)} training images")
    print_table(results, seconds_to_target, target)


if __name__ == "__main__":
    app.run(main)
