"""Ready-made Keras 3 networks: the models of `tfp_mnf.models`, built of Keras 3 layers.

`LeNet`, `MNFLeNet`, `MCDropoutLeNet`, `MNFMLP`, `MCDropout` and `DeepEnsembleLeNet` take
the same arguments and build the same networks as their tf_keras namesakes
(`tfp_mnf.models.ModelBuilders` and the `*Logic` classes serve both front-ends). There is no
`FlipoutLeNet` or `ReparameterizationLeNet`: they are built of `tfp.layers`, which exist for
tf_keras only (use `tfp_mnf.models` for them).
"""

from __future__ import annotations

import keras

from tfp_mnf import models
from tfp_mnf.keras.conv import Conv2DMNF
from tfp_mnf.keras.dense import DenseMNF


@keras.saving.register_keras_serializable(package="tfp_mnf")
class MCDropout(models.MCDropoutLogic, keras.layers.Dropout):
    __doc__ = models.MCDropoutLogic.__doc__


@keras.saving.register_keras_serializable(package="tfp_mnf")
class DeepEnsembleLeNet(models.DeepEnsembleLogic, keras.Model):
    __doc__ = models.DeepEnsembleLogic.__doc__
    _keras = keras


KERAS_MODELS = models.ModelBuilders(keras, DenseMNF, Conv2DMNF, MCDropout)
LeNet = KERAS_MODELS.LeNet
MNFLeNet = KERAS_MODELS.MNFLeNet
MCDropoutLeNet = KERAS_MODELS.MCDropoutLeNet
MNFMLP = KERAS_MODELS.MNFMLP

__all__ = [
    "DeepEnsembleLeNet",
    "LeNet",
    "MCDropout",
    "MCDropoutLeNet",
    "MNFLeNet",
    "MNFMLP",
]
