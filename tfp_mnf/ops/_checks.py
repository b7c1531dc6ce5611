"""Argument checks shared by the op families: float tensors of one dtype, static shapes and
seeds, each naming the argument it rejects."""

import tensorflow as tf


def as_tensors(dtype_source: str, **tensors: object) -> dict[str, tf.Tensor]:
    """Converts float arguments to tensors of one dtype.

    Args:
      dtype_source: the name of the argument whose dtype every other one must have.
      **tensors: the arguments by name.

    Returns:
      The tensors by name, in the order given.

    Raises:
      TypeError: `dtype_source` is not a floating tensor, or another argument's dtype differs
        (the message names it).
    """
    converted = {name: tf.convert_to_tensor(t) for name, t in tensors.items()}
    dtype = converted[dtype_source].dtype
    if not dtype.is_floating:
        raise TypeError(f"{dtype_source} must be a floating tensor, got {dtype.name}")
    for name, t in converted.items():
        if t.dtype != dtype:
            raise TypeError(
                f"{name} must have {dtype_source}'s dtype {dtype.name}, got {t.dtype.name}"
            )
    return converted


def require_shape(name: str, tensor: tf.Tensor, shape: object, what: str) -> None:
    """Requires the static shape of `tensor` to be compatible with `shape`.

    Args:
      name: the argument's name, for the error.
      tensor: the argument.
      shape: the shape it must be compatible with (`tf.TensorShape` or a list, None for any
        dimension).
      what: the expected shape in words, for the error.

    Raises:
      ValueError: the shapes are not compatible.
    """
    if not tensor.shape.is_compatible_with(shape):
        raise ValueError(f"{name} must have shape {what}, got {tensor.shape}")


def as_seed(seed: object) -> tf.Tensor:
    """Converts the `[2]` seed of an op's noise to an int32 or int64 tensor.

    Args:
      seed: the seed, a tensor or a sequence of two ints.

    Returns:
      The seed as a tensor.

    Raises:
      TypeError: the seed is not of an integer dtype.
    """
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        raise TypeError(
            f"seed must be an int32 or int64 tensor of shape [2], got {seed.dtype.name}"
        )
    return seed
