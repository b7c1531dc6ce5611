"""MNF local-reparameterization ops: fused custom kernels with a composite fallback.

`dense_local_reparam` and `conv_local_reparam_epilogue` dispatch to the fused kernels of
`csrc/` or to the pure-TensorFlow `composite` path (see `dispatch`).
"""

from tfp_mnf.ops.composite import clip_log_std
from tfp_mnf.ops.dispatch import (
    conv_local_reparam_epilogue,
    dense_local_reparam,
    force_composite,
    fused_available,
)

__all__ = [
    "clip_log_std",
    "conv_local_reparam_epilogue",
    "dense_local_reparam",
    "force_composite",
    "fused_available",
]
