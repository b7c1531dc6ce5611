"""Posterior-mean prediction for whole models, of either Keras front-end.

`mnf_layers` and `posterior_mean` find the MNF layers of both front-ends
(`frontend.MNFLayerLogic`: `tfp_mnf.layers` on tf_keras, `tfp_mnf.keras` on Keras 3), so
`tfp_mnf.keras` exports these same functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import tensorflow as tf
import tf_keras

from tfp_mnf.frontend import MNFLayerLogic

# The models whose compiled train/test/predict functions are cached on the model.
_KERAS_MODELS = (tf_keras.Model, keras.Model)


def sublayers(module: object) -> list[object]:
    """`module` and everything it holds: a `tf.Module`'s (a tf_keras layer's) `submodules`,
    a Keras 3 layer's nested layers; `[module]` for anything else."""
    if isinstance(module, tf.Module):
        return [module, *module.submodules]
    if isinstance(module, keras.layers.Layer):
        return list(module._flatten_layers(include_self=True, recursive=True))
    return [module]


def mnf_layers(module: object) -> list[MNFLayerLogic]:
    """Every MNF layer in a layer, model or module (itself included), of either front-end."""
    return [m for m in sublayers(module) if isinstance(m, MNFLayerLogic)]


def _reset_compiled_functions(models: tuple[object, ...]) -> None:
    """Drops Keras' cached train/test/predict functions so the next call retraces."""
    for model in models:
        if isinstance(model, _KERAS_MODELS):
            model.train_function = model.test_function = model.predict_function = None


@contextlib.contextmanager
def posterior_mean(*models: object) -> Iterator[None]:
    """Makes every MNF layer of `models` predict with its posterior mean inside the block.

    Keras containers (`Sequential`, functional models) do not forward custom call arguments,
    so this switches the default of the layers' `sample` argument instead: weights at their
    means, z at q's flow applied to the mean of q(z_0), no noise and no KL added. Compiled
    `predict`/`evaluate` functions are retraced on entry and on exit. A `tf.function` of
    your own that calls the model keeps whichever mode it was traced in. Works for the
    models and layers of both front-ends (tf_keras and Keras 3).

    Example:
      with tfp_mnf.layers.posterior_mean(model):
          probs = tf.nn.softmax(model.predict(x_val))

    Args:
      *models: Keras models or layers (at least one).

    Yields:
      None.

    Raises:
      ValueError: if no model is given.
    """
    if not models:
        raise ValueError("posterior_mean() needs at least one model or layer, got none.")
    layers = [layer for model in models for layer in mnf_layers(model)]
    previous = [layer.sample_by_default for layer in layers]
    for layer in layers:
        layer.sample_by_default = False
    _reset_compiled_functions(models)
    try:
        yield
    finally:
        for layer, value in zip(layers, previous, strict=True):
            layer.sample_by_default = value
        _reset_compiled_functions(models)
