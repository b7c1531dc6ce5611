"""Flows for MNF posteriors: a chain of `num_layers` steps of one kind, Keras-free.

References:
  Louizos & Welling (2017), Multiplicative Normalizing Flows for Variational Bayesian
  Neural Networks, arXiv:1703.01961 (RealNVP flows, the halves swapped between layers).
  Rezende & Mohamed (2015), arXiv:1505.05770 (planar); Dinh et al. (2017), arXiv:1605.08803
  (RealNVP); Kingma et al. (2016), arXiv:1606.04934 (IAF); Papamakarios et al. (2017),
  arXiv:1705.07057 (MAF).
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_mnf import parameters, validation
from tfp_mnf.bijectors import steps

tfb = tfp.bijectors

__all__ = ["FLOW_KINDS", "NormalizingFlow"]

FLOW_KINDS = ("planar", "realnvp", "iaf", "maf")


class NormalizingFlow:
    """A normalizing flow on `[..., event_size]` vectors: `num_layers` steps of one kind.

    Kinds (all start close to the identity):
    - `"planar"`: planar flows (`Planar`), forward one pass, inverse a scalar Newton solve.
    - `"realnvp"`: `tfb.RealNVP` affine coupling layers with an MLP of `hidden_units`
      (MNF's choice); both directions one pass.
    - `"iaf"`: `tfb.Invert(tfb.MaskedAutoregressiveFlow(MADE))`: forward (sampling) is one
      parallel pass, inverse (density of given points) `event_size` sequential passes.
    - `"maf"`: `tfb.MaskedAutoregressiveFlow(MADE)`: forward is `event_size` sequential
      passes, inverse one pass (the density-estimation direction). Prefer "iaf" where the
      forward direction is used on every step, as in MNF layers.
    For `"realnvp"`, `"iaf"` and `"maf"` every second step works in the reverse order: the
    coupling layer conditions on the last half instead of the first (`tfb.RealNVP` with a
    negative `num_masked`), the MADE uses the right-to-left input order. That is the same
    family of flows as a reverse `tfb.Permute` between the steps, without the permutations'
    gathers (and their scatter gradients) on every call.

    With `event_size == 1`, "realnvp", "iaf" and "maf" steps are unconditioned element-wise
    affine maps (`AffineStep`): there is nothing to condition on in one dimension.
    `num_layers == 0` gives the identity bijector and no parameters.

    The flow owns no variables: `parameters()` declares them (names `"{name}_{i}/..."`),
    whoever stores them (an MNF layer packs them with its other small parameters, the Keras
    `Flow` layers into one variable), and `bijector(params)` builds the `tfb.Bijector`
    (event_ndims = 1) over tensors of them. It computes in the dtype of those tensors.

    Args:
      kind: one of `FLOW_KINDS`.
      num_layers: number of flow steps, >= 0.
      event_size: size of the vectors, >= 1.
      hidden_units: hidden width of the RealNVP / MADE networks, >= 1.
      seed: non-negative integer seed of all initial values, or None.
      name: prefix of the parameter names.

    Raises:
      ValueError: for an unknown `kind`, a negative `num_layers`, a non-positive
        `event_size` or `hidden_units`, or a negative `seed`.
      TypeError: for a non-integer `num_layers`, `event_size`, `hidden_units` or `seed`.
    """

    def __init__(
        self,
        kind: str,
        num_layers: int,
        event_size: int,
        hidden_units: int = 50,
        seed: int | None = None,
        name: str = "flow",
    ) -> None:
        if kind not in FLOW_KINDS:
            raise ValueError(f"`kind` must be one of {FLOW_KINDS}, got {kind!r}.")
        self.kind = kind
        self.num_layers = validation.integer("num_layers", num_layers, 0)
        self.event_size = validation.integer("event_size", event_size, 1)
        self.hidden_units = validation.integer("hidden_units", hidden_units, 1)
        self.seed = None if seed is None else validation.integer("seed", seed, 0)
        self.name = name
        self.steps = [self._make_step(i) for i in range(self.num_layers)]

    def _make_step(self, index: int) -> steps.FlowStep:
        common = dict(
            event_size=self.event_size,
            seed=parameters.derive_seed(self.seed, index),
            name=f"{self.name}_{index}",
        )
        if self.kind == "planar":
            return steps.PlanarStep(**common)
        if self.event_size == 1:
            return steps.AffineStep(**common)
        reverse = index % 2 == 1
        if self.kind == "realnvp":
            return steps.CouplingStep(hidden_units=self.hidden_units, reverse=reverse, **common)
        return steps.AutoregressiveStep(
            hidden_units=self.hidden_units,
            inverse_autoregressive=self.kind == "iaf",
            reverse=reverse,
            **common,
        )

    def parameters(self) -> parameters.ParameterPack:
        """Every step's parameters, in step order."""
        pack = parameters.ParameterPack()
        for step in self.steps:
            pack.extend(step.parameters())
        return pack

    def step_bijectors(self, params: Mapping[str, tf.Tensor]) -> list[tfb.Bijector]:
        """Each step's bijector, in the order they are applied."""
        return [step.bijector(params) for step in self.steps]

    def bijector(self, params: Mapping[str, tf.Tensor]) -> tfb.Bijector:
        """The flow as a `tfb.Bijector` on vectors (event_ndims = 1) over `params`.

        A new `tfb.Chain` on each call (cheap): no bijector cache outlives the tensors.
        """
        if not self.steps:
            return tfb.Identity()
        return tfb.Chain(self.step_bijectors(params)[::-1])  # the last applied first
