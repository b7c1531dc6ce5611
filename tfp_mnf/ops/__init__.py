"""MNF local-reparameterization ops: fused custom kernels with a composite fallback.

One module per op family holds its public ops (signature, argument checks, the composite
TensorFlow path and the call of the fused kernels of `csrc/`, with their gradients): `dense`
(`dense_local_reparam_from_variance`), `conv` (`conv_local_reparam`, its element-wise tail
`conv_local_reparam_epilogue`, and `convolution`, `tf.nn.convolution` correct for empty
batches on every CPU), `moments` (`kernel_moments`, `KernelMoments`, `clip_log_std`) and
`noise` (`stateless_normal`). `policy` decides per call between the fused kernels and the
composite path (`force_composite`, `fused_available`); where a fused kernel competes with
TensorFlow's own, `autotune` times both once per shape on this CPU, and `TFP_MNF_FUSED` can
pin the choice.
"""

from tfp_mnf.ops._library import describe as describe_library
from tfp_mnf.ops.conv import conv_local_reparam, conv_local_reparam_epilogue, convolution
from tfp_mnf.ops.dense import dense_local_reparam_from_variance
from tfp_mnf.ops.moments import KernelMoments, clip_log_std, kernel_moments
from tfp_mnf.ops.noise import stateless_normal
from tfp_mnf.ops.policy import force_composite, fused_available

__all__ = [
    "KernelMoments",
    "clip_log_std",
    "conv_local_reparam",
    "conv_local_reparam_epilogue",
    "convolution",
    "describe_library",
    "dense_local_reparam_from_variance",
    "force_composite",
    "fused_available",
    "kernel_moments",
    "stateless_normal",
]
