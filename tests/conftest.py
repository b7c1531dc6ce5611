"""Shared pytest fixtures: `op_path` runs a test through the fused ops and the composite path;
`frontend` runs it with the tf_keras layers (`tfp_mnf.layers`) and the Keras 3 ones
(`tfp_mnf.keras`), see tests/_frontends.py.

Unless the environment sets `TFP_MNF_FUSED`, the suite runs with `always`: the fused kernels
wherever they apply, so that tests which look for fused ops in a graph find them on every
CPU and no test times the paths (tests/test_autotune.py tests `auto` on its own).
"""

import os

import pytest
from _frontends import FRONTENDS

from tfp_mnf import ops
from tfp_mnf.ops import autotune

os.environ.setdefault(autotune.ENV, "always")


@pytest.fixture(params=["fused", "composite"])
def op_path(request, monkeypatch):
    """Yields "fused" or "composite"; ops built in the test use that implementation."""
    if request.param == "composite":
        with ops.force_composite():
            yield "composite"
        return
    if not ops.fused_available():
        pytest.skip(
            "fused op library not built or forced off (pip install -e .; "
            "TFP_MNF_FORCE_COMPOSITE unset, TFP_MNF_FUSED not never)"
        )
    monkeypatch.setenv(autotune.ENV, "always")
    yield "fused"


@pytest.fixture(params=list(FRONTENDS))
def frontend(request):
    """Yields a `_frontends.Frontend`: the layers, models and Keras of one front-end.

    The Keras' global dtype policy is float32 again after the test.
    """
    frontend = FRONTENDS[request.param]
    try:
        yield frontend
    finally:
        frontend.keras.mixed_precision.set_global_policy("float32")
