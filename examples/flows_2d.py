r"""Fits each flow kind as a density on two-moons data by maximum likelihood.

For each kind (planar, realnvp, iaf, maf) of `tfp_mnf.layers.make_flow`, the density is
`tfd.TransformedDistribution(N(0, I), flow.bijector)`: samples are `flow.forward(z)` and
`log_prob(x) = log N(flow.inverse(x)) + log|det d flow^-1 / dx|`. The flow's variables are
fitted with Adam on the mean log-likelihood of scikit-learn's two moons (standardized to
zero mean and unit variance per coordinate). Prints the final mean log-likelihood (nats per
point, standardized coordinates) on the training data and on a held-out draw, writes them
to `flows_2d.json`, and saves `flows_2d.png`: per kind, the data, samples of the fitted
flow and its density as a heat map.

Which direction is fast matters here: `log_prob` needs the inverse, which is one pass for
realnvp and maf, `event_size` sequential passes for iaf and a scalar Newton solve for
planar; sampling needs the forward, one pass except for maf.

Reference: Louizos & Welling (2017), arXiv:1703.01961, uses such flows for q(z) and r(z|W).

Example:

  python examples/flows_2d.py --output_dir=/tmp/flows_2d
"""

import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
import tf_keras  # noqa: E402
from absl import app, flags  # noqa: E402
from sklearn.datasets import make_moons  # noqa: E402

from tfp_mnf.bijectors import FLOW_KINDS  # noqa: E402
from tfp_mnf.layers import make_flow  # noqa: E402

tfd = tfp.distributions

flags.DEFINE_list("kinds", list(FLOW_KINDS), f"Flow kinds to fit, from {FLOW_KINDS}.")
flags.DEFINE_integer("num_layers", 8, "Flow layers per kind.")
flags.DEFINE_integer("hidden_units", 64, "Hidden units of the RealNVP / MADE networks.")
flags.DEFINE_integer("steps", 3000, "Adam steps per kind.")
flags.DEFINE_integer("batch_size", 256, "Points per step.")
flags.DEFINE_float("learning_rate", 5e-3, "Initial Adam learning rate (cosine decay to 0).")
flags.DEFINE_integer("num_data", 2000, "Two-moons training points (and as many held out).")
flags.DEFINE_float("noise", 0.05, "Std of the Gaussian noise of the two moons.")
flags.DEFINE_integer("num_samples", 2000, "Samples drawn from each fitted flow for the figure.")
flags.DEFINE_integer("grid_size", 150, "Grid points per axis of the density heat map.")
flags.DEFINE_string("output_dir", "/tmp/flows_2d", "Where flows_2d.png and flows_2d.json go.")
flags.DEFINE_integer("seed", 0, "Random seed.")

FLAGS = flags.FLAGS


def two_moons(num, noise, seed, mean=None, std=None):
    """`[num, 2]` float32 two-moons points, standardized by `mean`/`std` (default: own)."""
    points, _ = make_moons(num, noise=noise, random_state=seed)
    mean = points.mean(axis=0) if mean is None else mean
    std = points.std(axis=0) if std is None else std
    return ((points - mean) / std).astype(np.float32), mean, std


def flow_density(kind, seed):
    """(flow layer, TransformedDistribution of N(0, I) through the flow) for one kind."""
    flow = make_flow(kind, FLAGS.num_layers, 2, hidden_units=FLAGS.hidden_units, seed=seed)
    flow.build((None, 2))
    base = tfd.MultivariateNormalDiag(loc=tf.zeros([2]))
    return flow, tfd.TransformedDistribution(base, flow.bijector)


def fit(flow, density, train, seed):
    """Maximizes the mean log-likelihood of `train` with Adam; returns the seconds taken."""
    schedule = tf_keras.optimizers.schedules.CosineDecay(FLAGS.learning_rate, FLAGS.steps)
    optimizer = tf_keras.optimizers.Adam(schedule)
    variables = flow.trainable_variables

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(density.log_prob(batch))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for i in range(FLAGS.steps):
        loss = step(train[rng.integers(0, len(train), FLAGS.batch_size)])
        if (i + 1) % max(1, FLAGS.steps // 5) == 0:
            print(f"  step {i + 1}: mean log-likelihood {-float(loss):.3f}", flush=True)
    return time.perf_counter() - start


def mean_log_likelihood(density, points):
    """Mean log-likelihood (nats per point) over `points`, in batches."""
    log_prob = tf.function(density.log_prob)
    return float(np.mean(np.concatenate([log_prob(b).numpy() for b in np.split(points, 4)])))


def plot(results, train, lim, path):
    """Saves a figure with one row per kind: data, flow samples, density heat map."""
    fig, axes = plt.subplots(len(results), 3, figsize=(9, 3 * len(results)), squeeze=False)
    for row, (kind, result) in zip(axes, results.items(), strict=True):
        row[0].scatter(train[:, 0], train[:, 1], s=1, alpha=0.4)
        row[0].set_title(f"{kind}: data")
        samples = result["samples"]
        row[1].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4, color="C1")
        row[1].set_title(f"{kind}: samples")
        row[2].imshow(
            result["density"], origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis"
        )
        row[2].set_title(f"{kind}: density (test LL {result['test_log_lik']:.2f})")
        for ax in row:
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.kinds) - set(FLOW_KINDS))
    if unknown or not FLAGS.kinds:
        raise app.UsageError(f"--kinds must be a non-empty subset of {FLOW_KINDS}, got {unknown}")
    tf.random.set_seed(FLAGS.seed)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    train, mean, std = two_moons(FLAGS.num_data, FLAGS.noise, FLAGS.seed)
    test, _, _ = two_moons(FLAGS.num_data, FLAGS.noise, FLAGS.seed + 1, mean, std)
    lim = np.abs(train).max() * 1.15
    axis = np.linspace(-lim, lim, FLAGS.grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)

    results = {}
    for index, kind in enumerate(FLAGS.kinds):
        print(f"Fitting {kind} ({FLAGS.num_layers} layers)", flush=True)
        flow, density = flow_density(kind, FLAGS.seed + index)
        seconds = fit(flow, density, train, FLAGS.seed + index)
        results[kind] = {
            "train_log_lik": mean_log_likelihood(density, train),
            "test_log_lik": mean_log_likelihood(density, test),
            "seconds": seconds,
            "samples": density.sample(FLAGS.num_samples, seed=FLAGS.seed).numpy(),
            "density": np.exp(density.log_prob(grid).numpy()).reshape(len(axis), len(axis)),
        }

    figure = os.path.join(FLAGS.output_dir, "flows_2d.png")
    plot(results, train, lim, figure)
    summary = {
        kind: {k: r[k] for k in ("train_log_lik", "test_log_lik", "seconds")}
        for kind, r in results.items()
    }
    with open(os.path.join(FLAGS.output_dir, "flows_2d.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(f"{'kind':8s} {'train LL':>9s} {'test LL':>9s} {'seconds':>8s}")
    for kind, r in summary.items():
        print(f"{kind:8s} {r['train_log_lik']:9.3f} {r['test_log_lik']:9.3f} {r['seconds']:8.1f}")
    print(f"Figure: {figure}")


if __name__ == "__main__":
    app.run(main)
