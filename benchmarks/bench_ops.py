"""Times the fused local-reparameterization ops against the composite TensorFlow path.

Prints one table: median milliseconds of >= 50 timed runs after warm-up (the three paths
take turns in each run, in a rotating order), for the fused kernels, the composite path in
graph mode (`tf.function`) and the composite path under XLA (`tf.function(jit_compile=True)`),
forward and forward+backward (the output's sum and the gradients of every input), and the ratio
fused / composite-graph. Cases: the dense step (`dense_local_reparam_from_variance`, as the
layers call it), the conv epilogue alone and the whole conv step (both convolutions, biases,
epilogue) of MNF-LeNet's layers. The last three columns are
what `TFP_MNF_FUSED=auto` (the default) does on this machine: the path it picks for the case
(timed afresh, the cache file neither read nor written; the conv epilogue is fused wherever it
applies, untimed), and the forward+backward milliseconds and ratio to the composite graph of
the dispatched op (`tfp_mnf.ops`), timed in the same rotation. Where auto picks the composite
path for the conv step, that is TensorFlow's convolutions with the fused epilogue. A second
table times, in the same rotation, the dense step's matrix products alone (`tf.matmul` of
ready operands: the two of the forward pass, the six of forward+backward) against the
composite graph: the lowest ratio that fused element-wise work around those products can reach.
Usage: `python benchmarks/bench_ops.py [--runs 50]`.
"""

import argparse
import os
import time

import numpy as np
import tensorflow as tf

from tfp_mnf import ops as dispatched
from tfp_mnf.ops import autotune, build_info, conv, dense, fused_available

DENSE_SHAPES = [(128, 800, 500), (128, 500, 10), (512, 1024, 1024)]
CONV_SHAPES = [(128, 24, 24, 20), (128, 8, 8, 50)]  # MNF-LeNet conv outputs
# MNF-LeNet's conv layers, (input shape, out channels), 5x5 VALID: the whole sampling step.
CONV_LAYERS = [((128, 28, 28, 1), 20), ((128, 12, 12, 20), 50)]
MAX_STD = 1.0


def _dense_args(b: int, k: int, n: int) -> list:
    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(size=(b, k)),
        1 + 0.1 * rng.normal(size=(b, k)),
        0.05 * rng.normal(size=(k, n)),
        np.exp(2 * (-4 + 0.1 * rng.normal(size=(k, n)))),
        rng.normal(size=n),
        -6 + 0.1 * rng.normal(size=n),
    ]
    return [tf.Variable(a.astype(np.float32)) for a in arrays]


def _conv_args(shape: tuple) -> list:
    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(size=shape),
        rng.uniform(0.01, 1.0, size=shape),
        1 + 0.1 * rng.normal(size=(shape[0], shape[-1])),
    ]
    return [tf.Variable(a.astype(np.float32)) for a in arrays]


def _conv_layer_args(shape: tuple, filters: int) -> list:
    rng = np.random.default_rng(0)
    kernel = (5, 5, shape[-1], filters)
    arrays = [
        rng.uniform(size=shape),
        0.1 * rng.normal(size=kernel),
        np.exp(-8 + 0.1 * rng.normal(size=kernel)),
        0.1 * rng.normal(size=filters),
        np.exp(-8 + 0.1 * rng.normal(size=filters)),
        1 + 0.1 * rng.normal(size=(shape[0], filters)),
    ]
    return [tf.Variable(a.astype(np.float32)) for a in arrays]


def _functions(op: callable, args: list, extra: dict) -> tuple:
    seed = tf.constant([1, 2], tf.int64)

    def forward():
        return op(*args, seed=seed, **extra)

    def forward_backward():
        # The loss is returned with the gradients: otherwise graph optimization prunes the
        # composite's mean product, whose value the gradients do not need.
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(op(*args, seed=seed, **extra))
        return loss, tape.gradient(loss, args)

    return forward, forward_backward


def _dense_products(b: int, k: int, n: int) -> tuple:
    """The dense step's products alone: forward (x z) M and x^2 S; forward+backward adds
    g M^T, g_var S^T, (x z)^T g and (x^2)^T g_var."""
    rng = np.random.default_rng(1)
    x_z, x_sq, g, g_var = (
        tf.Variable(rng.normal(size=shape).astype(np.float32))
        for shape in ((b, k), (b, k), (b, n), (b, n))
    )
    mean, variance = (tf.Variable(rng.normal(size=(k, n)).astype(np.float32)) for _ in range(2))

    def forward():
        return tf.matmul(x_z, mean), tf.matmul(x_sq, variance)

    def forward_backward():
        return (
            *forward(),
            tf.matmul(g, mean, transpose_b=True),
            tf.matmul(g_var, variance, transpose_b=True),
            tf.matmul(x_z, g, transpose_a=True),
            tf.matmul(x_sq, g_var, transpose_a=True),
        )

    return forward, forward_backward


def _median_ms(fns: dict, runs: int) -> dict:
    """Median milliseconds of each function; the functions take turns in every run, so that
    load from other processes shifts them alike, in an order rotated from run to run, so that
    each follows every other equally often (an XLA call leaves its thread pool spinning for a
    while, which slows whatever runs right after it)."""
    for fn in fns.values():
        for _ in range(5):
            fn()
    times = {label: [] for label in fns}
    order = list(fns.items())
    for run in range(runs):
        shift = run % len(order)
        for label, fn in order[shift:] + order[:shift]:
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), fn())
            times[label].append(time.perf_counter() - start)
    return {label: 1e3 * float(np.median(t)) for label, t in times.items()}


def _times(ops: dict, args: list, extra: dict, runs: int, products: tuple = ()) -> tuple:
    """Median ms of each path of one case, forward and forward+backward, timed in one
    rotation with the case's `products` (its forward and forward+backward functions), if any,
    under the label "products"; and the path that auto picked for the "auto" op (a fresh
    tuner decides while the op is traced)."""
    autotune.TUNER = autotune.Autotuner(persist=False)
    timed = [
        {
            label: tf.function(_functions(op, args, extra)[mode], jit_compile=jit)
            for label, (op, jit) in ops.items()
        }
        for mode in (0, 1)
    ]
    for fns, fn in zip(timed, products, strict=False):
        fns["products"] = tf.function(fn)
    fwd, fb = (_median_ms(fns, runs) for fns in timed)
    picks = {decision.choice for decision in autotune.TUNER.decisions().values()}
    return fwd, fb, " / ".join(sorted(picks)) or "fused (untimed)"


def _row(name: str, fwd: dict, fb: dict, pick: str) -> str:
    """The first table's row of one case."""
    return (
        f"| {name} | {fwd['fused']:.3f} | {fwd['graph']:.3f} | {fwd['xla']:.3f} | "
        f"{fwd['fused'] / fwd['graph']:.2f} | {fb['fused']:.3f} | {fb['graph']:.3f} | "
        f"{fb['xla']:.3f} | {fb['fused'] / fb['graph']:.2f} | {pick} | {fb['auto']:.3f} | "
        f"{fb['auto'] / fb['graph']:.2f} |"
    )


def _floor_row(name: str, fwd: dict, fb: dict) -> str:
    """The second table's row of one dense case: its products alone vs the composite graph."""
    return (
        f"| {name} | {fwd['products']:.3f} | {fwd['graph']:.3f} | "
        f"{fwd['products'] / fwd['graph']:.2f} | {fb['products']:.3f} | {fb['graph']:.3f} | "
        f"{fb['products'] / fb['graph']:.2f} |"
    )


def main() -> None:
    """Prints the benchmark table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    runs = parser.parse_args().runs
    # The "auto" columns show the default policy, whatever the environment pins.
    os.environ[autotune.ENV] = "auto"
    if not fused_available():
        raise SystemExit("fused op library not available: build it with `pip install -e .`")
    isa = sorted(f for f in build_info.cpu_flags() or () if f.startswith(("avx", "fma", "sse")))
    print(f"CPU: {build_info.cpu_model()}; ISA: {' '.join(isa) or 'unknown'}")
    print(
        f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()}, "
        f"median of {runs} runs, milliseconds, float32"
    )
    print(
        "| shape | fwd fused | fwd graph | fwd XLA | fwd ratio | f+b fused | f+b graph | "
        "f+b XLA | f+b ratio | auto picks | f+b auto | f+b auto ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    dense_ops = {
        "fused": (dense.fused, False),
        "graph": (dense.composite, False),
        "xla": (dense.composite, True),
        "auto": (dispatched.dense_local_reparam_from_variance, False),
    }
    floors = []
    for b, k, n in DENSE_SHAPES:
        name = f"dense {b}x{k}x{n}"
        fwd, fb, pick = _times(
            dense_ops,
            _dense_args(b, k, n),
            {"max_std": MAX_STD},
            runs,
            products=_dense_products(b, k, n),
        )
        print(_row(name, fwd, fb, pick), flush=True)
        floors.append(_floor_row(name, fwd, fb))
    conv_ops = {
        "fused": (conv.fused_epilogue, False),
        "graph": (conv.composite_epilogue, False),
        "xla": (conv.composite_epilogue, True),
        "auto": (dispatched.conv_local_reparam_epilogue, False),
    }
    for shape in CONV_SHAPES:
        name = f"conv epilogue {'x'.join(map(str, shape))}"
        print(_row(name, *_times(conv_ops, _conv_args(shape), {}, runs)), flush=True)
    layer_ops = {
        "fused": (conv.fused, False),
        "graph": (conv.composite, False),
        "xla": (conv.composite, True),
        "auto": (dispatched.conv_local_reparam, False),
    }
    attrs = {"strides": (1, 1), "padding": "VALID", "dilations": (1, 1)}
    for shape, filters in CONV_LAYERS:
        name = f"conv step {'x'.join(map(str, shape))}->{filters}"
        times = _times(layer_ops, _conv_layer_args(shape, filters), attrs, runs)
        print(_row(name, *times), flush=True)
    print()
    print("The dense step's matrix products alone (tf.matmul) vs the composite graph:")
    print("| shape | fwd products | fwd graph | fwd floor | f+b products | f+b graph | f+b floor |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(floors))


if __name__ == "__main__":
    main()
