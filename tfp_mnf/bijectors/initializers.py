"""Seeded initializers for flow variables: one fresh, independently seeded instance each.

tf_keras initializer instances return identical values on every call (seeded or not), so a
shared instance silently ties variables together. Every variable of a flow therefore gets its
own instance, seeded by `derive_seed(seed, *path)` from the flow's seed and the variable's
position, so seeded flows are reproducible and no two variables share a random stream.
"""

import math

import numpy as np
import tensorflow as tf
import tf_keras

__all__ = ["derive_seed", "glorot", "planar_u_initializer", "small"]

_SMALL_SCALE = 1e-4  # variance factor of last layers: 1e-2 x Glorot std, near-identity flows


def derive_seed(seed: int | None, *path: int) -> int | None:
    """Derives an independent seed for the variable at `path` (None stays None).

    Args:
      seed: the flow's non-negative integer seed, or None for unseeded initialization.
      *path: non-negative integers locating the variable (layer index, variable index).

    Returns:
      A non-negative 31-bit integer seed, or None when `seed` is None.
    """
    if seed is None:
        return None
    state = np.random.SeedSequence([seed, *path]).generate_state(1)[0]
    return int(state) % (2**31 - 1)


def glorot(seed: int | None) -> tf_keras.initializers.Initializer:
    """A Glorot-uniform initializer instance with its own seed."""
    return tf_keras.initializers.GlorotUniform(seed=seed)


def small(seed: int | None) -> tf_keras.initializers.Initializer:
    """A Glorot-uniform initializer scaled by 1e-2, for last layers of near-identity flows."""
    return tf_keras.initializers.VarianceScaling(
        scale=_SMALL_SCALE, mode="fan_avg", distribution="uniform", seed=seed
    )


def planar_u_initializer(w: tf.Variable, seed: int | None) -> object:
    """Initializer of a planar flow's `u` that makes the flow start near the identity.

    With `u = softplus^-1(1) w / ||w||^2 + n`, `n ~ N(0, 0.01^2)`, the constrained
    `u_hat = u + (m(w^T u) - w^T u) w / ||w||^2` (m(a) = -1 + softplus(a)) is O(0.01), so
    `f(z) = z + u_hat tanh(w^T z + b)` is close to the identity.

    Args:
      w: the (already initialized) `[d]` variable `w`.
      seed: seed of the noise `n`.

    Returns:
      An initializer callable `(shape, dtype) -> tensor`.
    """
    noise = tf_keras.initializers.RandomNormal(stddev=0.01, seed=seed)
    inverse_softplus_one = math.log(math.e - 1.0)

    def initializer(shape, dtype=None):  # noqa: ANN001, ANN202
        w0 = tf.cast(tf.convert_to_tensor(w), dtype)
        return inverse_softplus_one * w0 / tf.reduce_sum(w0**2) + noise(shape, dtype=dtype)

    return initializer
