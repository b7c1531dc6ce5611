"""Save/load in a fresh Python process: every save format, fused ops and composite, for the
tf_keras and the Keras 3 front-end.

A small MNF conv net (IAF/MAF and planar/RealNVP flows, a registered divergence function and
`ScaledKL`) is trained and saved in one subprocess, then loaded in fresh ones: with the op
library (when it is built) and with the library missing and the composite path forced (for
Keras 3 with TFP_MNF_ALL_FRONTENDS=1, tests/_frontends.py: the two paths' agreement is the
shared ops'). The formats are each front-end's (`.keras` and h5; SavedModel for tf_keras).
"""

import numpy as np
import pytest
from _frontends import EVERY_FRONTEND, FRONTENDS
from _robustness import MISSING_LIBRARY, finish, run, start

from tfp_mnf.ops import fused_available

SAVED_FORMATS = [(name, fmt) for name, frontend in FRONTENDS.items() for fmt in frontend.formats]
# The loads of each front-end's files: "default" in a fresh process, "missing" without the
# op library.
LOADS = {
    name: ["default", "missing"] if name in EVERY_FRONTEND else ["default"] for name in FRONTENDS
}


@pytest.fixture(scope="module")
def saved_dirs(tmp_path_factory):
    """Front-end name -> the folder of its saved models and their loads, made once."""
    dirs = {}

    def saved(name):
        if name not in dirs:
            out = tmp_path_factory.mktemp(f"saved_{name}")
            run("save", out, frontend=name)
            envs = {"default": None, "missing": MISSING_LIBRARY}
            finish(*[start("load", out, tag, env=envs[tag], frontend=name) for tag in LOADS[name]])
            dirs[name] = out
        return dirs[name]

    return saved


@pytest.mark.parametrize(
    "frontend, fmt, tag",
    [(name, fmt, tag) for name, fmt in SAVED_FORMATS for tag in LOADS[name]],
)
def test_fresh_process_gives_the_same_predictions_and_seeded_samples(
    saved_dirs, frontend, fmt, tag
):
    saved = saved_dirs(frontend)
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


@pytest.mark.parametrize("frontend", list(FRONTENDS))
def test_samples_depend_on_the_seed(saved_dirs, frontend):
    expected = np.load(saved_dirs(frontend) / "expected.npz")
    assert not np.allclose(expected["sample"], expected["mean"], atol=1e-3)


@pytest.mark.parametrize("frontend, fmt", SAVED_FORMATS, indirect=["frontend"])
def test_lambda_divergence_fn_is_rejected_at_save_time(frontend, tmp_path, fmt):
    model = frontend.Sequential(
        [
            frontend.Input((3,)),
            frontend.DenseMNF(2, bias_divergence_fn=lambda q, p, _: 0.0 * p.mean()),
        ]
    )
    model(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match="bias_divergence_fn.*lambda"):
        frontend.save(model, frontend.model_path(tmp_path, fmt), fmt)
