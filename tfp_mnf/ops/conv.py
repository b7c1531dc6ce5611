"""The conv MNF layers' sampling step (local reparameterization): the public ops, their
composite paths and their fused kernels (csrc/conv/) with their registered gradients.

mu = conv(x, M) + b, var = conv(x^2, sigma^2) + sigma_b^2, out = mu * z + sqrt(var) * eps,
z scaling each output filter of each example (Louizos & Welling 2017, arXiv:1703.01961,
Algorithm 1). `conv_local_reparam` is the whole step, `conv_local_reparam_epilogue` its
element-wise tail (the conv epilogue), `convolution` the `tf.nn.convolution` that the
composite paths use. The fused 2-D step computes the two convolutions from one gathering of
the input patches, with a GEMM of its own (CPU only), and samples the epilogue in the same op;
its gradient is the epilogue's gradient op followed by the two convolutions' gradient ops.
"""

import functools
from collections.abc import Callable

import tensorflow as tf

from tfp_mnf.ops import _checks, _library, policy

_CHANNELS_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


def convolution(
    x: tf.Tensor,
    kernel: tf.Tensor,
    strides: tuple[int, ...],
    padding: str,
    dilations: tuple[int, ...],
) -> tf.Tensor:
    """`tf.nn.convolution(x, kernel, ...)` that is correct for an empty batch on every kernel.

    TensorFlow's oneDNN CPU convolution returns a wrong output shape for a zero-size batch on
    some CPUs (`[0, 6, 6, 3]` for 3 input and 4 output channels on AVX-512). An empty batch is
    therefore convolved as one zero example and sliced back to zero rows, so that its shape
    and its (zero) gradients come from a non-empty convolution. A batch that is statically
    non-empty takes `tf.nn.convolution` alone; one of unknown size (only while tracing) picks
    either with `tf.cond`.

    Args:
      x: `[B, *spatial, C_in]` channels-last inputs.
      kernel: `[*kernel_size, C_in, C_out]` filters.
      strides: one stride per spatial dimension.
      padding: "SAME" or "VALID".
      dilations: one dilation rate per spatial dimension.

    Returns:
      `[B, *out_spatial, C_out]`.
    """

    # An explicit channels-last data format: without it the eager gradient of a 3-D
    # convolution fails in TF 2.21 (its Conv3D op reports no data_format attribute).
    data_format = _CHANNELS_LAST[len(strides)]

    def convolve(inputs: tf.Tensor) -> tf.Tensor:
        return tf.nn.convolution(
            inputs,
            kernel,
            strides=strides,
            padding=padding,
            dilations=dilations,
            data_format=data_format,
        )

    def convolve_empty() -> tf.Tensor:
        one = tf.zeros(tf.concat([[1], tf.shape(x)[1:]], axis=0), x.dtype)
        return convolve(tf.concat([x, one], axis=0))[:0]

    batch = x.shape[0]
    if batch is None:
        return tf.cond(tf.shape(x)[0] > 0, lambda: convolve(x), convolve_empty)
    return convolve(x) if batch > 0 else convolve_empty()


def conv_local_reparam_epilogue(
    mu: tf.Tensor, var: tf.Tensor, z: tf.Tensor, seed: tf.Tensor
) -> tf.Tensor:
    """The conv epilogue, the element-wise tail of a conv MNF layer's sampling step.

    out = mu * z + sqrt(var) * eps, where `mu = conv(x, M) + b` and `var = conv(x^2, sigma^2)
    + sigma_b^2` come from the two convolutions, z scales each output filter of each example,
    and eps of `mu`'s shape is drawn as `tf.random.stateless_normal` draws it from `seed`.
    Fused wherever the fused kernels apply (`policy`), composite otherwise.

    Args:
      mu: `[B, ..., C]` channels-last conv output means.
      var: `[B, ..., C]` conv output variances, `mu`'s shape.
      z: `[B, C]` multiplicative noise, one row per example.
      seed: `[2]` int32/int64 seed of the noise eps.

    Returns:
      `[B, ..., C]` sampled pre-activations.

    Raises:
      TypeError: a non-float `mu`, an argument of another dtype, or a non-integer seed.
    """
    args = _checks.as_tensors("mu", mu=mu, var=var, z=z)
    impl = fused_epilogue if policy.fused_applies(args["mu"].dtype) else composite_epilogue
    return impl(**args, seed=_checks.as_seed(seed))


def composite_epilogue(mu: tf.Tensor, var: tf.Tensor, z: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """`conv_local_reparam_epilogue` in standard TensorFlow ops; checked arguments."""
    rank = mu.shape.rank
    z_b = tf.reshape(
        z, tf.concat([tf.shape(z)[:1], tf.ones([rank - 2], tf.int32), tf.shape(z)[1:]], axis=0)
    )
    eps = tf.random.stateless_normal(tf.shape(mu), seed=seed, dtype=mu.dtype)
    return mu * z_b + tf.sqrt(var) * eps


def fused_epilogue(mu: tf.Tensor, var: tf.Tensor, z: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """`conv_local_reparam_epilogue` as one fused op, the same result and noise as
    `composite_epilogue`; checked arguments."""
    return _library.load().mnf_conv_local_reparam_epilogue(mu, var, z, seed)


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
    """Samples an MNF conv layer's pre-activations.

    mu = conv(x, M) + b, var = conv(x^2, sigma^2) + sigma_b^2, out = mu * z + sqrt(var) * eps,
    with eps of the output's shape drawn as `tf.random.stateless_normal` draws it from `seed`.
    One fused op for 2-D convolutions on the CPU in float32/float64 (the two convolutions,
    the biases and the sampling) where it applies and is chosen (`policy`); otherwise
    TensorFlow's convolutions and `conv_local_reparam_epilogue`, dispatched on its own (on a
    GPU: cuDNN and the CUDA epilogue). Every path draws the same eps for the same seed.

    Args:
      x: `[B, *spatial, C_in]` channels-last inputs, 1 to 3 spatial dimensions.
      kernel_mean: `[*kernel_size, C_in, C_out]` weight means M, a static shape.
      kernel_variance: the weight variances sigma^2, `kernel_mean`'s shape.
      bias_mean: `[C_out]` bias means b.
      bias_variance: `[C_out]` bias variances sigma_b^2.
      z: `[B, C_out]` multiplicative noise, one row per example.
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
    args = _checks.as_tensors(
        "x",
        x=x,
        kernel_mean=kernel_mean,
        kernel_variance=kernel_variance,
        bias_mean=bias_mean,
        bias_variance=bias_variance,
        z=z,
    )
    conv = _check_conv(args, strides, padding, dilations)
    channels = tf.TensorShape([args["kernel_mean"].shape[-1]])
    for name in ("bias_mean", "bias_variance"):
        _checks.require_shape(name, args[name], channels, f"{channels} [out_channels]")
    _checks.require_shape(
        "z", args["z"], [args["x"].shape[0], channels[0]], "[batch, out_channels] of x"
    )
    seed = _checks.as_seed(seed)
    fused_op = functools.partial(fused, **conv)
    unfused_op = functools.partial(composite, **conv, epilogue=conv_local_reparam_epilogue)
    # TensorFlow's convolutions refuse strides > 1 together with dilations > 1; so does the
    # composite path, which then raises its error.
    applies = (
        len(conv["strides"]) == 2
        and (max(conv["strides"]) == 1 or max(conv["dilations"]) == 1)
        and policy.fused_applies(args["x"].dtype, cpu_only=True)
    )
    use_fused = applies and policy.fused_is_faster(
        "conv_local_reparam", args, ("x", "z"), fused_op, unfused_op, **conv
    )
    return (fused_op if use_fused else unfused_op)(**args, seed=seed)


def _check_conv(
    args: dict[str, tf.Tensor], strides: object, padding: object, dilations: object
) -> dict[str, object]:
    """Checks a conv layer's x, kernels, strides, padding and dilations, naming the first bad
    one; returns the strides, padding and dilations as the convolutions take them."""
    x, mean = args["x"], args["kernel_mean"]
    rank = mean.shape.rank
    if rank not in (3, 4, 5) or not mean.shape.is_fully_defined():
        raise ValueError(
            "kernel_mean must have a fully defined shape [*kernel_size, in_channels, "
            f"out_channels] with 1 to 3 spatial dimensions, got {mean.shape}"
        )
    spatial = rank - 2
    _checks.require_shape(
        "x",
        x,
        [None] * (spatial + 1) + [mean.shape[-2]],
        f"[batch, *spatial ({spatial} dims), in_channels={mean.shape[-2]}] of kernel_mean",
    )
    _checks.require_shape(
        "kernel_variance", args["kernel_variance"], mean.shape, f"{mean.shape} of kernel_mean"
    )
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    conv = {"padding": padding}
    for name, value in (("strides", strides), ("dilations", dilations)):
        value = tuple(value)
        if len(value) != spatial or not all(isinstance(v, int) and v >= 1 for v in value):
            raise ValueError(f"{name} must be {spatial} positive ints, got {value!r}")
        conv[name] = value
    return conv


def composite(
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
    epilogue: Callable[..., tf.Tensor] = composite_epilogue,
) -> tf.Tensor:
    """`conv_local_reparam` from TensorFlow's convolutions (`convolution`) and `epilogue`;
    checked arguments.

    With the default `composite_epilogue`, standard TensorFlow ops only: the reference of the
    fused kernels, which XLA compiles and every device and dtype runs. With
    `conv_local_reparam_epilogue`, the path that `conv_local_reparam` takes where its fused
    op is not chosen.
    """
    conv = dict(strides=strides, padding=padding, dilations=dilations)
    mean = convolution(x, kernel_mean, **conv) + bias_mean
    variance = convolution(tf.square(x), kernel_variance, **conv) + bias_variance
    return epilogue(mean, variance, z, seed)


def fused(
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
    """`conv_local_reparam` for 2-D convolutions as one fused op, the same result and noise as
    `composite`; checked arguments."""
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


@tf.RegisterGradient("MnfConvLocalReparamEpilogue")
def _epilogue_grad(op: tf.Operation, grad: tf.Tensor) -> list:
    """Gradients for mu, var and z (not seed)."""
    grads = _library.load().mnf_conv_local_reparam_epilogue_grad(grad, *op.inputs)
    return [*grads, None]


@tf.RegisterGradient("MnfConv2DLocalReparam")
def _conv2d_local_reparam_grad(
    op: tf.Operation, grad: tf.Tensor, grad_mean: tf.Tensor, grad_variance: tf.Tensor
) -> list:
    """Gradients for x, both kernels, both biases and z (not seed): the epilogue's gradient
    op on the saved (mean, variance), then the convolutions' gradient ops, as two ops, so
    that a graph that needs no gradient for x (a first layer) prunes that one."""
    x, kernel_mean, kernel_variance, _, _, z, seed = op.inputs
    _, mean, variance = op.outputs
    library = _library.load()
    grad_mu, grad_var, grad_z = library.mnf_conv_local_reparam_epilogue_grad(
        grad, mean, variance, z, seed
    )
    if grad_mean is not None:
        grad_mu += grad_mean
    if grad_variance is not None:
        grad_var += grad_variance
    conv = {
        "strides": op.get_attr("strides"),
        "padding": op.get_attr("padding").decode(),
        "dilations": op.get_attr("dilations"),
    }
    grad_x = library.mnf_conv2d_local_reparam_input_grad(
        x, kernel_mean, kernel_variance, grad_mu, grad_var, **conv
    )
    grad_kernels = library.mnf_conv2d_local_reparam_kernel_grad(
        x, grad_mu, grad_var, kernel_size=kernel_mean.shape[:2].as_list(), **conv
    )
    axes = [0, 1, 2]
    return [
        grad_x,
        *grad_kernels,
        tf.reduce_sum(grad_mu, axes),
        tf.reduce_sum(grad_var, axes),
        grad_z,
        None,
    ]
