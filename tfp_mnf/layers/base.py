"""The tf_keras front-end: `MNFLayer`, the shared MNF layer logic on a `tf_keras` Layer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import tf_keras
from tf_keras.src.mixed_precision.autocast_variable import enable_auto_cast_variables

from tfp_mnf import frontend
from tfp_mnf.layers.divergence import TF_KERAS_DIVERGENCES, DivergenceRegistry


def keras_api(
    keras: Any,
    divergences: DivergenceRegistry,
    own_dtype_scope: Callable[[], contextlib.AbstractContextManager],
) -> frontend.KerasAPI:
    """The `frontend.KerasAPI` of a Keras module (`tf_keras` or Keras 3's `keras`).

    Args:
      keras: the Keras module: its `activations`, `regularizers` and `initializers`
        resolve and serialize those arguments, its `layers.InputSpec` checks the inputs.
      divergences: (de)serialization of divergence functions in that Keras' registry.
      own_dtype_scope: a context manager inside which that Keras' variables read in their
        own dtype (no mixed-precision autocast).

    Returns:
      The adapter that `frontend.MNFLayerLogic` uses as `_keras`.
    """

    def divergence(name: str, fn: Any) -> Any:
        if fn is not None and not callable(fn):
            raise TypeError(f"`{name}` must be a callable (q, p, sample) or None, got {fn!r}.")
        return divergences.deserialize(fn)

    def serialized(serialize: Callable) -> Callable:
        return lambda name, value: serialize(value) if value is not None else None

    return frontend.KerasAPI(
        get={
            "activation": keras.activations.get,
            "regularizer": keras.regularizers.get,
            "initializer": keras.initializers.get,
            "divergence": divergence,
        },
        serialize={
            "activation": serialized(keras.activations.serialize),
            "regularizer": serialized(keras.regularizers.serialize),
            "initializer": serialized(keras.initializers.serialize),
            "divergence": divergences.serialize,
        },
        deserialize={"divergence": divergences.deserialize},
        input_spec=keras.layers.InputSpec,
        own_dtype_scope=own_dtype_scope,
    )


TF_KERAS = keras_api(
    tf_keras, TF_KERAS_DIVERGENCES, frontend.own_dtype_scope_of(enable_auto_cast_variables)
)


class WeightsFormatCheck:
    """Mixin of a front-end's MNF layer: refuses files of another weights format.

    `load_own_variables` (the `.keras` and `.weights.h5` loaders of both Keras) first checks
    the number of saved variables with `frontend.check_weights_format`, so that a tfp_mnf
    0.1 file fails with a message saying why.
    """

    def load_own_variables(self, store: Any) -> None:
        """Loads this layer's variables from a Keras file, refusing older weight formats."""
        frontend.check_weights_format(self, len(store.keys()))
        super().load_own_variables(store)


class MNFLayer(WeightsFormatCheck, frontend.MNFLayerLogic, tf_keras.layers.Layer):
    """Base class of the tf_keras MNF layers (see `tfp_mnf.frontend.MNFLayerLogic`).

    Mixes with `tfp.layers` in one `tf_keras` model.
    """

    _keras = TF_KERAS
