"""Keras plumbing shared by every MNF layer: arguments, variables, call, KL losses, config."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from tensorflow.python.saved_model import save_context
from tf_keras.src.mixed_precision.autocast_variable import enable_auto_cast_variables

from tfp_mnf import ops
from tfp_mnf.bijectors import FLOW_KINDS, make_flow
from tfp_mnf.distributions import MNFKernelPosterior
from tfp_mnf.layers.divergence import (
    DivergenceFn,
    default_divergence_fn,
    deserialize_divergence_fn,
    serialize_divergence_fn,
)
from tfp_mnf.posterior import MIN_LOG_STD, MNFPosterior, PosteriorDraw

tfd = tfp.distributions

_SEED_RANGE = 2**31 - 1


def variables_in_their_own_dtype() -> Any:
    """A scope in which mixed-precision (auto-cast) variables read as their own dtype."""
    return enable_auto_cast_variables(None)


class MNFLayer(tf_keras.layers.Layer):
    """Base class of the MNF layers: owns the variables and the Keras plumbing.

    Subclasses say what the kernel looks like, which kernel axis z scales, and how the
    local-reparameterization step contracts inputs with the kernel; the posterior maths is
    in `tfp_mnf.posterior.MNFPosterior`.

    Every sampling call (`sample=True`, the default) adds
    `kernel_divergence_fn(kernel_posterior, kernel_prior, None)` and
    `bias_divergence_fn(bias_posterior, bias_prior, None)` to `layer.losses`, so that
    `model.fit` minimizes the negative ELBO. Those functions see unscaled KLs: divide by
    the number of training examples (see `tfp_mnf.layers.ScaledKL`).

    Numerics: log sigma is clipped to [-30, log(max_std)] and the bias log variance to
    [-60, 2 log(max_std)], in the forward pass and the KL alike (see `MNFPosterior` for the
    guards of q(z_0) and r(z | W)). Under a `mixed_float16` policy the sampling step runs
    in float32 and returns float16: the weight variances (~1e-8 at the default init) flush
    to zero in float16, and the gradient of sqrt(var) overflows it. `check_numerics=True` adds
    `tf.debugging.check_numerics` on z, the KL and the outputs; its error names the layer
    and the tensor.
    """

    def __init__(
        self,
        *,
        activation: Any = None,
        activity_regularizer: Any = None,
        trainable: bool = True,
        kernel_divergence_fn: DivergenceFn | None = None,
        bias_divergence_fn: DivergenceFn | None = None,
        use_z: bool = True,
        q_flow: str = "realnvp",
        num_q_flows: int = 2,
        r_flow: str = "realnvp",
        num_r_flows: int = 2,
        flow_hidden_units: int = 50,
        learn_prior: bool = False,
        prior_variance: float = 1.0,
        bias_prior_variance: float = 1.0,
        max_std: float = 0.5,
        kernel_log_std_init: float = -9.0,
        z_log_var_init: float = -5.0,
        kernel_initializer: Any = "glorot_uniform",
        seed: int | None = None,
        check_numerics: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            trainable=trainable,
            activity_regularizer=tf_keras.regularizers.get(activity_regularizer),
            **kwargs,
        )
        for arg, kind in (("q_flow", q_flow), ("r_flow", r_flow)):
            if kind not in FLOW_KINDS:
                raise ValueError(f"`{arg}` must be one of {FLOW_KINDS}, got {kind!r}.")
        for arg, value in (("num_q_flows", num_q_flows), ("num_r_flows", num_r_flows)):
            _check_int(arg, value, minimum=0)
        _check_int("flow_hidden_units", flow_hidden_units, minimum=1)
        for arg, value in (
            ("max_std", max_std),
            ("prior_variance", prior_variance),
            ("bias_prior_variance", bias_prior_variance),
        ):
            if not (_is_real(value) and value > 0 and math.isfinite(value)):
                raise ValueError(f"`{arg}` must be a positive finite float, got {value!r}.")
        for arg, value in (
            ("kernel_log_std_init", kernel_log_std_init),
            ("z_log_var_init", z_log_var_init),
        ):
            if not (_is_real(value) and math.isfinite(value)):
                raise ValueError(f"`{arg}` must be a finite float, got {value!r}.")
        if seed is not None:
            _check_int("seed", seed, minimum=0)
        for arg, fn in (
            ("kernel_divergence_fn", kernel_divergence_fn),
            ("bias_divergence_fn", bias_divergence_fn),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"`{arg}` must be a callable (q, p, sample) or None, got {fn!r}.")
        if not isinstance(check_numerics, bool):
            raise ValueError(f"`check_numerics` must be a bool, got {check_numerics!r}.")
        self.activation = tf_keras.activations.get(activation)
        self.kernel_divergence_fn = kernel_divergence_fn or default_divergence_fn
        self.bias_divergence_fn = bias_divergence_fn or default_divergence_fn
        self.use_z = bool(use_z)
        self.q_flow_kind = q_flow
        self.num_q_flows = num_q_flows
        self.r_flow_kind = r_flow
        self.num_r_flows = num_r_flows
        self.flow_hidden_units = flow_hidden_units
        self.learn_prior = bool(learn_prior)
        self.prior_variance = float(prior_variance)
        self.bias_prior_variance = float(bias_prior_variance)
        self.max_std = float(max_std)
        self.kernel_log_std_init = float(kernel_log_std_init)
        self.z_log_var_init = float(z_log_var_init)
        self.kernel_initializer = tf_keras.initializers.get(kernel_initializer)
        self.seed = seed
        self.check_numerics = check_numerics
        self.sample_by_default = True
        self.posterior: MNFPosterior | None = None

    # -- what subclasses define -------------------------------------------------------------

    def _kernel_layout(self, input_shape: tf.TensorShape) -> tuple[tuple[int, ...], int, int]:
        """Returns (kernel shape, the kernel axis z scales, number of output units)."""
        raise NotImplementedError

    def _sample_outputs(
        self, inputs: tf.Tensor, z: tf.Tensor, seed: tf.Tensor, kernel_variance: tf.Tensor
    ) -> tf.Tensor:
        """Local-reparameterization sample of the pre-activations, `z` of shape `[B, Z]`,
        `kernel_variance` the clipped sigma^2 of the weights."""
        raise NotImplementedError

    def _mean_outputs(self, inputs: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        """Noise-free pre-activations with weight means and the `[Z]` noise `z`."""
        raise NotImplementedError

    def _r_activation(self, a: tf.Tensor) -> tf.Tensor:
        """The non-linearity of r(z | W)'s projection a = c^T W (DESIGN.md section 2)."""
        raise NotImplementedError

    # -- variables ----------------------------------------------------------------------------

    def _initializer(self, offset: int, base: Any) -> tf_keras.initializers.Initializer:
        """A fresh initializer instance for one variable, seeded from `seed` and `offset`."""
        config = base.get_config() if hasattr(base, "get_config") else {}
        if "seed" in config:
            config["seed"] = None if self.seed is None else self.seed * 1009 + offset
        return base.__class__.from_config(config)

    def _normal(self, offset: int, mean: float, stddev: float) -> Any:
        return self._initializer(offset, tf_keras.initializers.RandomNormal(mean, stddev))

    def build(self, input_shape: tf.TensorShape) -> None:
        input_shape = tf.TensorShape(input_shape)
        kernel_shape, z_axis, units = self._kernel_layout(input_shape)
        z_size = kernel_shape[z_axis]
        self.kernel_mean = self.add_weight(
            "kernel_mean", kernel_shape, initializer=self._initializer(0, self.kernel_initializer)
        )
        self.kernel_log_std = self.add_weight(
            "kernel_log_std",
            kernel_shape,
            initializer=self._normal(1, self.kernel_log_std_init, 1e-2),
        )
        self.bias_mean = self.add_weight("bias_mean", (units,), initializer="zeros")
        self.bias_log_var = self.add_weight(
            "bias_log_var",
            (units,),
            initializer=self._normal(2, 2 * self.kernel_log_std_init, 1e-2),
        )
        self.kernel_prior_log_var = self.add_weight(
            "kernel_prior_log_var",
            (z_size,),
            initializer=tf_keras.initializers.Constant(math.log(self.prior_variance)),
            trainable=self.learn_prior,
        )
        self.bias_prior_log_var = self.add_weight(
            "bias_prior_log_var",
            (units,),
            initializer=tf_keras.initializers.Constant(math.log(self.bias_prior_variance)),
            trainable=self.learn_prior,
        )
        z_vars = dict.fromkeys(("q0_mean", "q0_log_var", "r_c", "r_b1", "r_b2"))
        q_flow = r_flow = None
        if self.use_z:
            inits = {
                "q0_mean": self._normal(3, 1.0, 1e-2),
                "q0_log_var": self._normal(4, self.z_log_var_init, 1e-2),
                "r_c": self._normal(5, 0.0, 1.0 / math.sqrt(z_size)),
                "r_b1": self._normal(6, 0.0, 1e-1),
                "r_b2": self._normal(7, 0.0, 1e-1),
            }
            z_vars = {
                key: self.add_weight(key, (z_size,), initializer=init)
                for key, init in inits.items()
            }
            seeds = (
                (None, None) if self.seed is None else (self.seed * 1009 + 8, self.seed * 1009 + 9)
            )
            # The flows compute in the variable dtype (float32 under mixed precision).
            self.q_flow = q_flow = make_flow(
                self.q_flow_kind,
                self.num_q_flows,
                z_size,
                self.flow_hidden_units,
                seeds[0],
                name="q_flow",
                dtype=self.dtype,
            )
            self.r_flow = r_flow = make_flow(
                self.r_flow_kind,
                self.num_r_flows,
                z_size,
                self.flow_hidden_units,
                seeds[1],
                name="r_flow",
                dtype=self.dtype,
            )
            for flow in (q_flow, r_flow):
                with tf.name_scope(flow.name):
                    flow.build((None, z_size))
        for key, variable in z_vars.items():
            setattr(self, key, variable)
        self.posterior = MNFPosterior(
            kernel_mean=self.kernel_mean,
            kernel_log_std=self.kernel_log_std,
            q_flow=q_flow,
            r_flow=r_flow,
            z_axis=z_axis,
            max_std=self.max_std,
            r_activation=self._r_activation,
            **z_vars,
        )
        super().build(input_shape)

    # -- distributions ------------------------------------------------------------------------

    @property
    def kernel_posterior(self) -> MNFKernelPosterior:
        """The MNF posterior over the kernel, a `tfd.Distribution`."""
        return self._kernel_posterior(seed=None)

    def _kernel_posterior(
        self, seed: tf.Tensor | None, draw: PosteriorDraw | None = None
    ) -> MNFKernelPosterior:
        self._require_built("kernel_posterior")
        return MNFKernelPosterior(self.posterior, seed=seed, draw=draw)

    @property
    def kernel_prior(self) -> tfd.Distribution:
        """The prior over the kernel: independent N(0, v_p), v_p per entry of z."""
        self._require_built("kernel_prior")
        scale = tf.exp(0.5 * self.posterior.along_z(self.kernel_prior_log_var))
        loc = tf.zeros(self.kernel_mean.shape, scale.dtype)
        return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=loc.shape.rank)

    def _clipped_bias_log_var(self) -> tf.Tensor:
        """log sigma_b^2 clipped to [2 `MIN_LOG_STD`, 2 log(max_std)] like the kernel's."""
        log_var = tf.convert_to_tensor(self.bias_log_var)
        floored = tf.maximum(log_var, tf.constant(2.0 * MIN_LOG_STD, log_var.dtype))
        return tf.minimum(floored, tf.constant(2.0 * math.log(self.max_std), log_var.dtype))

    def _bias_variance(self) -> tf.Tensor:
        """sigma_b^2 = exp of the clipped bias log variance."""
        return tf.exp(self._clipped_bias_log_var())

    @property
    def bias_posterior(self) -> tfd.Distribution:
        """The mean-field Normal posterior over the bias."""
        self._require_built("bias_posterior")
        return tfd.Independent(
            tfd.Normal(self.bias_mean, tf.sqrt(self._bias_variance())), reinterpreted_batch_ndims=1
        )

    @property
    def bias_prior(self) -> tfd.Distribution:
        """The prior over the bias: independent N(0, bias_prior_variance)."""
        self._require_built("bias_prior")
        scale = tf.exp(0.5 * self.bias_prior_log_var)
        return tfd.Independent(tfd.Normal(tf.zeros_like(scale), scale), reinterpreted_batch_ndims=1)

    def kl_divergence(self, seed: tf.Tensor | None = None) -> tf.Tensor:
        """The unscaled MNF bound on KL(q(W, b) || p(W, b)), one z_T sample (eq. 15).

        Args:
          seed: optional `[2]` integer seed of the estimate.

        Returns:
          A scalar tensor: the kernel bound plus the closed-form bias KL.
        """
        return tfd.kl_divergence(
            self._kernel_posterior(seed), self.kernel_prior
        ) + tfd.kl_divergence(self.bias_posterior, self.bias_prior)

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(f"`{what}` of layer {self.name!r} exists once the layer is built.")

    # -- call ---------------------------------------------------------------------------------

    def _call_seed(self) -> tf.Tensor:
        """A fresh `[2]` int32 seed per call (reproducible under a global/layer seed)."""
        return tf.random.uniform([2], maxval=_SEED_RANGE, dtype=tf.int32, seed=self.seed)

    def call(
        self, inputs: tf.Tensor, training: Any = None, sample: bool | None = None
    ) -> tf.Tensor:
        """Applies the layer.

        Args:
          inputs: a floating-point tensor. The outputs are in the layer's compute dtype;
            the posterior maths (z, flows, KL) runs in the variable dtype, float32 under a
            mixed-precision policy (and so does the sampling step under `mixed_float16`).
            NaNs propagate to the outputs of the affected examples, as in Keras' Dense.
          training: unused (the layer samples whenever `sample` is true, and adds its KL
            on every sampling call like tfp.layers: Keras models built on `Input`s keep the
            symbolic KL of their construction, so a call must not drop it), kept for Keras.
          sample: True draws a posterior predictive sample (local reparameterization with
            fresh z and weight noise) and adds the divergences to `losses`; False returns
            the noise-free posterior-mean output and adds no KL. None uses
            `sample_by_default` (see `tfp_mnf.layers.posterior_mean`).

        Returns:
          The activations.
        """
        inputs = tf.convert_to_tensor(inputs)
        if not inputs.dtype.is_floating:
            raise TypeError(
                f"{self.name}: `inputs` must be a floating-point tensor, got dtype "
                f"{inputs.dtype.name}; cast it, e.g. `tf.cast(x, tf.float32) / 255.0`."
            )
        inputs = tf.cast(inputs, self.compute_dtype)
        if sample is None:
            sample = self.sample_by_default
        if not sample:
            with variables_in_their_own_dtype():
                z = self._checked(self.posterior.mean_z(), "z") if self.use_z else None
            z = tf.ones([self.posterior.z_size]) if z is None else z
            outputs = self._mean_outputs(inputs, tf.cast(z, self.compute_dtype))
        else:
            # While a SavedModel is traced the composite ops are used, so that the saved
            # graphs hold only standard TensorFlow ops and load where the op library is missing.
            saving = save_context.in_save_context()
            with ops.force_composite() if saving else contextlib.nullcontext():
                outputs = self._sample_call(inputs)
        outputs = outputs if self.activation is None else self.activation(outputs)
        return self._checked(outputs, "outputs")

    def _sample_call(self, inputs: tf.Tensor) -> tf.Tensor:
        """A posterior predictive sample of the pre-activations; adds the divergences.

        One `PosteriorDraw` gives the per-example z, the KL's own z_T sample and the
        clipped weight variances that the local-reparameterization step and the KL share.
        float16 runs that step in float32: the weight variances (~1e-8 at the default init)
        flush to zero in float16 and their gradients overflow it.
        """
        batch = tf.shape(inputs)[0]
        draw_seed, eps_seed = tf.unstack(
            tf.random.experimental.stateless_split(self._call_seed(), 2)
        )
        with variables_in_their_own_dtype():
            draw = self.posterior.draw(batch, draw_seed)
            if draw.z is None:
                z = tf.ones([batch, self.posterior.z_size])
            else:
                z = self._checked(draw.z, "z")
            self._add_divergences(draw)
        in_float32 = self.compute_dtype == "float16"
        dtype = self.dtype if in_float32 else self.compute_dtype
        with variables_in_their_own_dtype() if in_float32 else contextlib.nullcontext():
            outputs = self._sample_outputs(
                tf.cast(inputs, dtype),
                tf.cast(z, dtype),
                eps_seed,
                tf.cast(draw.moments.variance, dtype),
            )
        return tf.cast(outputs, self.compute_dtype)

    def _checked(self, tensor: tf.Tensor, what: str) -> tf.Tensor:
        """`tensor`, through `tf.debugging.check_numerics` when `check_numerics` is on."""
        if not self.check_numerics:
            return tensor
        return tf.debugging.check_numerics(tensor, f"MNF layer {self.name!r}, tensor {what!r}")

    def _add_divergences(self, draw: PosteriorDraw) -> None:
        kernel_kl = self.kernel_divergence_fn(
            self._kernel_posterior(None, draw), self.kernel_prior, None
        )
        bias_kl = self.bias_divergence_fn(self.bias_posterior, self.bias_prior, None)
        self.add_loss(self._checked(tf.add(kernel_kl, bias_kl, name="mnf_kl"), "KL"))

    # -- config -------------------------------------------------------------------------------

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            activation=tf_keras.activations.serialize(self.activation) if self.activation else None,
            activity_regularizer=tf_keras.regularizers.serialize(self.activity_regularizer)
            if self.activity_regularizer
            else None,
            kernel_divergence_fn=serialize_divergence_fn(
                "kernel_divergence_fn", self.kernel_divergence_fn
            ),
            bias_divergence_fn=serialize_divergence_fn(
                "bias_divergence_fn", self.bias_divergence_fn
            ),
            use_z=self.use_z,
            q_flow=self.q_flow_kind,
            num_q_flows=self.num_q_flows,
            r_flow=self.r_flow_kind,
            num_r_flows=self.num_r_flows,
            flow_hidden_units=self.flow_hidden_units,
            learn_prior=self.learn_prior,
            prior_variance=self.prior_variance,
            bias_prior_variance=self.bias_prior_variance,
            max_std=self.max_std,
            kernel_log_std_init=self.kernel_log_std_init,
            z_log_var_init=self.z_log_var_init,
            kernel_initializer=tf_keras.initializers.serialize(self.kernel_initializer),
            seed=self.seed,
            check_numerics=self.check_numerics,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> MNFLayer:
        config = dict(config)
        for key in ("kernel_divergence_fn", "bias_divergence_fn"):
            config[key] = deserialize_divergence_fn(config.get(key))
        return cls(**config)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_int(arg: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{arg}` must be an int >= {minimum}, got {value!r}.")
