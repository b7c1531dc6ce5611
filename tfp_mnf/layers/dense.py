"""Densely connected MNF layer."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras

from tfp_mnf import ops
from tfp_mnf.layers.base import MNFLayer, _check_int


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
class DenseMNF(MNFLayer):
    """Dense layer with a Multiplicative Normalizing Flow posterior over its kernel.

    A drop-in for `tfp.layers.DenseFlipout` / `DenseReparameterization`: inputs `[B, K]`,
    outputs `[B, units]`, and every sampling call adds the KL bound to `layer.losses`.
    z has one entry per input unit; one z is drawn per example and the output is sampled
    with the local reparameterization trick (Algorithm 1):
    mu = (x * z) M + b, var = x^2 sigma^2 + sigma_b^2, out = mu + sqrt(var) * eps.

    Args:
      units: positive int, the output dimension.
      **kwargs: the MNF and Keras arguments of `tfp_mnf.layers.MNFLayer`: `activation`,
        `activity_regularizer`, `kernel_divergence_fn`, `bias_divergence_fn`, `use_z`,
        `q_flow`, `num_q_flows`, `r_flow`, `num_r_flows`, `flow_hidden_units`,
        `learn_prior`, `prior_variance`, `bias_prior_variance`, `max_std`,
        `kernel_log_std_init`, `z_log_var_init`, `kernel_initializer`, `seed`,
        `check_numerics` (default False: see `MNFLayer`, numerics), `name`,
        `trainable`, `dtype`.

    Reference: Louizos & Welling (2017), Multiplicative Normalizing Flows for Variational
    Bayesian Neural Networks, arXiv:1703.01961.
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        _check_int("units", units, minimum=1)
        super().__init__(**kwargs)
        self.units = units

    def _kernel_layout(self, input_shape: tf.TensorShape) -> tuple[tuple[int, ...], int, int]:
        if input_shape.rank != 2:
            raise ValueError(
                f"{self.name}: `inputs` must have rank 2 `[batch, features]`, "
                f"got shape {input_shape}."
            )
        if input_shape[-1] is None:
            raise ValueError(
                f"{self.name}: the last dimension of `inputs` must be known, got {input_shape}."
            )
        self.input_spec = tf_keras.layers.InputSpec(ndim=2, axes={-1: input_shape[-1]})
        return (input_shape[-1], self.units), 0, self.units

    def _sample_outputs(
        self, inputs: tf.Tensor, z: tf.Tensor, seed: tf.Tensor, kernel_variance: tf.Tensor
    ) -> tf.Tensor:
        return ops.dense_local_reparam_from_variance(
            inputs,
            z,
            self.kernel_mean,
            kernel_variance,
            self.bias_mean,
            self._clipped_bias_log_var(),
            seed,
            self.max_std,
        )

    def _mean_outputs(self, inputs: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        return tf.matmul(inputs * z, self.kernel_mean) + self.bias_mean

    def _r_activation(self, a: tf.Tensor) -> tf.Tensor:
        return tf.tanh(a)

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

    def get_config(self) -> dict:
        config = super().get_config()
        config["units"] = self.units
        return config
