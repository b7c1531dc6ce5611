"""Flows for MNF posteriors: a chain of `num_layers` steps of one kind as a Keras layer.

References:
  Louizos & Welling (2017), Multiplicative Normalizing Flows for Variational Bayesian
  Neural Networks, arXiv:1703.01961 (RealNVP flows, the halves swapped between layers).
  Rezende & Mohamed (2015), arXiv:1505.05770 (planar); Dinh et al. (2017), arXiv:1605.08803
  (RealNVP); Kingma et al. (2016), arXiv:1606.04934 (IAF); Papamakarios et al. (2017),
  arXiv:1705.07057 (MAF).
"""

import numbers
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfp_mnf.bijectors import initializers, steps

tfb = tfp.bijectors

__all__ = ["FLOW_KINDS", "Flow", "make_flow"]

FLOW_KINDS = ("planar", "realnvp", "iaf", "maf")


def _check_int(name: str, value: object, minimum: int) -> int:
    """Returns `value` as an int, or raises if it is not an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
class Flow(tf_keras.layers.Layer):
    """A normalizing flow on `[..., event_size]` vectors: `num_layers` steps of one kind.

    Kinds (all start close to the identity):
    - `"planar"`: planar flows (`Planar`), forward one pass, inverse a scalar Newton solve.
    - `"realnvp"`: `tfb.RealNVP` affine coupling layers with an MLP of `hidden_units`
      (MNF's choice); both directions one pass.
    - `"iaf"`: `tfb.Invert(tfb.MaskedAutoregressiveFlow(MADE))`: forward (sampling) is one
      parallel pass, inverse (density of given points) `event_size` sequential passes.
    - `"maf"`: `tfb.MaskedAutoregressiveFlow(MADE)`: forward is `event_size` sequential
      passes, inverse one pass (the density-estimation direction). Prefer "iaf" where the
      forward direction is used on every step, as in MNF layers.
    For `"realnvp"`, `"iaf"` and `"maf"` every second step works in the reverse order: the
    coupling layer conditions on the last half instead of the first (`tfb.RealNVP` with a
    negative `num_masked`), the MADE uses the right-to-left input order. That is the same
    family of flows as a reverse `tfb.Permute` between the steps, without the permutations'
    gathers (and their scatter gradients) on every call. Each step starts near the identity,
    and so does the flow.

    With `event_size == 1`, "realnvp", "iaf" and "maf" steps are unconditioned element-wise
    affine maps (`AffineStep`): there is nothing to condition on in one dimension.
    `num_layers == 0` gives the identity bijector and no variables.

    Use: `flow.build((None, event_size))` creates every variable; then `flow.bijector` is a
    `tfb.Bijector` (event_ndims = 1) built on those variables and `flow(z)` its forward.
    The flow computes in its variable dtype (float32 also under a `mixed_float16` policy):
    feed `flow.bijector` tensors of that dtype; `flow(z)` casts `z` to it.

    Args:
      kind: one of `FLOW_KINDS`.
      num_layers: number of flow steps, >= 0.
      event_size: size of the vectors, >= 1.
      hidden_units: hidden width of the RealNVP / MADE networks, >= 1.
      seed: non-negative integer seed of all initializers, or None.
      **kwargs: `tf_keras.layers.Layer` arguments (name, dtype, trainable).

    Raises:
      ValueError: for an unknown `kind`, a negative `num_layers`, a non-positive
        `event_size` or `hidden_units`, or a negative `seed`.
      TypeError: for a non-integer `num_layers`, `event_size`, `hidden_units` or `seed`.
    """

    def __init__(  # noqa: ANN003
        self,
        kind: str,
        num_layers: int,
        event_size: int,
        hidden_units: int = 50,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        if kind not in FLOW_KINDS:
            raise ValueError(f"`kind` must be one of {FLOW_KINDS}, got {kind!r}.")
        num_layers = _check_int("num_layers", num_layers, 0)
        event_size = _check_int("event_size", event_size, 1)
        hidden_units = _check_int("hidden_units", hidden_units, 1)
        if seed is not None:
            seed = _check_int("seed", seed, 0)
        kwargs.setdefault("autocast", False)  # flows compute in the variable dtype
        super().__init__(**kwargs)
        self.kind = kind
        self.num_layers = num_layers
        self.event_size = event_size
        self.hidden_units = hidden_units
        self.seed = seed

    def build(self, input_shape: tf.TensorShape) -> None:
        last = tf.TensorShape(input_shape)[-1]
        if last is not None and last != self.event_size:
            raise ValueError(
                f"`input_shape` must end in event_size={self.event_size}, got {input_shape}."
            )
        self._steps = [self._make_step(i) for i in range(self.num_layers)]
        for step in self._steps:
            with tf.name_scope(step.name):  # unique variable names, as h5 files need
                step.build((None, self.event_size))
        super().build(input_shape)

    def _make_step(self, index: int) -> steps.FlowStep:
        common = dict(
            event_size=self.event_size,
            seed=initializers.derive_seed(self.seed, index),
            dtype=self.dtype,
            name=f"{self.name}_{index}",
        )
        if self.kind == "planar":
            return steps.PlanarStep(**common)
        if self.event_size == 1:
            return steps.AffineStep(**common)
        reverse = index % 2 == 1
        if self.kind == "realnvp":
            return steps.CouplingStep(hidden_units=self.hidden_units, reverse=reverse, **common)
        return steps.AutoregressiveStep(
            hidden_units=self.hidden_units,
            inverse_autoregressive=self.kind == "iaf",
            reverse=reverse,
            **common,
        )

    @property
    def bijector(self) -> tfb.Bijector:
        """The flow as a `tfb.Bijector` on vectors (event_ndims = 1).

        A new, stateless `tfb.Chain` over the flow's variables on each access (cheap), so
        no bijector cache outlives a `tf.function` trace.

        Raises:
          RuntimeError: if the flow is not built yet (variables are created in `build`).
        """
        if not self.built:
            raise RuntimeError(
                f"Flow {self.name!r} is not built: call `build((None, event_size))` first."
            )
        if not self._steps:
            return tfb.Identity()
        return tfb.Chain([step.bijector for step in self._steps[::-1]])  # last applied first

    def call(self, z: tf.Tensor) -> tf.Tensor:
        return self.bijector.forward(tf.cast(z, self.dtype))

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "kind": self.kind,
            "num_layers": self.num_layers,
            "event_size": self.event_size,
            "hidden_units": self.hidden_units,
            "seed": self.seed,
        }


def make_flow(
    kind: str,
    num_layers: int,
    event_size: int,
    hidden_units: int = 50,
    seed: int | None = None,
    name: str | None = None,
    dtype: Any = None,
) -> Flow:
    """Creates an unbuilt `Flow` of `num_layers` steps of `kind` (see `Flow`).

    Args:
      kind: one of `FLOW_KINDS` ("planar", "realnvp", "iaf", "maf").
      num_layers: number of flow steps, >= 0 (0: identity).
      event_size: size of the vectors the flow transforms, >= 1.
      hidden_units: hidden width of the RealNVP / MADE networks, >= 1.
      seed: non-negative integer seed of all initializers, or None.
      name: name of the Keras layer.
      dtype: dtype or dtype policy of the Keras layer (None: the global policy).

    Returns:
      A `Flow` layer; call `flow.build((None, event_size))` before using `flow.bijector`.
    """
    return Flow(
        kind, num_layers, event_size, hidden_units=hidden_units, seed=seed, name=name, dtype=dtype
    )
