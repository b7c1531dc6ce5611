"""Posterior-mean prediction for whole models."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tensorflow as tf
import tf_keras

from tfp_mnf.layers.base import MNFLayer


def mnf_layers(module: tf.Module) -> list[MNFLayer]:
    """Every MNF layer in a layer, model or module (itself included)."""
    found = [module] if isinstance(module, MNFLayer) else []
    return found + [m for m in module.submodules if isinstance(m, MNFLayer)]


def _reset_compiled_functions(models: tuple[tf.Module, ...]) -> None:
    """Drops Keras' cached train/test/predict functions so the next call retraces."""
    for model in models:
        if isinstance(model, tf_keras.Model):
            model.train_function = model.test_function = model.predict_function = None


@contextlib.contextmanager
def posterior_mean(*models: tf.Module) -> Iterator[None]:
    """Makes every MNF layer of `models` predict with its posterior mean inside the block.

    Keras containers (`Sequential`, functional models) do not forward custom call arguments,
    so this switches the default of the layers' `sample` argument instead: weights at their
    means, z at q's flow applied to the mean of q(z_0), no noise and no KL added. Compiled
    `predict`/`evaluate` functions are retraced on entry and on exit. A `tf.function` of
    your own that calls the model keeps whichever mode it was traced in.

    Example:
      with tfp_mnf.layers.posterior_mean(model):
          probs = tf.nn.softmax(model.predict(x_val))

    Args:
      *models: Keras models or layers (at least one).

    Yields:
      None.
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
