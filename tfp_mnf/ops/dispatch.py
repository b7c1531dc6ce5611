"""Chooses the fused kernel or the composite TensorFlow path for each op call.

The fused kernels apply when the op library loaded and has a kernel for the device and dtype
(float32/float64 on CPU; float32 on GPU when the library was built with its CUDA kernels).
Composite inside XLA (`jit_compile=True`), for other dtypes (float16, bfloat16), while a
SavedModel is traced (the saved graphs then load without the library), when the
library is missing or stale, or when forced with `TFP_MNF_FUSED=never`,
`TFP_MNF_FORCE_COMPOSITE=1` or `with force_composite():` (the last two whatever
`TFP_MNF_FUSED` says).

Where a fused kernel applies and competes with TensorFlow's own kernels on the CPU (the
dense steps `dense_local_reparam*`, the 2-D `conv_local_reparam` and `conv_mean_variance`),
`TFP_MNF_FUSED` decides (`autotune.policy`): `auto` (the default) takes the faster path for
the call's shapes on this CPU, timed once per key (`autotune.TUNER`); `always` the fused
kernel. With a GPU visible the fused kernels are used where they apply, untimed. The
element-wise ops (`conv_local_reparam_epilogue`, `kernel_moments`, `stateless_normal`) are
fused wherever they apply. The choice is made when the op is built (at tracing time inside a
`tf.function`); both paths draw the same noise for the same seed.
"""

import contextlib
import functools
import math
import os
import threading
from collections.abc import Callable, Collection, Iterator

import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util
from tensorflow.python.saved_model import save_context

from tfp_mnf.ops import _library, autotune, composite, fused

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


def _use_fused(dtype: tf.DType, cpu_only: bool = False) -> bool:
    """Whether to build the fused ops for `dtype` (`cpu_only`: an op without CUDA kernels)."""
    if not fused_available() or _in_xla():
        return False
    if _gpu_visible():
        return not cpu_only and _library.has_gpu_kernels() and dtype in _GPU_DTYPES
    return dtype in _CPU_DTYPES


def _faster_fused(
    family: str,
    args: dict[str, tf.Tensor],
    batched: Collection[str],
    fused_op: Callable[..., object],
    composite_op: Callable[..., object],
    **attrs: object,
) -> bool:
    """Whether to build `family`'s fused kernel, where it applies: as `TFP_MNF_FUSED` pins it,
    else the faster of `fused_op` and `composite_op` for `args`' shapes (`autotune`).

    `batched` names the arguments whose first dimension is the batch; `attrs` are the op's
    attributes that change its cost (strides, padding...). The ops are called with the
    arguments' names as keywords and a `seed`.
    """
    if autotune.policy() == "always" or _gpu_visible():
        return True
    shapes = autotune.timing_shapes({name: t.shape for name, t in args.items()}, batched)
    if shapes is None:
        return True
    dtype = next(iter(args.values())).dtype
    ops = {autotune.FUSED: fused_op, autotune.COMPOSITE: composite_op}
    return autotune.TUNER.prefers_fused(family, shapes, dtype, attrs, ops)


def _as_tensors(dtype_source: str, **tensors: object) -> dict[str, tf.Tensor]:
    """Converts float arguments to tensors of one dtype, naming any argument that differs."""
    converted = {name: tf.convert_to_tensor(t) for name, t in tensors.items()}
    dtype = converted[dtype_source].dtype
    if not dtype.is_floating:
        raise TypeError(f"{dtype_source} must be a floating tensor, got {dtype.name}")
    for name, t in converted.items():
        if t.dtype != dtype:
            raise TypeError(
                f"{name} must have {dtype_source}'s dtype {dtype.name}, got {t.dtype.name}"
            )
    return converted


def _require_shape(name: str, tensor: tf.Tensor, shape: list, what: str) -> None:
    """Raises ValueError naming `tensor` when its static shape cannot be `shape`."""
    if not tensor.shape.is_compatible_with(shape):
        raise ValueError(f"{name} must have shape {what}, got {tensor.shape}")


def _check_dense_shapes(
    x: tf.Tensor,
    z: tf.Tensor,
    kernel_mean: tf.Tensor,
    bias_mean: tf.Tensor,
    bias_log_var: tf.Tensor,
    **kernel: tf.Tensor,
) -> None:
    """Checks the static shapes of the dense op's arguments, naming the first one that differs.

    `kernel` holds the one other `[K, N]` argument (`kernel_log_std` or `kernel_variance`).
    """
    if x.shape.rank not in (None, 2):
        raise ValueError(f"x must be rank 2 [batch, in_features], got {x.shape}")
    x_shape = x.shape.with_rank(2)
    _require_shape("z", z, x_shape, f"{x_shape} of x")
    _require_shape(
        "kernel_mean",
        kernel_mean,
        [x_shape[1], None],
        f"[in_features, out_features] with in_features={x_shape[1]} of x",
    )
    m_shape = kernel_mean.shape.with_rank(2)
    for name, tensor in kernel.items():
        _require_shape(name, tensor, m_shape, f"{m_shape} of kernel_mean")
    out_shape = tf.TensorShape([m_shape[1]])
    _require_shape("bias_mean", bias_mean, out_shape, f"{out_shape} [out_features]")
    _require_shape("bias_log_var", bias_log_var, out_shape, f"{out_shape} [out_features]")


def _as_seed(seed: object) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        raise TypeError(
            f"seed must be an int32 or int64 tensor of shape [2], got {seed.dtype.name}"
        )
    return seed


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
    """Samples a dense MNF layer's pre-activations; see `composite.dense_local_reparam`.

    Args:
      x: `[B, K]` inputs.
      z: `[B, K]` multiplicative noise.
      kernel_mean: `[K, N]` weight means.
      kernel_log_std: `[K, N]` weight log standard deviations.
      bias_mean: `[N]` bias means.
      bias_log_var: `[N]` bias log variances.
      seed: `[2]` int32/int64 seed of the noise eps.
      max_std: upper clip of every standard deviation (> 0).

    Returns:
      `[B, N]` sampled pre-activations, from the fused kernels or the composite path.

    Raises:
      ValueError: `max_std` <= 0 or an argument's static shape does not fit the others.
      TypeError: an argument of another dtype than `x`, or a non-integer seed.
    """
    return _dense(
        "dense_local_reparam",
        seed,
        max_std,
        x=x,
        z=z,
        kernel_mean=kernel_mean,
        kernel_log_std=kernel_log_std,
        bias_mean=bias_mean,
        bias_log_var=bias_log_var,
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
    """`dense_local_reparam` given the clipped weight variances sigma^2 (as `kernel_moments`
    returns them) instead of log sigma; see `composite.dense_local_reparam_from_variance`.

    Args:
      x: `[B, K]` inputs.
      z: `[B, K]` multiplicative noise.
      kernel_mean: `[K, N]` weight means.
      kernel_variance: `[K, N]` weight variances.
      bias_mean: `[N]` bias means.
      bias_log_var: `[N]` bias log variances.
      seed: `[2]` int32/int64 seed of the noise eps.
      max_std: upper clip of the bias standard deviation (> 0).

    Returns:
      `[B, N]` sampled pre-activations, from the fused kernels or the composite path.

    Raises:
      ValueError: `max_std` <= 0 or an argument's static shape does not fit the others.
      TypeError: an argument of another dtype than `x`, or a non-integer seed.
    """
    return _dense(
        "dense_local_reparam_from_variance",
        seed,
        max_std,
        x=x,
        z=z,
        kernel_mean=kernel_mean,
        kernel_variance=kernel_variance,
        bias_mean=bias_mean,
        bias_log_var=bias_log_var,
    )


def _dense(function: str, seed: tf.Tensor, max_std: float, **tensors: tf.Tensor) -> tf.Tensor:
    """Validates the arguments of the dense op `function` and dispatches it."""
    if not max_std > 0:
        raise ValueError(f"max_std must be > 0, got {max_std}")
    args = _as_tensors("x", **tensors)
    _check_dense_shapes(**args)
    max_std = float(max_std)
    ops = {
        impl: functools.partial(getattr(impl, function), max_std=max_std)
        for impl in (fused, composite)
    }
    use_fused = _use_fused(args["x"].dtype) and _faster_fused(
        function, args, ("x", "z"), ops[fused], ops[composite]
    )
    return ops[fused if use_fused else composite](**args, seed=_as_seed(seed))


def conv_local_reparam_epilogue(
    mu: tf.Tensor, var: tf.Tensor, z: tf.Tensor, seed: tf.Tensor
) -> tf.Tensor:
    """out = mu * z + sqrt(var) * eps; see `composite.conv_local_reparam_epilogue`.

    Args:
      mu: `[B, ..., C]` channels-last conv output means.
      var: `[B, ..., C]` conv output variances.
      z: `[B, C]` multiplicative noise.
      seed: `[2]` int32/int64 seed of the noise eps.

    Returns:
      `[B, ..., C]` sampled pre-activations, from the fused kernel or the composite path.
    """
    args = _as_tensors("mu", mu=mu, var=var, z=z)
    impl = fused if _use_fused(args["mu"].dtype) else composite
    return impl.conv_local_reparam_epilogue(**args, seed=_as_seed(seed))


def stateless_normal(
    shape: tf.Tensor | list[int], seed: tf.Tensor, dtype: tf.DType = tf.float32
) -> tf.Tensor:
    """`tf.random.stateless_normal(shape, seed, dtype=dtype)`, element for element.

    Fused on the CPU for float32/float64 (the vectorized Philox / Box-Muller generator of the
    other fused ops), `tf.random.stateless_normal` otherwise.

    Args:
      shape: 1-D int32/int64 shape of the output.
      seed: `[2]` int32/int64 seed.
      dtype: float dtype of the output.

    Returns:
      Standard normal samples of `shape`.

    Raises:
      TypeError: a non-integer seed or a non-float dtype.
    """
    dtype = tf.as_dtype(dtype)
    if not dtype.is_floating:
        raise TypeError(f"dtype must be a floating dtype, got {dtype.name}")
    seed = _as_seed(seed)
    if _use_fused(dtype, cpu_only=True):
        return fused.stateless_normal(shape, seed, dtype)
    return tf.random.stateless_normal(shape, seed=seed, dtype=dtype)


def _check_conv(
    args: dict[str, tf.Tensor], strides: object, padding: object, dilations: object
) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
    """Checks a conv layer's x, kernels, strides, padding and dilations, naming the first bad
    one; returns the strides, the dilations and whether the fused 2-D kernels apply."""
    x, mean = args["x"], args["kernel_mean"]
    rank = mean.shape.rank
    if rank not in (3, 4, 5) or not mean.shape.is_fully_defined():
        raise ValueError(
            "kernel_mean must have a fully defined shape [*kernel_size, in_channels, "
            f"out_channels] with 1 to 3 spatial dimensions, got {mean.shape}"
        )
    spatial = rank - 2
    _require_shape(
        "x",
        x,
        [None] * (spatial + 1) + [mean.shape[-2]],
        f"[batch, *spatial ({spatial} dims), in_channels={mean.shape[-2]}] of kernel_mean",
    )
    _require_shape(
        "kernel_variance", args["kernel_variance"], mean.shape, f"{mean.shape} of kernel_mean"
    )
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    checked = []
    for name, value in (("strides", strides), ("dilations", dilations)):
        value = tuple(value)
        if len(value) != spatial or not all(isinstance(v, int) and v >= 1 for v in value):
            raise ValueError(f"{name} must be {spatial} positive ints, got {value!r}")
        checked.append(value)
    strides, dilations = checked
    # TensorFlow's convolutions refuse strides > 1 together with dilations > 1; so does the
    # composite path, which then raises its error.
    plain = max(strides) == 1 or max(dilations) == 1
    return strides, dilations, spatial == 2 and plain and _use_fused(x.dtype, cpu_only=True)


def conv_mean_variance(
    x: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_variance: tf.Tensor,
    *,
    strides: tuple[int, ...],
    padding: str,
    dilations: tuple[int, ...],
) -> tuple[tf.Tensor, tf.Tensor]:
    """The two convolutions of an MNF conv layer: conv(x, M) and conv(x^2, sigma^2).

    See `composite.conv_mean_variance`. Fused (one gathering of the input patches feeds
    both) for 2-D convolutions on the CPU in float32/float64 where it applies and is chosen
    (see the module docstring); otherwise, and on a GPU (cuDNN), `tf.nn.convolution`.

    Args:
      x: `[B, *spatial, C_in]` channels-last inputs, 1 to 3 spatial dimensions.
      kernel_mean: `[*kernel_size, C_in, C_out]` weight means, a static shape.
      kernel_variance: the weight variances, `kernel_mean`'s shape.
      strides: one positive stride per spatial dimension.
      padding: "SAME" or "VALID".
      dilations: one positive dilation rate per spatial dimension.

    Returns:
      `(mean, variance)`, each `[B, *out_spatial, C_out]`.

    Raises:
      ValueError: shapes that do not fit, or bad strides, padding or dilations.
      TypeError: an argument of another dtype than `x`.
    """
    args = _as_tensors("x", x=x, kernel_mean=kernel_mean, kernel_variance=kernel_variance)
    strides, dilations, applies = _check_conv(args, strides, padding, dilations)
    conv = dict(strides=strides, padding=padding, dilations=dilations)
    use_fused = applies and _faster_fused(
        "conv_mean_variance",
        args,
        ("x",),
        _ignoring_seed(fused.conv_mean_variance, **conv),
        _ignoring_seed(composite.conv_mean_variance, **conv),
        **conv,
    )
    impl = fused if use_fused else composite
    return impl.conv_mean_variance(**args, **conv)


def _ignoring_seed(op: Callable[..., object], **attrs: object) -> Callable[..., object]:
    """`op` with `attrs`, callable with the `seed` keyword that `autotune` passes (ignored)."""

    def call(seed: tf.Tensor, **inputs: tf.Tensor) -> object:
        del seed
        return op(**inputs, **attrs)

    return call


def conv_local_reparam(
    x: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_variance: tf.Tensor,
    bias_mean: tf.Tensor,
    bias_variance: tf.Tensor,
    z: tf.Tensor,
    seed: tf.Tensor,
    *,
    strides: tuple[int, ...],
    padding: str,
    dilations: tuple[int, ...],
) -> tf.Tensor:
    """Samples an MNF conv layer's pre-activations; see `composite.conv_local_reparam`.

    One fused op for 2-D convolutions on the CPU in float32/float64 (the two convolutions,
    the biases and the sampling) where it applies and is chosen (see the module docstring);
    otherwise TensorFlow's convolutions and `conv_local_reparam_epilogue`, dispatched on its
    own (on a GPU: cuDNN and the CUDA epilogue). Every path draws the same eps for the same
    seed.

    Args:
      x: `[B, *spatial, C_in]` channels-last inputs, 1 to 3 spatial dimensions.
      kernel_mean: `[*kernel_size, C_in, C_out]` weight means, a static shape.
      kernel_variance: the weight variances, `kernel_mean`'s shape.
      bias_mean: `[C_out]` bias means.
      bias_variance: `[C_out]` bias variances.
      z: `[B, C_out]` multiplicative noise.
      seed: `[2]` int32/int64 seed of the noise eps.
      strides: one positive stride per spatial dimension.
      padding: "SAME" or "VALID".
      dilations: one positive dilation rate per spatial dimension.

    Returns:
      `[B, *out_spatial, C_out]` sampled pre-activations.

    Raises:
      ValueError: shapes that do not fit, or bad strides, padding or dilations.
      TypeError: an argument of another dtype than `x`, or a non-integer seed.
    """
    args = _as_tensors(
        "x",
        x=x,
        kernel_mean=kernel_mean,
        kernel_variance=kernel_variance,
        bias_mean=bias_mean,
        bias_variance=bias_variance,
        z=z,
    )
    strides, dilations, applies = _check_conv(args, strides, padding, dilations)
    channels = tf.TensorShape([args["kernel_mean"].shape[-1]])
    for name in ("bias_mean", "bias_variance"):
        _require_shape(name, args[name], channels, f"{channels} [out_channels]")
    _require_shape("z", args["z"], [args["x"].shape[0], channels[0]], "[batch, out_channels] of x")
    seed = _as_seed(seed)
    conv = dict(strides=strides, padding=padding, dilations=dilations)
    fused_op = functools.partial(fused.conv_local_reparam, **conv)
    unfused_op = functools.partial(_conv_step_unfused, **conv)
    use_fused = applies and _faster_fused(
        "conv_local_reparam", args, ("x", "z"), fused_op, unfused_op, **conv
    )
    return (fused_op if use_fused else unfused_op)(**args, seed=seed)


def _conv_step_unfused(
    x: tf.Tensor,
    kernel_mean: tf.Tensor,
    kernel_variance: tf.Tensor,
    bias_mean: tf.Tensor,
    bias_variance: tf.Tensor,
    z: tf.Tensor,
    seed: tf.Tensor,
    strides: tuple[int, ...],
    padding: str,
    dilations: tuple[int, ...],
) -> tf.Tensor:
    """The conv step from TensorFlow's convolutions (`composite.conv_mean_variance`) and the
    dispatched epilogue (fused wherever the element-wise kernels apply); checked arguments."""
    mean, variance = composite.conv_mean_variance(
        x, kernel_mean, kernel_variance, strides, padding, dilations
    )
    return conv_local_reparam_epilogue(mean + bias_mean, variance + bias_variance, z, seed)


def kernel_moments(
    kernel_mean: tf.Tensor,
    kernel_log_std: tf.Tensor,
    mean_weights: tf.Tensor | None = None,
    variance_weights: tf.Tensor | None = None,
    *,
    z_axis: int,
    min_log_std: float,
    max_std: float,
) -> composite.KernelMoments:
    """The clipped weight variances and the kernel sums of the MNF KL bound, in one pass.

    See `composite.KernelMoments` for the outputs. Fused when z is the first or the last
    kernel axis (dense and conv layers), composite otherwise.

    Args:
      kernel_mean: the weight means M, rank >= 1.
      kernel_log_std: log sigma, M's shape.
      mean_weights: `[Z]` weights of `projected_mean` (r(z | W)'s c * z_T), or None.
      variance_weights: `[Z]` weights of `projected_variance` (c^2); None iff
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
    args = _as_tensors(
        "kernel_mean", kernel_mean=kernel_mean, kernel_log_std=kernel_log_std, **weights
    )
    mean = args["kernel_mean"]
    rank = mean.shape.rank
    if rank is None or rank < 1 or not mean.shape.is_fully_defined():
        raise ValueError(f"kernel_mean must have a fully defined shape, got {mean.shape}")
    if not -rank <= z_axis < rank:
        raise ValueError(f"z_axis must be in [{-rank}, {rank}) for kernel_mean {mean.shape}")
    z_axis %= rank
    log_std = args["kernel_log_std"]
    _require_shape("kernel_log_std", log_std, mean.shape, f"{mean.shape} of kernel_mean")
    z_shape = tf.TensorShape([mean.shape[z_axis]])
    for name in weights:
        _require_shape(name, args[name], z_shape, f"{z_shape} [kernel_mean.shape[z_axis]]")
    args.setdefault("mean_weights", None)
    args.setdefault("variance_weights", None)
    flat = z_axis in (0, rank - 1)
    impl = fused if flat and _use_fused(mean.dtype) else composite
    return impl.kernel_moments(
        **args, z_axis=z_axis, min_log_std=float(min_log_std), max_std=float(max_std)
    )
