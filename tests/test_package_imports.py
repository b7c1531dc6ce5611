"""A bare `import tfp_mnf` reaches every public module, lazily (like `tensorflow_probability`)."""

import subprocess
import sys

import pytest

import tfp_mnf


def _run(code):
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


def test_bare_import_reaches_the_public_modules_lazily():
    """TensorFlow (through Keras 3) imports matplotlib itself; tfp_mnf imports its plotting
    module, and through it matplotlib, only when `tfp_mnf.plotting` is used."""
    code = (
        "import sys\n"
        "import tfp_mnf\n"
        "print('tensorflow' in sys.modules, 'matplotlib' in sys.modules)\n"
        "tfp_mnf.layers.DenseMNF, tfp_mnf.layers.Conv2DMNF, tfp_mnf.models.MNFLeNet\n"
        "tfp_mnf.evaluate.predictive_probs, tfp_mnf.bijectors.Planar, tfp_mnf.ops.convolution\n"
        "tfp_mnf.data\n"
        "print('tfp_mnf.plotting' in sys.modules)\n"
        "tfp_mnf.plotting.plt\n"
        "print('tfp_mnf.plotting' in sys.modules)\n"
    )
    assert _run(code) == ["False", "False", "False", "True"]


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        tfp_mnf.nope  # noqa: B018


def test_dir_lists_the_submodules():
    assert {"layers", "models", "evaluate", "bijectors", "ops", "plotting"} <= set(dir(tfp_mnf))
