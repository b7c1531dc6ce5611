"""Ready-made networks: LeNet (plain, MNF, tfp.layers peers, baselines) and an MNF MLP.

Each builder returns an uncompiled `Sequential` that outputs logits (or regression
outputs); compile it with a `from_logits=True` loss and call `fit`. The Bayesian variants
add their KL terms, scaled by `kl_scale` (usually 1 / number of training examples), to
`model.losses`.

The models of this module are tf_keras models. `ModelBuilders` builds them for one Keras
front-end: the module-level `LeNet`, `MNFLeNet`, `MCDropoutLeNet` and `MNFMLP` are those of
tf_keras (`TF_KERAS_MODELS`), `tfp_mnf.keras.models` has the same ones for Keras 3. The
layer classes `MCDropout` and `DeepEnsembleLeNet` are `MCDropoutLogic` and
`DeepEnsembleLogic` on each Keras' base class. `FlipoutLeNet` and `ReparameterizationLeNet`
are built of `tfp.layers`, which exist for tf_keras only.

The two cheap uncertainty baselines, `MCDropoutLeNet` (Gal & Ghahramani 2016,
arXiv:1506.02142) and `DeepEnsembleLeNet` (Lakshminarayanan et al. 2017, arXiv:1612.01474),
are stochastic at prediction time like the Bayesian models, so
`tfp_mnf.evaluate.predictive_samples(model, x, num_samples)` samples all of them the same
way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfp_mnf.layers import Conv2DMNF, DenseMNF, ScaledKL


def _lenet(
    keras: Any,
    conv: Callable[..., Any],
    dense: Callable[..., Any],
    input_shape: Sequence[int],
    num_classes: int,
    filters: Sequence[int],
    hidden_units: int,
    kernel_size: int,
    name: str,
    before_dense: Callable[[], Any] | None = None,
) -> Any:
    """LeNet-5 style: [conv 5x5 -> relu -> maxpool 2] x 2 -> dense relu -> dense logits.

    `keras` is the Keras module of the layers (`tf_keras` or Keras 3's `keras`);
    `before_dense`, when given, makes a layer (e.g. dropout) placed before each dense layer.
    """
    model = [keras.Input(shape=tuple(input_shape))]
    for n in filters:
        model += [conv(n, kernel_size, activation="relu"), keras.layers.MaxPooling2D(2)]
    model.append(keras.layers.Flatten())
    for units, activation in ((hidden_units, "relu"), (num_classes, None)):
        if before_dense is not None:
            model.append(before_dense())
        model.append(dense(units, activation=activation))
    return keras.Sequential(model, name=name)


class ModelBuilders:
    """The ready-made `Sequential` models of one Keras front-end.

    Args:
      keras: the Keras module (`tf_keras` or Keras 3's `keras`).
      dense_mnf: that front-end's `DenseMNF` class.
      conv2d_mnf: that front-end's `Conv2DMNF` class.
      mc_dropout: that front-end's `MCDropout` class.
    """

    def __init__(self, keras: Any, dense_mnf: type, conv2d_mnf: type, mc_dropout: type) -> None:
        self.keras = keras
        self.dense_mnf = dense_mnf
        self.conv2d_mnf = conv2d_mnf
        self.mc_dropout = mc_dropout

    def LeNet(  # noqa: N802 (Keras applications naming)
        self,
        input_shape: Sequence[int] = (28, 28, 1),
        num_classes: int = 10,
        filters: Sequence[int] = (20, 50),
        hidden_units: int = 500,
        kernel_size: int = 5,
    ) -> Any:
        """A plain deterministic LeNet (20-50-500-10 by default): the speed and accuracy floor.

        Args:
          input_shape: image shape, channels last.
          num_classes: number of logits.
          filters: the two conv layers' filters.
          hidden_units: the hidden dense layer's units.
          kernel_size: the conv kernel size.

        Returns:
          An uncompiled `Sequential` of this Keras returning logits.
        """
        return _lenet(
            self.keras,
            self.keras.layers.Conv2D,
            self.keras.layers.Dense,
            input_shape,
            num_classes,
            filters,
            hidden_units,
            kernel_size,
            "lenet",
        )

    def MNFLeNet(  # noqa: N802
        self,
        input_shape: Sequence[int] = (28, 28, 1),
        num_classes: int = 10,
        filters: Sequence[int] = (20, 50),
        hidden_units: int = 500,
        kernel_size: int = 5,
        kl_scale: float = 1.0,
        seed: int | None = None,
        **mnf_kwargs: Any,
    ) -> Any:
        """The MNF LeNet of Louizos & Welling (2017): 20-50-500-10, MNF conv and dense layers.

        Args:
          input_shape: image shape, channels last.
          num_classes: number of logits.
          filters: the two conv layers' filters.
          hidden_units: the hidden dense layer's units.
          kernel_size: the conv kernel size.
          kl_scale: factor of every layer's KL, usually 1 / number of training examples.
          seed: base seed of the layers (each layer gets its own derived seed).
          **mnf_kwargs: passed to every `Conv2DMNF` / `DenseMNF` (flows, priors, inits...).

        Returns:
          An uncompiled `Sequential` of this Keras returning logits.
        """
        layer_seeds = iter(range(4)) if seed is None else iter(range(seed, seed + 4))

        def kwargs() -> dict:
            layer_seed = next(layer_seeds)
            return dict(
                kernel_divergence_fn=ScaledKL(kl_scale),
                bias_divergence_fn=ScaledKL(kl_scale),
                seed=None if seed is None else layer_seed,
                **mnf_kwargs,
            )

        return _lenet(
            self.keras,
            lambda n, k, **kw: self.conv2d_mnf(n, k, **kw, **kwargs()),
            lambda n, **kw: self.dense_mnf(n, **kw, **kwargs()),
            input_shape,
            num_classes,
            filters,
            hidden_units,
            kernel_size,
            "mnf_lenet",
        )

    def MCDropoutLeNet(  # noqa: N802
        self,
        input_shape: Sequence[int] = (28, 28, 1),
        num_classes: int = 10,
        filters: Sequence[int] = (20, 50),
        hidden_units: int = 500,
        kernel_size: int = 5,
        dropout_rate: float = 0.5,
        seed: int | None = None,
    ) -> Any:
        """MC-dropout LeNet 20-50-500-10: `MCDropout(dropout_rate)` before each dense layer.

        The dropout stays on at prediction time, so every forward pass is one sample of the
        dropout posterior (Gal & Ghahramani 2016, arXiv:1506.02142).

        Args:
          input_shape: image shape, channels last.
          num_classes: number of logits.
          filters: the two conv layers' filters.
          hidden_units: the hidden dense layer's units.
          kernel_size: the conv kernel size.
          dropout_rate: fraction of the dense layers' inputs dropped, in [0, 1).
          seed: base seed of the dropout layers (each gets its own derived seed).

        Returns:
          An uncompiled `Sequential` of this Keras returning logits.

        Raises:
          ValueError: if `dropout_rate` is not in [0, 1).
        """
        if isinstance(dropout_rate, bool) or not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"`dropout_rate` must lie in [0, 1), got {dropout_rate!r}.")
        layer_seeds = iter(range(2)) if seed is None else iter(range(seed, seed + 2))

        def dropout() -> Any:
            layer_seed = next(layer_seeds)
            return self.mc_dropout(dropout_rate, seed=None if seed is None else layer_seed)

        return _lenet(
            self.keras,
            self.keras.layers.Conv2D,
            self.keras.layers.Dense,
            input_shape,
            num_classes,
            filters,
            hidden_units,
            kernel_size,
            "mc_dropout_lenet",
            before_dense=dropout,
        )

    def MNFMLP(  # noqa: N802
        self,
        input_dim: int,
        hidden_units: Sequence[int] = (100, 50, 10),
        output_units: int = 1,
        activation: str = "relu",
        kl_scale: float = 1.0,
        seed: int | None = None,
        **mnf_kwargs: Any,
    ) -> Any:
        """An MLP of `DenseMNF` layers (100-50-10-1 by default, the seed's regression net).

        Args:
          input_dim: number of input features.
          hidden_units: units of the hidden layers.
          output_units: units of the linear output layer.
          activation: hidden activation.
          kl_scale: factor of every layer's KL, usually 1 / number of training examples.
          seed: base seed of the layers.
          **mnf_kwargs: passed to every `DenseMNF`.

        Returns:
          An uncompiled `Sequential` of this Keras.
        """
        sizes = [*hidden_units, output_units]
        layers = [self.keras.Input(shape=(input_dim,))]
        for i, units in enumerate(sizes):
            layers.append(
                self.dense_mnf(
                    units,
                    activation=activation if i < len(sizes) - 1 else None,
                    kernel_divergence_fn=ScaledKL(kl_scale),
                    bias_divergence_fn=ScaledKL(kl_scale),
                    seed=None if seed is None else seed + i,
                    **mnf_kwargs,
                )
            )
        return self.keras.Sequential(layers, name="mnf_mlp")


class MCDropoutLogic:
    """Dropout that stays on at prediction time: Monte Carlo dropout (Gal & Ghahramani 2016).

    Same arguments as the Keras `Dropout` it extends; `call` ignores `training` and always
    drops, so `model(x, training=False)`, `model.predict` and `predict_on_batch` draw a
    fresh mask per call (one independent mask per row of the batch).
    """

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        del training  # always on
        return super().call(inputs, training=True)


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
class MCDropout(MCDropoutLogic, tf_keras.layers.Dropout):
    __doc__ = MCDropoutLogic.__doc__


class DeepEnsembleLogic:
    """A deep ensemble of `num_members` plain LeNets (Lakshminarayanan et al. 2017).

    The ensemble's predictive is the uniform mixture of its members. Each call returns, for
    every row of the batch, the logits of one member drawn uniformly at random for that row,
    so each row is one sample of the mixture: `tfp_mnf.evaluate.predictive_samples(model, x,
    num_samples)` samples the ensemble like a Bayesian model, whether the samples are separate
    calls or rows of one tiled batch. A call evaluates every member on the whole batch
    (`num_members` times a plain LeNet's cost) and picks the rows. `member_logits(x)` gives
    the members' logits themselves, the exact mixture.

    Train the members independently, the usual recipe: `fit` each of `model.members` (plain
    `Sequential` LeNets of the same Keras) on the full data. `model.fit` itself trains every
    member on the random rows it is drawn for.

    Args:
      num_members: number of LeNets, >= 1.
      input_shape: image shape, channels last.
      num_classes: number of logits.
      filters: the two conv layers' filters of each member.
      hidden_units: the hidden dense layer's units of each member.
      kernel_size: the conv kernel size of each member.
      seed: seed of the per-row member draw; None draws from the global seed.
      **kwargs: Keras `Model` arguments (`name`, `trainable`).
    """

    _keras: Any  # the Keras module of the members, set by each front-end's class

    def __init__(
        self,
        num_members: int = 5,
        input_shape: Sequence[int] = (28, 28, 1),
        num_classes: int = 10,
        filters: Sequence[int] = (20, 50),
        hidden_units: int = 500,
        kernel_size: int = 5,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(num_members, bool) or not isinstance(num_members, int) or num_members < 1:
            raise ValueError(f"`num_members` must be an integer >= 1, got {num_members!r}.")
        kwargs.setdefault("name", "deep_ensemble_lenet")
        super().__init__(**kwargs)
        self.num_members = num_members
        self.image_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.filters = tuple(filters)
        self.hidden_units = hidden_units
        self.kernel_size = kernel_size
        self.seed = seed
        self.members = [
            _lenet(
                self._keras,
                self._keras.layers.Conv2D,
                self._keras.layers.Dense,
                self.image_shape,
                num_classes,
                self.filters,
                hidden_units,
                kernel_size,
                f"lenet_member_{k}",
            )
            for k in range(num_members)
        ]
        # The members are built `Sequential`s: so is the ensemble, before any call (Keras 3's
        # `save_weights` refuses an unbuilt model).
        self.built = True

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Logits `[B, num_classes]`, row i from a member drawn at random for row i."""
        logits = tf.stack([member(inputs, training=training) for member in self.members], 1)
        member = tf.random.uniform(
            tf.shape(inputs)[:1], maxval=self.num_members, dtype=tf.int32, seed=self.seed
        )
        return tf.gather(logits, member, axis=1, batch_dims=1)

    def member_logits(self, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Every member's logits on `x`: the ensemble's mixture components, exactly.

        Args:
          x: images `[N, *input_shape]`, N >= 1.
          batch_size: images per forward pass, >= 1.

        Returns:
          float32 array `[num_members, N, num_classes]`.

        Raises:
          ValueError: if `x` holds no image or `batch_size` is not an integer >= 1.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
        x = np.asarray(x, dtype=np.float32)
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"`x` must hold at least one image, got shape {x.shape}.")
        return np.stack(
            [
                np.concatenate(
                    [
                        member.predict_on_batch(x[start : start + batch_size])
                        for start in range(0, x.shape[0], batch_size)
                    ]
                )
                for member in self.members
            ]
        ).astype(np.float32)

    def get_config(self) -> dict:
        return {
            "num_members": self.num_members,
            "input_shape": self.image_shape,
            "num_classes": self.num_classes,
            "filters": self.filters,
            "hidden_units": self.hidden_units,
            "kernel_size": self.kernel_size,
            "seed": self.seed,
            "name": self.name,
            "trainable": self.trainable,
        }


@tf_keras.saving.register_keras_serializable(package="tfp_mnf")
class DeepEnsembleLeNet(DeepEnsembleLogic, tf_keras.Model):
    __doc__ = DeepEnsembleLogic.__doc__
    _keras = tf_keras


TF_KERAS_MODELS = ModelBuilders(tf_keras, DenseMNF, Conv2DMNF, MCDropout)
LeNet = TF_KERAS_MODELS.LeNet
MNFLeNet = TF_KERAS_MODELS.MNFLeNet
MCDropoutLeNet = TF_KERAS_MODELS.MCDropoutLeNet
MNFMLP = TF_KERAS_MODELS.MNFMLP


def _tfp_lenet(
    conv: type,
    dense: type,
    input_shape: Sequence[int],
    num_classes: int,
    kl_scale: float,
    filters: Sequence[int],
    hidden_units: int,
    kernel_size: int,
    name: str,
) -> tf_keras.Sequential:
    def divergence(q: Any, p: Any, _: Any) -> Any:
        return tfp.distributions.kl_divergence(q, p) * kl_scale

    return _lenet(
        tf_keras,
        lambda n, k, **kw: conv(n, k, kernel_divergence_fn=divergence, **kw),
        lambda n, **kw: dense(n, kernel_divergence_fn=divergence, **kw),
        input_shape,
        num_classes,
        filters,
        hidden_units,
        kernel_size,
        name,
    )


def FlipoutLeNet(  # noqa: N802
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    kl_scale: float = 1.0,
    filters: Sequence[int] = (20, 50),
    hidden_units: int = 500,
    kernel_size: int = 5,
) -> tf_keras.Sequential:
    """The tfp.layers peer: LeNet 20-50-500-10 of `Convolution2DFlipout` / `DenseFlipout`.

    Args:
      input_shape: image shape, channels last.
      num_classes: number of logits.
      kl_scale: factor of every layer's KL, usually 1 / number of training examples.
      filters: the two conv layers' filters.
      hidden_units: the hidden dense layer's units.
      kernel_size: the conv kernel size.

    Returns:
      An uncompiled `tf_keras.Sequential` returning logits.
    """
    return _tfp_lenet(
        tfp.layers.Convolution2DFlipout,
        tfp.layers.DenseFlipout,
        input_shape,
        num_classes,
        kl_scale,
        filters,
        hidden_units,
        kernel_size,
        "flipout_lenet",
    )


def ReparameterizationLeNet(  # noqa: N802
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    kl_scale: float = 1.0,
    filters: Sequence[int] = (20, 50),
    hidden_units: int = 500,
    kernel_size: int = 5,
) -> tf_keras.Sequential:
    """LeNet 20-50-500-10 of `Convolution2DReparameterization` / `DenseReparameterization`.

    Args:
      input_shape: image shape, channels last.
      num_classes: number of logits.
      kl_scale: factor of every layer's KL, usually 1 / number of training examples.
      filters: the two conv layers' filters.
      hidden_units: the hidden dense layer's units.
      kernel_size: the conv kernel size.

    Returns:
      An uncompiled `tf_keras.Sequential` returning logits.
    """
    return _tfp_lenet(
        tfp.layers.Convolution2DReparameterization,
        tfp.layers.DenseReparameterization,
        input_shape,
        num_classes,
        kl_scale,
        filters,
        hidden_units,
        kernel_size,
        "reparameterization_lenet",
    )
