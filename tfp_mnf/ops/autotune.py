"""Picks, by timing, the faster of a fused kernel and the composite path, per shape and CPU.

Some fused kernels compete with TensorFlow's own CPU kernels (oneDNN): the 2-D conv step
has a GEMM of its own, and the dense step fuses the element-wise work around `tf.matmul`.
Which path wins depends on the CPU and on the shapes. With `TFP_MNF_FUSED=auto` (the
default), the first time an op family is built for a new key (its input shapes, dtype and
attributes), `Autotuner.prefers_fused` times both paths, forward and backward (the sum of
the outputs and the gradients of every input), on random inputs of those shapes, in eager
mode outside any graph being traced (`tf.init_scope`), and keeps the faster one:
- in a process-level dict, so a key is timed once per process;
- in the JSON file `cache_path()` (`$XDG_CACHE_HOME/tfp_mnf/autotune.json`, by default
  under `~/.cache`), which is used only on the same CPU model, op-library sources digest and
  TensorFlow version (`machine_identity`). A file that cannot be read is ignored and one
  that cannot be written is skipped; without a recorded sources digest nothing is persisted.

`timing_shapes` says which shapes are timed: a batch dimension that is unknown at tracing
time (as in Keras `fit`) or zero is timed at `REPRESENTATIVE_BATCH` rows; any other unknown
dimension leaves the fused kernels in use, untimed. The fused path wins ties.

`TFP_MNF_FUSED` pins the choice (`policy`): `auto` (timing), `always` (the fused kernels
wherever they apply, untimed) or `never` (the composite path everywhere, as
`TFP_MNF_FORCE_COMPOSITE=1`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfp_mnf.ops import _library, build_info

ENV = "TFP_MNF_FUSED"
POLICIES = ("auto", "always", "never")
FUSED, COMPOSITE = "fused", "composite"
REPRESENTATIVE_BATCH = 128
CACHE_VERSION = 1

Paths = Mapping[str, Callable[[], object]]
Measure = Callable[[Paths], Mapping[str, float]]

_log = logging.getLogger(__name__)


def policy() -> str:
    """The fused/composite policy that `TFP_MNF_FUSED` sets.

    Returns:
      "auto" (also when the variable is unset or empty), "always" or "never".

    Raises:
      ValueError: the variable holds another value.
    """
    value = os.environ.get(ENV, "").strip().lower() or "auto"
    if value not in POLICIES:
        raise ValueError(
            f"{ENV} must be one of {', '.join(POLICIES)} (unset means auto), "
            f"got {os.environ[ENV]!r}"
        )
    return value


def timing_shapes(
    shapes: Mapping[str, tf.TensorShape], batched: Collection[str]
) -> dict[str, tuple[int, ...]] | None:
    """The static shapes at which to time an op whose arguments have `shapes`.

    Args:
      shapes: the static shape of each float argument.
      batched: the arguments whose first dimension is the batch.

    Returns:
      The shapes with an unknown or zero batch dimension replaced by `REPRESENTATIVE_BATCH`,
      or None when any other dimension (or a rank) is unknown.
    """
    timed = {}
    for name, shape in shapes.items():
        if shape.rank is None:
            return None
        dims = shape.as_list()
        if name in batched and dims and not dims[0]:
            dims[0] = REPRESENTATIVE_BATCH
        if None in dims:
            return None
        timed[name] = tuple(dims)
    return timed


def make_key(
    family: str,
    shapes: Mapping[str, tuple[int, ...]],
    dtype: tf.DType,
    attrs: Mapping[str, object],
) -> str:
    """The cache key of one op call: its family, shapes, dtype and attributes, as text.

    Args:
      family: the op's name (`dense_local_reparam_from_variance`, `conv_local_reparam`...).
      shapes: the timed shape of each float argument.
      dtype: the float dtype of the arguments.
      attrs: the attributes that change the computation (strides, padding...).

    Returns:
      A string such as `conv_local_reparam x=128x12x12x20 ... float32 padding=VALID ...`.
    """

    def text(value: object) -> str:
        if isinstance(value, tuple | list):
            return "x".join(map(str, value))
        return str(value)

    parts = [family]
    parts += [f"{name}={text(shape)}" for name, shape in shapes.items()]
    parts.append(tf.as_dtype(dtype).name)
    parts += [f"{name}={text(value)}" for name, value in sorted(attrs.items())]
    return " ".join(parts)


def step_paths(
    ops: Mapping[str, Callable[..., object]],
    shapes: Mapping[str, tuple[int, ...]],
    dtype: tf.DType,
) -> dict[str, Callable[[], object]]:
    """One forward+backward step of each op on the same random inputs, ready to time.

    Each step is a concrete function, traced on its first call, that returns
    `sum(op(**inputs, seed=seed))` and its gradients with respect to every input (returning
    the sum keeps graph optimization from pruning the part of the forward pass that the
    gradients do not need). Every input is uniform in [0.01, 1): positive, so variances and
    log variances alike are valid, and far from denormal numbers.

    Args:
      ops: label -> op, called with the inputs as keyword arguments and a `[2]` int64 `seed`.
      shapes: the shape of each input.
      dtype: the float dtype of the inputs.

    Returns:
      label -> a callable without arguments that runs one step.
    """
    inputs = {
        name: tf.random.stateless_uniform(
            shape, seed=[index, 0], minval=0.01, maxval=1.0, dtype=dtype
        )
        for index, (name, shape) in enumerate(shapes.items())
    }
    seed = tf.constant([1, 2], tf.int64)

    def step_of(op: Callable[..., object]) -> Callable[[], object]:
        # Symbolic gradients: `tf.init_scope` pauses every gradient tape of the thread.
        def step(tensors: dict[str, tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
            outputs = tf.nest.flatten(op(**tensors, seed=seed))
            loss = tf.add_n([tf.reduce_sum(out) for out in outputs])
            return loss, tf.gradients(loss, list(tensors.values()))

        # Run as a concrete function, traced on the first call: calls of many new
        # `tf.function`s of the same code would be reported as excessive retracing.
        concrete = functools.cache(
            functools.partial(tf.function(step, autograph=False).get_concrete_function, inputs)
        )
        return lambda: concrete()(inputs)

    return {label: step_of(op) for label, op in ops.items()}


def time_paths(
    paths: Paths,
    clock: Callable[[], float] = time.perf_counter,
    min_rounds: int = 3,
    max_rounds: int = 25,
    budget_s: float = 0.15,
) -> dict[str, float]:
    """Median seconds of one call of each path.

    Every path is called once untimed (its tracing and first run), then the paths take turns,
    in an order rotated from round to round, for `min_rounds` rounds and then more rounds
    while the timed calls so far took less than `budget_s`, up to `max_rounds`. A call's time
    includes copying its results to NumPy, so that it has finished.

    Args:
      paths: label -> a callable without arguments.
      clock: the clock, in seconds.
      min_rounds: the fewest timed calls of each path.
      max_rounds: the most timed calls of each path.
      budget_s: the time after which no round starts beyond `min_rounds`.

    Returns:
      label -> the median seconds of its timed calls.
    """

    def run(fn: Callable[[], object]) -> None:
        tf.nest.map_structure(lambda t: t.numpy(), fn())

    for fn in paths.values():
        run(fn)
    times = {label: [] for label in paths}
    order = list(paths.items())
    spent = 0.0
    for round_index in range(max_rounds):
        if round_index >= min_rounds and spent >= budget_s:
            break
        shift = round_index % len(order)
        for label, fn in order[shift:] + order[:shift]:
            start = clock()
            run(fn)
            elapsed = clock() - start
            times[label].append(elapsed)
            spent += elapsed
    return {label: float(np.median(t)) for label, t in times.items()}


def cache_path() -> Path:
    """`$XDG_CACHE_HOME/tfp_mnf/autotune.json`, `~/.cache/tfp_mnf/autotune.json` by default."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "tfp_mnf" / "autotune.json"


@functools.cache
def machine_identity() -> dict[str, str | None]:
    """What a persisted choice is valid for.

    Returns:
      {"cpu": this CPU's model, "sources_digest": the op library's sources digest (None where
      its metadata records none), "tensorflow": the TensorFlow version}.
    """
    try:
        digest = _library._metadata(_library._library_path()).get("sources_digest")
    except (OSError, ValueError):
        digest = None
    return {
        "cpu": build_info.cpu_model(),
        "sources_digest": digest,
        "tensorflow": tf.__version__,
    }


@dataclasses.dataclass(frozen=True)
class Decision:
    """The path chosen for one key and the timings it was chosen by.

    Attributes:
      choice: "fused" or "composite".
      fused_ms: the fused path's median milliseconds (None where nothing was timed).
      composite_ms: the composite path's median milliseconds (None where nothing was timed).
    """

    choice: str
    fused_ms: float | None = None
    composite_ms: float | None = None


class Autotuner:
    """Chooses and remembers the faster path of each key (see the module docstring).

    Args:
      measure: times the paths it is given (label -> callable) and returns label -> seconds;
        `time_paths` by default. Tests replace it with fake timings.
      persist: whether to read and write the cache file.
      cache_file: the cache file; by default `cache_path()`, read whenever the file is used.
    """

    def __init__(
        self,
        measure: Measure = time_paths,
        persist: bool = True,
        cache_file: Path | None = None,
    ) -> None:
        self._measure = measure
        self._persist = persist
        self._cache_file = cache_file
        self._decisions: dict[str, Decision] = {}
        self._stored: dict[str, Decision] | None = None
        self._lock = threading.Lock()

    def decisions(self) -> dict[str, Decision]:
        """The decisions of this process so far, by key."""
        with self._lock:
            return dict(self._decisions)

    # Called while a `tf.function` is traced: AutoGraph must not convert the timing code.
    @tf.autograph.experimental.do_not_convert
    def prefers_fused(
        self,
        family: str,
        shapes: Mapping[str, tuple[int, ...]],
        dtype: tf.DType,
        attrs: Mapping[str, object],
        ops: Mapping[str, Callable[..., object]],
    ) -> bool:
        """Whether the fused op is the faster path for this key, timing it if it is new.

        Args:
          family: the op's name.
          shapes: the shape of each float input, as `timing_shapes` returns them.
          dtype: the float dtype of the inputs.
          attrs: the attributes that change the computation (part of the key).
          ops: "fused" and "composite" -> the op of each path, called by `step_paths`.

        Returns:
          False when the composite path was timed faster, True otherwise (also when nothing
          could be timed).
        """
        key = make_key(family, shapes, dtype, attrs)
        with self._lock:
            decision = self._decisions.get(key)
            if decision is None:
                decision = self._decide(key, lambda: step_paths(ops, shapes, dtype))
                self._decisions[key] = decision
        return decision.choice == FUSED

    def _decide(self, key: str, make_paths: Callable[[], Paths]) -> Decision:
        """The stored decision of `key`, or a new one by timing (logged once, and stored)."""
        stored = self._load().get(key)
        if stored is not None:
            _log.info("tfp_mnf autotune: %s -> %s (from %s)", key, stored.choice, self._file())
            return stored
        with tf.init_scope():
            if not tf.executing_eagerly():
                # A TF1-style graph: nothing can run outside it now.
                return Decision(FUSED)
            try:
                seconds = self._measure(make_paths())
            except (ValueError, tf.errors.OpError) as err:
                # Arguments that neither path accepts: the op built next reports the error.
                _log.info("tfp_mnf autotune: %s not timed (%s); fused", key, err)
                return Decision(FUSED)
        fused_ms, composite_ms = 1e3 * seconds[FUSED], 1e3 * seconds[COMPOSITE]
        decision = Decision(COMPOSITE if composite_ms < fused_ms else FUSED, fused_ms, composite_ms)
        _log.info(
            "tfp_mnf autotune: %s -> %s (forward+backward median: fused %.3f ms, composite "
            "%.3f ms; %s)",
            key,
            decision.choice,
            fused_ms,
            composite_ms,
            machine_identity()["cpu"],
        )
        self._store(key, decision)
        return decision

    def _file(self) -> Path:
        return self._cache_file or cache_path()

    def _read(self) -> dict[str, Decision]:
        """The decisions the cache file holds for this machine ({} if none or unreadable)."""
        identity = machine_identity()
        if not self._persist or identity["sources_digest"] is None:
            return {}
        try:
            content = json.loads(self._file().read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(content, dict) or content.get("version") != CACHE_VERSION:
            return {}
        if content.get("identity") != identity or not isinstance(content.get("choices"), dict):
            return {}
        stored = {}
        for key, entry in content["choices"].items():
            try:
                decision = Decision(**entry)
            except TypeError:
                continue
            if decision.choice in (FUSED, COMPOSITE):
                stored[key] = decision
        return stored

    def _load(self) -> dict[str, Decision]:
        """The decisions of the cache file, read once."""
        if self._stored is None:
            self._stored = self._read()
        return self._stored

    def _store(self, key: str, decision: Decision) -> None:
        """Adds `decision` to the cache file (merged with what other processes wrote since)."""
        identity = machine_identity()
        if not self._persist or identity["sources_digest"] is None:
            return
        self._stored = {**self._load(), **self._read(), key: decision}
        content = {
            "version": CACHE_VERSION,
            "identity": identity,
            "choices": {k: dataclasses.asdict(d) for k, d in sorted(self._stored.items())},
        }
        path = self._file()
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(content, indent=1))
            os.replace(temporary, path)
        except OSError as err:
            _log.info("tfp_mnf autotune: not saving the choice to %s: %s", path, err)
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


TUNER = Autotuner()
"""The autotuner that `tfp_mnf.ops.policy` asks; replace it to change the measurement or
the cache file."""
