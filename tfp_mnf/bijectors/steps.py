"""One step of a flow: declares its parameters and builds its TFP bijector from them.

Steps are Keras-free: `parameters()` declares the step's parameters (names, shapes, near
identity initial values) in a `ParameterPack`, and `bijector(params)` builds the step's
`tfb.Bijector` from tensors of those parameters, whoever stores them (one packed variable of
an MNF layer, or of a standalone `Flow` layer). `NormalizingFlow` (flow.py) chains them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.bijectors import masked_autoregressive as tfp_made

from tfp_mnf import parameters
from tfp_mnf.bijectors.planar import Planar

tfb = tfp.bijectors

__all__ = ["AffineStep", "AutoregressiveStep", "CouplingStep", "FlowStep", "PlanarStep"]

# Variance factor of the conditioners' last layers (1e-2 x the Glorot std): near-identity steps.
_SMALL_SCALE = 1e-4


class FlowStep:
    """Base of a flow step on `[..., event_size]` vectors.

    Args:
      event_size: size of the vectors the step transforms.
      seed: non-negative integer seed of the step's initial values, or None.
      name: prefix of the step's parameter names (`"{name}/{parameter}"`).
    """

    def __init__(self, event_size: int, seed: int | None, name: str) -> None:
        self.event_size = event_size
        self.seed = seed
        self.name = name

    def parameters(self) -> parameters.ParameterPack:
        """The step's parameters, named `"{name}/..."`, with near-identity initial values."""
        raise NotImplementedError

    def bijector(self, params: Mapping[str, tf.Tensor]) -> tfb.Bijector:
        """The step's bijector on vectors (event_ndims = 1) over tensors of its parameters."""
        raise NotImplementedError

    def _key(self, parameter: str) -> str:
        return f"{self.name}/{parameter}"

    def _seed(self, index: int) -> int | None:
        return parameters.derive_seed(self.seed, index)


class PlanarStep(FlowStep):
    """A planar flow `z + u_hat tanh(w^T z + b)` with parameters `u`, `w`, `b`.

    `w ~ N(0, 1/d)`, `b = 0` and `u = softplus^-1(1) w / ||w||^2 + n`, `n ~ N(0, 0.01^2)`,
    so that the constrained `u_hat` is O(0.01) and the step starts near the identity.
    """

    def parameters(self) -> parameters.ParameterPack:
        d = self.event_size
        w_value = parameters.normal([d], 0.0, 1.0 / math.sqrt(d), self._seed(0))
        noise = parameters.normal([d], 0.0, 0.01, self._seed(1))
        inverse_softplus_one = math.log(math.e - 1.0)

        def initial_values(dtype: tf.DType) -> dict[str, tf.Tensor]:
            w = w_value(dtype)
            u = inverse_softplus_one * w / tf.reduce_sum(tf.square(w)) + noise(dtype)
            return {self._key("w"): w, self._key("u"): u}

        pack = parameters.ParameterPack()
        pack.add_joint({self._key("w"): [d], self._key("u"): [d]}, initial_values)
        pack.add(self._key("b"), [], parameters.constant([], 0.0))
        return pack

    def bijector(self, params: Mapping[str, tf.Tensor]) -> tfb.Bijector:
        return Planar(params[self._key("u")], params[self._key("w")], params[self._key("b")])


class AffineStep(FlowStep):
    """An unconditioned element-wise affine `z * exp(log_scale) + shift`, initialised at identity.

    Used by "realnvp", "iaf" and "maf" for `event_size == 1`: a coupling layer cannot split
    one dimension, and the first output of an autoregressive network depends on no input,
    so each of those flows reduces to exactly this map in one dimension.
    """

    def parameters(self) -> parameters.ParameterPack:
        pack = parameters.ParameterPack()
        for name in ("shift", "log_scale"):
            pack.add(
                self._key(name), [self.event_size], parameters.constant([self.event_size], 0.0)
            )
        return pack

    def bijector(self, params: Mapping[str, tf.Tensor]) -> tfb.Bijector:
        return tfb.Chain(
            [
                tfb.Shift(params[self._key("shift")]),
                tfb.Scale(log_scale=params[self._key("log_scale")]),
            ]
        )


class _RealNVP(tfb.RealNVP):
    """`tfb.RealNVP` whose forward pass is one conditioner evaluation for output and log-det.

    TFP's forward slices the input twice, applies Shift o Scale bijectors, and evaluates the
    conditioner network again for `forward_log_det_jacobian(x)`; MNF needs both at every call
    (z_T and log q(z_T)). Here the forward pass splits the input once (`tf.split`, whose
    gradient is one concat), computes y2 = x2 * exp(log_scale(x1)) + shift(x1), and stores
    -sum(log_scale) as the cached inverse log-det of `x`, where `forward_log_det_jacobian(x)`
    finds it. The inverse and every other method are TFP's.
    """

    def _forward(self, x: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        self._cache_input_depth(x)
        masked = abs(self._masked_size)
        sizes = [masked, self._input_depth - masked]
        if self._reverse_mask:  # the last units condition the first ones
            x1, x0 = tf.split(x, sizes[::-1], axis=-1)
        else:
            x0, x1 = tf.split(x, sizes, axis=-1)
        shift, log_scale = self._shift_and_log_scale_fn(x0, sizes[1])
        y1 = x1 * tf.exp(log_scale) + shift
        self._cache.forward_attributes(x, **kwargs)["ildj"] = -tf.reduce_sum(log_scale, -1)
        return tf.concat([y1, x0] if self._reverse_mask else [x0, y1], axis=-1)


class CouplingStep(FlowStep):
    """A RealNVP affine coupling layer (Dinh et al., 2017) with a one-hidden-layer MLP.

    The first `event_size // 2` inputs pass unchanged and condition shift and log-scale of
    the rest: `y2 = z2 * exp(log_scale(z1)) + shift(z1)`; with `reverse=True` the last
    `event_size // 2` inputs condition the first ones (`tfb.RealNVP` with a negative
    `num_masked`). Both directions are one pass. The MLP is tanh(z1 K_h + b_h) K_o + b_o
    with `hidden_units` hidden units and `2 * (event_size - event_size // 2)` outputs,
    K_h Glorot-uniform and K_o small, so that the step starts near the identity.

    Args:
      event_size: size of the vectors, at least 2.
      hidden_units: width of the hidden layer.
      reverse: condition on the last half instead of the first.
      seed: seed of the initial values, or None.
      name: prefix of the parameter names.
    """

    def __init__(
        self,
        event_size: int,
        hidden_units: int,
        reverse: bool = False,
        seed: int | None = None,
        name: str = "coupling",
    ) -> None:
        super().__init__(event_size, seed, name)
        self.hidden_units = hidden_units
        self.reverse = reverse

    def parameters(self) -> parameters.ParameterPack:
        num_masked = self.event_size // 2
        outputs = 2 * (self.event_size - num_masked)
        hidden, out = [num_masked, self.hidden_units], [self.hidden_units, outputs]
        pack = parameters.ParameterPack()
        pack.add(
            self._key("hidden/kernel"), hidden, parameters.glorot_uniform(hidden, self._seed(0))
        )
        pack.add(
            self._key("hidden/bias"),
            [self.hidden_units],
            parameters.constant([self.hidden_units], 0.0),
        )
        pack.add(
            self._key("output/kernel"),
            out,
            parameters.glorot_uniform(out, self._seed(1), _SMALL_SCALE),
        )
        pack.add(self._key("output/bias"), [outputs], parameters.constant([outputs], 0.0))
        return pack

    def conditioner(
        self, params: Mapping[str, tf.Tensor]
    ) -> Callable[[tf.Tensor, int], tuple[tf.Tensor, tf.Tensor]]:
        """The MLP `z1 -> (shift, log_scale)` over tensors of the step's parameters."""
        hidden_kernel, hidden_bias, output_kernel, output_bias = (
            params[self._key(name)]
            for name in ("hidden/kernel", "hidden/bias", "output/kernel", "output/bias")
        )

        def shift_and_log_scale(z1: tf.Tensor, output_units: int) -> tuple[tf.Tensor, tf.Tensor]:
            h = tf.tanh(tf.matmul(z1, hidden_kernel) + hidden_bias)
            shift, log_scale = tf.split(tf.matmul(h, output_kernel) + output_bias, 2, axis=-1)
            return shift, log_scale

        return shift_and_log_scale

    def bijector(self, params: Mapping[str, tf.Tensor]) -> tfb.Bijector:
        num_masked = self.event_size // 2
        return _RealNVP(
            num_masked=-num_masked if self.reverse else num_masked,
            shift_and_log_scale_fn=self.conditioner(params),
        )


def made_masks(event_size: int, hidden_units: int, reverse: bool) -> list[tf.Tensor]:
    """The masks of a one-hidden-layer MADE with 2 outputs per unit, as TFP builds them.

    TFP's `tfb.AutoregressiveNetwork` helpers give the input order ("left-to-right" or
    "right-to-left"), equal hidden degrees and the masks `[d, h]` and `[h, 2 d]` (outputs
    interleaved as `[..., d, 2]`: shift and log-scale of each unit).

    Reference: Germain, Gregor, Murray, Larochelle (2015). MADE: Masked Autoencoder for
    Distribution Estimation. ICML. https://arxiv.org/abs/1502.03509
    """
    order = tfp_made._create_input_order(
        event_size, "right-to-left" if reverse else "left-to-right"
    )
    return tfp_made._make_dense_autoregressive_masks(
        params=2,
        event_size=event_size,
        hidden_units=[hidden_units],
        input_order=order,
        hidden_degrees="equal",
    )


class AutoregressiveStep(FlowStep):
    """A masked autoregressive affine step on a MADE conditioner.

    `tfb.MaskedAutoregressiveFlow` (MAF, Papamakarios et al., 2017) maps
    `y_i = z_i * exp(log_scale_i(y_<i)) + shift_i(y_<i)`: its forward pass needs
    `event_size` sequential network evaluations, its inverse one (the density-estimation
    direction). With `inverse_autoregressive=True` the step is
    `tfb.Invert(tfb.MaskedAutoregressiveFlow(...))` (IAF, Kingma et al., 2016):
    `y = (z - shift(z)) * exp(-log_scale(z))`, forward and its log-determinant in one
    parallel pass (the sampling direction) and the inverse sequential.

    The MADE has one hidden layer of `hidden_units` tanh units, TFP's masks (`made_masks`)
    multiplied into its kernels on every call (the autoregressive property holds whatever
    the parameter values), and a small output kernel, so the step starts near the identity.
    `reverse=True` gives it the right-to-left input order.

    Args:
      event_size: size of the vectors, at least 2.
      hidden_units: width of the MADE's hidden layer.
      inverse_autoregressive: True for IAF (fast forward), False for MAF (fast inverse).
      reverse: autoregressive in the right-to-left order.
      seed: seed of the initial values, or None.
      name: prefix of the parameter names.
    """

    def __init__(
        self,
        event_size: int,
        hidden_units: int,
        inverse_autoregressive: bool,
        reverse: bool = False,
        seed: int | None = None,
        name: str = "made",
    ) -> None:
        super().__init__(event_size, seed, name)
        self.hidden_units = hidden_units
        self.inverse_autoregressive = inverse_autoregressive
        self.reverse = reverse
        self.masks = made_masks(event_size, hidden_units, reverse)

    def parameters(self) -> parameters.ParameterPack:
        pack = parameters.ParameterPack()
        scales = (1.0, _SMALL_SCALE)
        for k, (mask, scale) in enumerate(zip(self.masks, scales, strict=True)):
            shape = list(mask.shape)
            pack.add(
                self._key(f"kernel_{k}"),
                shape,
                parameters.glorot_uniform(shape, self._seed(k), scale),
            )
            pack.add(self._key(f"bias_{k}"), shape[1:], parameters.constant(shape[1:], 0.0))
        return pack

    def bijector(self, params: Mapping[str, tf.Tensor]) -> tfb.Bijector:
        layers = [
            (params[self._key(f"kernel_{k}")], params[self._key(f"bias_{k}")], mask)
            for k, mask in enumerate(self.masks)
        ]
        event_size = self.event_size

        def made(x: tf.Tensor) -> tf.Tensor:
            h = x
            for k, (kernel, bias, mask) in enumerate(layers):
                masked = kernel * tf.constant(mask, kernel.dtype)
                h = tf.einsum("...i,ij->...j", h, masked) + bias
                if k + 1 < len(layers):
                    h = tf.tanh(h)
            return tf.reshape(h, tf.concat([tf.shape(x)[:-1], [event_size, 2]], axis=0))

        maf = tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made)
        return tfb.Invert(maf) if self.inverse_autoregressive else maf
