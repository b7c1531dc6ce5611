"""Convolutional MNF layers (1-D, 2-D and 3-D, tf_keras)."""

from __future__ import annotations

import tf_keras

from tfp_mnf import frontend
from tfp_mnf.layers.base import MNFLayer


class ConvMNF(frontend.ConvLogic, MNFLayer):
    """Base of the tf_keras MNF convolutions (see `tfp_mnf.frontend.ConvLogic`)."""


_DOC = """{rank}-D convolution with an MNF posterior, drop-in for
    `tfp.layers.Convolution{rank}DFlipout`.

    z has one entry per output filter, one z per example, and the output is sampled with
    the local reparameterization trick (Algorithm 1): mu = conv(x, M) + b,
    var = conv(x^2, sigma^2) + sigma_b^2, out = mu * z + sqrt(var) * eps. `channels_first`
    inputs are transposed to channels-last for the computation.

    Reference: Louizos & Welling (2017), arXiv:1703.01961.
    """


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
@frontend.with_args_doc
class Conv1DMNF(ConvMNF):
    __doc__ = _DOC.format(rank=1)
    rank = 1


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
@frontend.with_args_doc
class Conv2DMNF(ConvMNF):
    __doc__ = _DOC.format(rank=2)
    rank = 2


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
@frontend.with_args_doc
class Conv3DMNF(ConvMNF):
    __doc__ = _DOC.format(rank=3)
    rank = 3
