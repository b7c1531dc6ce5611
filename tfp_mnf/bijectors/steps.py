"""One step of a flow as a Keras layer: owns the step's variables, exposes its bijector.

Each step creates all of its variables (also those of nested Keras layers) in `build`, each
with its own seeded initializer (see `initializers.py`), and starts close to the identity.
`Flow` (flow.py) chains the steps' bijectors.
"""

import math
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfp_mnf.bijectors import initializers
from tfp_mnf.bijectors.made import MADE
from tfp_mnf.bijectors.planar import Planar

tfb = tfp.bijectors

__all__ = ["AffineStep", "AutoregressiveStep", "CouplingStep", "FlowStep", "PlanarStep"]


class FlowStep(tf_keras.layers.Layer):
    """Base of a flow step on `[..., event_size]` vectors.

    Args:
      event_size: size of the vectors the step transforms.
      seed: non-negative integer seed of the step's initializers, or None.
      **kwargs: `tf_keras.layers.Layer` arguments (name, dtype, trainable).
    """

    def __init__(self, event_size: int, seed: int | None = None, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.event_size = event_size
        self.seed = seed

    @property
    def bijector(self) -> tfb.Bijector:
        """The step's bijector on vectors (event_ndims = 1), built from its variables."""
        raise NotImplementedError

    def _seed(self, index: int) -> int | None:
        return initializers.derive_seed(self.seed, index)

    def get_config(self) -> dict:
        return {**super().get_config(), "event_size": self.event_size, "seed": self.seed}


class PlanarStep(FlowStep):
    """A planar flow `z + u_hat tanh(w^T z + b)` with variables `u`, `w`, `b`.

    `w ~ N(0, 1/d)`, `b = 0` and `u` such that `u_hat` is O(0.01) (near the identity).
    """

    def build(self, input_shape: tf.TensorShape) -> None:
        d = self.event_size
        self.w = self.add_weight(
            name="w",
            shape=[d],
            initializer=tf_keras.initializers.RandomNormal(
                stddev=1.0 / math.sqrt(d), seed=self._seed(0)
            ),
        )
        self.u = self.add_weight(
            name="u",
            shape=[d],
            initializer=initializers.planar_u_initializer(self.w, self._seed(1)),
        )
        self.b = self.add_weight(name="b", shape=[], initializer="zeros")
        super().build(input_shape)

    @property
    def bijector(self) -> tfb.Bijector:
        return Planar(self.u, self.w, self.b)


class AffineStep(FlowStep):
    """An unconditioned element-wise affine `z * exp(log_scale) + shift`, initialised at identity.

    Used by "realnvp", "iaf" and "maf" for `event_size == 1`: a coupling layer cannot split
    one dimension, and the first output of an autoregressive network depends on no input,
    so each of those flows reduces to exactly this map in one dimension.
    """

    def build(self, input_shape: tf.TensorShape) -> None:
        self.shift = self.add_weight(name="shift", shape=[self.event_size], initializer="zeros")
        self.log_scale = self.add_weight(
            name="log_scale", shape=[self.event_size], initializer="zeros"
        )
        super().build(input_shape)

    @property
    def bijector(self) -> tfb.Bijector:
        return tfb.Chain([tfb.Shift(self.shift), tfb.Scale(log_scale=self.log_scale)])


class _RealNVP(tfb.RealNVP):
    """`tfb.RealNVP` whose forward pass is one conditioner evaluation for output and log-det.

    TFP's forward slices the input twice, applies Shift o Scale bijectors, and evaluates the
    conditioner network again for `forward_log_det_jacobian(x)`; MNF needs both at every call
    (z_T and log q(z_T)). Here the forward pass splits the input once (`tf.split`, whose
    gradient is one concat), computes y2 = x2 * exp(log_scale(x1)) + shift(x1), and stores
    -sum(log_scale) as the cached inverse log-det of `x`, where `forward_log_det_jacobian(x)`
    finds it. The inverse and every other method are TFP's.
    """

    def _forward(self, x: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        self._cache_input_depth(x)
        masked = abs(self._masked_size)
        sizes = [masked, self._input_depth - masked]
        if self._reverse_mask:  # the last units condition the first ones
            x1, x0 = tf.split(x, sizes[::-1], axis=-1)
        else:
            x0, x1 = tf.split(x, sizes, axis=-1)
        shift, log_scale = self._shift_and_log_scale_fn(x0, sizes[1])
        y1 = x1 * tf.exp(log_scale) + shift
        self._cache.forward_attributes(x, **kwargs)["ildj"] = -tf.reduce_sum(log_scale, -1)
        return tf.concat([y1, x0] if self._reverse_mask else [x0, y1], axis=-1)


class CouplingStep(FlowStep):
    """A RealNVP affine coupling layer (Dinh et al., 2017) with a one-hidden-layer MLP.

    The first `event_size // 2` inputs pass unchanged and condition shift and log-scale of
    the rest: `y2 = z2 * exp(log_scale(z1)) + shift(z1)`; with `reverse=True` the last
    `event_size // 2` inputs condition the first ones (`tfb.RealNVP` with a negative
    `num_masked`). Both directions are one pass. The MLP is Dense(hidden_units, tanh) ->
    Dense(2 * (event_size - event_size // 2)), the last layer initialised small so the step
    starts near the identity.

    Args:
      event_size: size of the vectors, at least 2.
      hidden_units: width of the hidden layer.
      reverse: condition on the last half instead of the first.
      seed: seed of the initializers, or None.
      **kwargs: `tf_keras.layers.Layer` arguments.
    """

    def __init__(  # noqa: ANN003
        self,
        event_size: int,
        hidden_units: int,
        reverse: bool = False,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(event_size, seed, **kwargs)
        self.hidden_units = hidden_units
        self.reverse = reverse

    def build(self, input_shape: tf.TensorShape) -> None:
        num_masked = self.event_size // 2
        self._hidden_layer = tf_keras.layers.Dense(
            self.hidden_units,
            activation="tanh",
            kernel_initializer=initializers.glorot(self._seed(0)),
            dtype=self.dtype,
            name="hidden",
        )
        self._output_layer = tf_keras.layers.Dense(
            2 * (self.event_size - num_masked),
            kernel_initializer=initializers.small(self._seed(1)),
            dtype=self.dtype,
            name="shift_and_log_scale",
        )
        with tf.name_scope(self._hidden_layer.name):
            self._hidden_layer.build((None, num_masked))
        with tf.name_scope(self._output_layer.name):
            self._output_layer.build((None, self.hidden_units))
        super().build(input_shape)

    def _shift_and_log_scale(self, z1: tf.Tensor, output_units: int) -> tuple[tf.Tensor, tf.Tensor]:
        shift, log_scale = tf.split(self._output_layer(self._hidden_layer(z1)), 2, axis=-1)
        return shift, log_scale

    @property
    def bijector(self) -> tfb.Bijector:
        num_masked = self.event_size // 2
        return _RealNVP(
            num_masked=-num_masked if self.reverse else num_masked,
            shift_and_log_scale_fn=self._shift_and_log_scale,
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "hidden_units": self.hidden_units, "reverse": self.reverse}


class AutoregressiveStep(FlowStep):
    """A masked autoregressive affine step on a MADE network.

    `tfb.MaskedAutoregressiveFlow` (MAF, Papamakarios et al., 2017) maps
    `y_i = z_i * exp(log_scale_i(y_<i)) + shift_i(y_<i)`: its forward pass needs
    `event_size` sequential network evaluations, its inverse one (the density-estimation
    direction). With `inverse_autoregressive=True` the step is
    `tfb.Invert(tfb.MaskedAutoregressiveFlow(...))` (IAF, Kingma et al., 2016):
    `y = (z - shift(z)) * exp(-log_scale(z))`, forward and its log-determinant in one
    parallel pass (the sampling direction) and the inverse sequential.

    The MADE (`made.MADE`, a `tfb.AutoregressiveNetwork`) has one hidden layer of
    `hidden_units` tanh units; its output kernel is initialised small so the step starts
    near the identity. `reverse=True` gives it the right-to-left input order.

    Args:
      event_size: size of the vectors, at least 2.
      hidden_units: width of the MADE's hidden layer.
      inverse_autoregressive: True for IAF (fast forward), False for MAF (fast inverse).
      reverse: autoregressive in the right-to-left order.
      seed: seed of the initializers, or None.
      **kwargs: `tf_keras.layers.Layer` arguments.
    """

    def __init__(  # noqa: ANN003
        self,
        event_size: int,
        hidden_units: int,
        inverse_autoregressive: bool,
        reverse: bool = False,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(event_size, seed, **kwargs)
        self.hidden_units = hidden_units
        self.inverse_autoregressive = inverse_autoregressive
        self.reverse = reverse

    def build(self, input_shape: tf.TensorShape) -> None:
        self._made = MADE(
            self.event_size,
            [self.hidden_units],
            [initializers.glorot(self._seed(0)), initializers.small(self._seed(1))],
            input_order="right-to-left" if self.reverse else "left-to-right",
            dtype=self.dtype,
            name="made",
        )
        with tf.name_scope(self._made.name):
            self._made.build((None, self.event_size))
        super().build(input_shape)

    @property
    def bijector(self) -> tfb.Bijector:
        maf = tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=self._made)
        return tfb.Invert(maf) if self.inverse_autoregressive else maf

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "inverse_autoregressive": self.inverse_autoregressive,
            "reverse": self.reverse,
        }
