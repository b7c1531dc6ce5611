"""Divergence functions for MNF layers and their (de)serialization.

A layer adds `kernel_divergence_fn(q, p, None)` and `bias_divergence_fn(q, p, None)` to its
losses on every sampling call, like `tfp.layers`. `fit` minimizes the mean data loss per
example plus the sum of `model.losses`, so for the ELBO of a data set of N examples each
divergence must be scaled by 1 / N (not by 1 / batch_size): use `ScaledKL(1 / N)` or
`lambda q, p, _: tfd.kl_divergence(q, p) / N`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

tfd = tfp.distributions

DivergenceFn = Callable[[tfd.Distribution, tfd.Distribution, Any], tf.Tensor]


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
class ScaledKL:
    """`scale * tfd.kl_divergence(q, p)`: a serializable divergence function.

    Args:
      scale: the factor, usually 1 / (number of training examples).
    """

    def __init__(self, scale: float = 1.0) -> None:
        if not scale >= 0:
            raise ValueError(f"`scale` must be a non-negative float, got {scale!r}.")
        self.scale = float(scale)

    def __call__(self, q: tfd.Distribution, p: tfd.Distribution, sample: Any = None) -> tf.Tensor:
        return tf.constant(self.scale, q.dtype) * tfd.kl_divergence(q, p)

    def get_config(self) -> dict:
        return {"scale": self.scale}

    @classmethod
    def from_config(cls, config: dict) -> ScaledKL:
        return cls(**config)

    def __repr__(self) -> str:
        return f"ScaledKL(scale={self.scale!r})"


def default_divergence_fn(
    q: tfd.Distribution, p: tfd.Distribution, sample: Any = None
) -> tf.Tensor:
    """`tfd.kl_divergence(q, p)`, unscaled: the tfp.layers default."""
    return tfd.kl_divergence(q, p)


def serialize_divergence_fn(arg: str, fn: DivergenceFn | None) -> Any:
    """Serializes a divergence function for `get_config`.

    Keras-serializable objects (e.g. `ScaledKL`) and module-level functions are stored by
    name (and config). Lambdas and local functions cannot be restored faithfully (their
    globals and closures are lost), so they are rejected here, at save time, rather than
    producing a model that fails when it is loaded.

    Args:
      arg: the argument's name, for the error message.
      fn: the divergence function.

    Returns:
      A JSON-serializable description, or None for the default.
    """
    if fn is None or fn is default_divergence_fn:
        return None
    target = fn if isinstance(fn, type) or not hasattr(fn, "get_config") else type(fn)
    name = tf_keras.saving.get_registered_name(target)
    if tf_keras.saving.get_registered_object(name) is not target:
        raise ValueError(
            f"`{arg}`={fn!r} cannot be saved and reloaded faithfully: it is a lambda, a local "
            "function or an unregistered callable. Use `tfp_mnf.layers.ScaledKL(scale)`, or a "
            "function (or a class with `get_config`/`from_config`) decorated with "
            "`tf_keras.saving.register_keras_serializable()`."
        )
    if target is fn:  # a registered function: stored by its registered name
        return name
    return {"registered_name": name, "config": fn.get_config()}


def deserialize_divergence_fn(config: Any) -> DivergenceFn:
    """Inverse of `serialize_divergence_fn`.

    Functions and classes are looked up by their registered name, which works the same in
    every format (the h5 and SavedModel loaders' legacy deserializer cannot revive Keras'
    newer serialization of functions and registered classes); the module that registers
    them must be imported before loading.

    Raises:
      ValueError: if the registered name is not known in this process.
    """
    if config is None:
        return default_divergence_fn
    if callable(config):
        return config
    if isinstance(config, str):
        return _registered(config)
    if config.get("registered_name") == "function":  # Keras' serialization of a function
        return _registered(config["config"])
    return _registered(config["registered_name"]).from_config(config["config"])


def _registered(name: str) -> Any:
    found = tf_keras.saving.get_registered_object(name)
    if found is None:
        raise ValueError(
            f"Divergence function {name!r} is not registered in this process: import the "
            "module that registers it (`register_keras_serializable`) before loading."
        )
    return found
