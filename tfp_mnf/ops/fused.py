"""Python wrappers and registered gradients of the fused local-reparameterization ops.

The kernels live in `csrc/`; they compute exactly `tfp_mnf.ops.composite` with the same
Philox/Box-Muller noise as `tf.random.stateless_normal`, and their gradient ops regenerate
eps from the seed instead of storing it.
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
    out, _ = _library.load().mnf_dense_local_reparam(
        x, z, kernel_mean, kernel_log_std, bias_mean, bias_log_var, seed, max_std=max_std
    )
    return out


def conv_local_reparam_epilogue(
    mu: tf.Tensor, var: tf.Tensor, z: tf.Tensor, seed: tf.Tensor
) -> tf.Tensor:
    """Fused `composite.conv_local_reparam_epilogue` (same arguments and result)."""
    return _library.load().mnf_conv_local_reparam_epilogue(mu, var, z, seed)


@tf.RegisterGradient("MnfDenseLocalReparam")
def _dense_grad(op: tf.Operation, grad: tf.Tensor, _grad_stddev: tf.Tensor) -> list:
    """Gradients for x, z, kernel_mean, kernel_log_std, bias_mean, bias_log_var (not seed)."""
    grads = _library.load().mnf_dense_local_reparam_grad(
        grad, *op.inputs, op.outputs[1], max_std=op.get_attr("max_std")
    )
    return [*grads, None]


@tf.RegisterGradient("MnfConvLocalReparamEpilogue")
def _conv_grad(op: tf.Operation, grad: tf.Tensor) -> list:
    """Gradients for mu, var and z (not seed)."""
    grads = _library.load().mnf_conv_local_reparam_epilogue_grad(grad, *op.inputs)
    return [*grads, None]
