"""`tfd.Distribution` view of an MNF kernel posterior, with its KL to a Normal prior registered.

Registering the KL lets tfp.layers-style divergence functions such as
`lambda q, p, _: tfd.kl_divergence(q, p) / num_examples` work unchanged with MNF layers:
`tfd.kl_divergence(layer.kernel_posterior, layer.kernel_prior)` returns the MNF bound.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_mnf.posterior import MNFPosterior, PosteriorDraw

tfd = tfp.distributions


class MNFKernelPosterior(tfd.Distribution):
    """The MNF posterior q(W) = integral q(W | z) q(z) dz over one layer's kernel.

    Sampling draws z_T from the flow posterior q(z) and then W ~ N(z_T * M, sigma^2)
    (Louizos & Welling 2017, eqs. 3-4). `mean()` returns z * M with z the noise of the
    posterior-mean prediction (q's flow applied to the mean of q(z_0)), the point estimate
    the layers use for `sample=False`. The density is intractable: `log_prob` is not
    implemented; `tfd.kl_divergence(q, p)` against a Normal prior returns the MNF upper bound
    (eq. 15), estimated with one sample of z_T.

    Reference: Louizos & Welling (2017), arXiv:1703.01961.
    """

    def __init__(
        self,
        posterior: MNFPosterior,
        seed: tf.Tensor | None = None,
        draw: PosteriorDraw | None = None,
        validate_args: bool = False,
        allow_nan_stats: bool = True,
        name: str = "MNFKernelPosterior",
    ) -> None:
        """Creates the distribution.

        Args:
          posterior: the layer's `MNFPosterior`.
          seed: optional `[2]` integer seed of the KL estimate; a fresh one is drawn if None.
          draw: optional `PosteriorDraw` of a layer call: the KL estimate then uses its
            z_T sample and kernel moments (what a sampling call shares with its KL).
          validate_args: passed to `tfd.Distribution`.
          allow_nan_stats: passed to `tfd.Distribution`.
          name: the distribution's name.
        """
        parameters = dict(locals())
        self._posterior = posterior
        self._kl_seed = seed
        self._draw = draw
        super().__init__(
            dtype=posterior.kernel_mean.dtype,
            reparameterization_type=tfd.FULLY_REPARAMETERIZED,
            validate_args=validate_args,
            allow_nan_stats=allow_nan_stats,
            parameters=parameters,
            name=name,
        )

    @property
    def posterior(self) -> MNFPosterior:
        """The `MNFPosterior` whose maths this distribution exposes."""
        return self._posterior

    @property
    def kl_seed(self) -> tf.Tensor | None:
        """The `[2]` seed of the one-sample KL estimate (None: drawn fresh)."""
        return self._kl_seed

    @property
    def draw(self) -> PosteriorDraw | None:
        """The layer call's `PosteriorDraw` that the KL estimate uses, or None."""
        return self._draw

    @classmethod
    def _parameter_properties(cls, dtype: tf.DType, num_classes: int | None = None) -> dict:
        return {}

    def _event_shape(self) -> tf.TensorShape:
        return self._posterior.kernel_mean.shape

    def _event_shape_tensor(self) -> tf.Tensor:
        return tf.shape(self._posterior.kernel_mean)

    def _batch_shape(self) -> tf.TensorShape:
        return tf.TensorShape([])

    def _batch_shape_tensor(self) -> tf.Tensor:
        return tf.constant([], tf.int32)

    def _noise(self, n: tf.Tensor | int) -> tf.Tensor:
        """`[n, *kernel_shape]` multiplicative noise broadcast along the kernel's z axis."""
        post = self._posterior
        if not post.use_z:
            return tf.ones([n] + [1] * post.rank, post.kernel_mean.dtype)
        z = post.sample_z(n, seed=_fresh_seed())
        shape = [1] * post.rank
        shape[post.z_axis] = post.z_size
        return tf.reshape(z, [n] + shape)

    def _sample_n(self, n: tf.Tensor | int, seed: tf.Tensor | int | None = None) -> tf.Tensor:
        post = self._posterior
        std = tf.exp(post.clipped_log_std())
        eps = tf.random.normal(
            tf.concat([[n], tf.shape(post.kernel_mean)], 0), dtype=std.dtype, seed=seed
        )
        return self._noise(n) * post.kernel_mean + std * eps

    def _mean(self) -> tf.Tensor:
        post = self._posterior
        if not post.use_z:
            return tf.identity(post.kernel_mean)
        return post.along_z(post.mean_z()) * post.kernel_mean

    def _stddev(self) -> tf.Tensor:
        """Standard deviation of q(W | z) (the spread given z; the spread of z is not added)."""
        return tf.exp(self._posterior.clipped_log_std())


def _fresh_seed() -> tf.Tensor:
    """A `[2]` int32 seed drawn from TF's stateful global generator."""
    return tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)


@tfd.RegisterKL(MNFKernelPosterior, tfd.Independent)
def _kl_mnf_normal(q: MNFKernelPosterior, p: tfd.Independent, name: str | None = None) -> tf.Tensor:
    """Upper bound on KL(q(W) || p(W)) for an MNF posterior and an independent Normal prior."""
    prior = p.distribution
    if isinstance(prior, tfd.BatchBroadcast):  # the layers' prior: parameters along z only
        prior = prior.distribution
    if not isinstance(prior, tfd.Normal):
        raise TypeError(
            "The MNF KL bound needs an Independent(Normal) prior over the kernel; got "
            f"Independent({type(prior).__name__})."
        )
    with tf.name_scope(name or "kl_mnf_normal"):
        seed = q.kl_seed if q.kl_seed is not None or q.draw is not None else _fresh_seed()
        # loc and scale as stored (not mean()/variance()): no broadcast copies of the kernel.
        return q.posterior.kl_bound(prior.loc, tf.square(prior.scale), seed, draw=q.draw)
