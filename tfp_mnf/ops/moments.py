"""The kernel moments: one pass over a layer's kernel for the clipped weight variances of its
forward pass and the kernel sums of its KL bound. The public op, its composite path and its
fused kernels (csrc/moments/) with their registered gradient.

Reference: Louizos & Welling (2017), arXiv:1703.01961, eqs. 9 and 15.
"""

import math
from typing import NamedTuple

import tensorflow as tf

from tfp_mnf.ops import _checks, _library, policy


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
    """Clips a log standard deviation at `log(max_std)`, and below at `min_log_std` if given.

    The forward pass and the KL clip alike; the gradient passes inside the clips, as in
    `tf.clip_by_value`.

    Args:
      log_std: log sigma.
      max_std: upper clip of sigma (> 0).
      min_log_std: lower clip of log sigma, or None for none.

    Returns:
      The clipped log sigma.
    """
    upper = tf.constant(math.log(max_std), log_std.dtype)
    if min_log_std is None:
        return tf.minimum(log_std, upper)
    return tf.clip_by_value(log_std, tf.constant(min_log_std, log_std.dtype), upper)


def kernel_moments(
    kernel_mean: tf.Tensor,
    kernel_log_std: tf.Tensor,
    mean_weights: tf.Tensor | None = None,
    variance_weights: tf.Tensor | None = None,
    *,
    z_axis: int,
    min_log_std: float,
    max_std: float,
) -> KernelMoments:
    """The clipped weight variances and the kernel sums of the MNF KL bound, in one pass.

    log sigma is clipped to [min_log_std, log(max_std)]; see `KernelMoments` for the outputs.
    Fused when z is the first or the last kernel axis (dense and conv layers) and the fused
    kernels apply (`policy`), composite otherwise.

    Args:
      kernel_mean: the weight means M, rank >= 1, a static shape.
      kernel_log_std: log sigma, M's shape.
      mean_weights: `[Z]` weights u of `projected_mean` (r(z | W)'s c * z_T), or None.
      variance_weights: `[Z]` weights v of `projected_variance` (c^2); None iff
        `mean_weights` is.
      z_axis: the kernel axis of z (negative counts from the end).
      min_log_std: lower clip of log sigma.
      max_std: upper clip of sigma (> 0, log(max_std) > min_log_std).

    Returns:
      `KernelMoments`.

    Raises:
      ValueError: bad `z_axis`, `max_std` or `min_log_std`, or shapes that do not fit.
      TypeError: an argument of another dtype than `kernel_mean`.
    """
    if not max_std > 0 or not math.log(max_std) > min_log_std:
        raise ValueError(
            f"max_std must be > 0 with log(max_std) > min_log_std={min_log_std}, got {max_std}"
        )
    if (mean_weights is None) != (variance_weights is None):
        raise ValueError("mean_weights and variance_weights must both be given or both be None")
    weights = (
        {}
        if mean_weights is None
        else {"mean_weights": mean_weights, "variance_weights": variance_weights}
    )
    args = _checks.as_tensors(
        "kernel_mean", kernel_mean=kernel_mean, kernel_log_std=kernel_log_std, **weights
    )
    mean = args["kernel_mean"]
    rank = mean.shape.rank
    if rank is None or rank < 1 or not mean.shape.is_fully_defined():
        raise ValueError(f"kernel_mean must have a fully defined shape, got {mean.shape}")
    if not -rank <= z_axis < rank:
        raise ValueError(f"z_axis must be in [{-rank}, {rank}) for kernel_mean {mean.shape}")
    z_axis %= rank
    _checks.require_shape(
        "kernel_log_std", args["kernel_log_std"], mean.shape, f"{mean.shape} of kernel_mean"
    )
    z_shape = tf.TensorShape([mean.shape[z_axis]])
    for name in weights:
        _checks.require_shape(name, args[name], z_shape, f"{z_shape} [kernel_mean.shape[z_axis]]")
    args.setdefault("mean_weights", None)
    args.setdefault("variance_weights", None)
    flat = z_axis in (0, rank - 1)
    impl = fused if flat and policy.fused_applies(mean.dtype) else composite
    return impl(**args, z_axis=z_axis, min_log_std=float(min_log_std), max_std=float(max_std))


def composite(
    kernel_mean: tf.Tensor,
    kernel_log_std: tf.Tensor,
    mean_weights: tf.Tensor | None,
    variance_weights: tf.Tensor | None,
    z_axis: int,
    min_log_std: float,
    max_std: float,
) -> KernelMoments:
    """`kernel_moments` in standard TensorFlow ops, for any non-negative `z_axis`, the
    reference of the fused kernels; checked arguments."""
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
        projected_mean=_contract_z(kernel_mean, mean_weights, z_axis) if project else None,
        projected_variance=_contract_z(variance, variance_weights, z_axis) if project else None,
    )


def _contract_z(kernel: tf.Tensor, vector: tf.Tensor, z_axis: int) -> tf.Tensor:
    """sum_i vector_i kernel[..., i, ...] over axis `z_axis`, flattened to `[O]`."""
    rank = kernel.shape.rank
    if z_axis == 0:
        return tf.linalg.matvec(tf.reshape(kernel, [tf.shape(kernel)[0], -1]), vector, True)
    if z_axis == rank - 1:
        return tf.linalg.matvec(tf.reshape(kernel, [-1, tf.shape(kernel)[-1]]), vector)
    return tf.reshape(tf.tensordot(kernel, vector, axes=[[z_axis], [0]]), [-1])


def fused(
    kernel_mean: tf.Tensor,
    kernel_log_std: tf.Tensor,
    mean_weights: tf.Tensor | None,
    variance_weights: tf.Tensor | None,
    z_axis: int,
    min_log_std: float,
    max_std: float,
) -> KernelMoments:
    """`kernel_moments` as one fused op, for z along the first or the last kernel axis, the
    same result as `composite`; checked arguments.

    The kernel is viewed as `[Z, O]` (z first) or `[O, Z]` (z last); without weights the
    projections are computed with zero weights and dropped.
    """
    shape = kernel_mean.shape
    z_rows = z_axis == 0
    if z_rows:
        view = [shape[0], shape[1:].num_elements()]
    else:
        view = [shape[:-1].num_elements(), shape[-1]]
    project = mean_weights is not None
    if not project:
        mean_weights = variance_weights = tf.zeros([shape[z_axis]], kernel_mean.dtype)
    outputs = _library.load().mnf_kernel_moments(
        tf.reshape(kernel_mean, view),
        tf.reshape(kernel_log_std, view),
        mean_weights,
        variance_weights,
        z_axis=0 if z_rows else 1,
        min_log_std=min_log_std,
        max_std=max_std,
    )
    return KernelMoments(
        tf.reshape(outputs[0], shape),
        *outputs[1:5],
        outputs[5] if project else None,
        outputs[6] if project else None,
    )


@tf.RegisterGradient("MnfKernelMoments")
def _kernel_moments_grad(op: tf.Operation, *grads: tf.Tensor) -> list:
    """Gradients for the kernel means, log sigma and the two weight vectors."""
    grads = [
        tf.zeros_like(out) if g is None else g for g, out in zip(grads, op.outputs, strict=True)
    ]
    return _library.load().mnf_kernel_moments_grad(
        *grads,
        *op.inputs,
        z_axis=op.get_attr("z_axis"),
        min_log_std=op.get_attr("min_log_std"),
        max_std=op.get_attr("max_std"),
    )
