"""Subprocess worker of the robustness tests: each command runs in a fresh Python process.

Usage: python robustness_worker.py COMMAND OUT_DIR [ARGS...]

The environment variable TFP_MNF_TEST_FRONTEND picks the front-end: "tf_keras" (the
default, `tfp_mnf.layers`) or "keras3" (`tfp_mnf.keras`), see tests/_frontends.py.

Commands (results go to OUT_DIR as .npz / .json files):
- save: trains a small MNF conv net on digits, saves it in every format of the front-end
  (.keras, h5 and, for tf_keras, SavedModel), and writes the posterior-mean predictions and
  seeded samples it gives (expected.npz).
- load TAG: loads the saved models and writes what each gives (TAG_<format>.npz).
- train50: 50 seeded training steps with op determinism and one inter-op thread; writes
  the weights (weights.npz).
- replicas N: `fit` of a small MNF-LeNet under MirroredStrategy over N logical CPUs (N = 1:
  the default strategy on one device); writes the losses (replicas_N.json).
- mwms INDEX: one worker of a MultiWorkerMirroredStrategy whose cluster is in TF_CONFIG.
"""

import json
import os
import sys

import numpy as np

COMMAND, OUT = sys.argv[1], sys.argv[2]
if COMMAND == "replicas":  # logical devices must exist before TensorFlow initializes
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration()] * max(2, int(sys.argv[3])),
    )

from pathlib import Path  # noqa: E402

import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from _frontends import FRONTENDS  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

F = FRONTENDS[os.environ.get("TFP_MNF_TEST_FRONTEND", "tf_keras")]
tfd = tfp.distributions
SAMPLE_SEED = 7


def kl_per_example(q, p, _):
    """A registered divergence function (saved by name): KL / number of examples."""
    return tfd.kl_divergence(q, p) / 512.0


F.register(kl_per_example, package="robustness")


def digits(n, pad=0):
    data = load_digits()
    x = (data.images[:n] / 16.0).astype("float32")[..., None]
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return x, data.target[:n].astype("int32")


def predictions(model, x):
    """Posterior-mean predictions, one seeded sample and the seeded KL of `model` on `x`."""
    with F.posterior_mean(model):
        mean = model.predict(x, verbose=0)
    F.utils.set_random_seed(SAMPLE_SEED)
    sample = model(x).numpy()
    kl = float(tf.add_n(model.losses))
    return {"mean": mean, "sample": sample, "kl": np.float64(kl)}


def save():
    F.utils.set_random_seed(0)
    x, y = digits(256)
    model = F.Sequential(
        [
            F.Input((8, 8, 1)),
            F.Conv2DMNF(4, 3, activation="relu", q_flow="iaf", r_flow="maf", seed=1),
            F.keras.layers.MaxPooling2D(),
            F.keras.layers.Flatten(),
            F.DenseMNF(
                10,
                q_flow="planar",
                r_flow="realnvp",
                seed=2,
                kernel_divergence_fn=kl_per_example,
                bias_divergence_fn=F.ScaledKL(1 / 512),
            ),
        ]
    )
    model.compile("adam", F.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    for fmt in F.formats:
        F.save(model, F.model_path(Path(OUT), fmt), fmt)
    np.savez(os.path.join(OUT, "expected.npz"), x=x[:32], **predictions(model, x[:32]))


def load(tag):
    x = np.load(os.path.join(OUT, "expected.npz"))["x"]
    for fmt in F.formats:
        model = F.load(F.model_path(Path(OUT), fmt), fmt)
        fn = model.layers[-1].kernel_divergence_fn
        result = predictions(model, x)
        bias_fn = model.layers[-1].bias_divergence_fn
        result["divergence_fns_revived"] = fn is kl_per_example and bias_fn.scale == 1 / 512
        np.savez(os.path.join(OUT, f"{tag}_{fmt}.npz"), **result)


def train50():
    # With inter-op parallelism the weights differ at ~1e-7 after 50 steps (an op-ordering
    # race not covered by op determinism; see the robustness report): run ops one at a time.
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    F.utils.set_random_seed(0)
    x, y = digits(800)
    model = F.Sequential(
        [
            F.Input((8, 8, 1)),
            F.Conv2DMNF(4, 3, activation="relu", seed=1),
            F.keras.layers.Flatten(),
            F.DenseMNF(10, q_flow="iaf", seed=2, kernel_divergence_fn=kl_per_example),
        ]
    )
    model.compile("adam", F.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # 800 / 16 = 50 steps
    np.savez(os.path.join(OUT, "weights.npz"), *[w.numpy() for w in model.weights])


def small_lenet(num_examples):
    return F.models.MNFLeNet(
        input_shape=(12, 12, 1),
        filters=(4, 8),
        hidden_units=16,
        kernel_size=3,
        kl_scale=1.0 / num_examples,
        seed=0,
    )


def fit_losses(strategy, num_examples=128, batch_size=32, epochs=2):
    """Builds and fits the small MNF-LeNet under `strategy`; returns its losses."""
    F.utils.set_random_seed(0)
    x, y = digits(num_examples, pad=2)
    with strategy.scope():
        model = small_lenet(num_examples)
        model.compile(
            F.optimizers.Adam(1e-3),
            F.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    initial = model.evaluate(x, y, batch_size=batch_size, verbose=0)
    kl = float(sum(layer.kl_divergence() for layer in F.mnf_layers(model)))
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    return {
        "replicas": strategy.num_replicas_in_sync,
        "initial_loss": initial,
        "initial_kl": kl / num_examples,
        "losses": history.history["loss"],
    }


def replicas(n):
    n = int(n)
    devices = [f"/cpu:{i}" for i in range(n)]
    strategy = tf.distribute.MirroredStrategy(devices) if n > 1 else tf.distribute.get_strategy()
    with open(os.path.join(OUT, f"replicas_{n}.json"), "w") as f:
        json.dump(fit_losses(strategy), f)


def mwms(index):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    result = fit_losses(strategy, epochs=1)
    with open(os.path.join(OUT, f"mwms_{index}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    {"save": save, "load": load, "train50": train50, "replicas": replicas, "mwms": mwms}[COMMAND](
        *sys.argv[3:]
    )
