"""Convolutional MNF layers (1-D, 2-D and 3-D) sharing one base."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras

from tfp_mnf import ops
from tfp_mnf.layers.base import MNFLayer, _check_int


def _normalize_tuple(arg: str, value: Any, rank: int) -> tuple[int, ...]:
    values = (value,) * rank if isinstance(value, int) else tuple(value)
    if len(values) != rank or not all(isinstance(v, int) and v >= 1 for v in values):
        raise ValueError(
            f"`{arg}` must be a positive int or a tuple of {rank} positive ints, got {value!r}."
        )
    return values


class ConvMNF(MNFLayer):
    """N-D convolution with a Multiplicative Normalizing Flow posterior over its kernel.

    A drop-in for `tfp.layers.Convolution{1,2,3}DFlipout`. z has one entry per output filter;
    one z is drawn per example and the output is sampled with the local reparameterization
    trick (Algorithm 1): mu = conv(x, M) + b, var = conv(x^2, sigma^2) + sigma_b^2,
    out = mu * z + sqrt(var) * eps. `channels_first` inputs are transposed to channels-last
    for the computation (TensorFlow's CPU convolutions only support channels-last).

    Subclasses set the number of spatial dimensions `_RANK` (1, 2 or 3).

    Args:
      filters: positive int, the number of output filters.
      kernel_size: int or tuple of `rank` ints.
      strides: int or tuple of `rank` ints.
      padding: "valid" or "same".
      data_format: "channels_last" or "channels_first".
      dilation_rate: int or tuple of `rank` ints.
      **kwargs: the MNF and Keras arguments of `tfp_mnf.layers.MNFLayer`.

    Reference: Louizos & Welling (2017), arXiv:1703.01961.
    """

    _RANK = 0

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str = "channels_last",
        dilation_rate: Any = 1,
        **kwargs: Any,
    ) -> None:
        _check_int("filters", filters, minimum=1)
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"`padding` must be 'valid' or 'same', got {padding!r}.")
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                f"`data_format` must be 'channels_last' or 'channels_first', got {data_format!r}."
            )
        super().__init__(**kwargs)
        rank = self.rank = self._RANK
        self.filters = filters
        self.kernel_size = _normalize_tuple("kernel_size", kernel_size, rank)
        self.strides = _normalize_tuple("strides", strides, rank)
        self.padding = padding.lower()
        self.data_format = data_format
        self.dilation_rate = _normalize_tuple("dilation_rate", dilation_rate, rank)

    def _channel_axis(self) -> int:
        return 1 if self.data_format == "channels_first" else -1

    def _kernel_layout(self, input_shape: tf.TensorShape) -> tuple[tuple[int, ...], int, int]:
        if input_shape.rank != self.rank + 2:
            raise ValueError(
                f"{self.name}: `inputs` must have rank {self.rank + 2} (batch, {self.rank} spatial "
                f"dims, channels), got shape {input_shape}."
            )
        channels = input_shape[self._channel_axis()]
        if channels is None:
            raise ValueError(
                f"{self.name}: the channel dimension of `inputs` must be known, got {input_shape}."
            )
        self.input_spec = tf_keras.layers.InputSpec(
            ndim=self.rank + 2, axes={self._channel_axis(): channels}
        )
        return (*self.kernel_size, channels, self.filters), -1, self.filters

    def _conv(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return ops.convolution(
            inputs,
            kernel,
            strides=self.strides,
            padding=self.padding.upper(),
            dilations=self.dilation_rate,
        )

    def _to_channels_last(self, inputs: tf.Tensor) -> tf.Tensor:
        if self.data_format == "channels_last":
            return inputs
        return tf.transpose(inputs, [0, *range(2, self.rank + 2), 1])

    def _from_channels_last(self, outputs: tf.Tensor) -> tf.Tensor:
        if self.data_format == "channels_last":
            return outputs
        return tf.transpose(outputs, [0, self.rank + 1, *range(1, self.rank + 1)])

    def _sample_outputs(
        self, inputs: tf.Tensor, z: tf.Tensor, seed: tf.Tensor, kernel_variance: tf.Tensor
    ) -> tf.Tensor:
        outputs = ops.conv_local_reparam(
            self._to_channels_last(inputs),
            self.kernel_mean,
            kernel_variance,
            self.bias_mean,
            self._bias_variance(),
            z,
            seed,
            strides=self.strides,
            padding=self.padding.upper(),
            dilations=self.dilation_rate,
        )
        return self._from_channels_last(outputs)

    def _mean_outputs(self, inputs: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        mu = self._conv(self._to_channels_last(inputs), self.kernel_mean) + self.bias_mean
        return self._from_channels_last(mu * z)

    def _r_activation(self, a: tf.Tensor) -> tf.Tensor:
        return a

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate,
        )
        return config


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
class Conv1DMNF(ConvMNF):
    """1-D convolution with an MNF posterior, drop-in for `tfp.layers.Convolution1DFlipout`.

    See `ConvMNF` for the arguments.
    """

    _RANK = 1


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
class Conv2DMNF(ConvMNF):
    """2-D convolution with an MNF posterior, drop-in for `tfp.layers.Convolution2DFlipout`.

    See `ConvMNF` for the arguments.
    """

    _RANK = 2


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
class Conv3DMNF(ConvMNF):
    """3-D convolution with an MNF posterior, drop-in for `tfp.layers.Convolution3DFlipout`.

    See `ConvMNF` for the arguments.
    """

    _RANK = 3
