"""A standalone normalizing flow as a tf_keras layer: one variable, a `tfb.Bijector`.

`FlowLogic` is the layer, Keras-agnostic: `Flow` puts it on a `tf_keras` Layer and
`tfp_mnf.keras.Flow` on a Keras 3 one; `flow_factory` gives each its `make_flow`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfp_mnf.bijectors import NormalizingFlow

tfb = tfp.bijectors


class FlowLogic:
    """A `tfp_mnf.bijectors.NormalizingFlow` whose parameters live in one variable.

    `flow.build((None, event_size))` creates the variable `parameters` (every step's
    parameters packed, see `tfp_mnf.parameters`); then `flow.bijector` is the flow's
    `tfb.Bijector` (event_ndims = 1) on that variable and `flow(z)` its forward. The flow
    computes in its variable dtype (float32 also under a `mixed_float16` policy): feed
    `flow.bijector` tensors of that dtype; `flow(z)` casts `z` to it.

    Args:
      kind: one of `tfp_mnf.bijectors.FLOW_KINDS` ("planar", "realnvp", "iaf", "maf").
      num_layers: number of flow steps, >= 0 (0: identity).
      event_size: size of the vectors, >= 1.
      hidden_units: hidden width of the RealNVP / MADE networks, >= 1.
      seed: non-negative integer seed of the initial values, or None.
      **kwargs: Keras `Layer` arguments (name, dtype, trainable).

    Raises:
      ValueError: for a bad `kind`, `num_layers`, `event_size`, `hidden_units` or `seed`.
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
        kwargs.setdefault("autocast", False)  # flows compute in the variable dtype
        super().__init__(**kwargs)
        self.flow = NormalizingFlow(
            kind, num_layers, event_size, hidden_units, seed, name=self.name
        )

    def build(self, input_shape: tf.TensorShape) -> None:
        last = tf.TensorShape(input_shape)[-1]
        if last is not None and last != self.flow.event_size:
            raise ValueError(
                f"`input_shape` must end in event_size={self.flow.event_size}, got {input_shape}."
            )
        self._pack = self.flow.parameters()
        self.parameters = None  # no variable without parameters (zero steps: the identity)
        if self._pack.size:
            self.parameters = self.add_weight(
                name="parameters",
                shape=(self._pack.size,),
                initializer=self._pack.initializer,
                autocast=False,  # the flow computes in the variable dtype
            )
        super().build(input_shape)

    def parameter_values(self) -> dict[str, tf.Tensor]:
        """The steps' parameters by name, unpacked from the variable."""
        self._require_built()
        if self.parameters is None:
            return {}
        return self._pack.unpack(self.parameters)

    def _require_built(self) -> None:
        if not self.built:
            raise RuntimeError(
                f"Flow {self.name!r} is not built: call `build((None, event_size))` first."
            )

    def _deferred_values(self) -> dict[str, tfp.util.DeferredTensor]:
        self._require_built()
        return {} if self.parameters is None else self._pack.deferred(self.parameters)

    @property
    def bijector(self) -> tfb.Bijector:
        """The flow as a `tfb.Bijector` on vectors (event_ndims = 1), a new one per access.

        Its parameters read the variable on every use, so a bijector (or a
        `tfd.TransformedDistribution` on it) made once keeps training the variable.

        Raises:
          RuntimeError: if the flow is not built yet (the variable is created in `build`).
        """
        return self.flow.bijector(self._deferred_values())

    def step_bijectors(self) -> list[tfb.Bijector]:
        """Each step's bijector, in the order they are applied."""
        return self.flow.step_bijectors(self._deferred_values())

    def call(self, z: tf.Tensor) -> tf.Tensor:
        return self.bijector.forward(tf.cast(z, self.dtype))

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "kind": self.flow.kind,
            "num_layers": self.flow.num_layers,
            "event_size": self.flow.event_size,
            "hidden_units": self.flow.hidden_units,
            "seed": self.flow.seed,
        }


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
class Flow(FlowLogic, tf_keras.layers.Layer):
    __doc__ = FlowLogic.__doc__


def flow_factory(flow_class: type) -> Callable[..., Any]:
    """The `make_flow` function of a front-end's `Flow` layer class.

    Args:
      flow_class: `Flow` (tf_keras) or `tfp_mnf.keras.Flow` (Keras 3).

    Returns:
      `make_flow(kind, num_layers, event_size, hidden_units, seed, name, dtype)`, which
      creates an unbuilt `flow_class` layer.
    """

    def make_flow(
        kind: str,
        num_layers: int,
        event_size: int,
        hidden_units: int = 50,
        seed: int | None = None,
        name: str | None = None,
        dtype: Any = None,
    ) -> Any:
        """Creates an unbuilt `Flow` layer of `num_layers` steps of `kind` (see `Flow`).

        Args:
          kind: one of `tfp_mnf.bijectors.FLOW_KINDS` ("planar", "realnvp", "iaf", "maf").
          num_layers: number of flow steps, >= 0 (0: identity).
          event_size: size of the vectors the flow transforms, >= 1.
          hidden_units: hidden width of the RealNVP / MADE networks, >= 1.
          seed: non-negative integer seed of the initial values, or None.
          name: name of the Keras layer.
          dtype: dtype or dtype policy of the Keras layer (None: the global policy).

        Returns:
          A `Flow` layer; call `flow.build((None, event_size))` before using
          `flow.bijector`.
        """
        return flow_class(
            kind,
            num_layers,
            event_size,
            hidden_units=hidden_units,
            seed=seed,
            name=name,
            dtype=dtype,
        )

    return make_flow


make_flow = flow_factory(Flow)
