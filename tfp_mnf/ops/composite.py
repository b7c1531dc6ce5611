"""Pure-TensorFlow composite of the MNF local-reparameterization step.

This is the reference implementation of the fused ops in `csrc/`: XLA can compile it,
it runs on every device and dtype, and for the same `seed` it draws the same noise
(`tf.random.stateless_normal`) as the fused kernels, so both paths agree to float tolerance.

Reference: Louizos & Welling (2017), Multiplicative Normalizing Flows for Variational
Bayesian Neural Networks, arXiv:1703.01961, Algorithm 1.
"""

import math
from typing import NamedTuple

import tensorflow as tf


class KernelMoments(NamedTuple):
    """What a layer's forward pass and KL bound need of its kernel, from one pass over it.

    With M the weight means, sigma^2 = exp(2 clip(log sigma)) the clipped weight variances,
    i the index along the kernel's z axis and j over all other axes (flattened), and weight
    vectors u, v along the z axis (r(z | W)'s c * z_T and c^2, Louizos & Welling 2017, eq. 9):

    Attributes:
      variance: sigma^2, the kernel's shape (the forward pass's variance kernel).
      log_std_sum: sum_ij clip(log sigma_ij), a scalar.
      variance_sum: `[Z]` sum_j sigma_ij^2.
      mean_sq_sum: `[Z]` sum_j M_ij^2.
      mean_sum: `[Z]` sum_j M_ij.
      projected_mean: `[O]` sum_i u_i M_ij (None without weight vectors).
      projected_variance: `[O]` sum_i v_i sigma_ij^2 (None without weight vectors).
    """

    variance: tf.Tensor
    log_std_sum: tf.Tensor
    variance_sum: tf.Tensor
    mean_sq_sum: tf.Tensor
    mean_sum: tf.Tensor
    projected_mean: tf.Tensor | None
    projected_variance: tf.Tensor | None


def clip_log_std(log_std: tf.Tensor, max_std: float, min_log_std: float | None = None) -> tf.Tensor:
    """Clips a log standard deviation at `log(max_std)`, and below at `min_log_std` if given
    (forward pass and KL alike; the gradient passes inside the clips, as in tf.clip_by_value)."""
    upper = tf.constant(math.log(max_std), log_std.dtype)
    if min_log_std is None:
        return tf.minimum(log_std, upper)
    return tf.clip_by_value(log_std, tf.constant(min_log_std, log_std.dtype), upper)


def contract_z(kernel: tf.Tensor, vector: tf.Tensor, z_axis: int) -> tf.Tensor:
    """sum_i vector_i kernel[..., i, ...] over axis `z_axis`, flattened to `[O]`."""
    rank = kernel.shape.rank
    if z_axis == 0:
        return tf.linalg.matvec(tf.reshape(kernel, [tf.shape(kernel)[0], -1]), vector, True)
    if z_axis == rank - 1:
        return tf.linalg.matvec(tf.reshape(kernel, [-1, tf.shape(kernel)[-1]]), vector)
    return tf.reshape(tf.tensordot(kernel, vector, axes=[[z_axis], [0]]), [-1])


def kernel_moments(
    kernel_mean: tf.Tensor,
    kernel_log_std: tf.Tensor,
    mean_weights: tf.Tensor | None,
    variance_weights: tf.Tensor | None,
    z_axis: int,
    min_log_std: float,
    max_std: float,
) -> KernelMoments:
    """The `KernelMoments` of a kernel, log sigma clipped to [min_log_std, log(max_std)].

    Args:
      kernel_mean: the weight means M, any rank.
      kernel_log_std: log sigma, M's shape.
      mean_weights: `[Z]` weights u of `projected_mean`, or None (no projections).
      variance_weights: `[Z]` weights v of `projected_variance`, or None.
      z_axis: the non-negative kernel axis of z.
      min_log_std: lower clip of log sigma.
      max_std: upper clip of sigma.

    Returns:
      `KernelMoments`.
    """
    log_std = clip_log_std(kernel_log_std, max_std, min_log_std)
    variance = tf.exp(2.0 * log_std)
    other = [axis for axis in range(kernel_mean.shape.rank) if axis != z_axis]
    project = mean_weights is not None
    return KernelMoments(
        variance=variance,
        log_std_sum=tf.reduce_sum(log_std),
        variance_sum=tf.reduce_sum(variance, other),
        mean_sq_sum=tf.reduce_sum(tf.square(kernel_mean), other),
        mean_sum=tf.reduce_sum(kernel_mean, other),
        projected_mean=contract_z(kernel_mean, mean_weights, z_axis) if project else None,
        projected_variance=contract_z(variance, variance_weights, z_axis) if project else None,
    )


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
    sigma_sq = tf.exp(2.0 * clip_log_std(kernel_log_std, max_std))
    return dense_local_reparam_from_variance(
        x, z, kernel_mean, sigma_sq, bias_mean, bias_log_var, seed, max_std
    )


def dense_local_reparam_from_variance(
    x: tf.Tensor,
    z: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_variance: tf.Tensor,
    bias_mean: tf.Tensor,
    bias_log_var: tf.Tensor,
    seed: tf.Tensor,
    max_std: float,
) -> tf.Tensor:
    """`dense_local_reparam` given the (clipped) weight variances sigma^2 instead of log sigma.

    Args:
      x: `[B, K]` inputs.
      z: `[B, K]` multiplicative noise.
      kernel_mean: `[K, N]` weight means M.
      kernel_variance: `[K, N]` weight variances sigma^2.
      bias_mean: `[N]` bias means.
      bias_log_var: `[N]` bias log variances (clipped at 2 log max_std).
      seed: `[2]` integer seed of the noise eps.
      max_std: upper clip of the bias standard deviation.

    Returns:
      `[B, N]` sampled pre-activations.
    """
    log_max = math.log(max_std)
    bias_var = tf.exp(tf.minimum(bias_log_var, tf.constant(2.0 * log_max, bias_log_var.dtype)))
    mu = tf.matmul(x * z, kernel_mean) + bias_mean
    var = tf.matmul(tf.square(x), kernel_variance) + bias_var
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


def conv_mean_variance(
    x: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_variance: tf.Tensor,
    strides: tuple[int, ...],
    padding: str,
    dilations: tuple[int, ...],
) -> tuple[tf.Tensor, tf.Tensor]:
    """The two convolutions of an MNF conv layer (Algorithm 1): conv(x, M), conv(x^2, sigma^2).

    Args:
      x: `[B, *spatial, C_in]` channels-last inputs.
      kernel_mean: `[*kernel_size, C_in, C_out]` weight means M.
      kernel_variance: the weight variances sigma^2, M's shape.
      strides: one stride per spatial dimension.
      padding: "SAME" or "VALID".
      dilations: one dilation rate per spatial dimension.

    Returns:
      `(mean, variance)`, each `[B, *out_spatial, C_out]`.
    """
    conv = dict(strides=strides, padding=padding, dilations=dilations)
    mean = convolution(x, kernel_mean, **conv)
    return mean, convolution(tf.square(x), kernel_variance, **conv)


_CHANNELS_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


def convolution(
    x: tf.Tensor,
    kernel: tf.Tensor,
    strides: tuple[int, ...],
    padding: str,
    dilations: tuple[int, ...],
) -> tf.Tensor:
    """`tf.nn.convolution(x, kernel, ...)` that is correct for an empty batch on every kernel.

    TensorFlow's oneDNN CPU convolution returns a wrong output shape for a zero-size batch on
    some CPUs (`[0, 6, 6, 3]` for 3 input and 4 output channels on AVX-512). An empty batch is
    therefore convolved as one zero example and sliced back to zero rows, so that its shape
    and its (zero) gradients come from a non-empty convolution. A batch that is statically
    non-empty takes `tf.nn.convolution` alone; one of unknown size (only while tracing) picks
    either with `tf.cond`.

    Args:
      x: `[B, *spatial, C_in]` channels-last inputs.
      kernel: `[*kernel_size, C_in, C_out]` filters.
      strides: one stride per spatial dimension.
      padding: "SAME" or "VALID".
      dilations: one dilation rate per spatial dimension.

    Returns:
      `[B, *out_spatial, C_out]`.
    """

    # An explicit channels-last data format: without it the eager gradient of a 3-D
    # convolution fails in TF 2.21 (its Conv3D op reports no data_format attribute).
    data_format = _CHANNELS_LAST[len(strides)]

    def convolve(inputs: tf.Tensor) -> tf.Tensor:
        return tf.nn.convolution(
            inputs,
            kernel,
            strides=strides,
            padding=padding,
            dilations=dilations,
            data_format=data_format,
        )

    def convolve_empty() -> tf.Tensor:
        one = tf.zeros(tf.concat([[1], tf.shape(x)[1:]], axis=0), x.dtype)
        return convolve(tf.concat([x, one], axis=0))[:0]

    batch = x.shape[0]
    if batch is None:
        return tf.cond(tf.shape(x)[0] > 0, lambda: convolve(x), convolve_empty)
    return convolve(x) if batch > 0 else convolve_empty()


def conv_local_reparam(
    x: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_variance: tf.Tensor,
    bias_mean: tf.Tensor,
    bias_variance: tf.Tensor,
    z: tf.Tensor,
    seed: tf.Tensor,
    strides: tuple[int, ...],
    padding: str,
    dilations: tuple[int, ...],
) -> tf.Tensor:
    """The sampling step of an MNF conv layer (Algorithm 1): mu = conv(x, M) + b,
    var = conv(x^2, sigma^2) + sigma_b^2, out = mu * z + sqrt(var) * eps.

    Args:
      x: `[B, *spatial, C_in]` channels-last inputs.
      kernel_mean: `[*kernel_size, C_in, C_out]` weight means M.
      kernel_variance: the weight variances sigma^2, M's shape.
      bias_mean: `[C_out]` bias means b.
      bias_variance: `[C_out]` bias variances sigma_b^2.
      z: `[B, C_out]` multiplicative noise.
      seed: `[2]` seed of eps (`tf.random.stateless_normal`, as in
        `conv_local_reparam_epilogue`).
      strides: one stride per spatial dimension.
      padding: "SAME" or "VALID".
      dilations: one dilation rate per spatial dimension.

    Returns:
      `[B, *out_spatial, C_out]` sampled pre-activations.
    """
    mean, variance = conv_mean_variance(
        x, kernel_mean, kernel_variance, strides, padding, dilations
    )
    return conv_local_reparam_epilogue(mean + bias_mean, variance + bias_variance, z, seed)
