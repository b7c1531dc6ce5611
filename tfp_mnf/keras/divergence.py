"""Divergence functions of the Keras 3 MNF layers, (de)serialized through Keras 3's registry.

`ScaledKL` is the one class of `tfp_mnf.layers.divergence`, registered here with Keras 3 as
well (`"tfp_mnf>ScaledKL"`), so that models of either front-end save and load it.
"""

from __future__ import annotations

import keras

from tfp_mnf.layers.divergence import DivergenceRegistry, ScaledKL

keras.saving.register_keras_serializable(package="tfp_mnf")(ScaledKL)

KERAS_DIVERGENCES = DivergenceRegistry(keras.saving, "keras", "tfp_mnf.keras")

__all__ = ["KERAS_DIVERGENCES", "ScaledKL"]
