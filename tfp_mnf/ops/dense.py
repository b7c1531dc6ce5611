"""The dense MNF layer's sampling step (local reparameterization): the public op, its
composite path and its fused kernels (csrc/dense/) with their registered gradients.

The fused path keeps the two matrix products as `tf.matmul` (oneDNN on the CPU, cuBLAS on a
GPU: faster than any GEMM inside a custom op) and fuses the element-wise work around them into
two ops, the scaled inputs (x * z, x^2) and the sampling epilogue, whose gradient op
regenerates eps from the seed instead of storing it.
Reference: Louizos & Welling (2017), arXiv:1703.01961, Algorithm 1.
"""

import functools
import math

import tensorflow as tf

from tfp_mnf.ops import _checks, _library, policy


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
    """Samples a dense MNF layer's pre-activations from its (clipped) weight variances.

    mu = (x * z) M + b, var = x^2 sigma^2 + sigma_b^2, out = mu + sqrt(var) * eps, with
    sigma_b^2 = exp(min(bias_log_var, 2 log max_std)) and eps of shape `[B, N]` drawn as
    `tf.random.stateless_normal` draws it from `seed`. The weight variances sigma^2 are those
    `kernel_moments` returns. Fused on the CPU in float32/float64 (and on a GPU in float32)
    where it applies and is chosen (`policy`); composite otherwise.

    Args:
      x: `[B, K]` inputs.
      z: `[B, K]` multiplicative noise, one row per example.
      kernel_mean: `[K, N]` weight means M.
      kernel_variance: `[K, N]` weight variances sigma^2.
      bias_mean: `[N]` bias means b.
      bias_log_var: `[N]` bias log variances.
      seed: `[2]` int32/int64 seed of the noise eps.
      max_std: upper clip of the bias standard deviation (> 0).

    Returns:
      `[B, N]` sampled pre-activations.

    Raises:
      ValueError: `max_std` <= 0 or an argument's static shape does not fit the others.
      TypeError: an argument of another dtype than `x`, or a non-integer seed.
    """
    if not max_std > 0:
        raise ValueError(f"max_std must be > 0, got {max_std}")
    args = _checks.as_tensors(
        "x",
        x=x,
        z=z,
        kernel_mean=kernel_mean,
        kernel_variance=kernel_variance,
        bias_mean=bias_mean,
        bias_log_var=bias_log_var,
    )
    _check_shapes(**args)
    seed = _checks.as_seed(seed)
    fused_op = functools.partial(fused, max_std=float(max_std))
    composite_op = functools.partial(composite, max_std=float(max_std))
    use_fused = policy.fused_applies(args["x"].dtype) and policy.fused_is_faster(
        "dense_local_reparam_from_variance", args, ("x", "z"), fused_op, composite_op
    )
    return (fused_op if use_fused else composite_op)(**args, seed=seed)


def _check_shapes(
    x: tf.Tensor,
    z: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_variance: tf.Tensor,
    bias_mean: tf.Tensor,
    bias_log_var: tf.Tensor,
) -> None:
    """Checks the static shapes of the arguments, naming the first one that does not fit."""
    if x.shape.rank not in (None, 2):
        raise ValueError(f"x must be rank 2 [batch, in_features], got {x.shape}")
    x_shape = x.shape.with_rank(2)
    _checks.require_shape("z", z, x_shape, f"{x_shape} of x")
    _checks.require_shape(
        "kernel_mean",
        kernel_mean,
        [x_shape[1], None],
        f"[in_features, out_features] with in_features={x_shape[1]} of x",
    )
    m_shape = kernel_mean.shape.with_rank(2)
    _checks.require_shape("kernel_variance", kernel_variance, m_shape, f"{m_shape} of kernel_mean")
    out_shape = tf.TensorShape([m_shape[1]])
    _checks.require_shape("bias_mean", bias_mean, out_shape, f"{out_shape} [out_features]")
    _checks.require_shape("bias_log_var", bias_log_var, out_shape, f"{out_shape} [out_features]")


def composite(
    x: tf.Tensor,
    z: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_variance: tf.Tensor,
    bias_mean: tf.Tensor,
    bias_log_var: tf.Tensor,
    seed: tf.Tensor,
    max_std: float,
) -> tf.Tensor:
    """`dense_local_reparam_from_variance` in standard TensorFlow ops, the reference of the
    fused kernels (XLA compiles it, every device and dtype runs it); checked arguments."""
    log_max = math.log(max_std)
    bias_var = tf.exp(tf.minimum(bias_log_var, tf.constant(2.0 * log_max, bias_log_var.dtype)))
    mu = tf.matmul(x * z, kernel_mean) + bias_mean
    var = tf.matmul(tf.square(x), kernel_variance) + bias_var
    eps = tf.random.stateless_normal(tf.shape(mu), seed=seed, dtype=mu.dtype)
    return mu + tf.sqrt(var) * eps


def fused(
    x: tf.Tensor,
    z: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_variance: tf.Tensor,
    bias_mean: tf.Tensor,
    bias_log_var: tf.Tensor,
    seed: tf.Tensor,
    max_std: float,
) -> tf.Tensor:
    """`dense_local_reparam_from_variance` from the fused kernels around two `tf.matmul`, the
    same result and noise as `composite`; checked arguments."""
    library = _library.load()
    x_z, x_sq = library.mnf_dense_scaled_inputs(x, z)
    mu = tf.matmul(x_z, kernel_mean)
    var = tf.matmul(x_sq, kernel_variance)
    out, _ = library.mnf_dense_epilogue(mu, var, bias_mean, bias_log_var, seed, max_std=max_std)
    return out


@tf.RegisterGradient("MnfDenseScaledInputs")
def _scaled_inputs_grad(op: tf.Operation, grad_x_z: tf.Tensor, grad_x_sq: tf.Tensor) -> list:
    """Gradients for x and z."""
    return _library.load().mnf_dense_scaled_inputs_grad(grad_x_z, grad_x_sq, *op.inputs)


@tf.RegisterGradient("MnfDenseEpilogue")
def _epilogue_grad(op: tf.Operation, grad: tf.Tensor, _grad_stddev: tf.Tensor) -> list:
    """Gradients for mu (the upstream gradient itself), var and the bias terms (not seed)."""
    _, _, _, bias_log_var, seed = op.inputs
    grad_var, grad_bias_mean, grad_bias_log_var = _library.load().mnf_dense_epilogue_grad(
        grad, op.outputs[1], bias_log_var, seed, max_std=op.get_attr("max_std")
    )
    return [grad, grad_var, grad_bias_mean, grad_bias_log_var, None]
