"""From a trained deterministic Keras model to an MNF model: `convert`.

`convert(model, kl_scale=1 / N)` rebuilds a Sequential or functional model (nested ones
included) with every chosen `Dense`, `Conv1D`, `Conv2D` and `Conv3D` replaced by its MNF
layer, and carries the trained weights over so that the converted model's posterior-mean
prediction is the original model's prediction. A few epochs of fine-tuning then give the
posterior its spread. tf_keras models get `tfp_mnf.layers`, Keras 3 models `tfp_mnf.keras`.

The idea is that of bayesian-torch's `dnn_to_bnn` with MOPED priors (Krishnan et al. 2020,
"Specifying Weight Priors in Bayesian Deep Neural Networks with Empirical Bayes",
arXiv:1906.05323): posterior means, and optionally the prior means and the weights' spread,
from the trained weights.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import tensorflow as tf

from tfp_mnf import arguments, parameters, validation
from tfp_mnf.frontend import ConvLogic, MNFLayerLogic

# Keras layer class name -> its MNF layer class name (in either front-end).
_MNF_CLASSES = {
    "Dense": "DenseMNF",
    "Conv1D": "Conv1DMNF",
    "Conv2D": "Conv2DMNF",
    "Conv3D": "Conv3DMNF",
}
# MNF arguments that `convert` sets itself: from the Keras layer, from `kl_scale`, or (the
# kernel means) from the trained weights.
_SET_BY_CONVERT = (
    "activation",
    "activity_regularizer",
    "kernel_divergence_fn",
    "bias_divergence_fn",
    "kernel_initializer",
)
# The MNF arguments `convert` passes on from its `**mnf_kwargs`.
_PASSED_ON = frozenset(a.name for a in arguments.MNF_ARGUMENTS) - set(_SET_BY_CONVERT)
# The least initial standard deviation that `moped_delta` gives a weight or bias (one that
# was trained to zero still gets a trainable spread).
MOPED_MIN_STD = 1e-6

LayerSelection = Callable[[Any], bool] | Iterable[Any] | str | None


@dataclasses.dataclass(frozen=True)
class _Keras:
    """One Keras (tf_keras or Keras 3) and the tfp_mnf front-end of its layers."""

    name: str
    keras: ModuleType
    frontend: ModuleType

    def is_model(self, layer: Any) -> bool:
        return isinstance(layer, self.keras.Model)

    def is_rebuildable(self, model: Any) -> bool:
        """Whether `clone_model` can rebuild `model` from its layer graph."""
        if isinstance(model, self.keras.Sequential):
            return True
        if self.keras.__name__ == "tf_keras":
            return model._is_graph_network
        from keras.src.models.functional import Functional

        return isinstance(model, Functional)

    def mnf_class(self, layer: Any) -> type | None:
        """The MNF class replacing `layer`, None if its class (exactly) has none.

        Exact classes: Keras' `Conv2DTranspose`, for one, subclasses `Conv2D`.
        """
        for keras_name, mnf_name in _MNF_CLASSES.items():
            if type(layer) is getattr(self.keras.layers, keras_name):
                return getattr(self.frontend, mnf_name)
        return None


def _keras_of(model: Any) -> _Keras:
    """The Keras of `model` and our front-end for it.

    Raises:
      TypeError: `model` is not a Keras model.
      ImportError: a Keras 3 model while `tfp_mnf.keras` cannot be imported.
    """
    import tf_keras

    if isinstance(model, tf_keras.Model):
        return _Keras("tf_keras", tf_keras, importlib.import_module("tfp_mnf.layers"))
    try:
        import keras
    except ImportError:
        keras = None
    if keras is not None and isinstance(model, keras.Model):
        try:
            frontend = importlib.import_module("tfp_mnf.keras")
        except ImportError as error:
            raise ImportError(
                f"tfp_mnf.convert: `model` is a Keras 3 model ({type(model).__name__}), whose "
                f"MNF layers are in tfp_mnf.keras, which cannot be imported here: {error}"
            ) from error
        return _Keras("Keras 3", keras, frontend)
    raise TypeError(
        "tfp_mnf.convert: `model` must be a built tf_keras or Keras 3 model, got "
        f"{type(model).__name__}."
    )


def _leaves(model: Any, keras: _Keras) -> Iterator[Any]:
    """Every layer of `model` that is not itself a model, nested models entered in place."""
    for layer in model.layers:
        if keras.is_model(layer):
            yield from _leaves(layer, keras)
        else:
            yield layer


def _unsupported(layer: Any, keras: _Keras) -> ValueError:
    return ValueError(
        f"tfp_mnf.convert: layer {layer.name!r} ({type(layer).__name__}) cannot be converted; "
        f"{keras.name} layers of the classes {sorted(_MNF_CLASSES)} can."
    )


def last_layers(model: Any, k: int) -> list[Any]:
    """The last `k` convertible layers of `model`, for `convert(..., layers=...)`.

    Convertible layers are `Dense`, `Conv1D`, `Conv2D` and `Conv3D`, in the order of
    `model.layers` with nested models entered in place: `last_layers(model, 1)` is usually
    the output layer, which makes a last-layer Bayesian model.

    Args:
      model: a tf_keras or Keras 3 model.
      k: how many, >= 1.

    Returns:
      The layers (fewer if the model has fewer than `k`).
    """
    k = validation.integer("k", k, 1)
    keras = _keras_of(model)
    return [layer for layer in _leaves(model, keras) if keras.mnf_class(layer)][-k:]


def _selection(model: Any, keras: _Keras, layers: LayerSelection) -> list[Any]:
    """The layers that `layers` selects, in `_leaves` order.

    Raises:
      ValueError: an unknown name or layer, a selected layer that cannot be converted, or
        an empty selection.
      TypeError: `layers` of another type.
    """
    leaves = list(_leaves(model, keras))
    if layers is None:
        chosen = {id(layer) for layer in leaves if keras.mnf_class(layer)}
    elif callable(layers):
        chosen = {id(layer) for layer in leaves if keras.mnf_class(layer) and layers(layer)}
    elif isinstance(layers, str | Iterable):
        chosen = set()
        for item in [layers] if isinstance(layers, str) else layers:
            for layer in _find(model, keras, item):
                inside = list(_leaves(layer, keras)) if keras.is_model(layer) else [layer]
                for leaf in inside:
                    if keras.mnf_class(leaf):
                        chosen.add(id(leaf))
                    elif not keras.is_model(layer):
                        raise _unsupported(leaf, keras)
    else:
        raise TypeError(
            "tfp_mnf.convert: `layers` must be None, a predicate `fn(layer) -> bool`, or layer "
            f"names or layers, got {type(layers).__name__}."
        )
    selected = [layer for layer in leaves if id(layer) in chosen]
    if not selected:
        raise ValueError(
            f"tfp_mnf.convert: `layers`={layers!r} selects no layer of model {model.name!r} to "
            f"convert (convertible: {keras.name} layers of the classes {sorted(_MNF_CLASSES)})."
        )
    return selected


def _find(model: Any, keras: _Keras, item: Any) -> list[Any]:
    """The layers (or nested models) of `model` that `item`, a name or a layer, denotes."""

    def walk(container: Any) -> Iterator[Any]:
        for layer in container.layers:
            yield layer
            if keras.is_model(layer):
                yield from walk(layer)

    if isinstance(item, str):
        found = [layer for layer in walk(model) if layer.name == item]
    else:
        found = [layer for layer in walk(model) if layer is item]
    if not found:
        what = repr(item) if isinstance(item, str) else f"{item!r} ({type(item).__name__})"
        raise ValueError(
            f"tfp_mnf.convert: `layers` names {what}, which is not a layer of model "
            f"{model.name!r}: {[layer.name for layer in walk(model)]}."
        )
    return found


def _mnf_layer(layer: Any, cls: type, mnf_kwargs: dict[str, Any]) -> Any:
    """An unbuilt MNF layer of class `cls` with the shape arguments of `layer`.

    Raises:
      ValueError: a convolution with `causal` padding or `groups` > 1.
    """
    if issubclass(cls, ConvLogic):
        if layer.padding not in ("valid", "same"):
            raise ValueError(
                f"tfp_mnf.convert: layer {layer.name!r} ({type(layer).__name__}) has "
                f"padding={layer.padding!r}; MNF convolutions support 'valid' and 'same'."
            )
        if getattr(layer, "groups", 1) != 1:
            raise ValueError(
                f"tfp_mnf.convert: layer {layer.name!r} ({type(layer).__name__}) has "
                f"groups={layer.groups}; MNF convolutions support groups=1 only."
            )
        own = dict(
            filters=layer.filters,
            kernel_size=layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            data_format=layer.data_format,
            dilation_rate=layer.dilation_rate,
        )
    else:
        own = dict(units=layer.units)
    return cls(
        **own,
        activation=layer.activation,
        activity_regularizer=layer.activity_regularizer,
        name=layer.name,
        dtype=layer.dtype_policy,
        trainable=layer.trainable,
        **mnf_kwargs,
    )


def _carry_weights(old: Any, new: MNFLayerLogic, moped_delta: float | None) -> None:
    """Sets the built MNF layer `new` so that its posterior mean computes what `old` does.

    q(z_0) gets mean 1 (its log variance keeps `z_log_var_init`); the kernel means are the
    trained kernel divided by the posterior-mean z along the z axis, and so are the conv
    bias means (the conv layers' z also scales the bias), so that z * M = W exactly up
    to rounding whatever the flows' initial values. See `convert` for the other options.
    """
    weights = old.get_weights()
    dtype = new.kernel_mean.dtype
    kernel = tf.constant(weights[0], dtype)
    bias = tf.constant(weights[1] if old.use_bias else np.zeros(weights[0].shape[-1]), dtype)
    z = tf.ones([new.posterior.z_size], dtype)
    if new.use_z:
        new.assign_parameters(q0_mean=tf.ones_like(new.q0_mean))
        z = new.posterior.mean_z()
    new.kernel_mean.assign(kernel / new.posterior.along_z(z))
    bias_mean = bias / z if isinstance(new, ConvLogic) else bias
    values = {"bias_mean": bias_mean}
    if moped_delta is not None:
        new.kernel_log_std.assign(
            tf.math.log(tf.maximum(moped_delta * tf.abs(kernel), MOPED_MIN_STD))
        )
        values["bias_log_var"] = 2.0 * tf.math.log(
            tf.maximum(moped_delta * tf.abs(bias_mean), MOPED_MIN_STD)
        )
    if new.empirical_prior:
        values.update(kernel_prior_mean=kernel, bias_prior_mean=bias_mean)
    new.assign_parameters(**values)


def _check_mnf_kwargs(mnf_kwargs: dict[str, Any]) -> None:
    """Validates `mnf_kwargs` against the MNF layer arguments.

    Raises:
      TypeError: a name that is no MNF argument, or one that `convert` sets itself.
      ValueError: a value the argument's check rejects.
    """
    set_here = sorted(name for name in mnf_kwargs if name in _SET_BY_CONVERT)
    if set_here:
        raise TypeError(
            f"tfp_mnf.convert: {set_here} are set by convert (the activation and activity "
            "regularizer from each Keras layer, the divergences from `kl_scale`, the kernel "
            "means from the trained weights)."
        )
    unknown = sorted(name for name in mnf_kwargs if name not in _PASSED_ON)
    if unknown:
        raise TypeError(
            f"tfp_mnf.convert: unknown MNF layer arguments {unknown} (the units, filters, "
            f"kernel size, ... come from each Keras layer); known: {sorted(_PASSED_ON)}."
        )
    for argument in arguments.MNF_ARGUMENTS:
        if argument.name in mnf_kwargs:
            argument.check(argument.name, mnf_kwargs[argument.name])


def convert(
    model: Any,
    *,
    kl_scale: float,
    layers: LayerSelection = None,
    moped_delta: float | None = 0.1,
    **mnf_kwargs: Any,
) -> Any:
    """Converts a trained Keras model into an MNF model with the trained weights as means.

    Returns a new model of the same architecture (the original is left untouched): each
    selected `Dense`, `Conv1D`, `Conv2D` and `Conv3D` becomes its MNF layer (`DenseMNF`,
    `Conv{1,2,3}DMNF` of `tfp_mnf.layers` for tf_keras models, of `tfp_mnf.keras` for Keras 3
    ones) with the same name, units or filters, kernel size, strides, padding, dilation,
    data format, activation, activity regularizer, dtype policy and `trainable` flag. Every
    other layer is copied with its weights (from its config). Kernel and bias regularizers
    and constraints are not carried over: the prior takes their place. A layer without a
    bias gets one, starting at zero.

    Weights: the trained kernel and bias become the posterior means and q(z_0) starts at
    mean 1 with variance exp(`z_log_var_init`); the kernel means are divided by the
    posterior-mean z (q's flow at q(z_0)'s mean, near 1) along the z axis, so that the
    converted model's posterior-mean prediction (`tfp_mnf.layers.posterior_mean`) equals
    the original model's up to float rounding. Its samples (`model(x)`) add the
    posterior's noise, which fine-tuning (`compile` and `fit`, like any model of MNF layers)
    then adapts. The weights' sigma starts at delta * |w| (MOPED, `moped_delta`): noise in
    proportion to each trained weight keeps the converted model's samples near the trained
    model (a LeNet trained on 8k MNIST digits, converted with sigma = 0.05 for every weight,
    sampled 90% test accuracy where the plain model had 98%; with delta = 0.1, 98%), or,
    with `moped_delta=None`, at exp(`kernel_log_std_init`) (an MNF argument).

    Args:
      model: a built Sequential or functional tf_keras or Keras 3 model; nested Sequential
        or functional models are converted in place.
      kl_scale: the factor of every layer's KL term, usually 1 / (number of training
        examples), >= 0: the layers' divergences are `ScaledKL(kl_scale)`. Required.
      layers: which layers to convert. None: every `Dense` and `Conv{1,2,3}D`. A predicate
        `fn(layer) -> bool`: those of them for which it is true. Layer names or layers
        (one, or an iterable): those layers (a name matches at any depth; a nested
        model's name selects its convertible layers), each of which must be convertible;
        e.g. `last_layers(model, 1)` for a last-layer Bayesian model.
      moped_delta: delta > 0: the weights' standard deviations start at sigma = delta * |w|
        (the trained weight w), the biases' at delta * |b|, both at least `MOPED_MIN_STD`
        (Krishnan et al. 2020, MOPED). None: the layers' `kernel_log_std_init`, which may
        then be given in `mnf_kwargs`.
      **mnf_kwargs: MNF layer arguments for every converted layer (`kernel_log_std_init`,
        `z_log_var_init`, `q_flow`, `num_q_flows`, `prior_variance`, `max_std`, ...; see
        `tfp_mnf.layers.DenseMNF`). `empirical_prior=True` centres the priors at the
        trained weights, N(w, prior_variance), instead of N(0, prior_variance) (empirical
        Bayes, MOPED). A `seed` s gives the i-th converted layer the seed derived from
        (s, i).

    Returns:
      The converted model; compile it before `fit` (Keras 3 may carry over the original's
      compile configuration, with a fresh optimizer).

    Raises:
      TypeError: `model` is not a Keras model, `kl_scale` is missing, `layers` has another
        type, or `mnf_kwargs` holds an unknown name, one that convert sets itself, or
        `kernel_log_std_init` while `moped_delta` is set.
      ImportError: a Keras 3 model while `tfp_mnf.keras` cannot be imported.
      ValueError: an unbuilt model; a subclassed model (its layers come from its Python
        code, so it cannot be rebuilt from its config); a selected layer that cannot be
        converted (named, with its class) or a `layers` selection of nothing; a bad
        `kl_scale`, `moped_delta` or MNF argument value.
    """
    keras = _keras_of(model)
    kl_scale = validation.non_negative_float("kl_scale", kl_scale)
    if moped_delta is not None:
        moped_delta = validation.positive_float("moped_delta", moped_delta)
        if "kernel_log_std_init" in mnf_kwargs:
            raise TypeError(
                "tfp_mnf.convert: `kernel_log_std_init` would be unused: `moped_delta` sets the "
                "initial sigma of the weights; pass `moped_delta=None` to start them at "
                "exp(kernel_log_std_init) instead."
            )
    _check_mnf_kwargs(mnf_kwargs)
    if not model.built:
        raise ValueError(
            f"tfp_mnf.convert: model {model.name!r} is not built: it has no trained weights "
            "yet (call it on data, or `model.build(input_shape)`, and train it)."
        )
    _require_rebuildable(model, keras)
    selected = {id(layer): index for index, layer in enumerate(_selection(model, keras, layers))}
    seed = mnf_kwargs.pop("seed", None)
    pairs: list[tuple[Any, Any]] = []

    def mnf_layer(layer: Any) -> Any:
        cls = keras.mnf_class(layer)
        layer_seed = parameters.derive_seed(seed, selected[id(layer)])
        return _mnf_layer(
            layer,
            cls,
            {
                **mnf_kwargs,
                "seed": layer_seed,
                "kernel_divergence_fn": keras.frontend.ScaledKL(kl_scale),
                "bias_divergence_fn": keras.frontend.ScaledKL(kl_scale),
            },
        )

    converted = _rebuild(model, keras, selected, mnf_layer, pairs)
    for old, new in pairs:
        if isinstance(new, MNFLayerLogic):
            _carry_weights(old, new, moped_delta)
        elif old.weights:
            new.set_weights(old.get_weights())
    return converted


def _require_rebuildable(model: Any, keras: _Keras) -> None:
    if not keras.is_rebuildable(model):
        raise ValueError(
            f"tfp_mnf.convert: model {model.name!r} is a subclassed {keras.name} model "
            f"({type(model).__name__}): its layers are created by its Python code, so it "
            "cannot be rebuilt from its config with MNF layers in place of its Dense/Conv "
            "layers. Build the network as a Sequential or functional model, load the trained "
            "weights into it, and convert that (or use the MNF layers in the subclass)."
        )


def _rebuild(
    model: Any,
    keras: _Keras,
    selected: dict[int, int],
    mnf_layer: Callable[[Any], Any],
    pairs: list[tuple[Any, Any]],
) -> Any:
    """A clone of `model` with the `selected` layers made by `mnf_layer`, nested models
    rebuilt in turn; appends each (original, new) layer pair whose weights are to be set."""

    def clone(layer: Any) -> Any:
        if keras.is_model(layer) and any(id(leaf) in selected for leaf in _leaves(layer, keras)):
            _require_rebuildable(layer, keras)
            return _rebuild(layer, keras, selected, mnf_layer, pairs)
        new = (
            mnf_layer(layer)
            if id(layer) in selected
            else type(layer).from_config(layer.get_config())
        )
        pairs.append((layer, new))
        return new

    rebuilt = keras.keras.models.clone_model(model, clone_function=clone)
    if not model.trainable:  # a frozen container freezes all of its layers
        rebuilt.trainable = False
    return rebuilt
