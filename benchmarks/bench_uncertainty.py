"""Uncertainty at an equal budget: MNF-LeNet against the peers and the cheap baselines (issue 16).

One protocol for every model, on the same machine in one run:
- models (`--models`): `mnf` (`MNFLeNet`, library defaults plus `--mnf_kwargs`), `flipout`
  (`FlipoutLeNet`, tfp.layers), `dropout` (`MCDropoutLeNet`, p = 0.5 before each Dense, on
  at prediction), `ensemble` (`DeepEnsembleLeNet` of `--ensemble_size` plain LeNets) and
  `plain` (`LeNet`); all LeNet 20-50-500-10;
- data (`--dataset`): `mnist-small` (8k train / 2k test digits of `<data_root>/mnist-small`,
  notMNIST letters of `<data_root>/notmnist` as out of distribution) or `fashion` (full
  Fashion-MNIST 60k / 10k from Debian's dataset-fashion-mnist, the 10k MNIST test digits of
  `<data_root>/mnist` out of distribution); as many out-of-distribution images as test images;
- training: `model.fit`, Adam 1e-3 (`tf_keras.optimizers.Adam(1e-3)`, what `compile("adam")`
  gives), batch 128, loss = NLL + KL / N (the Bayesian layers' KLs scaled by 1 / N), for an
  equal wall-clock budget (`--budget_seconds`, default 120 s for mnist-small and 240 s for
  fashion; the clock starts after the first step, so tracing is not charged, and training
  stops after the step that spends it; epochs are counted fractionally, steps / steps per
  epoch) or for equal epochs (`--epochs`). The ensemble shares the budget: each member
  trains for budget / K seconds, or for the same `--epochs`; its epochs are per member;
- evaluation: `--test_samples` (20) Monte Carlo forward passes per test image through
  `tfp_mnf.evaluate.predictive_probs` (`training=False`; the plain LeNet: one pass; the
  ensemble: its K members, `DeepEnsembleLeNet.member_logits`, the exact mixture), then
  accuracy, NLL, ECE (15 bins), Brier score of the predictive mean, and the out-of-distribution
  AUROC by predictive entropy and by mutual information (none for the plain LeNet, whose
  mutual information is 0);
- seeds (`--seeds`): each seed reseeds everything (`tf_keras.utils.set_random_seed`) before a
  model is built; runs go seed by seed, every model within a seed.

Prints the CPU model and its AVX2 / AVX-512 flags, then a markdown table, each cell the mean
± sample standard deviation over the seeds, and writes the JSON (`--output`, rewritten
after every run: machine, configuration, per-seed runs, summary).

`--tiny` runs the same protocol in seconds without files: scikit-learn's 8x8 digits, each
pixel repeated 2x2 into 16x16 images, uniform-noise images as out of distribution, LeNets
6-12-32-10 with 3x3 kernels, and 3 epochs unless `--epochs` / `--budget_seconds` says otherwise.

Usage:
  python benchmarks/bench_uncertainty.py --dataset mnist-small --budget_seconds 120 \
      --seeds 0,1,2
  python benchmarks/bench_uncertainty.py --dataset fashion --budget_seconds 240 --seeds 0,1,2
  python benchmarks/bench_uncertainty.py --dataset fashion --epochs 10 \
      --models mnf,dropout --mnf_kwargs '{"kernel_log_std_init": -5}'
  python benchmarks/bench_uncertainty.py --tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time

import numpy as np
import tensorflow as tf
import tf_keras

import tfp_mnf
from tfp_mnf import data, evaluate, models, ops
from tfp_mnf.layers import DenseMNF

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA_ROOT = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
MODELS = ("mnf", "flipout", "dropout", "ensemble", "plain")
DATASETS = ("mnist-small", "fashion")
DEFAULT_BUDGET_SECONDS = {"mnist-small": 120.0, "fashion": 240.0}
FULL_ARCHITECTURE = {"filters": (20, 50), "hidden_units": 500, "kernel_size": 5}
TINY_ARCHITECTURE = {"filters": (6, 12), "hidden_units": 32, "kernel_size": 3}
TINY_EPOCHS = 3
NUM_CLASSES = 10
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
DROPOUT_RATE = 0.5
ECE_BINS = 15
# MNF layer arguments that MNFLeNet sets itself (the KL scale, the seeds, the activations).
_MNF_FIXED_ARGS = ("activation", "kernel_divergence_fn", "bias_divergence_fn", "seed")
# (JSON key, column header, digits) of the table.
COLUMNS = (
    ("epochs", "epochs", 1),
    ("train_seconds", "train s", 0),
    ("accuracy", "accuracy", 4),
    ("nll", "NLL", 4),
    ("ece", "ECE", 4),
    ("brier", "Brier", 4),
    ("auroc_entropy", "AUROC (entropy)", 4),
    ("auroc_mi", "AUROC (MI)", 4),
)


@dataclasses.dataclass(frozen=True)
class Split:
    """Training and test images with labels, and out-of-distribution test images."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_ood: np.ndarray
    description: str


def _require_dir(path: str, what: str, flag: str) -> None:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} not found: {path} (set {flag}).")


def load_split(dataset: str, data_root: str, fashion_dir: str | None = None) -> Split:
    """The in-distribution train / test sets and the out-of-distribution images of `dataset`.

    Args:
      dataset: "mnist-small" or "fashion".
      data_root: folder holding `mnist-small/`, `notmnist/` and `mnist/` (IDX files).
      fashion_dir: Fashion-MNIST IDX folder; None: Debian's dataset-fashion-mnist folder.

    Returns:
      A `Split` with as many out-of-distribution images as test images.

    Raises:
      ValueError: on an unknown `dataset`.
      FileNotFoundError: if a folder or IDX file is missing (the message names it).
    """
    if dataset == "mnist-small":
        train_dir = os.path.join(data_root, "mnist-small")
        ood_dir = os.path.join(data_root, "notmnist")
        _require_dir(train_dir, "8k/2k MNIST split", "--data_root")
        _require_dir(ood_dir, "notMNIST", "--data_root")
        train = data.load_image_dataset("mnist", "train", train_dir)
        test = data.load_image_dataset("mnist", "test", train_dir)
        ood = data.load_image_dataset("notmnist", "test", ood_dir)[0]
        description = "MNIST 8k/2k (mnist-small), notMNIST out of distribution"
    elif dataset == "fashion":
        ood_dir = os.path.join(data_root, "mnist")
        _require_dir(ood_dir, "MNIST test digits", "--data_root")
        if fashion_dir is not None:
            _require_dir(fashion_dir, "Fashion-MNIST", "--fashion_dir")
        train = data.load_image_dataset("fashion_mnist", "train", fashion_dir)
        test = data.load_image_dataset("fashion_mnist", "test", fashion_dir)
        ood = data.load_image_dataset("mnist", "test", ood_dir)[0]
        description = "Fashion-MNIST 60k/10k, MNIST test digits out of distribution"
    else:
        raise ValueError(f"`dataset` must be one of {DATASETS}, got {dataset!r}.")
    (x_train, y_train), (x_test, y_test) = train, test
    return Split(x_train, y_train, x_test, y_test, ood[: len(x_test)], description)


def tiny_split() -> Split:
    """sklearn's digits as 16x16 images (pixels repeated 2x2), uniform noise as OOD."""
    (x_train, y_train), (x_test, y_test) = data.load_digits_images(test_fraction=0.25, seed=0)

    def upsample(images: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)

    x_test = upsample(x_test)
    x_ood = np.random.default_rng(0).random(x_test.shape).astype(np.float32)
    description = "sklearn digits 16x16 (tiny), uniform noise out of distribution"
    return Split(upsample(x_train), y_train, x_test, y_test, x_ood, description)


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    num_train: int,
    seed: int,
    architecture: dict,
    mnf_kwargs: dict,
    ensemble_size: int,
) -> tf_keras.Model:
    """A fresh, uncompiled model `name` (one of `MODELS`) returning logits."""
    kl_scale = 1.0 / num_train
    if name == "mnf":
        return models.MNFLeNet(
            input_shape, NUM_CLASSES, **architecture, kl_scale=kl_scale, seed=seed, **mnf_kwargs
        )
    if name == "flipout":
        return models.FlipoutLeNet(input_shape, NUM_CLASSES, kl_scale=kl_scale, **architecture)
    if name == "dropout":
        return models.MCDropoutLeNet(
            input_shape, NUM_CLASSES, **architecture, dropout_rate=DROPOUT_RATE, seed=seed
        )
    if name == "ensemble":
        return models.DeepEnsembleLeNet(
            ensemble_size, input_shape, NUM_CLASSES, **architecture, seed=seed
        )
    if name == "plain":
        return models.LeNet(input_shape, NUM_CLASSES, **architecture)
    raise ValueError(f"`name` must be one of {MODELS}, got {name!r}.")


class Budget(tf_keras.callbacks.Callback):
    """Counts `fit`'s steps and stops it once `seconds` of wall time (if given) have passed.

    The clock starts when the first step ends, so tracing the training step (its first call)
    is not charged to the budget; it is kept in `first_step_seconds`. The step that crosses
    the budget completes.
    """

    def __init__(self, seconds: float | None) -> None:
        super().__init__()
        self.seconds = seconds
        self.steps = 0
        self.start = 0.0
        self.first_step_seconds = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.steps += 1
        now = time.perf_counter()
        if self.steps == 1:
            self.first_step_seconds, self.start = now - self.start, now
        elif self.seconds is not None and now - self.start >= self.seconds:
            self.model.stop_training = True


def fit(
    model: tf_keras.Model,
    split: Split,
    budget_seconds: float | None,
    epochs: int | None,
    batch_size: int,
    num_train: int | None = None,
) -> dict:
    """Trains `model` (NLL + its losses, Adam 1e-3) for the budget or the epochs.

    `num_train`, when given, trains on the first `num_train` training images only.

    Returns:
      steps, fractional epochs, wall seconds of `fit` (first step included) and of its first
      step, and the last epoch's mean loss.
    """
    model.compile(
        tf_keras.optimizers.Adam(LEARNING_RATE),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    budget = Budget(budget_seconds)
    start = time.perf_counter()
    history = model.fit(
        split.x_train[:num_train],
        split.y_train[:num_train],
        batch_size=batch_size,
        # With a budget, as many epochs as it allows: the callback stops the run.
        epochs=epochs if epochs is not None else 10**9,
        callbacks=[budget],
        verbose=0,
    )
    seconds = time.perf_counter() - start
    loss = float(history.history["loss"][-1])
    if not math.isfinite(loss):
        raise FloatingPointError(f"{model.name}: non-finite training loss {loss}")
    steps_per_epoch = math.ceil(len(split.x_train[:num_train]) / batch_size)
    return {
        "steps": budget.steps,
        "epochs": budget.steps / steps_per_epoch,
        "train_seconds": seconds,
        "first_step_seconds": budget.first_step_seconds,
        "final_loss": loss,
    }


def train(
    name: str,
    model: tf_keras.Model,
    split: Split,
    budget_seconds: float | None,
    epochs: int | None,
    batch_size: int,
) -> dict:
    """Trains one model; an ensemble's members one after another on budget / K each.

    Returns:
      `fit`'s figures; for the ensemble steps and seconds summed, epochs and loss the
      members' mean.
    """
    if name != "ensemble":
        return fit(model, split, budget_seconds, epochs, batch_size)
    share = None if budget_seconds is None else budget_seconds / len(model.members)
    runs = [fit(member, split, share, epochs, batch_size) for member in model.members]
    return {
        "steps": sum(run["steps"] for run in runs),
        "epochs": float(np.mean([run["epochs"] for run in runs])),
        "train_seconds": sum(run["train_seconds"] for run in runs),
        "first_step_seconds": sum(run["first_step_seconds"] for run in runs),
        "final_loss": float(np.mean([run["final_loss"] for run in runs])),
    }


def prob_samples(
    name: str, model: tf_keras.Model, x: np.ndarray, test_samples: int, batch_size: int
) -> np.ndarray:
    """Softmax samples `[S, N, C]`: S = test_samples, 1 (plain) or K (ensemble members)."""
    if name == "ensemble":
        return evaluate.softmax(model.member_logits(x, batch_size))
    num_samples = 1 if name == "plain" else test_samples
    return evaluate.predictive_probs(model, x, num_samples, batch_size)


def score(samples_in: np.ndarray, labels: np.ndarray, samples_out: np.ndarray) -> dict:
    """In-distribution metrics of the predictive mean and the OOD AUROCs.

    Args:
      samples_in: softmax samples `[S, N, C]` on the test images.
      labels: test labels `[N]`.
      samples_out: softmax samples `[S, N_ood, C]` on the out-of-distribution images.

    Returns:
      accuracy, nll, ece, brier, auroc_entropy, auroc_mi (None when S = 1) and the mean
      entropy and mutual information in and out of distribution.
    """
    probs = evaluate.mean_probs(samples_in)
    entropy_in = evaluate.predictive_entropy(samples_in)
    entropy_out = evaluate.predictive_entropy(samples_out)
    mi_in = evaluate.mutual_information(samples_in)
    mi_out = evaluate.mutual_information(samples_out)
    return {
        "accuracy": evaluate.accuracy(probs, labels),
        "nll": evaluate.negative_log_likelihood(probs, labels),
        "ece": evaluate.expected_calibration_error(probs, labels, ECE_BINS),
        "brier": evaluate.brier_score(probs, labels),
        "auroc_entropy": evaluate.auroc(entropy_in, entropy_out),
        "auroc_mi": evaluate.auroc(mi_in, mi_out) if samples_in.shape[0] > 1 else None,
        "mean_entropy_in": float(entropy_in.mean()),
        "mean_entropy_out": float(entropy_out.mean()),
        "mean_mi_in": float(mi_in.mean()),
        "mean_mi_out": float(mi_out.mean()),
    }


def warm_up(split: Split, architecture: dict) -> None:
    """Runs a few untimed training steps and a prediction of a plain LeNet.

    The process's one-time set-up (thread pools, kernel selection) then does not fall in the
    first model's budget.
    """
    model = models.LeNet(split.x_train.shape[1:], NUM_CLASSES, **architecture)
    fit(model, split, None, 1, BATCH_SIZE, num_train=3 * BATCH_SIZE)
    evaluate.predictive_probs(model, split.x_test[:BATCH_SIZE], 1)


def run_one(name: str, seed: int, split: Split, args: argparse.Namespace) -> dict:
    """Builds, trains and scores model `name` with `seed`; returns its JSON-ready row."""
    tf_keras.utils.set_random_seed(seed)
    model = build_model(
        name,
        split.x_train.shape[1:],
        len(split.x_train),
        seed,
        args.architecture,
        args.mnf_kwargs,
        args.ensemble_size,
    )
    row = {"seed": seed, **train(name, model, split, args.budget_seconds, args.epochs, BATCH_SIZE)}
    start = time.perf_counter()
    samples_in = prob_samples(name, model, split.x_test, args.test_samples, args.eval_batch_size)
    samples_out = prob_samples(name, model, split.x_ood, args.test_samples, args.eval_batch_size)
    row.update(score(samples_in, split.y_test, samples_out))
    row["eval_seconds"] = time.perf_counter() - start
    return row


def summarize(rows: list[dict]) -> dict:
    """Per metric of `COLUMNS`, the mean and sample std (0 for one seed) over `rows`."""
    summary = {}
    for key, _, _ in COLUMNS:
        values = [row[key] for row in rows]
        if any(v is None for v in values):
            summary[key] = None
            continue
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        summary[key] = {"mean": float(np.mean(values)), "std": std}
    return summary


def format_table(summary: dict) -> str:
    """Markdown table, one row per model, cells `mean ± std` over the seeds."""
    lines = [
        "| model | " + " | ".join(header for _, header, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, stats in summary.items():
        cells = []
        for key, _, digits in COLUMNS:
            cell = stats[key]
            cells.append(
                "-" if cell is None else f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_info() -> dict:
    """The CPU model name and its AVX2 / AVX-512 flags from /proc/cpuinfo (Linux)."""
    model, flags = "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = value.split()
    except OSError:
        pass
    isa = sorted(f for f in flags if f == "avx2" or f.startswith("avx512"))
    return {"model": model, "isa": isa, "cpus": os.cpu_count()}


def _seeds(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct ints >= 0 like 0,1,2, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _mnf_kwargs(parser: argparse.ArgumentParser, text: str) -> dict:
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as err:
        parser.error(f"--mnf_kwargs: not valid JSON ({err}): {text!r}")
    if not isinstance(kwargs, dict):
        parser.error(f"--mnf_kwargs: expected a JSON object of layer arguments, got {text!r}")
    fixed = sorted(set(kwargs) & set(_MNF_FIXED_ARGS))
    if fixed:
        parser.error(f"--mnf_kwargs: {fixed} are set by the benchmark, not by --mnf_kwargs")
    try:  # the layer's own checks: unknown arguments and bad values
        DenseMNF(1, **kwargs)
    except (TypeError, ValueError) as err:
        parser.error(f"--mnf_kwargs: not valid MNF layer arguments: {err}")
    return kwargs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags, validated; resolves the budget, the architecture and the output."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma list of " + str(MODELS))
    parser.add_argument("--dataset", choices=DATASETS, help="default: mnist-small")
    parser.add_argument(
        "--tiny", action="store_true", help="sklearn digits and noise, no files (seconds)"
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget_seconds",
        type=_positive_float,
        help="wall-clock training budget per model (default: 120 mnist-small, 240 fashion)",
    )
    budget.add_argument("--epochs", type=_positive_int, help="train every model this many epochs")
    parser.add_argument("--seeds", type=_seeds, default=(0, 1, 2))
    parser.add_argument("--ensemble_size", type=_positive_int, default=5)
    parser.add_argument("--mnf_kwargs", default="{}", help="JSON object of MNF layer arguments")
    parser.add_argument("--test_samples", type=_positive_int, default=20)
    parser.add_argument("--eval_batch_size", type=_positive_int, default=500)
    parser.add_argument("--data_root", default=DEFAULT_DATA_ROOT)
    parser.add_argument("--fashion_dir", default=None, help=f"default: {data.FASHION_MNIST_DIR}")
    parser.add_argument(
        "--output",
        default=None,
        help="JSON path (default: benchmarks/bench_uncertainty_<dataset>.json)",
    )
    args = parser.parse_args(argv)
    args.models = tuple(args.models.split(","))
    for name in args.models:
        if name not in MODELS:
            parser.error(f"--models: unknown {name!r}, expected some of {MODELS}")
    if len(set(args.models)) != len(args.models):
        parser.error(f"--models: each model at most once, got {','.join(args.models)}")
    args.mnf_kwargs = _mnf_kwargs(parser, args.mnf_kwargs)
    if args.tiny:
        if args.dataset is not None:
            parser.error("--tiny: runs on sklearn digits, do not give --dataset with it")
        args.dataset = "tiny"
        if args.budget_seconds is None and args.epochs is None:
            args.epochs = TINY_EPOCHS
    else:
        args.dataset = args.dataset or "mnist-small"
        if args.budget_seconds is None and args.epochs is None:
            args.budget_seconds = DEFAULT_BUDGET_SECONDS[args.dataset]
    args.architecture = TINY_ARCHITECTURE if args.tiny else FULL_ARCHITECTURE
    if args.output is None:
        args.output = os.path.join(ROOT, "benchmarks", f"bench_uncertainty_{args.dataset}.json")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark, prints the machine and the table, writes the JSON; returns it."""
    args = parse_args(argv)
    try:
        split = (
            tiny_split()
            if args.tiny
            else load_split(args.dataset, args.data_root, args.fashion_dir)
        )
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from err
    cpu = cpu_info()
    protocol = (
        f"{args.budget_seconds:g} s per model"
        if args.budget_seconds is not None
        else f"{args.epochs} epochs per model"
    )
    print(f"CPU: {cpu['model']} ({cpu['cpus']} CPUs), ISA: {' '.join(cpu['isa']) or 'no AVX2'}")
    print(
        f"TensorFlow {tf.__version__}, tfp_mnf {tfp_mnf.__version__}, fused ops "
        f"{'on' if ops.fused_available() else 'off'}; {split.description}: "
        f"{len(split.x_train)} train / {len(split.x_test)} test / {len(split.x_ood)} OOD"
    )
    print(
        f"protocol: {protocol}, Adam {LEARNING_RATE:g}, batch {BATCH_SIZE}, NLL + KL/N, "
        f"{args.test_samples} test samples, seeds {','.join(map(str, args.seeds))}, "
        f"mnf kwargs {json.dumps(args.mnf_kwargs)}, ensemble of {args.ensemble_size}",
        flush=True,
    )
    result = {
        "machine": {"cpu": cpu, "tensorflow": tf.__version__, "fused_ops": ops.fused_available()},
        "config": {
            **vars(args),
            "batch_size": BATCH_SIZE,
            "learning_rate": LEARNING_RATE,
            "dropout_rate": DROPOUT_RATE,
            "ece_bins": ECE_BINS,
        },
        "data": split.description,
        "runs": {name: [] for name in args.models},
        "summary": {},
    }
    warm_up(split, args.architecture)
    for seed in args.seeds:
        for name in args.models:
            row = run_one(name, seed, split, args)
            result["runs"][name].append(row)
            result["summary"][name] = summarize(result["runs"][name])
            print(
                f"seed {seed} {name}: {row['epochs']:.1f} epochs in {row['train_seconds']:.0f} s, "
                f"accuracy {row['accuracy']:.4f}, NLL {row['nll']:.4f}, "
                f"AUROC (entropy) {row['auroc_entropy']:.4f}",
                flush=True,
            )
            with open(args.output, "w") as f:
                json.dump(result, f, indent=2)
    print(format_table(result["summary"]))
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
