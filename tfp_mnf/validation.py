"""Argument validators shared by the whole package: each names the argument it rejects.

Every check raises ValueError (as Keras does for a bad layer argument) with the argument's
name, what was expected and what was given.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any


def integer(name: str, value: Any, minimum: int) -> int:
    """Returns `value` as an int, or raises unless it is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.")
    return int(value)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def finite_float(name: str, value: Any) -> float:
    """Returns `value` as a float, or raises unless it is a finite real number."""
    if not (_is_real(value) and math.isfinite(value)):
        raise ValueError(f"`{name}` must be a finite float, got {value!r}.")
    return float(value)


def positive_float(name: str, value: Any) -> float:
    """Returns `value` as a float, or raises unless it is a positive finite real number."""
    if not (_is_real(value) and math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive finite float, got {value!r}.")
    return float(value)


def non_negative_float(name: str, value: Any) -> float:
    """Returns `value` as a float, or raises unless it is a non-negative finite real number."""
    if not (_is_real(value) and math.isfinite(value) and value >= 0):
        raise ValueError(f"`{name}` must be a non-negative finite float, got {value!r}.")
    return float(value)


def boolean(name: str, value: Any) -> bool:
    """Returns `value`, or raises unless it is a bool."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool, got {value!r}.")
    return value


def one_of(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Returns `value`, or raises unless it is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}, got {value!r}.")
    return value


def optional_callable(name: str, value: Any) -> Callable | None:
    """Returns `value`, or raises TypeError unless it is callable or None."""
    if value is not None and not callable(value):
        raise TypeError(f"`{name}` must be a callable (q, p, sample) or None, got {value!r}.")
    return value
