"""Keras-free parameter declarations: shapes, initial values, and packing into one vector.

An optimizer such as tf_keras' or Keras 3's Adam runs a fixed set of small ops per
variable. An MNF layer has many small parameters (biases, q(z_0), r(z | W) and every flow
step's weights), so they are declared here as a `ParameterPack` and stored in ONE flat
variable that the Keras front-end creates (`add_weight(shape=[pack.size],
initializer=pack.initializer)`); each call unpacks it with one `tf.split` (whose gradient is
one concat).

Initial values are drawn with TensorFlow's random ops: unseeded (the global seed applies)
when `seed` is None, else stateless from `derive_seed(seed, *path)`, so seeded layers are
reproducible and no two parameters share a random stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

InitialValue = Callable[[tf.DType], tf.Tensor]

_SEED_RANGE = 2**31 - 1


def derive_seed(seed: int | None, *path: int) -> int | None:
    """Derives an independent seed for the parameter at `path` (None stays None).

    Args:
      seed: a non-negative integer seed, or None for unseeded initialization.
      *path: non-negative integers locating the parameter (layer index, parameter index).

    Returns:
      A non-negative 31-bit integer seed, or None when `seed` is None.
    """
    if seed is None:
        return None
    state = np.random.SeedSequence([seed, *path]).generate_state(1)[0]
    return int(state) % _SEED_RANGE


def _stateless_seed(seed: int) -> tf.Tensor:
    return tf.constant([seed, 0], tf.int64)


def normal(shape: Sequence[int], mean: float, stddev: float, seed: int | None) -> InitialValue:
    """Initial values N(mean, stddev^2)."""

    def value(dtype: tf.DType) -> tf.Tensor:
        if seed is None:
            return tf.random.normal(shape, mean, stddev, dtype)
        return tf.random.stateless_normal(shape, _stateless_seed(seed), mean, stddev, dtype)

    return value


def uniform(shape: Sequence[int], limit: float, seed: int | None) -> InitialValue:
    """Initial values U(-limit, limit)."""

    def value(dtype: tf.DType) -> tf.Tensor:
        if seed is None:
            return tf.random.uniform(shape, -limit, limit, dtype)
        return tf.random.stateless_uniform(shape, _stateless_seed(seed), -limit, limit, dtype)

    return value


def glorot_uniform(shape: Sequence[int], seed: int | None, scale: float = 1.0) -> InitialValue:
    """Glorot-uniform initial values of a `[fan_in, fan_out]` kernel, variance times `scale`."""
    fan_in, fan_out = shape
    return uniform(shape, math.sqrt(6.0 * scale / (fan_in + fan_out)), seed)


def constant(shape: Sequence[int], value: float) -> InitialValue:
    """Initial values all equal to `value`."""
    return lambda dtype: tf.fill(shape, tf.constant(value, dtype))


class ParameterPack:
    """Named parameters of given shapes stored in one flat vector, in declaration order.

    Parameters are declared with `add` (each with its own initial value) or `add_joint`
    (several initialized together, e.g. a planar flow's `u`, which depends on `w`).
    """

    def __init__(self) -> None:
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._initializers: list[tuple[tuple[str, ...], Callable]] = []

    def add(self, name: str, shape: Sequence[int], initial_value: InitialValue) -> None:
        """Declares parameter `name` of `shape` with its own initial value."""
        self._declare(name, shape)
        self._initializers.append(((name,), lambda dtype: {name: initial_value(dtype)}))

    def add_joint(
        self,
        shapes: Mapping[str, Sequence[int]],
        initial_values: Callable[[tf.DType], Mapping[str, tf.Tensor]],
    ) -> None:
        """Declares several parameters initialized together by `initial_values(dtype)`."""
        for name, shape in shapes.items():
            self._declare(name, shape)
        self._initializers.append((tuple(shapes), initial_values))

    def extend(self, other: ParameterPack) -> None:
        """Appends every parameter of `other` (names must not collide)."""
        for name, shape in other._shapes.items():
            self._declare(name, shape)
        self._initializers.extend(other._initializers)

    def _declare(self, name: str, shape: Sequence[int]) -> None:
        if name in self._shapes:
            raise ValueError(f"parameter {name!r} is declared twice")
        self._shapes[name] = tuple(int(d) for d in shape)

    @property
    def names(self) -> list[str]:
        """The parameter names, in packing order."""
        return list(self._shapes)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, in packing order."""
        return dict(self._shapes)

    @property
    def sizes(self) -> list[int]:
        """The number of entries of each parameter, in packing order."""
        return [math.prod(shape) for shape in self._shapes.values()]

    @property
    def size(self) -> int:
        """The length of the packed vector."""
        return sum(self.sizes)

    def initial_values(self, dtype: tf.DType = tf.float32) -> dict[str, tf.Tensor]:
        """Fresh initial values of every parameter (random ones drawn anew)."""
        values = {}
        for _, initialize in self._initializers:
            values.update(initialize(tf.as_dtype(dtype)))
        return values

    def initializer(self, shape: Sequence[int], dtype: tf.DType = tf.float32) -> tf.Tensor:
        """A Keras initializer `(shape, dtype) -> tensor` of the packed vector."""
        if tuple(shape) != (self.size,):
            raise ValueError(f"the packed vector has shape ({self.size},), got {tuple(shape)}")
        return self.pack(self.initial_values(dtype or tf.float32), dtype or tf.float32)

    def pack(self, values: Mapping[str, object], dtype: tf.DType = tf.float32) -> tf.Tensor:
        """Packs a value for every parameter (each of its declared shape) into one vector."""
        missing = [name for name in self._shapes if name not in values]
        unknown = [name for name in values if name not in self._shapes]
        if missing or unknown:
            raise ValueError(
                f"pack needs exactly {self.names}: missing {missing}, unknown {unknown}"
            )
        flat = []
        for name, shape in self._shapes.items():
            value = tf.convert_to_tensor(values[name], dtype)
            if tuple(value.shape) != shape:
                raise ValueError(f"parameter {name!r} must have shape {shape}, got {value.shape}")
            flat.append(tf.reshape(value, [-1]))
        if not flat:
            return tf.zeros([0], dtype)
        return tf.concat(flat, axis=0)

    def deferred(self, packed: tf.Variable) -> dict[str, tfp.util.DeferredTensor]:
        """Name -> a `tfp.util.DeferredTensor` that reads its slice of `packed` on each use.

        For objects built once and used many times (a `tfb.Bijector` of a standalone flow):
        every use reads the variable anew, so gradients and updates reach it.
        """
        offsets = np.cumsum([0, *self.sizes])
        return {
            name: tfp.util.DeferredTensor(
                packed,
                lambda v, begin=begin, end=end, shape=shape: tf.reshape(v[begin:end], shape),
                shape=shape,
            )
            for (name, shape), begin, end in zip(
                self._shapes.items(), offsets[:-1], offsets[1:], strict=True
            )
        }

    def unpack(self, packed: tf.Tensor) -> dict[str, tf.Tensor]:
        """Splits a packed vector (or its gradient) into name -> tensor of its shape."""
        packed = tf.convert_to_tensor(packed)
        if not self._shapes:
            return {}
        pieces = tf.split(packed, self.sizes, axis=0)
        return {
            name: tf.reshape(piece, shape)
            for (name, shape), piece in zip(self._shapes.items(), pieces, strict=True)
        }
