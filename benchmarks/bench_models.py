"""Model-level speed: MNF-LeNet against tfp.layers LeNets and a plain LeNet (issue 5).

In one process, for each batch size, the milliseconds per full training step (forward pass,
KL terms, backward pass, Adam update) inside one `tf.function` after warm-up, for:
- `mnf_fused`: `MNFLeNet` with the fused local-reparameterization ops;
- `mnf_composite`: `MNFLeNet` on the pure-TensorFlow path (`tfp_mnf.ops.force_composite()`);
- `mnf_xla`: `MNFLeNet` in `tf.function(jit_compile=True)` (composite ops, XLA-compiled);
- `flipout`: LeNet of `tfp.layers.Convolution2DFlipout` / `DenseFlipout`;
- `reparameterization`: LeNet of the `*Reparameterization` layers;
- `plain`: deterministic `LeNet`, the speed floor;
and on request (`--variants`) the ablations `mnf_no_flows` (no q or r flows) and `mnf_no_z`
(`use_z=False`, a mean-field Gaussian posterior), both on the fused ops.
All are LeNet 20-50-500-10 on 28x28x1 inputs, float32, Adam 1e-3 (`--optimizer`: by
default `adam`, what `model.compile("adam")` gives (`tf_keras.optimizers.get("adam")`, tf_keras'
current Adam, about 27 small ops per variable); `fused_adam`: tf_keras' legacy Adam, one
fused ResourceApplyAdam kernel per variable), cross-entropy plus the sum of `model.losses`
(the KLs scaled by 1 / 60000). Timed steps are interleaved across the variants in rounds, so
a change in machine load hits every variant alike; median and min over all timed steps.

Prediction throughput of the Bayesian models: images per second of drawing S posterior
predictive samples of 1,000 images (`--predict_images`, 1,000 / seconds of the whole draw) for
each S of `--predict_samples` (20 and 100), through `tfp_mnf.evaluate.predictive_samples`
(what users run) with `--predict_batch_size` rows per forward pass. MNF draws them tiled
(the S samples of a batch are rows of one pass, each row an independent sample). Flipout is
timed both tiled and as separate calls: tiled, each row's marginal is exact and the rows'
perturbations are pairwise uncorrelated (random signs), but the rows of a pass share one
weight perturbation, so they are not independent samples (not the default of
`predictive_samples`); it still counts here as a valid equivalent, and the ratio is taken
against Flipout's faster mode (`flipout_best`), the stricter comparison for MNF. Per S, each
case draws once untimed (tracing, per-shape choices of the ops), then `--predict_rounds` timed
draws interleaved across the cases; median (and best) images/s over those.

Peak resident memory: each variant in a fresh subprocess (import, build, train steps,
prediction), reporting its peak RSS (VmHWM) and the growth over the RSS after the imports;
`--memory inprocess` reports, per variant, the growth of this process's peak RSS over its RSS
before building the variant (peak reset first, where Linux allows it), `--memory off` skips it.

The output starts with the CPU's model name and SIMD flags (`/proc/cpuinfo`) and what the op
library's `_mnf_ops.json` records about its build (`-march`, assumed ISA features), also
written to the JSON (`cpu`).

Usage:
  python benchmarks/bench_models.py [--batch_sizes 64,128] [--steps 100] [--warmup 10]
      [--optimizer adam|fused_adam] [--predict_samples 20,100] [--predict_rounds 2]
      [--output benchmarks/bench_models.json] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import tfp_mnf
from tfp_mnf import evaluate, models, ops
from tfp_mnf.ops import _library, build_info

NUM_TRAIN = 60000
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
VARIANTS = ("mnf_fused", "mnf_composite", "mnf_xla", "flipout", "reparameterization", "plain")
# Ablations of MNF-LeNet (fused ops), on request with --variants: what the flows cost.
ABLATIONS = {
    "mnf_no_flows": {"num_q_flows": 0, "num_r_flows": 0},
    "mnf_no_z": {"use_z": False},
}
# The Bayesian variants whose prediction is timed, and how their samples are drawn: "tiled"
# (`predictive_samples(..., vectorize=True)`) or "separate" calls (`vectorize=False`).
PREDICT_MODES = {
    "mnf_fused": ("tiled",),
    "mnf_composite": ("tiled",),
    "flipout": ("tiled", "separate"),
}
# "adam": what `model.compile("adam")` gives (tf_keras' current Adam, learning rate 1e-3),
# about 27 small ops per variable; "fused_adam": tf_keras' legacy Adam, one fused
# ResourceApplyAdam kernel per variable.
OPTIMIZERS = {
    "adam": lambda: tf_keras.optimizers.get("adam"),
    "fused_adam": lambda: tf_keras.optimizers.legacy.Adam(1e-3),
}
DEFAULT_OPTIMIZER = "adam"
# /proc/cpuinfo flags reported as the CPU's ISA, where present.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512cd",
    "avx512dq",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def build_model(variant: str) -> tf_keras.Model:
    """A fresh, built LeNet 20-50-500-10 of `variant` (one of `VARIANTS` or `ABLATIONS`)."""
    kl_scale = 1.0 / NUM_TRAIN
    if variant.startswith("mnf"):
        model = models.MNFLeNet(kl_scale=kl_scale, seed=0, **ABLATIONS.get(variant, {}))
    elif variant == "flipout":
        model = models.FlipoutLeNet(kl_scale=kl_scale)
    elif variant == "reparameterization":
        model = models.ReparameterizationLeNet(kl_scale=kl_scale)
    elif variant == "plain":
        model = models.LeNet()
    else:
        raise ValueError(f"`variant` must be one of {VARIANTS}, got {variant!r}.")
    return model


class Runner:
    """One variant's model, optimizer and compiled training step.

    The ops of the `mnf_composite` variant are built inside `ops.force_composite()`; the
    dispatch happens at tracing time, so every call enters it (cheap) in case of a retrace.
    """

    def __init__(self, variant: str, optimizer: str = DEFAULT_OPTIMIZER) -> None:
        self.variant = variant
        with self._op_path():  # Keras calls the layers once while building the Sequential
            self.model = build_model(variant)
        self.optimizer = OPTIMIZERS[optimizer]()
        # Slots created now, not in the first trace (which would then trace a second time).
        if isinstance(self.optimizer, tf_keras.optimizers.legacy.Optimizer):
            self.optimizer._create_all_weights(self.model.trainable_variables)
        else:
            self.optimizer.build(self.model.trainable_variables)
        loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model, optimizer = self.model, self.optimizer

        def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = loss_fn(y, logits)
                if model.losses:
                    loss += tf.add_n(model.losses)
            variables = model.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            return loss

        self.train_step = tf.function(train_step, jit_compile=variant == "mnf_xla")

    def _op_path(self) -> contextlib.AbstractContextManager:
        if self.variant == "mnf_composite":
            return ops.force_composite()
        return contextlib.nullcontext()

    def _call(self, fn: Callable[..., tf.Tensor], *args: tf.Tensor) -> np.ndarray:
        with self._op_path():
            return fn(*args).numpy()

    def step(self, x: tf.Tensor, y: tf.Tensor) -> float:
        """Runs one training step; returns its wall time in milliseconds."""
        start = time.perf_counter()
        loss = self._call(self.train_step, x, y)
        elapsed = 1e3 * (time.perf_counter() - start)
        if not np.isfinite(loss):
            raise FloatingPointError(f"{self.variant}: non-finite loss {loss}")
        return elapsed

    def predictive(
        self, images: np.ndarray, num_samples: int, mode: str, batch_size: int
    ) -> np.ndarray:
        """`num_samples` posterior predictive logits `[S, N, classes]`, drawn in `mode`."""
        with self._op_path():
            return evaluate.predictive_samples(
                self.model, images, num_samples, batch_size, vectorize=mode == "tiled"
            )

    def tracing_counts(self) -> dict[str, int]:
        """How often the training step and Keras' predict function were traced."""
        predict = self.model.predict_function
        return {
            "train_step": self.train_step.experimental_get_tracing_count(),
            "predict": 0 if predict is None else predict.experimental_get_tracing_count(),
        }


def synthetic_batch(batch: int, seed: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    """MNIST-shaped inputs in [0, 1] and integer labels (speed does not depend on content)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch, *IMAGE_SHAPE)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, size=batch).astype(np.int32)
    return tf.constant(x), tf.constant(y)


def time_training(
    variants: tuple[str, ...], batch: int, steps: int, warmup: int, rounds: int, optimizer: str
) -> dict[str, dict]:
    """Median/min ms per training step of each variant, timed steps interleaved in rounds."""
    x, y = synthetic_batch(batch)
    runners = {}
    for variant in variants:
        _reset_peak_rss()
        rss_before = _rss_mib()
        tf_keras.utils.set_random_seed(0)
        runner = Runner(variant, optimizer)
        start = time.perf_counter()
        runner.step(x, y)  # traces (and compiles, for XLA)
        trace_s = time.perf_counter() - start
        for _ in range(warmup):
            runner.step(x, y)
        runners[variant] = (runner, trace_s, _rss_mib() - rss_before)
    times = {variant: [] for variant in variants}
    per_round = [steps // rounds + (i < steps % rounds) for i in range(rounds)]
    for count in per_round:
        for variant in variants:
            runner = runners[variant][0]
            times[variant] += [runner.step(x, y) for _ in range(count)]
    return {
        variant: {
            "median_ms": float(np.median(times[variant])),
            "min_ms": float(np.min(times[variant])),
            "steps": len(times[variant]),
            "first_call_s": runners[variant][1],
            "tracing_counts": runners[variant][0].tracing_counts(),
            "peak_rss_growth_mib": runners[variant][2],
        }
        for variant in variants
    }


def time_prediction(
    variants: tuple[str, ...],
    num_images: int,
    sample_counts: tuple[int, ...],
    batch_size: int,
    rounds: int,
) -> dict[str, dict]:
    """Images/s of drawing S predictive samples of `num_images` images, per S and case.

    A case is a variant of `PREDICT_MODES` and one of its modes. Per S, every case makes one
    untimed draw first (the same call as the timed ones, so that every pass shape is traced
    and any per-shape choice of the ops is made), then `rounds` timed draws, interleaved
    across the cases.

    Returns:
      {} without a variant of `PREDICT_MODES`, else per S (as a string): `cases`
      ("variant mode" -> median and best images/s, the seconds of the untimed first draw and
      of each timed draw, the traces of the variant's predict function while timed),
      `flipout_best` (Flipout's faster mode)
      and `over_flipout_best` (each MNF variant's median images/s over Flipout's best).
    """
    images = synthetic_batch(num_images, seed=1)[0].numpy()
    cases = [(v, mode) for v in variants if v in PREDICT_MODES for mode in PREDICT_MODES[v]]
    if not cases:
        return {}
    runners = {}
    for variant, _ in cases:
        if variant not in runners:
            tf_keras.utils.set_random_seed(0)
            runners[variant] = Runner(variant)

    def draw(variant: str, mode: str, num_samples: int) -> float:
        start = time.perf_counter()
        logits = runners[variant].predictive(images, num_samples, mode, batch_size)
        seconds = time.perf_counter() - start
        if logits.shape[:2] != (num_samples, num_images) or not np.isfinite(logits).all():
            raise FloatingPointError(f"{variant} {mode}: bad predictive samples")
        return seconds

    result = {}
    for num_samples in sample_counts:
        first = {(variant, mode): draw(variant, mode, num_samples) for variant, mode in cases}
        traces_before = {case: runners[case[0]].tracing_counts()["predict"] for case in cases}
        seconds = {case: [] for case in cases}
        for _ in range(rounds):
            for variant, mode in cases:
                seconds[variant, mode].append(draw(variant, mode, num_samples))
        rows = {
            f"{variant} {mode}": {
                "images_per_s": num_images / float(np.median(seconds[variant, mode])),
                "best_images_per_s": num_images / min(seconds[variant, mode]),
                "first_draw_seconds": first[variant, mode],
                "seconds": seconds[variant, mode],
                "traces_while_timed": runners[variant].tracing_counts()["predict"]
                - traces_before[variant, mode],
            }
            for variant, mode in cases
        }
        flipout = {case: row for case, row in rows.items() if case.startswith("flipout ")}
        best = max(flipout, key=lambda case: flipout[case]["images_per_s"], default=None)
        result[str(num_samples)] = {
            "num_images": num_images,
            "num_samples": num_samples,
            "batch_size": batch_size,
            "cases": rows,
            "flipout_best": None
            if best is None
            else {"case": best, "images_per_s": flipout[best]["images_per_s"]},
            "over_flipout_best": {}
            if best is None
            else {
                case.split()[0]: row["images_per_s"] / flipout[best]["images_per_s"]
                for case, row in rows.items()
                if case.startswith("mnf")
            },
        }
    return result


def cpu_description() -> dict:
    """This CPU's model and ISA flags, and what the op library's metadata says of its build."""
    flags = build_info.cpu_flags()
    library = Path(os.environ.get(_library.LIBRARY_ENV) or _library.DEFAULT_LIBRARY)
    metadata_file = _library.metadata_path(library)
    try:
        metadata = json.loads(metadata_file.read_text())
    except (OSError, ValueError):
        metadata = {}
    if not isinstance(metadata, dict):
        metadata = {}
    build_flags = metadata.get("build_flags")
    build_flags = build_flags if isinstance(build_flags, list) else []
    march = [flag.split("=", 1)[1] for flag in build_flags if str(flag).startswith("-march=")]
    return {
        "model": build_info.cpu_model(),
        "machine": platform.machine(),
        "isa": None if flags is None else [flag for flag in ISA_FLAGS if flag in flags],
        "op_library_metadata": str(metadata_file),
        "op_library_march": march[-1] if march else None,
        "op_library_isa_features": metadata.get("isa_features"),
    }


def format_cpu(cpu: dict) -> str:
    """One line: the CPU model, its ISA flags and the op library's build target."""
    isa = "unknown" if cpu["isa"] is None else " ".join(cpu["isa"]) or "none of the listed"
    features = cpu["op_library_isa_features"]
    return (
        f"CPU: {cpu['model']} ({cpu['machine']}), ISA: {isa}; op library built with "
        f"-march={cpu['op_library_march'] or 'unrecorded'}, assuming "
        f"{' '.join(features) if isinstance(features, list) else 'unrecorded'} features"
    )


def _rss_mib() -> float:
    """This process's peak resident memory in MiB since start or `_reset_peak_rss`.

    Linux: VmHWM of /proc/self/status (ru_maxrss would carry the parent's peak over fork
    and exec); elsewhere ru_maxrss.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak_rss() -> None:
    """Resets VmHWM to the current RSS where Linux allows it (no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def memory_probe(
    variant: str, batch: int, steps: int, num_images: int, optimizer: str, predict_batch: int
) -> dict:
    """Peak RSS of building and training `variant` (and predicting, if Bayesian) here."""
    _reset_peak_rss()
    before = _rss_mib()
    runner = Runner(variant, optimizer)
    x, y = synthetic_batch(batch)
    for _ in range(steps):
        runner.step(x, y)
    if variant in PREDICT_MODES:
        images = synthetic_batch(num_images, seed=1)[0].numpy()
        runner.predictive(images, 2, PREDICT_MODES[variant][0], predict_batch)
    peak = _rss_mib()
    return {"peak_rss_mib": peak, "growth_mib": peak - before}


def memory_in_subprocesses(
    variants: tuple[str, ...],
    batch: int,
    steps: int,
    num_images: int,
    optimizer: str,
    predict_batch: int,
) -> dict[str, dict]:
    """`memory_probe` of each variant in a fresh Python process."""
    results = {}
    for variant in variants:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            f"--memory_probe={variant}",
            f"--batch_sizes={batch}",
            f"--steps={steps}",
            f"--predict_images={num_images}",
            f"--optimizer={optimizer}",
            f"--predict_batch_size={predict_batch}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def _ratio(value: float, reference: float | None) -> str:
    return "-" if reference is None else f"{value / reference:.2f}"


def format_table(result: dict) -> str:
    """Markdown tables: training step times with ratios, prediction, memory."""
    lines = [
        "| batch | model | median ms | min ms | / flipout | / plain |",
        "|---|---|---|---|---|---|",
    ]
    for batch, rows in result["training"].items():
        flipout = rows.get("flipout", {}).get("median_ms")
        plain = rows.get("plain", {}).get("median_ms")
        for variant, row in rows.items():
            lines.append(
                f"| {batch} | {variant} | {row['median_ms']:.1f} | {row['min_ms']:.1f} | "
                f"{_ratio(row['median_ms'], flipout)} | {_ratio(row['median_ms'], plain)} |"
            )
    prediction = result["prediction"]
    if prediction:
        first = next(iter(prediction.values()))
        lines += [
            "",
            f"| prediction S (x {first['num_images']} images, {first['batch_size']} rows per pass) "
            "| model | samples | images/s | best images/s | / flipout best |",
            "|---|---|---|---|---|---|",
        ]
    for num_samples, block in prediction.items():
        best = block["flipout_best"]
        reference = None if best is None else best["images_per_s"]
        for case, row in block["cases"].items():
            variant, mode = case.split()
            lines.append(
                f"| {num_samples} | {variant} | {mode} | {row['images_per_s']:.0f} | "
                f"{row['best_images_per_s']:.0f} | {_ratio(row['images_per_s'], reference)} |"
            )
    if result["memory"]:
        lines += [
            "",
            f"| memory ({result['memory_mode']}) | peak RSS MiB | growth MiB |",
            "|---|---|---|",
        ]
        for variant, row in result["memory"].items():
            peak = row.get("peak_rss_mib")
            peak_cell = "-" if peak is None else f"{peak:.0f}"
            lines.append(f"| {variant} | {peak_cell} | {row['growth_mib']:.0f} |")
    return "\n".join(lines)


def _positive_ints(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(","))
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive ints like 64,128, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; `--quick` shrinks everything to a smoke test."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_sizes", type=_positive_ints, default=(64, 128))
    parser.add_argument("--steps", type=int, default=100, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps after tracing")
    parser.add_argument("--rounds", type=int, default=5, help="interleaving rounds")
    parser.add_argument("--predict_images", type=int, default=1000)
    parser.add_argument(
        "--predict_samples",
        type=_positive_ints,
        default=(20, 100),
        help="posterior samples per image, comma-separated",
    )
    parser.add_argument(
        "--predict_batch_size", type=int, default=500, help="rows per prediction forward pass"
    )
    parser.add_argument(
        "--predict_rounds",
        type=int,
        default=2,
        help="timed draws per case and S, after one untimed",
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=DEFAULT_OPTIMIZER)
    parser.add_argument(
        "--memory", choices=("subprocess", "inprocess", "off"), default="subprocess"
    )
    parser.add_argument("--output", default="bench_models.json", help="JSON result path")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: batch 16, 3 steps, 1 warm-up, 2 samples x 50 images once, "
        "in-process memory",
    )
    parser.add_argument("--memory_probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.steps, args.warmup, args.rounds = (16,), 3, 1, 1
        args.predict_images, args.predict_samples, args.predict_rounds = 50, (2,), 1
        args.memory = "inprocess"
    args.variants = tuple(args.variants.split(","))
    for variant in args.variants:
        if variant not in VARIANTS and variant not in ABLATIONS:
            parser.error(
                f"--variants: unknown {variant!r}, expected some of {VARIANTS} "
                f"or the ablations {tuple(ABLATIONS)}"
            )
    if min(args.steps, args.rounds, args.predict_images, args.predict_batch_size) < 1:
        parser.error("--steps, --rounds, --predict_images, --predict_batch_size must be >= 1")
    if args.predict_rounds < 1:
        parser.error("--predict_rounds must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def run(args: argparse.Namespace) -> dict:
    """Runs the benchmark described by `args`; returns the JSON-ready result."""
    result = {
        "tensorflow": tf.__version__,
        "tensorflow_probability": tfp.__version__,
        "tfp_mnf": tfp_mnf.__version__,
        "fused_ops_available": ops.fused_available(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "cpu": cpu_description(),
        "load_before": os.getloadavg(),
        "steps": args.steps,
        "warmup": args.warmup,
        "optimizer": args.optimizer,
        "training": {},
        "prediction": {},
        "memory": {},
        "memory_mode": args.memory,
    }
    if not ops.fused_available():
        print("WARNING: fused ops unavailable: mnf_fused runs the composite path", flush=True)
    for batch in args.batch_sizes:
        result["training"][str(batch)] = time_training(
            args.variants, batch, args.steps, args.warmup, args.rounds, args.optimizer
        )
    result["prediction"] = time_prediction(
        args.variants,
        args.predict_images,
        args.predict_samples,
        args.predict_batch_size,
        args.predict_rounds,
    )
    result["load_after_timing"] = os.getloadavg()
    if args.memory == "subprocess":
        result["memory"] = memory_in_subprocesses(
            args.variants,
            max(args.batch_sizes),
            max(args.warmup, 3),
            args.predict_images,
            args.optimizer,
            args.predict_batch_size,
        )
    elif args.memory == "inprocess":
        first = result["training"][str(args.batch_sizes[0])]
        result["memory"] = {
            variant: {"peak_rss_mib": None, "growth_mib": row["peak_rss_growth_mib"]}
            for variant, row in first.items()
        }
    return result


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark, prints the tables and writes the JSON."""
    args = parse_args(argv)
    if args.memory_probe:
        probe = memory_probe(
            args.memory_probe,
            args.batch_sizes[0],
            args.steps,
            args.predict_images,
            args.optimizer,
            args.predict_batch_size,
        )
        print(json.dumps(probe))
        return
    print(format_cpu(cpu_description()), flush=True)
    result = run(args)
    print(
        f"TensorFlow {result['tensorflow']}, {result['cpus']} CPUs, load before "
        f"{result['load_before'][0]:.2f} / after {result['load_after_timing'][0]:.2f}, "
        f"{args.steps} timed steps after {args.warmup} warm-up, {args.optimizer}, float32"
    )
    print(format_table(result))
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
