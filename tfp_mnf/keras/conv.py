"""Convolutional MNF layers (1-D, 2-D and 3-D, Keras 3)."""

from __future__ import annotations

import keras

from tfp_mnf import frontend
from tfp_mnf.keras.base import MNFLayer


class ConvMNF(frontend.ConvLogic, MNFLayer):
    """Base of the Keras 3 MNF convolutions (see `tfp_mnf.frontend.ConvLogic`)."""


_DOC = """{rank}-D convolution with an MNF posterior for Keras 3: `tfp_mnf.layers.Conv{rank}DMNF`'s
    twin.

    The same arguments, variables and maths as the tf_keras layer (both are
    `tfp_mnf.frontend.ConvLogic`): one z per example and output filter, the local
    reparameterization trick mu = conv(x, M) + b, var = conv(x^2, sigma^2) + sigma_b^2,
    out = mu * z + sqrt(var) * eps, and every sampling call adds the KL bound with
    `add_loss`.

    Reference: Louizos & Welling (2017), arXiv:1703.01961.
    """


@keras.saving.register_keras_serializable(package="tfp_mnf")
@frontend.with_args_doc
class Conv1DMNF(ConvMNF):
    __doc__ = _DOC.format(rank=1)
    rank = 1


@keras.saving.register_keras_serializable(package="tfp_mnf")
@frontend.with_args_doc
class Conv2DMNF(ConvMNF):
    __doc__ = _DOC.format(rank=2)
    rank = 2


@keras.saving.register_keras_serializable(package="tfp_mnf")
@frontend.with_args_doc
class Conv3DMNF(ConvMNF):
    __doc__ = _DOC.format(rank=3)
    rank = 3
