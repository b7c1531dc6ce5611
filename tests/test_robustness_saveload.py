"""Save/load in a fresh Python process: .keras, h5 and SavedModel, fused ops and composite.

A small MNF conv net (IAF/MAF and planar/RealNVP flows, a registered divergence function and
`ScaledKL`) is trained and saved in one subprocess, then loaded in fresh ones: with the op
library (when it is built) and with the library missing and the composite path forced.
"""

import numpy as np
import pytest
import tf_keras
from _robustness import MISSING_LIBRARY, finish, run, start

from tfp_mnf.layers import DenseMNF
from tfp_mnf.ops import fused_available

FORMATS = ("keras", "h5", "tf")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Saves once, then loads in two fresh processes at once (library / library missing)."""
    out = tmp_path_factory.mktemp("saved")
    run("save", out)
    finish(start("load", out, "default"), start("load", out, "missing", env=MISSING_LIBRARY))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("tag", ["default", "missing"])
def test_fresh_process_gives_the_same_predictions_and_seeded_samples(saved, fmt, tag):
    expected = np.load(saved / "expected.npz")
    got = np.load(saved / f"{tag}_{fmt}.npz")
    assert bool(got["divergence_fns_revived"])
    np.testing.assert_allclose(got["mean"], expected["mean"], rtol=1e-6, atol=1e-6)
    # Same process kind: bit-identical. Library missing: the composite path draws the same
    # noise as the fused kernels, equal to float tolerance.
    exact = tag == "default" or not fused_available()
    tol = 0.0 if exact else 1e-5
    np.testing.assert_allclose(got["sample"], expected["sample"], rtol=tol, atol=tol)
    np.testing.assert_allclose(got["kl"], expected["kl"], rtol=max(tol, 1e-6))
    assert np.all(np.isfinite(got["sample"]))


def test_samples_depend_on_the_seed(saved):
    expected = np.load(saved / "expected.npz")
    assert not np.allclose(expected["sample"], expected["mean"], atol=1e-3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_lambda_divergence_fn_is_rejected_at_save_time(tmp_path, fmt):
    model = tf_keras.Sequential(
        [tf_keras.Input((3,)), DenseMNF(2, bias_divergence_fn=lambda q, p, _: 0.0 * p.mean())]
    )
    model(np.ones((1, 3), "float32"))
    path = tmp_path / ("model" if fmt == "tf" else f"model.{fmt}")
    with pytest.raises(ValueError, match="bias_divergence_fn.*lambda"):
        model.save(str(path), save_format=fmt)
