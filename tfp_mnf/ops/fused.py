"""Python wrappers and registered gradients of the fused local-reparameterization ops.

The kernels live in `csrc/`; they compute exactly `tfp_mnf.ops.composite` with the same
Philox/Box-Muller noise as `tf.random.stateless_normal`, and their gradient ops regenerate
eps from the seed instead of storing it. The dense layer's two matrix products stay
`tf.matmul` (oneDNN on CPU, faster than any GEMM inside a custom op); the element-wise work
around them is three fused ops: scaled inputs, clipped variance and the sampling epilogue.
Reference: Louizos & Welling (2017), arXiv:1703.01961, Algorithm 1.
"""

import tensorflow as tf

from tfp_mnf.ops import _library


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
    library = _library.load()
    x_z, x_sq = library.mnf_dense_scaled_inputs(x, z)
    sigma_sq = library.mnf_clipped_variance(kernel_log_std, max_std=max_std)
    mu = tf.matmul(x_z, kernel_mean)
    var = tf.matmul(x_sq, sigma_sq)
    out, _ = library.mnf_dense_epilogue(mu, var, bias_mean, bias_log_var, seed, max_std=max_std)
    return out


def conv_local_reparam_epilogue(
    mu: tf.Tensor, var: tf.Tensor, z: tf.Tensor, seed: tf.Tensor
) -> tf.Tensor:
    """Fused `composite.conv_local_reparam_epilogue` (same arguments and result)."""
    return _library.load().mnf_conv_local_reparam_epilogue(mu, var, z, seed)


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
