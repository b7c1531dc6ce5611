"""Op-level profile of one model's training step (issue 5): where the milliseconds go.

Traces `--steps` training steps of a `bench_models.py` variant with the TensorFlow profiler
and sums the op durations by layer and part of the step:
- `sampling`: the layer's forward/backward ops outside the flows and the KL (the
  convolutions / products, the fused epilogues, the kernel moments, z sampling);
- `q flow`: the flow of q(z) that turns the batch's z_0 into z_T;
- `KL`: the KL bound and its divergence function (r(z | W) and its flow included);
- `optimizer`, and `other` (loss, pooling, flatten, the step's bookkeeping).
Each row gives the op time per step (summed over threads: with 2 threads the sum can exceed
the wall time) and the number of op executions per step. `--single_thread` runs with one
inter-op and one intra-op thread, where the op times add up to the step time.

Usage:
  python benchmarks/profile_step.py [--variant mnf_fused] [--batch_size 128] [--steps 10]
      [--single_thread] [--top 15]
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from tfp_mnf.layers import MNFLayer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_models  # noqa: E402


def classify(op_name: str, model: str, layers: set[str]) -> tuple[str, str, str]:
    """(layer, phase, part) of a traced op from its name scope `model/layer/...`; `layers`
    are the Bayesian layers (the others' ops count as `other`)."""
    parts = op_name.split(":")[0].split("/")
    backward = parts[0] == "gradient_tape"
    if backward:
        parts = parts[1:]
    phase = "backward" if backward else "forward"
    if parts[0].startswith(("Adam", "SGD", "RMSprop")):
        return "-", "update", "optimizer"
    if len(parts) < 2 or parts[0] != model or parts[1] not in layers:
        return "-", phase, "other"  # loss, pooling, flatten, plain layers
    if any(p.startswith("KullbackLeibler") for p in parts):
        part = "KL"
    elif any(p.startswith("chain_of") for p in parts):
        part = "q flow"
    else:
        part = "sampling"
    return parts[1], phase, part


def op_events(logdir: str) -> list[tuple[str, float]]:
    """(op name, duration in ms) of every op event in the trace under `logdir`."""
    (path,) = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    events = []
    for plane in space.planes:
        metadata = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = metadata[event.metadata_id].name
                if ":" in name and "::" not in name:  # scope/name:OpType, no executor events
                    events.append((name, event.duration_ps / 1e9))
    return events


def main() -> None:
    """Profiles the step and prints the breakdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--variant",
        default="mnf_fused",
        choices=(*bench_models.VARIANTS, *bench_models.ABLATIONS),
    )
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="profiled steps")
    parser.add_argument("--single_thread", action="store_true")
    parser.add_argument("--top", type=int, default=15, help="op types listed")
    args = parser.parse_args()
    if args.single_thread:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    runner = bench_models.Runner(args.variant)
    x = tf.random.stateless_uniform((args.batch_size, *bench_models.IMAGE_SHAPE), seed=[1, 2])
    y = tf.random.stateless_uniform(
        (args.batch_size,), seed=[3, 4], maxval=bench_models.NUM_CLASSES, dtype=tf.int32
    )
    for _ in range(10):
        runner.train_step(x, y).numpy()
    start = time.perf_counter()
    for _ in range(args.steps):
        runner.train_step(x, y).numpy()
    wall = (time.perf_counter() - start) / args.steps * 1e3
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(args.steps):
            runner.train_step(x, y).numpy()
        tf.profiler.experimental.stop()
        events = op_events(logdir)
    per_part = collections.defaultdict(lambda: [0.0, 0.0])
    per_type = collections.defaultdict(lambda: [0.0, 0.0])
    model = runner.model
    layers = {  # MNF layers and tfp.layers' variational layers
        layer.name
        for layer in model.layers
        if isinstance(layer, MNFLayer) or hasattr(layer, "kernel_posterior_fn")
    }
    for name, ms in events:
        part_key = classify(name, model.name, layers)
        for table, key in ((per_part, part_key), (per_type, name.rsplit(":", 1)[1])):
            table[key][0] += ms / args.steps
            table[key][1] += 1 / args.steps
    total = sum(ms for ms, _ in per_part.values())
    threads = "1 thread" if args.single_thread else f"{os.cpu_count()} CPUs"
    print(
        f"{args.variant}, batch {args.batch_size}, {threads}: {wall:.1f} ms per step "
        f"(unprofiled), op time {total:.1f} ms per step over "
        f"{sum(n for _, n in per_part.values()):.0f} op executions"
    )
    print("| layer | phase | part | op ms / step | ops / step |")
    print("|---|---|---|---|---|")
    for (layer, phase, part), (ms, n) in sorted(per_part.items(), key=lambda kv: -kv[1][0]):
        print(f"| {layer} | {phase} | {part} | {ms:.2f} | {n:.0f} |")
    print(f"\n| op type (top {args.top}) | op ms / step | ops / step |")
    print("|---|---|---|")
    for op_type, (ms, n) in sorted(per_type.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"| {op_type} | {ms:.2f} | {n:.0f} |")


if __name__ == "__main__":
    main()
