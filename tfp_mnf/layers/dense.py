"""Densely connected MNF layer (tf_keras)."""

from __future__ import annotations

import tf_keras

from tfp_mnf import frontend
from tfp_mnf.layers.base import MNFLayer


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
@frontend.with_args_doc
class DenseMNF(frontend.DenseLogic, MNFLayer):
    """Dense layer with an MNF posterior, drop-in for `tfp.layers.DenseFlipout`.

    Inputs `[B, K]`, outputs `[B, units]`; every sampling call adds the KL bound to
    `layer.losses`. z has one entry per input unit, one z per example, and the output is
    sampled with the local reparameterization trick (Algorithm 1):
    mu = (x * z) M + b, var = x^2 sigma^2 + sigma_b^2, out = mu + sqrt(var) * eps.

    Reference: Louizos & Welling (2017), Multiplicative Normalizing Flows for Variational
    Bayesian Neural Networks, arXiv:1703.01961.
    """
