"""Shared pytest fixtures: `op_path` runs a test through the fused ops and the composite path."""

import pytest

from tfp_mnf import ops


@pytest.fixture(params=["fused", "composite"])
def op_path(request):
    """Yields "fused" or "composite"; ops built in the test use that implementation."""
    if request.param == "composite":
        with ops.force_composite():
            yield "composite"
        return
    if not ops.fused_available():
        pytest.skip(
            "fused op library not built or forced off (pip install -e .; "
            "TFP_MNF_FORCE_COMPOSITE unset)"
        )
    yield "fused"
