"""The Keras 3 front-end: `MNFLayer`, the shared MNF layer logic on a `keras.layers.Layer`."""

from __future__ import annotations

import keras
from keras.src.backend import AutocastScope

from tfp_mnf import frontend
from tfp_mnf.keras.divergence import KERAS_DIVERGENCES
from tfp_mnf.layers.base import WeightsFormatCheck, keras_api

# Keras 3 casts float variables to the compute dtype while an `AutocastScope` of that dtype
# is active (a layer's `__call__` under a mixed policy); `AutocastScope(None)` reads them in
# their own dtype.
KERAS_3 = keras_api(keras, KERAS_DIVERGENCES, frontend.own_dtype_scope_of(AutocastScope))


class MNFLayer(WeightsFormatCheck, frontend.MNFLayerLogic, keras.layers.Layer):
    """Base class of the Keras 3 MNF layers (see `tfp_mnf.frontend.MNFLayerLogic`).

    For `keras.Sequential`, functional `keras.Model`s and subclassed models of Keras 3
    (`import keras`, or `tf.keras` in TensorFlow >= 2.16) on the TensorFlow backend.
    """

    _keras = KERAS_3
