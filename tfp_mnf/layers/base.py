"""The tf_keras front-end: `MNFLayer`, the shared MNF layer logic on a `tf_keras` Layer."""

from __future__ import annotations

import tf_keras
from tf_keras.src.mixed_precision.autocast_variable import enable_auto_cast_variables

from tfp_mnf import frontend
from tfp_mnf.layers.divergence import deserialize_divergence_fn, serialize_divergence_fn


def _divergence(name: str, fn: frontend.Any) -> frontend.Any:
    if fn is not None and not callable(fn):
        raise TypeError(f"`{name}` must be a callable (q, p, sample) or None, got {fn!r}.")
    return deserialize_divergence_fn(fn)


def _serialized(serialize: frontend.Callable) -> frontend.Callable:
    return lambda name, value: serialize(value) if value is not None else None


TF_KERAS = frontend.KerasAPI(
    get={
        "activation": tf_keras.activations.get,
        "regularizer": tf_keras.regularizers.get,
        "initializer": tf_keras.initializers.get,
        "divergence": _divergence,
    },
    serialize={
        "activation": _serialized(tf_keras.activations.serialize),
        "regularizer": _serialized(tf_keras.regularizers.serialize),
        "initializer": _serialized(tf_keras.initializers.serialize),
        "divergence": serialize_divergence_fn,
    },
    deserialize={"divergence": deserialize_divergence_fn},
    input_spec=tf_keras.layers.InputSpec,
    own_dtype_scope=frontend.own_dtype_scope_of(enable_auto_cast_variables),
)


class MNFLayer(frontend.MNFLayerLogic, tf_keras.layers.Layer):
    """Base class of the tf_keras MNF layers (see `tfp_mnf.frontend.MNFLayerLogic`).

    Mixes with `tfp.layers` in one `tf_keras` model.
    """

    _keras = TF_KERAS

    def load_own_variables(self, store: frontend.Any) -> None:
        """Loads this layer's variables from a `.keras` file, refusing older weight formats."""
        frontend.check_weights_format(self, len(store.keys()))
        super().load_own_variables(store)
