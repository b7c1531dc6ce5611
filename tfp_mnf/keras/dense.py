"""Densely connected MNF layer (Keras 3)."""

from __future__ import annotations

import keras

from tfp_mnf import frontend
from tfp_mnf.keras.base import MNFLayer


@keras.saving.register_keras_serializable(package="tfp_mnf")
@frontend.with_args_doc
class DenseMNF(frontend.DenseLogic, MNFLayer):
    """Dense layer with an MNF posterior for Keras 3: `tfp_mnf.layers.DenseMNF`'s twin.

    The same arguments, variables and maths as the tf_keras layer (both are
    `tfp_mnf.frontend.DenseLogic`): inputs `[B, K]`, outputs `[B, units]`, one z per
    example, the local reparameterization trick mu = (x * z) M + b,
    var = x^2 sigma^2 + sigma_b^2, out = mu + sqrt(var) * eps, and every sampling call adds
    the KL bound with `add_loss`.

    Reference: Louizos & Welling (2017), Multiplicative Normalizing Flows for Variational
    Bayesian Neural Networks, arXiv:1703.01961.
    """
