"""Divergence functions for MNF layers and their (de)serialization.

A layer adds `kernel_divergence_fn(q, p, None)` and `bias_divergence_fn(q, p, None)` to its
losses on every sampling call, like `tfp.layers`. `fit` minimizes the mean data loss per
example plus the sum of `model.losses`, so for the ELBO of a data set of N examples each
divergence must be scaled by 1 / N (not by 1 / batch_size): use `ScaledKL(1 / N)` or
`lambda q, p, _: tfd.kl_divergence(q, p) / N`.

`ScaledKL` and `default_divergence_fn` are Keras-free and serve both front-ends;
`DivergenceRegistry` stores divergence functions through one Keras' registry of
serializable objects (`TF_KERAS_DIVERGENCES` here, Keras 3's in `tfp_mnf.keras`).
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


class DivergenceRegistry:
    """(De)serialization of divergence functions through one Keras' serializable registry.

    Both front-ends store a divergence function the same way, each in its own Keras'
    registry (`register_keras_serializable`): `tfp_mnf.layers` in tf_keras'
    (`serialize_divergence_fn`, `deserialize_divergence_fn`), `tfp_mnf.keras` in Keras 3's.

    Args:
      saving: the Keras' `saving` module (`tf_keras.saving` or `keras.saving`).
      keras_name: how users import that Keras, for error messages ("tf_keras", "keras").
      layers_module: the front-end's public module, for error messages.
    """

    def __init__(self, saving: Any, keras_name: str, layers_module: str) -> None:
        self._saving = saving
        self._keras_name = keras_name
        self._layers_module = layers_module

    def serialize(self, arg: str, fn: DivergenceFn | None) -> Any:
        """Serializes a divergence function for `get_config`.

        Keras-serializable objects (e.g. `ScaledKL`) and module-level functions are stored
        by name (and config). Lambdas and local functions cannot be restored faithfully
        (their globals and closures are lost), so they are rejected here, at save time,
        rather than producing a model that fails when it is loaded.

        Args:
          arg: the argument's name, for the error message.
          fn: the divergence function.

        Returns:
          A JSON-serializable description, or None for the default.

        Raises:
          ValueError: `fn` is not registered with this Keras.
        """
        if fn is None or fn is default_divergence_fn:
            return None
        target = fn if isinstance(fn, type) or not hasattr(fn, "get_config") else type(fn)
        name = self._saving.get_registered_name(target)
        if self._saving.get_registered_object(name) is not target:
            raise ValueError(
                f"`{arg}`={fn!r} cannot be saved and reloaded faithfully: it is a lambda, a "
                "local function or an unregistered callable. Use "
                f"`{self._layers_module}.ScaledKL(scale)`, or a function (or a class with "
                "`get_config`/`from_config`) decorated with "
                f"`{self._keras_name}.saving.register_keras_serializable()`."
            )
        if target is fn:  # a registered function: stored by its registered name
            return name
        return {"registered_name": name, "config": fn.get_config()}

    def deserialize(self, config: Any) -> DivergenceFn:
        """Inverse of `serialize`.

        Functions and classes are looked up by their registered name, which works the same
        in every format (the tf_keras h5 and SavedModel loaders' legacy deserializer cannot
        revive Keras' newer serialization of functions and registered classes); the module
        that registers them must be imported before loading.

        Args:
          config: what `serialize` returned, or a callable (returned as it is).

        Returns:
          The divergence function.

        Raises:
          ValueError: if the registered name is not known in this process.
        """
        if config is None:
            return default_divergence_fn
        if callable(config):
            return config
        if isinstance(config, str):
            return self._registered(config)
        if config.get("registered_name") == "function":  # Keras' serialization of a function
            return self._registered(config["config"])
        return self._registered(config["registered_name"]).from_config(config["config"])

    def _registered(self, name: str) -> Any:
        found = self._saving.get_registered_object(name)
        if found is None:
            raise ValueError(
                f"Divergence function {name!r} is not registered with {self._keras_name} in "
                "this process: import the module that registers it "
                "(`register_keras_serializable`) before loading."
            )
        return found


TF_KERAS_DIVERGENCES = DivergenceRegistry(tf_keras.saving, "tf_keras", "tfp_mnf.layers")
serialize_divergence_fn = TF_KERAS_DIVERGENCES.serialize
deserialize_divergence_fn = TF_KERAS_DIVERGENCES.deserialize
