"""Decides, for each op call, whether to build its fused kernel or its composite path.

The fused kernels apply when the op library loaded and has a kernel for the device and dtype
(float32/float64 on CPU; float32 on GPU when the library was built with its CUDA kernels).
Composite inside XLA (`jit_compile=True`), for other dtypes (float16, bfloat16), while a
SavedModel is traced (the saved graphs then load without the library), when the library is
missing or stale, or when forced with `TFP_MNF_FUSED=never`, `TFP_MNF_FORCE_COMPOSITE=1` or
`with force_composite():` (the last two whatever `TFP_MNF_FUSED` says).

Where a fused kernel applies and competes with TensorFlow's own kernels on the CPU (the dense
step and the 2-D conv step), `TFP_MNF_FUSED` decides (`autotune.policy`): `auto` (the default)
takes the faster path for the call's shapes on this CPU, timed once per key
(`autotune.TUNER`); `always` the fused kernel. With a GPU visible the fused kernels are used
where they apply, untimed. The element-wise ops (the conv epilogue, the kernel moments, the
stateless normal) are fused wherever they apply. The choice is made when the op is built (at
tracing time inside a `tf.function`); both paths draw the same noise for the same seed.
"""

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Collection, Iterator

import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util
from tensorflow.python.saved_model import save_context

from tfp_mnf.ops import _library, autotune

FORCE_ENV = "TFP_MNF_FORCE_COMPOSITE"
_CPU_DTYPES = (tf.float32, tf.float64)
_GPU_DTYPES = (tf.float32,)
_state = threading.local()


@contextlib.contextmanager
def force_composite() -> Iterator[None]:
    """Uses the composite TensorFlow path for ops built inside this context."""
    previous = getattr(_state, "forced", False)
    _state.forced = True
    try:
        yield
    finally:
        _state.forced = previous


def _forced() -> bool:
    # While a SavedModel is traced the composite path is used, so that the saved graphs hold
    # only standard TensorFlow ops and load where the op library is missing.
    return (
        getattr(_state, "forced", False)
        or os.environ.get(FORCE_ENV, "") == "1"
        or autotune.policy() == "never"
        or save_context.in_save_context()
    )


def fused_available() -> bool:
    """Whether ops built here and now may use the fused kernels (library loaded, not forced).

    Returns:
      True when the op library loaded and nothing forces the composite path.

    Raises:
      ValueError: `TFP_MNF_FUSED` holds a value other than auto, always or never.
    """
    return not _forced() and _library.load() is not None


@functools.cache
def _gpu_visible() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


def _in_xla() -> bool:
    """True while tracing for XLA (`tf.function(jit_compile=True)` or nested in one)."""
    if tf.executing_eagerly():
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def fused_applies(dtype: tf.DType, cpu_only: bool = False) -> bool:
    """Whether a fused kernel may be built for an op of `dtype` here and now.

    Args:
      dtype: the float dtype of the op's arguments.
      cpu_only: whether the op has CPU kernels only.

    Returns:
      True when the fused kernels are available, outside XLA, and the device (a visible GPU,
      else the CPU) has a kernel for `dtype`.
    """
    if not fused_available() or _in_xla():
        return False
    if _gpu_visible():
        return not cpu_only and _library.has_gpu_kernels() and dtype in _GPU_DTYPES
    return dtype in _CPU_DTYPES


def fused_is_faster(
    family: str,
    args: dict[str, tf.Tensor],
    batched: Collection[str],
    fused_op: Callable[..., object],
    composite_op: Callable[..., object],
    **attrs: object,
) -> bool:
    """Whether to build `family`'s fused kernel, where it applies (`fused_applies`).

    As `TFP_MNF_FUSED` pins it (`always`), on a visible GPU, or where the shapes cannot be
    timed, the fused kernel; otherwise the faster of `fused_op` and `composite_op` for the
    shapes of `args` (`autotune.TUNER`).

    Args:
      family: the op's name, the first part of the timing key.
      args: the op's float tensors by argument name.
      batched: the names of the arguments whose first dimension is the batch.
      fused_op: the fused path, called with `args`' names as keywords and a `seed`.
      composite_op: the composite path, called like `fused_op`.
      **attrs: the op's attributes that change its cost (strides, padding...).

    Returns:
      Whether the fused path is the one to build.
    """
    if autotune.policy() == "always" or _gpu_visible():
        return True
    shapes = autotune.timing_shapes({name: t.shape for name, t in args.items()}, batched)
    if shapes is None:
        return True
    dtype = next(iter(args.values())).dtype
    ops = {autotune.FUSED: fused_op, autotune.COMPOSITE: composite_op}
    return autotune.TUNER.prefers_fused(family, shapes, dtype, attrs, ops)
