"""Every MNF layer argument, declared once: default, check, documentation.

One `Argument` per constructor argument drives the layers' validation, their defaults,
`get_config` and the Args section of their docstrings, for both Keras front-ends. Arguments
whose values are Keras objects (activations, regularizers, initializers, divergence
functions) carry a `kind`; the front-end resolves and serializes them with its own Keras.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from tfp_mnf import validation
from tfp_mnf.bijectors import FLOW_KINDS

REQUIRED = object()  # the default of an argument without one


@dataclasses.dataclass(frozen=True)
class Argument:
    """One layer constructor argument.

    Attributes:
      name: the argument's name.
      default: its default, or `REQUIRED`.
      doc: one sentence for the Args section.
      check: `check(name, value) -> value`, the validated (normalized) value; None for
        arguments of a Keras `kind`, which the front-end resolves.
      kind: "activation", "regularizer", "initializer" or "divergence" for values the
        front-end resolves with its Keras; None otherwise.
    """

    name: str
    default: Any
    doc: str
    check: Callable[[str, Any], Any] | None = None
    kind: str | None = None


def _any(name: str, value: Any) -> Any:
    return value


def _optional_seed(name: str, value: Any) -> int | None:
    return None if value is None else validation.integer(name, value, 0)


def _flow_kind(name: str, value: Any) -> str:
    return validation.one_of(name, value, FLOW_KINDS)


def _count(minimum: int) -> Callable[[str, Any], int]:
    return lambda name, value: validation.integer(name, value, minimum)


def _padding(name: str, value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in ("valid", "same"):
        raise ValueError(f"`{name}` must be 'valid' or 'same', got {value!r}.")
    return value.lower()


def _data_format(name: str, value: Any) -> str:
    return validation.one_of(name, value, ("channels_last", "channels_first"))


def int_tuple(rank: int) -> Callable[[str, Any], tuple[int, ...]]:
    """A check of an int or a tuple of `rank` positive ints (kernel size, strides, ...)."""

    def check(name: str, value: Any) -> tuple[int, ...]:
        values = (value,) * rank if isinstance(value, int) else tuple(value)
        if len(values) != rank or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values
        ):
            raise ValueError(
                f"`{name}` must be a positive int or a tuple of {rank} positive ints, "
                f"got {value!r}."
            )
        return values

    return check


# Arguments of every MNF layer, in signature order (after the layer's own).
MNF_ARGUMENTS: tuple[Argument, ...] = (
    Argument(
        "activation",
        None,
        "activation function (name or callable), as in Keras.",
        kind="activation",
    ),
    Argument(
        "activity_regularizer", None, "regularizer of the outputs, as in Keras.", kind="regularizer"
    ),
    Argument(
        "kernel_divergence_fn",
        None,
        "`fn(q, p, None)` of the kernel posterior and prior, added to `layer.losses` on "
        "every sampling call (tfp.layers' signature); None: `tfd.kl_divergence(q, p)`, "
        "unscaled. Divide by the number of training examples (see `ScaledKL`).",
        kind="divergence",
    ),
    Argument(
        "bias_divergence_fn", None, "the same for the bias posterior and prior.", kind="divergence"
    ),
    Argument(
        "use_z",
        True,
        "multiplicative noise z with flows; False gives a mean-field Gaussian posterior.",
        validation.boolean,
    ),
    Argument("q_flow", "realnvp", f"flow of q(z), one of {FLOW_KINDS}.", _flow_kind),
    Argument("num_q_flows", 2, "number of steps of q's flow, >= 0.", _count(0)),
    Argument(
        "r_flow", "realnvp", f"flow of the auxiliary r(z | W), one of {FLOW_KINDS}.", _flow_kind
    ),
    Argument("num_r_flows", 2, "number of steps of r's flow, >= 0.", _count(0)),
    Argument(
        "flow_hidden_units", 50, "hidden units of the RealNVP / MADE conditioners, >= 1.", _count(1)
    ),
    Argument(
        "learn_prior",
        False,
        "learn the prior variances (one per entry of z, one per bias).",
        validation.boolean,
    ),
    Argument(
        "prior_variance",
        1.0,
        "variance of the N(0, v) prior of the weights, > 0.",
        validation.positive_float,
    ),
    Argument(
        "bias_prior_variance",
        1.0,
        "variance of the N(0, v) prior of the bias, > 0.",
        validation.positive_float,
    ),
    Argument(
        "empirical_prior",
        False,
        "centre the priors N(m, v) at stored means: a non-trainable variable `prior_means` "
        "holds `kernel_prior_mean` (the kernel's shape) and `bias_prior_mean`, zero until set "
        "with `assign_parameters` (`tfp_mnf.convert` sets them to trained weights); False: "
        "m = 0.",
        validation.boolean,
    ),
    Argument(
        "max_std",
        0.5,
        "upper clip of every weight and bias standard deviation, > 0.",
        validation.positive_float,
    ),
    Argument(
        "kernel_log_std_init",
        -3.0,
        "initial log sigma of the weights (the bias log variance starts at twice it); the "
        "paper's -9 leaves the posterior near a point mass within a few epochs.",
        validation.finite_float,
    ),
    Argument(
        "z_log_var_init",
        -3.0,
        "initial log variance of q(z_0) (its mean starts at 1).",
        validation.finite_float,
    ),
    Argument(
        "kernel_initializer",
        "glorot_uniform",
        "initializer of the weight means.",
        kind="initializer",
    ),
    Argument(
        "seed",
        None,
        "non-negative int seeding the initial values and the per-call noise, or None.",
        _optional_seed,
    ),
    Argument(
        "check_numerics",
        False,
        "add `tf.debugging.check_numerics` on z, the KL and the outputs (the error names "
        "the layer and the tensor).",
        validation.boolean,
    ),
)

DENSE_ARGUMENTS: tuple[Argument, ...] = (
    Argument("units", REQUIRED, "positive int, the output dimension.", _count(1)),
)


def conv_arguments(rank: int) -> tuple[Argument, ...]:
    """The own arguments of a `rank`-D MNF convolution, in signature order."""
    return (
        Argument("filters", REQUIRED, "positive int, the number of output filters.", _count(1)),
        Argument("kernel_size", REQUIRED, f"int or tuple of {rank} ints.", int_tuple(rank)),
        Argument("strides", 1, f"int or tuple of {rank} ints.", int_tuple(rank)),
        Argument("padding", "valid", '"valid" or "same".', _padding),
        Argument(
            "data_format", "channels_last", '"channels_last" or "channels_first".', _data_format
        ),
        Argument("dilation_rate", 1, f"int or tuple of {rank} ints.", int_tuple(rank)),
    )


def bind(arguments: Sequence[Argument], args: tuple, kwargs: dict, owner: str) -> dict[str, Any]:
    """Binds positional and keyword values to `arguments`; pops them from `kwargs`.

    Returns the checked value of every argument (defaults filled in), leaving in `kwargs`
    what belongs to the Keras base layer (name, dtype, trainable, ...). Arguments of a
    Keras `kind` are returned as given.

    Raises:
      TypeError: too many positional values, a value given twice, or a required one missing.
      ValueError: a value its check rejects (the message names the argument).
    """
    if len(args) > len(arguments):
        raise TypeError(f"{owner}() takes {len(arguments)} positional arguments, got {len(args)}")
    values = {}
    for argument, value in zip(arguments, args, strict=False):
        if argument.name in kwargs:
            raise TypeError(f"{owner}() got multiple values for argument {argument.name!r}")
        values[argument.name] = value
    for argument in arguments[len(args) :]:
        if argument.name in kwargs:
            values[argument.name] = kwargs.pop(argument.name)
        elif argument.default is REQUIRED:
            raise TypeError(f"{owner}() missing required argument {argument.name!r}")
        else:
            values[argument.name] = argument.default
    return {
        a.name: values[a.name] if a.check is None else a.check(a.name, values[a.name])
        for a in arguments
    }


def args_doc(arguments: Sequence[Argument]) -> str:
    """The Google-style Args lines of `arguments` (with their defaults)."""
    lines = []
    for argument in arguments:
        default = "" if argument.default is REQUIRED else f" Default {argument.default!r}."
        lines.append(
            textwrap.fill(
                f"{argument.name}: {argument.doc}{default}",
                width=92,
                initial_indent="  ",
                subsequent_indent="    ",
            )
        )
    return "\n".join(lines)
