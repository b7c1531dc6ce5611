"""What the Keras front-ends share: the whole MNF layer, over an adapter of the hosting Keras.

`MNFLayerLogic`, `DenseLogic` and `ConvLogic` hold the layers' arguments, variables, call,
KL losses and config. A front-end (`tfp_mnf.layers` on tf_keras) mixes them into its Keras
`Layer` base class and gives a `KerasAPI`: how its Keras resolves and serializes
activations, regularizers, initializers and divergence functions, builds an `InputSpec`,
and reads mixed-precision variables in their own dtype. The maths is in
`tfp_mnf.posterior.MNFPosterior`, the parameter declarations in `tfp_mnf.parameters`.

Every layer has three trainable variables (`kernel_mean`, `kernel_log_std` and
`posterior_parameters`, one vector holding the biases, q(z_0), r(z | W) and both flows'
parameters) and one more for the prior log variances (`prior_parameters`, trainable with
`learn_prior`): an optimizer pays for four variables, not for ~25 small ones. With
`empirical_prior`, a fifth, non-trainable one (`prior_means`) holds the priors' means.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_mnf import arguments, ops, parameters
from tfp_mnf.bijectors import NormalizingFlow
from tfp_mnf.distributions import MNFKernelPosterior
from tfp_mnf.posterior import MIN_LOG_STD, MNFPosterior, PosteriorDraw

tfd = tfp.distributions

_SEED_RANGE = 2**31 - 1
# derive_seed paths of a layer's initial values.
_KERNEL_SEED, _LOG_STD_SEED, _POSTERIOR_SEED, _CALL_SEED = range(4)
WEIGHTS_FORMAT = 2  # packed parameters (tfp_mnf >= 0.2); 1: one variable per parameter


class KerasAPI(NamedTuple):
    """How a front-end's Keras handles the values of the Keras `kind`s of arguments."""

    get: Mapping[str, Callable[[Any], Any]]
    serialize: Mapping[str, Callable[[str, Any], Any]]
    deserialize: Mapping[str, Callable[[Any], Any]]
    input_spec: Callable[..., Any]
    own_dtype_scope: Callable[[], contextlib.AbstractContextManager]


class BoundFlow(NamedTuple):
    """A `NormalizingFlow` with tensors of its parameters: `.bijector` is ready to use."""

    flow: NormalizingFlow
    params: Mapping[str, tf.Tensor]

    @property
    def bijector(self) -> tfp.bijectors.Bijector:
        return self.flow.bijector(self.params)


class MNFLayerLogic:
    """The MNF layer shared by both Keras front-ends (see the module docstring).

    Every sampling call (`sample=True`, the default) adds
    `kernel_divergence_fn(kernel_posterior, kernel_prior, None)` and
    `bias_divergence_fn(bias_posterior, bias_prior, None)` to `layer.losses`, so that
    `model.fit` minimizes the negative ELBO. Those functions see unscaled KLs: divide by
    the number of training examples (see `tfp_mnf.layers.ScaledKL`).

    Numerics: log sigma is clipped to [-30, log(max_std)] and the bias log variance to
    [-60, 2 log(max_std)], in the forward pass and the KL alike (see `MNFPosterior` for the
    guards of q(z_0) and r(z | W)). The posterior maths runs in the variable dtype (float32
    under a mixed-precision policy), and so does the sampling step under `mixed_float16`:
    the weight variances (~1e-8 at the default init) flush to zero in float16, and the
    gradient of sqrt(var) overflows it.
    """

    _keras: KerasAPI
    _OWN_ARGUMENTS: tuple[arguments.Argument, ...] = ()
    _ARGUMENTS: tuple[arguments.Argument, ...] = arguments.MNF_ARGUMENTS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        owner = type(self).__name__
        own = arguments.bind(self._OWN_ARGUMENTS, args, kwargs, owner)
        mnf = arguments.bind(self._ARGUMENTS, (), kwargs, owner)
        for name in ("kernel_divergence_fn", "bias_divergence_fn"):
            mnf[name] = self._keras.get["divergence"](name, mnf[name])
        super().__init__(
            activity_regularizer=self._keras.get["regularizer"](mnf["activity_regularizer"]),
            **kwargs,
        )
        self._mnf_config = {**own, **mnf}
        for name, value in {**own, **mnf}.items():
            if name != "activity_regularizer":
                setattr(self, name, self._resolve(name, value))
        self.sample_by_default = True
        self._q_flow: NormalizingFlow | None = None
        self._r_flow: NormalizingFlow | None = None

    def _resolve(self, name: str, value: Any) -> Any:
        kind = _KINDS.get(name)
        if kind in ("activation", "initializer"):
            return self._keras.get[kind](value)
        return value

    # -- what subclasses define -------------------------------------------------------------

    def _kernel_layout(self, input_shape: tf.TensorShape) -> tuple[tuple[int, ...], int, int]:
        """Returns (kernel shape, the kernel axis z scales, number of output units)."""
        raise NotImplementedError

    def _sample_outputs(
        self,
        inputs: tf.Tensor,
        z: tf.Tensor,
        seed: tf.Tensor,
        kernel_variance: tf.Tensor,
        values: Mapping[str, tf.Tensor] | None = None,
    ) -> tf.Tensor:
        """Local-reparameterization sample of the pre-activations, `z` of shape `[B, Z]`,
        `kernel_variance` the clipped sigma^2 of the weights, `values` the unpacked
        parameters (None: read from the variables)."""
        raise NotImplementedError

    def _mean_outputs(
        self, inputs: tf.Tensor, z: tf.Tensor, values: Mapping[str, tf.Tensor] | None = None
    ) -> tf.Tensor:
        """Noise-free pre-activations with weight means and the `[Z]` noise `z`."""
        raise NotImplementedError

    def _r_activation(self, a: tf.Tensor) -> tf.Tensor:
        """The non-linearity of r(z | W)'s projection a = c^T W (DESIGN.md, section 2)."""
        raise NotImplementedError

    # -- parameters ---------------------------------------------------------------------------

    def _declare_parameters(
        self, z_size: int, units: int
    ) -> tuple[parameters.ParameterPack, parameters.ParameterPack]:
        """The packed posterior parameters and prior log variances of this layer."""
        seed = parameters.derive_seed(self.seed, _POSTERIOR_SEED)

        def piece_seed(index: int) -> int | None:
            return parameters.derive_seed(seed, index)

        posterior = parameters.ParameterPack()
        posterior.add("bias_mean", [units], parameters.constant([units], 0.0))
        posterior.add(
            "bias_log_var",
            [units],
            parameters.normal([units], 2 * self.kernel_log_std_init, 1e-2, piece_seed(0)),
        )
        if self.use_z:
            z_inits = {
                "q0_mean": (1.0, 1e-2),
                "q0_log_var": (self.z_log_var_init, 1e-2),
                "r_c": (0.0, 1.0 / math.sqrt(z_size)),
                "r_b1": (0.0, 1e-1),
                "r_b2": (0.0, 1e-1),
            }
            for index, (name, (mean, std)) in enumerate(z_inits.items(), start=1):
                posterior.add(
                    name, [z_size], parameters.normal([z_size], mean, std, piece_seed(index))
                )
            self._q_flow, self._r_flow = (
                NormalizingFlow(kind, num, z_size, self.flow_hidden_units, piece_seed(index), name)
                for index, (kind, num, name) in enumerate(
                    [
                        (self.q_flow, self.num_q_flows, "q_flow"),
                        (self.r_flow, self.num_r_flows, "r_flow"),
                    ],
                    start=len(z_inits) + 1,
                )
            )
            posterior.extend(self._q_flow.parameters())
            posterior.extend(self._r_flow.parameters())
        prior = parameters.ParameterPack()
        prior.add(
            "kernel_prior_log_var",
            [z_size],
            parameters.constant([z_size], math.log(self.prior_variance)),
        )
        prior.add(
            "bias_prior_log_var",
            [units],
            parameters.constant([units], math.log(self.bias_prior_variance)),
        )
        return posterior, prior

    def build(self, input_shape: tf.TensorShape) -> None:
        input_shape = tf.TensorShape(input_shape)
        kernel_shape, z_axis, units = self._kernel_layout(input_shape)
        self._z_axis = z_axis
        self._posterior_pack, self._prior_pack = self._declare_parameters(
            kernel_shape[z_axis], units
        )
        self.kernel_mean = self.add_weight(
            name="kernel_mean",
            shape=kernel_shape,
            initializer=_seeded(self.kernel_initializer, self.seed, _KERNEL_SEED),
        )
        log_std = parameters.normal(
            kernel_shape,
            self.kernel_log_std_init,
            1e-2,
            parameters.derive_seed(self.seed, _LOG_STD_SEED),
        )
        self.kernel_log_std = self.add_weight(
            name="kernel_log_std",
            shape=kernel_shape,
            initializer=lambda shape, dtype=None: log_std(tf.as_dtype(dtype or "float32")),
        )
        self.posterior_parameters = self.add_weight(
            name="posterior_parameters",
            shape=(self._posterior_pack.size,),
            initializer=self._posterior_pack.initializer,
        )
        self.prior_parameters = self.add_weight(
            name="prior_parameters",
            shape=(self._prior_pack.size,),
            initializer=self._prior_pack.initializer,
            trainable=self.learn_prior,
        )
        self._prior_mean_pack = parameters.ParameterPack()
        self.prior_means = None
        if self.empirical_prior:
            self._prior_mean_pack.add(
                "kernel_prior_mean", kernel_shape, parameters.constant(kernel_shape, 0.0)
            )
            self._prior_mean_pack.add("bias_prior_mean", [units], parameters.constant([units], 0.0))
            self.prior_means = self.add_weight(
                name="prior_means",
                shape=(self._prior_mean_pack.size,),
                initializer=self._prior_mean_pack.initializer,
                trainable=False,
            )
        super().build(input_shape)

    def _packs(self) -> list[tuple[parameters.ParameterPack, tf.Variable]]:
        """Each parameter pack with the variable that stores it."""
        packs = [
            (self._posterior_pack, self.posterior_parameters),
            (self._prior_pack, self.prior_parameters),
        ]
        if self.prior_means is not None:
            packs.append((self._prior_mean_pack, self.prior_means))
        return packs

    def parameter_values(self) -> dict[str, tf.Tensor]:
        """Every packed parameter by name: the biases, q(z_0), r(z | W), the flows' steps
        (`"q_flow_0/..."`), the prior log variances and, with `empirical_prior`, the prior
        means, unpacked from their variables."""
        self._require_built("parameter_values")
        return {
            name: value
            for pack, variable in self._packs()
            for name, value in pack.unpack(variable).items()
        }

    def assign_parameters(self, **values: Any) -> None:
        """Assigns some packed parameters by name (see `parameter_values`), e.g.
        `layer.assign_parameters(bias_mean=b)`; the others keep their values.

        Raises:
          ValueError: an unknown name, or a value of another shape than the parameter's.
        """
        self._require_built("assign_parameters")
        for pack, variable in self._packs():
            mine = {name: values.pop(name) for name in pack.names if name in values}
            if mine:
                current = pack.unpack(variable)
                variable.assign(pack.pack({**current, **mine}, variable.dtype))
        if values:
            raise ValueError(
                f"{self.name}: unknown parameters {sorted(values)}; known: "
                f"{[name for pack, _ in self._packs() for name in pack.names]}"
            )

    def _values_property(name: str) -> property:  # noqa: N805 (a property factory)
        return property(
            lambda self: self.parameter_values()[name],
            doc=f"`{name}`, unpacked (read-only; set it with `assign_parameters`).",
        )

    bias_mean = _values_property("bias_mean")
    bias_log_var = _values_property("bias_log_var")
    q0_mean = _values_property("q0_mean")
    q0_log_var = _values_property("q0_log_var")
    r_c = _values_property("r_c")
    r_b1 = _values_property("r_b1")
    r_b2 = _values_property("r_b2")
    kernel_prior_log_var = _values_property("kernel_prior_log_var")
    bias_prior_log_var = _values_property("bias_prior_log_var")
    del _values_property

    @property
    def posterior(self) -> MNFPosterior:
        """The layer's `MNFPosterior` over the current values of its variables."""
        self._require_built("posterior")
        return self._posterior(self.parameter_values())

    def _posterior(self, values: Mapping[str, tf.Tensor]) -> MNFPosterior:
        z_values = dict.fromkeys(("q0_mean", "q0_log_var", "r_c", "r_b1", "r_b2"))
        flows = (None, None)
        if self.use_z:
            z_values = {name: values[name] for name in z_values}
            flows = (BoundFlow(self._q_flow, values), BoundFlow(self._r_flow, values))
        return MNFPosterior(
            kernel_mean=self.kernel_mean,
            kernel_log_std=self.kernel_log_std,
            q_flow=flows[0],
            r_flow=flows[1],
            z_axis=self._z_axis,
            max_std=self.max_std,
            r_activation=self._r_activation,
            **z_values,
        )

    # -- distributions ------------------------------------------------------------------------

    @property
    def kernel_posterior(self) -> MNFKernelPosterior:
        """The MNF posterior over the kernel, a `tfd.Distribution`."""
        return MNFKernelPosterior(self.posterior)

    @property
    def kernel_prior(self) -> tfd.Distribution:
        """The prior over the kernel: independent N(m, v_p), v_p per entry of z, m = 0 or
        `kernel_prior_mean` (`empirical_prior`)."""
        self._require_built("kernel_prior")
        return self._kernel_prior(self.parameter_values())

    def _kernel_prior(self, values: Mapping[str, tf.Tensor]) -> tfd.Distribution:
        post = self._posterior(values)
        scale = tf.exp(0.5 * post.along_z(values["kernel_prior_log_var"]))
        # A zero mean of the shape along z makes the KL take its sums-over-the-kernel form;
        # stored means (`empirical_prior`) have the kernel's shape: the element-wise form.
        loc = values["kernel_prior_mean"] if self.empirical_prior else tf.zeros_like(scale)
        normal = tfd.Normal(loc, scale)
        return tfd.Independent(
            tfd.BatchBroadcast(normal, self.kernel_mean.shape),
            reinterpreted_batch_ndims=self.kernel_mean.shape.rank,
        )

    def _clipped_bias_log_var(self, values: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """log sigma_b^2 clipped to [2 `MIN_LOG_STD`, 2 log(max_std)] like the kernel's."""
        log_var = values["bias_log_var"]
        floored = tf.maximum(log_var, tf.constant(2.0 * MIN_LOG_STD, log_var.dtype))
        return tf.minimum(floored, tf.constant(2.0 * math.log(self.max_std), log_var.dtype))

    def _bias_variance(self, values: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """sigma_b^2 = exp of the clipped bias log variance."""
        return tf.exp(self._clipped_bias_log_var(values))

    @property
    def bias_posterior(self) -> tfd.Distribution:
        """The mean-field Normal posterior over the bias."""
        self._require_built("bias_posterior")
        return self._bias_posterior(self.parameter_values())

    def _bias_posterior(self, values: Mapping[str, tf.Tensor]) -> tfd.Distribution:
        return tfd.Independent(
            tfd.Normal(values["bias_mean"], tf.sqrt(self._bias_variance(values))),
            reinterpreted_batch_ndims=1,
        )

    @property
    def bias_prior(self) -> tfd.Distribution:
        """The prior over the bias: independent N(m, bias_prior_variance), m = 0 or
        `bias_prior_mean` (`empirical_prior`)."""
        self._require_built("bias_prior")
        return self._bias_prior(self.parameter_values())

    def _bias_prior(self, values: Mapping[str, tf.Tensor]) -> tfd.Distribution:
        scale = tf.exp(0.5 * values["bias_prior_log_var"])
        loc = values["bias_prior_mean"] if self.empirical_prior else tf.zeros_like(scale)
        return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)

    def kl_divergence(self, seed: tf.Tensor | None = None) -> tf.Tensor:
        """The unscaled MNF bound on KL(q(W, b) || p(W, b)), one z_T sample (eq. 15).

        Args:
          seed: optional `[2]` integer seed of the estimate.

        Returns:
          A scalar tensor: the kernel bound plus the closed-form bias KL.
        """
        self._require_built("kl_divergence")
        values = self.parameter_values()
        kernel_kl = tfd.kl_divergence(
            MNFKernelPosterior(self._posterior(values), seed=seed), self._kernel_prior(values)
        )
        return kernel_kl + tfd.kl_divergence(self._bias_posterior(values), self._bias_prior(values))

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(f"`{what}` of layer {self.name!r} exists once the layer is built.")

    # -- call ---------------------------------------------------------------------------------

    def _call_seed(self) -> tf.Tensor:
        """A fresh `[2]` int32 seed per call (reproducible under a global/layer seed)."""
        seed = parameters.derive_seed(self.seed, _CALL_SEED)
        return tf.random.uniform([2], maxval=_SEED_RANGE, dtype=tf.int32, seed=seed)

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
        with self._keras.own_dtype_scope():
            values = self.parameter_values()
        if not sample:
            with self._keras.own_dtype_scope():
                posterior = self._posterior(values)
                z = self._checked(posterior.mean_z(), "z") if self.use_z else None
            z = tf.ones([posterior.z_size]) if z is None else z
            outputs = self._mean_outputs(
                inputs, tf.cast(z, self.compute_dtype), _cast_values(values, self.compute_dtype)
            )
        else:
            outputs = self._sample_call(inputs, values)
        outputs = outputs if self.activation is None else self.activation(outputs)
        return self._checked(outputs, "outputs")

    def _sample_call(self, inputs: tf.Tensor, values: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """A posterior predictive sample of the pre-activations; adds the divergences.

        One `PosteriorDraw` gives the per-example z, the KL's own z_T sample and the
        clipped weight variances that the local-reparameterization step and the KL share.
        float16 runs that step in float32 (see the class docstring).
        """
        batch = tf.shape(inputs)[0]
        draw_seed, eps_seed = tf.unstack(
            tf.random.experimental.stateless_split(self._call_seed(), 2)
        )
        with self._keras.own_dtype_scope():
            posterior = self._posterior(values)
            draw = posterior.draw(batch, draw_seed)
            if draw.z is None:
                z = tf.ones([batch, posterior.z_size])
            else:
                z = self._checked(draw.z, "z")
            self._add_divergences(posterior, draw, values)
        in_float32 = self.compute_dtype == "float16"
        dtype = self.dtype if in_float32 else self.compute_dtype
        with self._keras.own_dtype_scope() if in_float32 else contextlib.nullcontext():
            outputs = self._sample_outputs(
                tf.cast(inputs, dtype),
                tf.cast(z, dtype),
                eps_seed,
                tf.cast(draw.moments.variance, dtype),
                _cast_values(values, dtype),
            )
        return tf.cast(outputs, self.compute_dtype)

    def _checked(self, tensor: tf.Tensor, what: str) -> tf.Tensor:
        """`tensor`, through `tf.debugging.check_numerics` when `check_numerics` is on."""
        if not self.check_numerics:
            return tensor
        return tf.debugging.check_numerics(tensor, f"MNF layer {self.name!r}, tensor {what!r}")

    def _add_divergences(
        self, posterior: MNFPosterior, draw: PosteriorDraw, values: Mapping[str, tf.Tensor]
    ) -> None:
        kernel_kl = self.kernel_divergence_fn(
            MNFKernelPosterior(posterior, draw=draw), self._kernel_prior(values), None
        )
        bias_kl = self.bias_divergence_fn(
            self._bias_posterior(values), self._bias_prior(values), None
        )
        self.add_loss(self._checked(tf.add(kernel_kl, bias_kl, name="mnf_kl"), "KL"))

    # -- config -------------------------------------------------------------------------------

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("activity_regularizer", None)
        for argument in (*self._OWN_ARGUMENTS, *self._ARGUMENTS):
            value = self._mnf_config[argument.name]
            if argument.name == "activity_regularizer":
                value = self.activity_regularizer
            elif argument.kind in ("activation", "initializer"):
                value = getattr(self, argument.name)
            if argument.kind is not None:
                value = self._keras.serialize[argument.kind](argument.name, value)
            config[argument.name] = value
        return config

    @classmethod
    def from_config(cls, config: dict) -> MNFLayerLogic:
        config = dict(config)
        for argument in cls._ARGUMENTS:
            if argument.kind == "divergence" and argument.name in config:
                config[argument.name] = cls._keras.deserialize["divergence"](config[argument.name])
        return cls(**config)


_KINDS = {a.name: a.kind for a in arguments.MNF_ARGUMENTS if a.kind is not None}


def check_weights_format(layer: MNFLayerLogic, num_saved: int) -> None:
    """Raises a clear error when a file holds another number of variables for `layer`.

    Weights format 2 (tfp_mnf >= 0.2) stores four variables per layer (the kernel means and
    log-stds, the packed posterior parameters, the packed prior log variances); format 1
    (tfp_mnf 0.1) stored one variable per parameter (~25 per layer).
    """
    expected = len(layer.variables)
    if num_saved != expected:
        raise ValueError(
            f"{layer.name}: the file holds {num_saved} variables for this layer, which has "
            f"{expected} (tfp_mnf weights format {WEIGHTS_FORMAT}: kernel_mean, kernel_log_std "
            "and the packed posterior_parameters and prior_parameters, plus prior_means with "
            "empirical_prior). Files saved by "
            "tfp_mnf 0.1 (one variable per parameter) cannot be loaded by this version: "
            "re-train, or load them with tfp_mnf 0.1 and copy the values with "
            "`layer.assign_parameters`."
        )


def _cast_values(values: Mapping[str, tf.Tensor], dtype: tf.DType) -> dict[str, tf.Tensor]:
    return {name: tf.cast(value, dtype) for name, value in values.items()}


def _seeded(initializer: Any, seed: int | None, index: int) -> Any:
    """A fresh instance of a Keras initializer, seeded from the layer's `seed` at `index`.

    Keras initializer instances return the same values on every call, so each variable
    gets its own instance (DESIGN.md, section 7).
    """
    config = initializer.get_config() if hasattr(initializer, "get_config") else None
    if config is None or "seed" not in config:
        return initializer
    config["seed"] = parameters.derive_seed(seed, index)
    return initializer.__class__.from_config(config)


def with_args_doc(cls: type) -> type:
    """Appends the Args section of `cls`'s own and MNF arguments to its docstring."""
    lines = [
        arguments.args_doc(cls._OWN_ARGUMENTS),
        arguments.args_doc(cls._ARGUMENTS),
        "  **kwargs: Keras `Layer` arguments: `name`, `trainable`, `dtype`.",
    ]
    args = "\n".join(f"    {line}" for text in lines for line in text.splitlines() if text)
    cls.__doc__ = f"{cls.__doc__.rstrip()}\n\n    Args:\n{args}\n"
    return cls


class DenseLogic(MNFLayerLogic):
    """Dense layer with a Multiplicative Normalizing Flow posterior over its kernel.

    A drop-in for `tfp.layers.DenseFlipout` / `DenseReparameterization`: inputs `[B, K]`,
    outputs `[B, units]`, and every sampling call adds the KL bound to `layer.losses`.
    z has one entry per input unit; one z is drawn per example and the output is sampled
    with the local reparameterization trick (Algorithm 1):
    mu = (x * z) M + b, var = x^2 sigma^2 + sigma_b^2, out = mu + sqrt(var) * eps.

    Reference: Louizos & Welling (2017), Multiplicative Normalizing Flows for Variational
    Bayesian Neural Networks, arXiv:1703.01961.
    """

    _OWN_ARGUMENTS = arguments.DENSE_ARGUMENTS

    def _kernel_layout(self, input_shape: tf.TensorShape) -> tuple[tuple[int, ...], int, int]:
        if input_shape.rank != 2:
            raise ValueError(
                f"{self.name}: `inputs` must have rank 2 `[batch, features]`, "
                f"got shape {input_shape}."
            )
        if input_shape[-1] is None:
            raise ValueError(
                f"{self.name}: the last dimension of `inputs` must be known, got {input_shape}."
            )
        self.input_spec = self._keras.input_spec(ndim=2, axes={-1: input_shape[-1]})
        return (input_shape[-1], self.units), 0, self.units

    def _sample_outputs(
        self,
        inputs: tf.Tensor,
        z: tf.Tensor,
        seed: tf.Tensor,
        kernel_variance: tf.Tensor,
        values: Mapping[str, tf.Tensor] | None = None,
    ) -> tf.Tensor:
        values = values or self.parameter_values()
        return ops.dense_local_reparam_from_variance(
            inputs,
            z,
            tf.cast(self.kernel_mean, inputs.dtype),
            kernel_variance,
            values["bias_mean"],
            self._clipped_bias_log_var(values),
            seed,
            self.max_std,
        )

    def _mean_outputs(
        self, inputs: tf.Tensor, z: tf.Tensor, values: Mapping[str, tf.Tensor] | None = None
    ) -> tf.Tensor:
        values = values or self.parameter_values()
        return tf.matmul(inputs * z, tf.cast(self.kernel_mean, inputs.dtype)) + values["bias_mean"]

    def _r_activation(self, a: tf.Tensor) -> tf.Tensor:
        return tf.tanh(a)

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)[:-1].concatenate([self.units])


class ConvLogic(MNFLayerLogic):
    """N-D convolution with a Multiplicative Normalizing Flow posterior over its kernel.

    A drop-in for `tfp.layers.Convolution{1,2,3}DFlipout`. z has one entry per output filter;
    one z is drawn per example and the output is sampled with the local reparameterization
    trick (Algorithm 1): mu = conv(x, M) + b, var = conv(x^2, sigma^2) + sigma_b^2,
    out = mu * z + sqrt(var) * eps. `channels_first` inputs are transposed to channels-last
    for the computation (TensorFlow's CPU convolutions only support channels-last).

    Subclasses set the number of spatial dimensions `rank` (1, 2 or 3).

    Reference: Louizos & Welling (2017), arXiv:1703.01961.
    """

    rank = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.rank:
            cls._OWN_ARGUMENTS = arguments.conv_arguments(cls.rank)

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
        self.input_spec = self._keras.input_spec(
            ndim=self.rank + 2, axes={self._channel_axis(): channels}
        )
        return (*self.kernel_size, channels, self.filters), -1, self.filters

    def _conv_arguments(self) -> dict[str, Any]:
        return dict(
            strides=self.strides, padding=self.padding.upper(), dilations=self.dilation_rate
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
        self,
        inputs: tf.Tensor,
        z: tf.Tensor,
        seed: tf.Tensor,
        kernel_variance: tf.Tensor,
        values: Mapping[str, tf.Tensor] | None = None,
    ) -> tf.Tensor:
        values = values or self.parameter_values()
        outputs = ops.conv_local_reparam(
            self._to_channels_last(inputs),
            tf.cast(self.kernel_mean, inputs.dtype),
            kernel_variance,
            values["bias_mean"],
            self._bias_variance(values),
            z,
            seed,
            **self._conv_arguments(),
        )
        return self._from_channels_last(outputs)

    def _mean_outputs(
        self, inputs: tf.Tensor, z: tf.Tensor, values: Mapping[str, tf.Tensor] | None = None
    ) -> tf.Tensor:
        values = values or self.parameter_values()
        kernel = tf.cast(self.kernel_mean, inputs.dtype)
        mu = ops.convolution(self._to_channels_last(inputs), kernel, **self._conv_arguments())
        return self._from_channels_last((mu + values["bias_mean"]) * z)

    def _r_activation(self, a: tf.Tensor) -> tf.Tensor:
        return a


def own_dtype_scope_of(enable: Callable[[Any], contextlib.AbstractContextManager]) -> Callable:
    """`own_dtype_scope` from a Keras' `enable_auto_cast_variables`-like function."""

    @contextlib.contextmanager
    def scope() -> Iterator[None]:
        with enable(None):
            yield

    return scope
