"""Pure-TensorFlow composite of the MNF local-reparameterization step.

This is the reference implementation of the fused ops in `csrc/`: XLA can compile it,
it runs on every device and dtype, and for the same `seed` it draws the same noise
(`tf.random.stateless_normal`) as the fused kernels, so both paths agree to float tolerance.

Reference: Louizos & Welling (2017), Multiplicative Normalizing Flows for Variational
Bayesian Neural Networks, arXiv:1703.01961, Algorithm 1.
"""

import math

import tensorflow as tf


def clip_log_std(log_std: tf.Tensor, max_std: float) -> tf.Tensor:
    """Clips a log standard deviation at `log(max_std)` (forward pass and KL alike)."""
    return tf.minimum(log_std, tf.cast(math.log(max_std), log_std.dtype))


def dense_local_reparam(
    x: tf.Tensor,
    z: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_log_std: tf.Tensor,
    bias_mean: tf.Tensor,
    bias_log_var: tf.Tensor,
    seed: tf.Tensor,
    max_std: float,
) -> tf.Tensor:
    """Samples a dense MNF layer's pre-activations with the local reparameterization trick.

    mu = (x * z) M + b, var = x^2 sigma^2 + sigma_b^2, out = mu + sqrt(var) * eps
    (Algorithm 1), with sigma = exp(min(log_std, log max_std)) and
    sigma_b^2 = exp(min(bias_log_var, 2 log max_std)).

    Args:
      x: `[B, K]` inputs.
      z: `[B, K]` multiplicative noise, one row per example.
      kernel_mean: `[K, N]` weight means M.
      kernel_log_std: `[K, N]` weight log standard deviations.
      bias_mean: `[N]` bias means.
      bias_log_var: `[N]` bias log variances.
      seed: `[2]` integer seed of the stateless normal noise eps of shape `[B, N]`.
      max_std: upper clip of every standard deviation.

    Returns:
      `[B, N]` sampled pre-activations.
    """
    log_max = math.log(max_std)
    sigma_sq = tf.exp(2.0 * clip_log_std(kernel_log_std, max_std))
    bias_var = tf.exp(tf.minimum(bias_log_var, tf.cast(2.0 * log_max, bias_log_var.dtype)))
    mu = tf.matmul(x * z, kernel_mean) + bias_mean
    var = tf.matmul(tf.square(x), sigma_sq) + bias_var
    eps = tf.random.stateless_normal(tf.shape(mu), seed=seed, dtype=mu.dtype)
    return mu + tf.sqrt(var) * eps


def conv_local_reparam_epilogue(
    mu: tf.Tensor, var: tf.Tensor, z: tf.Tensor, seed: tf.Tensor
) -> tf.Tensor:
    """The element-wise tail of a conv MNF layer: out = mu * z + sqrt(var) * eps.

    `mu = conv(x, M) + b` and `var = conv(x^2, sigma^2) + sigma_b^2` come from the two
    convolutions; z scales each output filter of each example (Algorithm 1).

    Args:
      mu: `[B, ..., C]` channels-last conv output means.
      var: `[B, ..., C]` conv output variances, same shape as `mu`.
      z: `[B, C]` multiplicative noise, one row per example.
      seed: `[2]` integer seed of the stateless normal noise eps of `mu`'s shape.

    Returns:
      `[B, ..., C]` sampled pre-activations.
    """
    rank = mu.shape.rank
    z_b = tf.reshape(
        z, tf.concat([tf.shape(z)[:1], tf.ones([rank - 2], tf.int32), tf.shape(z)[1:]], axis=0)
    )
    eps = tf.random.stateless_normal(tf.shape(mu), seed=seed, dtype=mu.dtype)
    return mu * z_b + tf.sqrt(var) * eps
