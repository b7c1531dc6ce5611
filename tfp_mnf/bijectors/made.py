"""A MADE network for autoregressive flows, with its weights created and masked in-layer."""

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from tensorflow_probability.python.bijectors import masked_autoregressive as tfp_made

__all__ = ["MADE"]


class MADE(tfp.bijectors.AutoregressiveNetwork):
    """`tfb.AutoregressiveNetwork` (MADE, Germain et al., 2015) with plain, eagerly built weights.

    Same masks as TFP's network (its `input_order`, "equal" hidden degrees, built
    by TFP's mask helper) and the same output, `[..., event_size, params]`, so it plugs into
    `tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=...)`. Unlike TFP's network, which
    builds a functional sub-model in a scratch graph:
    - each kernel and bias is an `add_weight` variable of this layer, created in `build`
      under the enclosing name scopes (TFP's are all named `dense*/kernel:0` whatever the
      enclosing layer, so two MADEs in one model collide in h5 files), each kernel with its
      own initializer;
    - the masks are multiplied into the kernels in `call`, so the autoregressive property
      holds however the variables are updated (TFP relies on Keras kernel constraints);
    - every operation runs in the layer's dtype (TFP's activation layer takes the global
      Keras policy).
    Unconditional only (no `conditional_input`).

    Args:
      event_size: size of the autoregressive vectors.
      hidden_units: widths of the hidden layers.
      kernel_initializers: one initializer per kernel, input to output
        (`len(hidden_units) + 1` of them).
      activation: activation of the hidden layers.
      **kwargs: `tf_keras.layers.Layer` arguments (name, dtype, trainable).

    References:
      Germain, Gregor, Murray, Larochelle (2015). MADE: Masked Autoencoder for Distribution
      Estimation. ICML. https://arxiv.org/abs/1502.03509
    """

    def __init__(  # noqa: ANN003
        self,
        event_size: int,
        hidden_units: list[int],
        kernel_initializers: list[tf_keras.initializers.Initializer],
        activation: str = "tanh",
        **kwargs,
    ) -> None:
        if len(kernel_initializers) != len(hidden_units) + 1:
            raise ValueError(
                "`kernel_initializers` must hold len(hidden_units) + 1 = "
                f"{len(hidden_units) + 1} initializers, got {len(kernel_initializers)}."
            )
        super().__init__(
            params=2,
            event_shape=[event_size],
            hidden_units=list(hidden_units),
            activation=activation,
            **kwargs,
        )
        self._kernel_initializers = list(kernel_initializers)

    def build(self, input_shape: tf.TensorShape) -> None:
        self._input_order = tfp_made._create_input_order(self._event_size, self._input_order_param)
        self._masks = tfp_made._make_dense_autoregressive_masks(
            params=self._params,
            event_size=self._event_size,
            hidden_units=self._hidden_units,
            input_order=self._input_order,
            hidden_degrees=self._hidden_degrees,
        )
        self._kernels = []
        self._biases = []
        for k, (mask, initializer) in enumerate(
            zip(self._masks, self._kernel_initializers, strict=True)
        ):
            self._kernels.append(
                self.add_weight(f"kernel_{k}", shape=mask.shape, initializer=initializer)
            )
            self._biases.append(
                self.add_weight(f"bias_{k}", shape=mask.shape[1:], initializer="zeros")
            )
        tf_keras.layers.Layer.build(self, input_shape)  # not TFP's functional-model build

    def call(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.convert_to_tensor(x, dtype=self.dtype, name="x")
        activation = tf_keras.activations.get(self._activation)
        h = x
        for k, (mask, kernel, bias) in enumerate(
            zip(self._masks, self._kernels, self._biases, strict=True)
        ):
            h = tf.einsum("...i,ij->...j", h, kernel * tf.constant(mask, kernel.dtype)) + bias
            if k + 1 < len(self._masks):
                h = activation(h)
        return tf.reshape(h, tf.concat([tf.shape(x), [self._params]], axis=0))
