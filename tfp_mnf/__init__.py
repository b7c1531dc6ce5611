"""tfp_mnf: Multiplicative Normalizing Flows (Louizos & Welling, 2017) for TFP users.

Like `import tensorflow_probability as tfp`, a bare `import tfp_mnf` reaches every public
module: `tfp_mnf.layers`, `tfp_mnf.models`, `tfp_mnf.evaluate`, `tfp_mnf.bijectors`,
`tfp_mnf.ops`, `tfp_mnf.data`, `tfp_mnf.plotting`, `tfp_mnf.keras` (the Keras 3 layers), and
`tfp_mnf.convert` (trained Keras
model -> MNF model, from `tfp_mnf.conversion`). Each is imported on first access, so
`import tfp_mnf` itself is cheap and matplotlib is imported only when `tfp_mnf.plotting` is.
"""

import importlib
from typing import Any

__version__ = "0.2.0"

_SUBMODULES = (
    "bijectors",
    "conversion",
    "data",
    "distributions",
    "evaluate",
    "keras",
    "layers",
    "models",
    "ops",
    "plotting",
    "posterior",
)

_FUNCTIONS = {"convert": "conversion"}  # function name -> the submodule defining it


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(f"{__name__}.{_FUNCTIONS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES, *_FUNCTIONS])
