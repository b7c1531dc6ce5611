"""Tiny end-to-end runs of the example scripts (each well under a minute on 2 CPU cores)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfp_mnf import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLOWS = ["--num_q_flows=1", "--num_r_flows=1", "--flow_hidden_units=8"]


def _run(script, *args, check=True):
    """Runs `examples/script`; returns its stdout (check=False: stdout and stderr, not
    checking the exit status)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("script", "flag"),
    [("mnist_lenet.py", "baselines"), ("regression.py", "data_path")],
)
def test_help(script, flag):
    # absl's --help prints the flags and exits with status 1.
    assert flag in _run(script, "--help", check=False)


@pytest.mark.slow
def test_mnist_lenet_tiny_run_and_eval_only(tmp_path):
    rng = np.random.default_rng(0)
    ood_dir = tmp_path / "ood"
    ood_dir.mkdir()
    data.write_idx(
        str(ood_dir / "t10k-images-idx3-ubyte.gz"),
        rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
    )
    data.write_idx(str(ood_dir / "t10k-labels-idx1-ubyte.gz"), np.zeros(40, np.uint8))
    model_dir = tmp_path / "model"
    common = [
        "--fake_data",
        "--num_train=300",
        "--num_test=40",
        "--num_monte_carlo=3",
        f"--ood_dir={ood_dir}",
        f"--model_dir={model_dir}",
    ]
    stdout = _run(
        "mnist_lenet.py",
        *common,
        "--epochs=2",
        "--kl_anneal_epochs=1",
        "--baselines=plain,dropout,ensemble",
        "--ensemble_size=2",
        *TINY_FLOWS,
    )
    assert "mnf_lenet" in stdout and "ood_auroc" in stdout
    results = json.loads((model_dir / "metrics.json").read_text())["results"]
    names = {"mnf_lenet", "lenet", "mc_dropout_lenet", "deep_ensemble_lenet"}
    assert set(results) == names
    for name, metrics in results.items():
        assert 0.0 <= metrics["ood_auroc"] <= 1.0
        assert 0.0 <= metrics["ece"] <= 1.0
        assert 0.0 <= metrics["brier"] <= 2.0
        assert metrics["train_seconds"] > 0
        # Every model but the deterministic LeNet also scores by mutual information.
        assert ("ood_auroc_mutual_information" in metrics) == (name != "lenet")
        assert (model_dir / f"rotated_digit_{name}.png").stat().st_size > 1000
    # The synthetic classes are easy: the plain LeNet learns them in two epochs.
    assert results["lenet"]["accuracy"] > 0.8
    assert (model_dir / "entropy.png").stat().st_size > 1000

    # The saved configuration, not these flags, says which models and ensemble size to load.
    _run("mnist_lenet.py", *common, "--eval_only", "--ensemble_size=3")
    reloaded = json.loads((model_dir / "metrics.json").read_text())["results"]
    assert set(reloaded) == names
    for name in ("lenet", "deep_ensemble_lenet"):  # deterministic predictions
        assert reloaded[name]["accuracy"] == pytest.approx(results[name]["accuracy"])
        assert reloaded[name]["nll"] == pytest.approx(results[name]["nll"], rel=1e-4)
    assert reloaded["mnf_lenet"]["train_seconds"] is None
    assert reloaded["mnf_lenet"]["accuracy"] == pytest.approx(
        results["mnf_lenet"]["accuracy"], abs=0.1
    )


@pytest.mark.slow
def test_mnist_lenet_keras3_tiny_run_and_eval_only(tmp_path):
    """`--keras=3` trains and scores the Keras 3 models; --eval_only reloads them from the
    saved configuration (which records the front-end) without the flag."""
    common = [
        "--fake_data",
        "--num_train=200",
        "--num_test=40",
        "--num_monte_carlo=2",
        f"--model_dir={tmp_path}",
    ]
    stdout = _run(
        "mnist_lenet.py",
        *common,
        "--keras=3",
        "--epochs=1",
        "--baselines=plain,ensemble",
        "--ensemble_size=2",
        *TINY_FLOWS,
    )
    assert "mnf_lenet" in stdout and "deep_ensemble_lenet" in stdout
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["flags"]["keras"] == "3"
    results = saved["results"]
    assert set(results) == {"mnf_lenet", "lenet", "deep_ensemble_lenet"}
    for metrics in results.values():
        assert 0.0 <= metrics["accuracy"] <= 1.0 and np.isfinite(metrics["nll"])
        assert 0.0 <= metrics["ece"] <= 1.0
    assert (tmp_path / "mnf_lenet" / "model.weights.h5").is_file()
    _run("mnist_lenet.py", *common, "--eval_only")
    reloaded = json.loads((tmp_path / "metrics.json").read_text())["results"]
    for name in ("lenet", "deep_ensemble_lenet"):  # deterministic predictions
        assert reloaded[name]["nll"] == pytest.approx(results[name]["nll"], rel=1e-4)


def test_mnist_lenet_keras3_refuses_the_tf_keras_only_flipout_baseline(tmp_path):
    result = _run(
        "mnist_lenet.py",
        "--keras=3",
        "--fake_data",
        "--baselines=plain,flipout",
        f"--model_dir={tmp_path}",
        check=False,
    )
    assert "flipout needs tfp.layers, which exist for tf_keras only" in result


@pytest.mark.slow
def test_regression_tiny_run(tmp_path):
    stdout = _run(
        "regression.py",
        "--num_train=60",
        "--epochs=3",
        "--toy_epochs=3",
        "--toy_points=20",
        "--num_monte_carlo=4",
        f"--model_dir={tmp_path}",
        *TINY_FLOWS,
    )
    assert "sklearn diabetes: 60 train / 88 test rows" in stdout
    saved = json.loads((tmp_path / "metrics.json").read_text())
    results = saved["results"]
    assert set(results) == {"mnf_mlp", "mlp"}
    for metrics in results.values():
        assert np.isfinite(metrics["nll"]) and metrics["rmse"] > 0
        assert 0.0 <= metrics["coverage"] <= 1.0
    assert (tmp_path / "regression_band.png").stat().st_size > 1000
