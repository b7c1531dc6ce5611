"""Ready-made networks: LeNet (plain, MNF, tfp.layers peers) and an MNF MLP.

Each function returns an uncompiled `tf_keras.Sequential` that outputs logits (or
regression outputs); compile it with a `from_logits=True` loss and call `fit`. The
Bayesian variants add their KL terms, scaled by `kl_scale` (usually 1 / number of training
examples), to `model.losses`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow_probability as tfp
import tf_keras

from tfp_mnf.layers import Conv2DMNF, DenseMNF, ScaledKL


def _lenet(
    conv: Callable[..., tf_keras.layers.Layer],
    dense: Callable[..., tf_keras.layers.Layer],
    input_shape: Sequence[int],
    num_classes: int,
    filters: Sequence[int],
    hidden_units: int,
    kernel_size: int,
    name: str,
) -> tf_keras.Sequential:
    """LeNet-5 style: [conv 5x5 -> relu -> maxpool 2] x 2 -> dense relu -> dense logits."""
    model = [tf_keras.Input(shape=tuple(input_shape))]
    for n in filters:
        model += [conv(n, kernel_size, activation="relu"), tf_keras.layers.MaxPooling2D(2)]
    model += [
        tf_keras.layers.Flatten(),
        dense(hidden_units, activation="relu"),
        dense(num_classes),
    ]
    return tf_keras.Sequential(model, name=name)


def LeNet(  # noqa: N802 (Keras applications naming)
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    filters: Sequence[int] = (20, 50),
    hidden_units: int = 500,
    kernel_size: int = 5,
) -> tf_keras.Sequential:
    """A plain deterministic LeNet (20-50-500-10 by default): the speed and accuracy floor."""
    return _lenet(
        tf_keras.layers.Conv2D,
        tf_keras.layers.Dense,
        input_shape,
        num_classes,
        filters,
        hidden_units,
        kernel_size,
        "lenet",
    )


def MNFLeNet(  # noqa: N802
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    filters: Sequence[int] = (20, 50),
    hidden_units: int = 500,
    kernel_size: int = 5,
    kl_scale: float = 1.0,
    seed: int | None = None,
    **mnf_kwargs: Any,
) -> tf_keras.Sequential:
    """The MNF LeNet of Louizos & Welling (2017): 20-50-500-10 with MNF conv and dense layers.

    Args:
      input_shape: image shape, channels last.
      num_classes: number of logits.
      filters: the two conv layers' filters.
      hidden_units: the hidden dense layer's units.
      kernel_size: the conv kernel size.
      kl_scale: factor of every layer's KL, usually 1 / number of training examples.
      seed: base seed of the layers (each layer gets its own derived seed).
      **mnf_kwargs: passed to every `Conv2DMNF` / `DenseMNF` (flows, priors, inits, ...).

    Returns:
      An uncompiled `tf_keras.Sequential` returning logits.
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
        lambda n, k, **kw: Conv2DMNF(n, k, **kw, **kwargs()),
        lambda n, **kw: DenseMNF(n, **kw, **kwargs()),
        input_shape,
        num_classes,
        filters,
        hidden_units,
        kernel_size,
        "mnf_lenet",
    )


def _tfp_lenet(
    conv: type,
    dense: type,
    input_shape: Sequence[int],
    num_classes: int,
    kl_scale: float,
    name: str,
) -> tf_keras.Sequential:
    def divergence(q: Any, p: Any, _: Any) -> Any:
        return tfp.distributions.kl_divergence(q, p) * kl_scale

    return _lenet(
        lambda n, k, **kw: conv(n, k, kernel_divergence_fn=divergence, **kw),
        lambda n, **kw: dense(n, kernel_divergence_fn=divergence, **kw),
        input_shape,
        num_classes,
        (20, 50),
        500,
        5,
        name,
    )


def FlipoutLeNet(  # noqa: N802
    input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10, kl_scale: float = 1.0
) -> tf_keras.Sequential:
    """The tfp.layers peer: LeNet 20-50-500-10 of `Convolution2DFlipout` / `DenseFlipout`."""
    return _tfp_lenet(
        tfp.layers.Convolution2DFlipout,
        tfp.layers.DenseFlipout,
        input_shape,
        num_classes,
        kl_scale,
        "flipout_lenet",
    )


def ReparameterizationLeNet(  # noqa: N802
    input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10, kl_scale: float = 1.0
) -> tf_keras.Sequential:
    """LeNet 20-50-500-10 of `Convolution2DReparameterization` / `DenseReparameterization`."""
    return _tfp_lenet(
        tfp.layers.Convolution2DReparameterization,
        tfp.layers.DenseReparameterization,
        input_shape,
        num_classes,
        kl_scale,
        "reparameterization_lenet",
    )


def MNFMLP(  # noqa: N802
    input_dim: int,
    hidden_units: Sequence[int] = (100, 50, 10),
    output_units: int = 1,
    activation: str = "relu",
    kl_scale: float = 1.0,
    seed: int | None = None,
    **mnf_kwargs: Any,
) -> tf_keras.Sequential:
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
      An uncompiled `tf_keras.Sequential`.
    """
    sizes = [*hidden_units, output_units]
    layers = [tf_keras.Input(shape=(input_dim,))]
    for i, units in enumerate(sizes):
        layers.append(
            DenseMNF(
                units,
                activation=activation if i < len(sizes) - 1 else None,
                kernel_divergence_fn=ScaledKL(kl_scale),
                bias_divergence_fn=ScaledKL(kl_scale),
                seed=None if seed is None else seed + i,
                **mnf_kwargs,
            )
        )
    return tf_keras.Sequential(layers, name="mnf_mlp")
