"""MNF local-reparameterization ops: fused custom kernels with a composite fallback.

`dense_local_reparam` (and `dense_local_reparam_from_variance`), `conv_local_reparam` (and
its parts `conv_mean_variance`, `conv_local_reparam_epilogue`), `kernel_moments` and
`stateless_normal` dispatch to the fused kernels of `csrc/` or to the pure-TensorFlow
`composite` path (see `dispatch`; where a fused kernel competes with TensorFlow's own,
`autotune` times both once per shape on this CPU, and `TFP_MNF_FUSED` can pin the choice).
`convolution` is `tf.nn.convolution`, correct for empty batches on every CPU.
"""

from tfp_mnf.ops._library import describe as describe_library
from tfp_mnf.ops.composite import KernelMoments, clip_log_std, convolution
from tfp_mnf.ops.dispatch import (
    conv_local_reparam,
    conv_local_reparam_epilogue,
    conv_mean_variance,
    dense_local_reparam,
    dense_local_reparam_from_variance,
    force_composite,
    fused_available,
    kernel_moments,
    stateless_normal,
)

__all__ = [
    "KernelMoments",
    "clip_log_std",
    "conv_local_reparam",
    "conv_local_reparam_epilogue",
    "conv_mean_variance",
    "convolution",
    "describe_library",
    "dense_local_reparam",
    "dense_local_reparam_from_variance",
    "force_composite",
    "fused_available",
    "kernel_moments",
    "stateless_normal",
]
