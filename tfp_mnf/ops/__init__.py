"""MNF local-reparameterization ops: fused custom kernels with a composite fallback."""

from tfp_mnf.ops.composite import (
    clip_log_std,
    conv_local_reparam_epilogue,
    dense_local_reparam,
)

__all__ = ["clip_log_std", "conv_local_reparam_epilogue", "dense_local_reparam"]
