"""The MNF posterior of one layer: q(z) with its flow, q(W | z), r(z | W) and the KL bound.

All of the paper's posterior maths lives here and is shared by the dense and conv layers,
which differ only in the shape of the kernel and the axis that z scales (`z_axis`):

- dense: kernel `[K, N]`, z has one entry per input unit (`z_axis=0`);
- conv: kernel `[*kernel_size, C_in, C_out]`, z has one entry per output filter (`z_axis=-1`).

Reference: Louizos & Welling (2017), Multiplicative Normalizing Flows for Variational
Bayesian Neural Networks, arXiv:1703.01961.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf

from tfp_mnf import ops

_LOG_2PI = math.log(2.0 * math.pi)

# Numerical guards (see `MNFPosterior`'s docstring). exp(2 * MIN_LOG_STD) ~ 1e-26 keeps every
# variance a normal float32, so sqrt(variance) has a finite gradient.
MIN_LOG_STD = -30.0
Q0_LOG_VAR_RANGE = (-30.0, 10.0)
MAX_ABS_R_LOG_PRECISION = 15.0


def clip_r_log_precision(log_precision: tf.Tensor) -> tf.Tensor:
    """Clips r(z | W)'s log precision to +-`MAX_ABS_R_LOG_PRECISION` (exp stays finite)."""
    return tf.clip_by_value(log_precision, -MAX_ABS_R_LOG_PRECISION, MAX_ABS_R_LOG_PRECISION)


class PosteriorDraw(NamedTuple):
    """One sampling call's draw from the posterior, shared by the forward pass and the KL.

    Attributes:
      z: `[B, Z]` the noise z_T of the forward pass, one row per example (None without z).
      kl_z: `[Z]` an independent sample of z_T for the one-sample KL bound (None without z).
      kl_log_det: log|det df/dz_0| of q's flow at that sample (None without z).
      moments: the kernel's `ops.KernelMoments`: the clipped variances sigma^2 of the
        forward pass and the sums of the KL bound, with r(z | W)'s projections at `kl_z`.
      r_seed: `[2]` seed of the noise that samples r(z | W)'s projection a = c^T W.
    """

    z: tf.Tensor | None
    kl_z: tf.Tensor | None
    kl_log_det: tf.Tensor | None
    moments: ops.KernelMoments
    r_seed: tf.Tensor


class MNFPosterior:
    """Maths of the MNF posterior q(W) = integral q(W | z) q(z) dz of one layer.

    The multiplicative noise is z_T = f_T o ... o f_1(z_0), z_0 ~ N(q0_mean, exp(q0_log_var))
    (eq. 4), and q(W | z) = prod_ij N(z_i M_ij, sigma_ij^2) (eq. 3). Since the marginal q(W)
    is intractable, the KL to the prior is bounded with an auxiliary inverse model
    r(z | W) (eqs. 9-10, 15).

    Every standard deviation is clipped at `max_std`, in the forward pass and in the KL alike.

    Numerical guards, applied identically wherever the value is used (so the forward pass,
    the samples and the KL stay one consistent model), with zero gradient beyond the clip:
    - log sigma is clipped below at `MIN_LOG_STD` = -30 (sigma^2 stays a normal float32 and
      sqrt of the variances keeps a finite gradient);
    - log sigma_z^2 of q(z_0) is clipped to `Q0_LOG_VAR_RANGE` = [-30, 10];
    - r(z | W)'s log precision b2 * mean(a) is clipped to +-`MAX_ABS_R_LOG_PRECISION` = 15
      (the conv layers' a = c^T W is unbounded, and exp of it overflows).

    One pass over the kernel per call (`ops.kernel_moments`, a fused op) gives both the
    forward pass's sigma^2 and every kernel sum of the KL bound; `draw` returns them with
    the call's z samples.

    The object holds the layer's kernel variables and tensors of its other parameters (a
    layer makes one per call, from its packed variables); it owns no variables.
    """

    def __init__(
        self,
        *,
        kernel_mean: tf.Variable,
        kernel_log_std: tf.Variable,
        q0_mean: tf.Tensor | None,
        q0_log_var: tf.Tensor | None,
        r_c: tf.Tensor | None,
        r_b1: tf.Tensor | None,
        r_b2: tf.Tensor | None,
        q_flow: Any | None,
        r_flow: Any | None,
        z_axis: int,
        max_std: float,
        r_activation: Callable[[tf.Tensor], tf.Tensor],
    ) -> None:
        self.kernel_mean = kernel_mean
        self.kernel_log_std = kernel_log_std
        self.q0_mean = q0_mean
        self.q0_log_var = q0_log_var
        self.r_c = r_c
        self.r_b1 = r_b1
        self.r_b2 = r_b2
        self.q_flow = q_flow
        self.r_flow = r_flow
        self.rank = len(kernel_mean.shape)
        self.z_axis = z_axis % self.rank
        self.max_std = max_std
        self.r_activation = r_activation

    @property
    def use_z(self) -> bool:
        """Whether the posterior has multiplicative noise z (else it is mean-field Gaussian)."""
        return self.q0_mean is not None

    @property
    def z_size(self) -> int:
        """The number of entries of z: the kernel's size along `z_axis`."""
        return int(self.kernel_mean.shape[self.z_axis])

    def along_z(self, vector: tf.Tensor) -> tf.Tensor:
        """Reshapes a `[Z]` vector so that it broadcasts against the kernel along `z_axis`."""
        shape = [1] * self.rank
        shape[self.z_axis] = self.z_size
        return tf.reshape(vector, shape)

    def clipped_log_std(self) -> tf.Tensor:
        """log sigma of q(W | z), clipped to [`MIN_LOG_STD`, log(max_std)]."""
        return ops.clip_log_std(
            tf.convert_to_tensor(self.kernel_log_std), self.max_std, MIN_LOG_STD
        )

    def kernel_moments(self, kl_z: tf.Tensor | None = None) -> ops.KernelMoments:
        """sigma^2 and the kernel sums of the KL bound, with r's projections at `kl_z`.

        Args:
          kl_z: `[Z]` the z_T of the KL sample; None gives no projections (mean field).

        Returns:
          `ops.KernelMoments` (projections of c * z_T and c^2, eq. 9's a = c^T W).
        """
        weights = (None, None)
        if kl_z is not None:
            c = tf.convert_to_tensor(self.r_c)
            weights = (c * kl_z, tf.square(c))
        return ops.kernel_moments(
            self.kernel_mean,
            self.kernel_log_std,
            *weights,
            z_axis=self.z_axis,
            min_log_std=MIN_LOG_STD,
            max_std=self.max_std,
        )

    def clipped_q0_log_var(self) -> tf.Tensor:
        """log sigma_z^2 of q(z_0), clipped to `Q0_LOG_VAR_RANGE`."""
        return tf.clip_by_value(self.q0_log_var, *Q0_LOG_VAR_RANGE)

    def sample_z0(self, batch_size: tf.Tensor | int, seed: tf.Tensor) -> tf.Tensor:
        """Draws `[batch_size, Z]` samples of the flow's base z_0 ~ q(z_0) (eq. 4)."""
        mean = tf.convert_to_tensor(self.q0_mean)
        eps = ops.stateless_normal(tf.stack([batch_size, self.z_size]), seed, mean.dtype)
        return mean + tf.exp(0.5 * self.clipped_q0_log_var()) * eps

    def sample_z(self, batch_size: tf.Tensor | int, seed: tf.Tensor) -> tf.Tensor:
        """Draws `[batch_size, Z]` samples of z_T = f_T o ... o f_1(z_0) (eq. 4)."""
        return self.q_flow.bijector.forward(self.sample_z0(batch_size, seed))

    def mean_z(self) -> tf.Tensor:
        """The `[Z]` noise of the posterior-mean prediction: q's flow applied to q0's mean."""
        return self.q_flow.bijector.forward(self.q0_mean[tf.newaxis])[0]

    def draw(self, batch_size: tf.Tensor | int, seed: tf.Tensor) -> PosteriorDraw:
        """Draws a sampling call's z (one per example) and the KL bound's own z_T sample.

        The `1 + batch_size` samples of z_0 go through q's flow in one pass, which also
        gives the log-determinant at the KL's sample (the first row, the same for any
        batch size); the kernel moments follow at that z_T.

        Args:
          batch_size: the number of examples (>= 0).
          seed: `[2]` seed of the draw.

        Returns:
          A `PosteriorDraw`.
        """
        z_seed, r_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        if not self.use_z:
            return PosteriorDraw(None, None, None, self.kernel_moments(), r_seed)
        z0 = self.sample_z0(batch_size + 1, z_seed)
        flow = self.q_flow.bijector  # one instance: its forward is cached for the log det
        kl_z, z = tf.split(flow.forward(z0), tf.stack([1, batch_size]))
        kl_z = kl_z[0]
        log_det = flow.forward_log_det_jacobian(z0, event_ndims=1)
        kl_log_det = log_det if log_det.shape.rank == 0 else log_det[0]  # constant: a scalar
        return PosteriorDraw(z, kl_z, kl_log_det, self.kernel_moments(kl_z), r_seed)

    def kl_weights_given_z(
        self,
        z: tf.Tensor | None,
        moments: ops.KernelMoments,
        prior_mean: tf.Tensor | float,
        prior_var: tf.Tensor | float,
    ) -> tf.Tensor:
        """KL(q(W | z) || p(W)) summed over the kernel, for a Gaussian prior (eq. 15, first term).

        sum_ij [1/2 log v_ij - log sigma_ij + (sigma_ij^2 + (z_i M_ij - m_ij)^2) / (2 v_ij) - 1/2]

        When the prior mean m and variance v vary at most along the z axis (the layers'
        priors, scalars, constant tensors), the sums over the other axes come from the
        kernel moments, with n kernel entries per entry of z and w = 1 / (2 v):
        sum_i [n (1/2 log v_i - 1/2 + w_i m_i^2) + w_i (S_i + z_i^2 Q_i - 2 z_i m_i R_i)]
        - sum_ij log sigma_ij, where S, Q, R are the sums of sigma^2, M^2, M over the other
        axes: no pass over the kernel here. Any other prior takes the element-wise form.

        Args:
          z: `[Z]` the noise z_T; None for a mean-field posterior (z = 1).
          moments: the kernel's `ops.KernelMoments`.
          prior_mean: prior means, broadcastable to the kernel.
          prior_var: prior variances, broadcastable to the kernel.

        Returns:
          A scalar.
        """
        dtype = moments.variance.dtype
        prior_mean = tf.convert_to_tensor(prior_mean, dtype)
        prior_var = tf.convert_to_tensor(prior_var, dtype)
        m, v = self._as_z_vector(prior_mean), self._as_z_vector(prior_var)
        if m is None or v is None:
            kernel = tf.convert_to_tensor(self.kernel_mean)
            mean = kernel if z is None else self.along_z(z) * kernel
            return (
                tf.reduce_sum(
                    0.5 * tf.math.log(prior_var)
                    + (moments.variance + tf.square(mean - prior_mean)) / (2.0 * prior_var)
                    - 0.5
                )
                - moments.log_std_sum
            )
        per_z = self.kernel_mean.shape.num_elements() // self.z_size
        w = 0.5 / v
        z_sq_w = w if z is None else tf.square(z) * w
        total = (
            per_z * tf.reduce_sum(0.5 * tf.math.log(v) - 0.5 + w * tf.square(m))
            + tf.reduce_sum(w * moments.variance_sum)
            + tf.reduce_sum(z_sq_w * moments.mean_sq_sum)
            - moments.log_std_sum
        )
        static_m = tf.get_static_value(m)
        if static_m is not None and not static_m.any():
            return total
        z_m_w = m * w if z is None else z * m * w
        return total - 2.0 * tf.reduce_sum(z_m_w * moments.mean_sum)

    def _as_z_vector(self, tensor: tf.Tensor) -> tf.Tensor | None:
        """`tensor` as a `[Z]` vector if it varies at most along the z axis, else None.

        True for a static shape that broadcasts against the kernel with size 1 on every
        other axis (the layers' priors: see `tfp_mnf.layers`' `kernel_prior`), in eager and
        graph execution alike; a full-kernel tensor takes the element-wise form.
        """
        shape = tensor.shape
        if shape.rank is None or shape.rank > self.rank or not shape.is_fully_defined():
            return None
        full = [1] * (self.rank - shape.rank) + shape.as_list()
        if any(size != 1 for axis, size in enumerate(full) if axis != self.z_axis):
            return None
        if full[self.z_axis] not in (1, self.z_size):
            return None
        return tf.broadcast_to(tf.reshape(tensor, [-1]), [self.z_size])

    def log_q_z(self, log_det: tf.Tensor) -> tf.Tensor:
        """log q(z_T) of one sample, with the entropy of q(z_0) for E[log q(z_0)] (eq. 15).

        Args:
          log_det: log|det df/dz_0| of q's flow at the sample's z_0.

        Returns:
          A scalar: -1/2 sum(log 2 pi + log sigma_z^2 + 1) - log|det df/dz_0|.
        """
        entropy_term = -0.5 * tf.reduce_sum(_LOG_2PI + self.clipped_q0_log_var() + 1.0)
        return entropy_term - log_det

    def log_r_z(self, z: tf.Tensor, moments: ops.KernelMoments, seed: tf.Tensor) -> tf.Tensor:
        """log r(z_T | W) of the auxiliary inverse model, W drawn by local reparameterization.

        a = act(c^T W) is sampled with mean (c * z_T)^T M and variance (c^2)^T sigma^2 (the
        projections of the kernel moments at z_T); then mean_r = b1 * mean(a),
        log precision_r = b2 * mean(a) (eqs. 9-10) and
        log r = log N(f_r(z_T); mean_r, 1 / precision_r) + log|det df_r/dz|.

        Args:
          z: `[Z]` the sample z_T.
          moments: the kernel moments with projections at `z`.
          seed: `[2]` seed of the noise that samples a.

        Returns:
          A scalar.
        """
        a_mean, a_var = moments.projected_mean, moments.projected_variance
        eps = ops.stateless_normal(tf.shape(a_mean), seed, a_mean.dtype)
        a_bar = tf.reduce_mean(self.r_activation(a_mean + tf.sqrt(a_var) * eps))
        r_mean = self.r_b1 * a_bar  # eq. 9
        r_log_precision = clip_r_log_precision(self.r_b2 * a_bar)  # eq. 10
        z_row = z[tf.newaxis]
        flow = self.r_flow.bijector  # one instance: its forward is cached for the log det
        f_z = flow.forward(z_row)[0]
        log_det = flow.forward_log_det_jacobian(z_row, event_ndims=1)
        log_normal = 0.5 * (
            r_log_precision - _LOG_2PI - tf.exp(r_log_precision) * tf.square(f_z - r_mean)
        )
        return tf.reduce_sum(log_normal) + tf.reduce_sum(log_det)

    def kl_bound(
        self,
        prior_mean: tf.Tensor | float,
        prior_var: tf.Tensor | float,
        seed: tf.Tensor | None = None,
        draw: PosteriorDraw | None = None,
    ) -> tf.Tensor:
        """One-sample estimate of the upper bound on KL(q(W) || p(W)) (eq. 15, Algorithm 2).

        KL ~= KL(q(W | z_T) || p(W)) + log q(z_T) - log r(z_T | W), z_T ~ q(z_T). Without z
        (`use_z=False`) this is the closed-form KL of the mean-field Gaussian posterior.

        Args:
          prior_mean: prior means, broadcastable to the kernel.
          prior_var: prior variances, broadcastable to the kernel.
          seed: `[2]` seed of a fresh draw (used when `draw` is None).
          draw: a sampling call's `PosteriorDraw`, whose KL sample and kernel moments
            the bound then uses.

        Returns:
          A scalar.
        """
        if draw is None:
            if seed is None:
                raise ValueError("kl_bound needs a `seed` or a `draw`.")
            draw = self.draw(0, seed)
        weights_kl = self.kl_weights_given_z(draw.kl_z, draw.moments, prior_mean, prior_var)
        if not self.use_z:
            return weights_kl
        return (
            weights_kl
            + self.log_q_z(draw.kl_log_det)
            - self.log_r_z(draw.kl_z, draw.moments, draw.r_seed)
        )
