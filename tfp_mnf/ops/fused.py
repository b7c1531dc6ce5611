"""Python wrappers and registered gradients of the fused local-reparameterization ops.

The kernels live in `csrc/`; they compute exactly `tfp_mnf.ops.composite` with the same
Philox/Box-Muller noise as `tf.random.stateless_normal`, and their gradient ops regenerate
eps from the seed instead of storing it. The dense layer's two matrix products stay
`tf.matmul` (oneDNN on CPU, faster than any GEMM inside a custom op); the element-wise work
around them is three fused ops: scaled inputs, clipped variance and the sampling epilogue.
`kernel_moments` is one pass over a layer's kernel for the variances and the KL's sums.
`conv_mean_variance` computes a 2-D conv layer's two convolutions from one gathering of the
input patches, with a GEMM of its own (csrc/cpu_gemm.h; CPU only); `conv_local_reparam` adds
the biases and the sampling epilogue to them in the same op.
Reference: Louizos & Welling (2017), arXiv:1703.01961, Algorithm 1 and eq. 15.
"""

import tensorflow as tf

from tfp_mnf.ops import _library
from tfp_mnf.ops.composite import KernelMoments


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
    """Fused `composite.dense_local_reparam` (same arguments and result)."""
    sigma_sq = _library.load().mnf_clipped_variance(kernel_log_std, max_std=max_std)
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
    """Fused `composite.dense_local_reparam_from_variance` (same arguments and result)."""
    library = _library.load()
    x_z, x_sq = library.mnf_dense_scaled_inputs(x, z)
    mu = tf.matmul(x_z, kernel_mean)
    var = tf.matmul(x_sq, kernel_variance)
    out, _ = library.mnf_dense_epilogue(mu, var, bias_mean, bias_log_var, seed, max_std=max_std)
    return out


def conv_local_reparam_epilogue(
    mu: tf.Tensor, var: tf.Tensor, z: tf.Tensor, seed: tf.Tensor
) -> tf.Tensor:
    """Fused `composite.conv_local_reparam_epilogue` (same arguments and result)."""
    return _library.load().mnf_conv_local_reparam_epilogue(mu, var, z, seed)


def stateless_normal(shape: tf.Tensor, seed: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Fused `tf.random.stateless_normal(shape, seed, dtype=dtype)` (the same stream)."""
    return _library.load().mnf_stateless_normal(shape, seed, dtype=dtype)


def conv_mean_variance(
    x: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_variance: tf.Tensor,
    strides: tuple[int, int],
    padding: str,
    dilations: tuple[int, int],
) -> tuple[tf.Tensor, tf.Tensor]:
    """Fused `composite.conv_mean_variance` for 2-D convolutions (same arguments and result)."""
    return _library.load().mnf_conv2d_mean_variance(
        x,
        kernel_mean,
        kernel_variance,
        strides=[1, *strides, 1],
        padding=padding,
        dilations=[1, *dilations, 1],
    )


def conv_local_reparam(
    x: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_variance: tf.Tensor,
    bias_mean: tf.Tensor,
    bias_variance: tf.Tensor,
    z: tf.Tensor,
    seed: tf.Tensor,
    strides: tuple[int, int],
    padding: str,
    dilations: tuple[int, int],
) -> tf.Tensor:
    """Fused `composite.conv_local_reparam` for 2-D convolutions (same arguments and result)."""
    out, _, _ = _library.load().mnf_conv2d_local_reparam(
        x,
        kernel_mean,
        kernel_variance,
        bias_mean,
        bias_variance,
        z,
        seed,
        strides=[1, *strides, 1],
        padding=padding,
        dilations=[1, *dilations, 1],
    )
    return out


def kernel_moments(
    kernel_mean: tf.Tensor,
    kernel_log_std: tf.Tensor,
    mean_weights: tf.Tensor | None,
    variance_weights: tf.Tensor | None,
    z_axis: int,
    min_log_std: float,
    max_std: float,
) -> KernelMoments:
    """Fused `composite.kernel_moments` for z along the first or the last kernel axis.

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


@tf.RegisterGradient("MnfDenseScaledInputs")
def _scaled_inputs_grad(op: tf.Operation, grad_x_z: tf.Tensor, grad_x_sq: tf.Tensor) -> list:
    """Gradients for x and z."""
    return _library.load().mnf_dense_scaled_inputs_grad(grad_x_z, grad_x_sq, *op.inputs)


@tf.RegisterGradient("MnfClippedVariance")
def _clipped_variance_grad(op: tf.Operation, grad: tf.Tensor) -> tf.Tensor:
    """Gradient for log_std (zero where the clip is active)."""
    return _library.load().mnf_clipped_variance_grad(
        grad, op.inputs[0], op.outputs[0], max_std=op.get_attr("max_std")
    )


@tf.RegisterGradient("MnfDenseEpilogue")
def _dense_epilogue_grad(op: tf.Operation, grad: tf.Tensor, _grad_stddev: tf.Tensor) -> list:
    """Gradients for mu (the upstream gradient itself), var and the bias terms (not seed)."""
    _, _, _, bias_log_var, seed = op.inputs
    grad_var, grad_bias_mean, grad_bias_log_var = _library.load().mnf_dense_epilogue_grad(
        grad, op.outputs[1], bias_log_var, seed, max_std=op.get_attr("max_std")
    )
    return [grad, grad_var, grad_bias_mean, grad_bias_log_var, None]


@tf.RegisterGradient("MnfConvLocalReparamEpilogue")
def _conv_grad(op: tf.Operation, grad: tf.Tensor) -> list:
    """Gradients for mu, var and z (not seed)."""
    grads = _library.load().mnf_conv_local_reparam_epilogue_grad(grad, *op.inputs)
    return [*grads, None]


def _conv_pair_grads(
    op: tf.Operation, grad_mean: tf.Tensor | None, grad_variance: tf.Tensor | None
) -> list:
    """Gradients for x and both kernels of `op`'s two convolutions (its first three inputs),
    as two ops: a graph that needs no gradient for x (a first layer) prunes that op."""
    x, kernel_mean, kernel_variance = op.inputs[:3]
    shape = tf.shape(op.outputs[0])
    grad_mean = tf.zeros(shape, x.dtype) if grad_mean is None else grad_mean
    grad_variance = tf.zeros(shape, x.dtype) if grad_variance is None else grad_variance
    conv = {
        "strides": op.get_attr("strides"),
        "padding": op.get_attr("padding").decode(),
        "dilations": op.get_attr("dilations"),
    }
    library = _library.load()
    grad_x = library.mnf_conv2d_mean_variance_input_grad(
        x, kernel_mean, kernel_variance, grad_mean, grad_variance, **conv
    )
    grad_kernels = library.mnf_conv2d_mean_variance_kernel_grad(
        x, grad_mean, grad_variance, kernel_size=kernel_mean.shape[:2].as_list(), **conv
    )
    return [grad_x, *grad_kernels]


@tf.RegisterGradient("MnfConv2DMeanVariance")
def _conv2d_mean_variance_grad(
    op: tf.Operation, grad_mean: tf.Tensor, grad_variance: tf.Tensor
) -> list:
    """Gradients for x and both kernels."""
    return _conv_pair_grads(op, grad_mean, grad_variance)


@tf.RegisterGradient("MnfConv2DLocalReparam")
def _conv2d_local_reparam_grad(
    op: tf.Operation, grad: tf.Tensor, grad_mean: tf.Tensor, grad_variance: tf.Tensor
) -> list:
    """Gradients for x, both kernels, both biases and z (not seed): the epilogue's gradient
    op on the saved (mean, variance), then the convolutions' gradient ops."""
    _, _, _, _, _, z, seed = op.inputs
    _, mean, variance = op.outputs
    grad_mu, grad_var, grad_z = _library.load().mnf_conv_local_reparam_epilogue_grad(
        grad, mean, variance, z, seed
    )
    if grad_mean is not None:
        grad_mu += grad_mean
    if grad_variance is not None:
        grad_var += grad_variance
    axes = [0, 1, 2]
    return [
        *_conv_pair_grads(op, grad_mu, grad_var),
        tf.reduce_sum(grad_mu, axes),
        tf.reduce_sum(grad_var, axes),
        grad_z,
        None,
    ]
