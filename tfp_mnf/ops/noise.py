"""Standard normal noise from a `[2]` seed: `tf.random.stateless_normal`'s stream, from the
vectorized Philox / Box-Muller generator of the other fused CPU kernels (csrc/noise/) where it
applies. The MNF layers draw their z_0 and r(z | W) noise with it."""

import tensorflow as tf

from tfp_mnf.ops import _checks, _library, policy


def stateless_normal(
    shape: tf.Tensor | list[int], seed: tf.Tensor, dtype: tf.DType = tf.float32
) -> tf.Tensor:
    """`tf.random.stateless_normal(shape, seed, dtype=dtype)`, element for element.

    Fused on the CPU for float32/float64 where the fused kernels apply (`policy`),
    `tf.random.stateless_normal` otherwise.

    Args:
      shape: 1-D int32/int64 shape of the output.
      seed: `[2]` int32/int64 seed.
      dtype: float dtype of the output.

    Returns:
      Standard normal samples of `shape`.

    Raises:
      TypeError: a non-integer seed or a non-float dtype.
    """
    dtype = tf.as_dtype(dtype)
    if not dtype.is_floating:
        raise TypeError(f"dtype must be a floating dtype, got {dtype.name}")
    seed = _checks.as_seed(seed)
    if policy.fused_applies(dtype, cpu_only=True):
        return fused(shape, seed, dtype)
    return tf.random.stateless_normal(shape, seed=seed, dtype=dtype)


def fused(shape: tf.Tensor | list[int], seed: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """`stateless_normal` as one fused op, the same stream as `tf.random.stateless_normal`;
    checked arguments."""
    return _library.load().mnf_stateless_normal(shape, seed, dtype=dtype)
