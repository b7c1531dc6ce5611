"""Tests of benchmarks/bench_uncertainty.py: the tiny mode end to end, flags, data, Brier."""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from tfp_mnf import data, evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
METRICS = ("accuracy", "nll", "ece", "brier", "auroc_entropy", "auroc_mi")


def _load_bench():
    path = os.path.join(ROOT, "benchmarks", "bench_uncertainty.py")
    spec = importlib.util.spec_from_file_location("bench_uncertainty", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def _check_row(row, stochastic):
    assert 0.0 <= row["accuracy"] <= 1.0
    assert 0.0 <= row["ece"] <= 1.0
    assert 0.0 <= row["brier"] <= 2.0
    assert np.isfinite(row["nll"]) and row["nll"] > 0
    assert 0.0 <= row["auroc_entropy"] <= 1.0
    if stochastic:
        assert 0.0 <= row["auroc_mi"] <= 1.0
    else:
        assert row["auroc_mi"] is None
    assert row["steps"] > 0 and row["train_seconds"] > 0 and row["eval_seconds"] > 0


def test_tiny_run_every_model(tmp_path, capsys):
    output = tmp_path / "tiny.json"
    bench.main(
        [
            "--tiny",
            "--seeds=0",
            "--epochs=2",
            "--ensemble_size=2",
            "--test_samples=3",
            '--mnf_kwargs={"num_q_flows": 1, "num_r_flows": 1, "flow_hidden_units": 8}',
            f"--output={output}",
        ]
    )
    stdout = capsys.readouterr().out
    assert stdout.startswith("CPU: ") and "ISA: " in stdout
    assert "| model | epochs | train s | accuracy | NLL | ECE | Brier |" in stdout
    assert "| AUROC (entropy) | AUROC (MI) |" in stdout
    result = json.loads(output.read_text())
    assert set(result) == {"machine", "config", "data", "runs", "summary"}
    assert result["config"]["dataset"] == "tiny" and result["config"]["epochs"] == 2
    assert result["config"]["mnf_kwargs"]["num_q_flows"] == 1
    assert tuple(result["runs"]) == bench.MODELS and tuple(result["summary"]) == bench.MODELS
    steps_per_epoch = int(np.ceil(1348 / 128))
    for name, rows in result["runs"].items():
        assert [row["seed"] for row in rows] == [0]
        (row,) = rows
        _check_row(row, stochastic=name != "plain")
        assert row["epochs"] == 2.0
        members = 2 if name == "ensemble" else 1
        assert row["steps"] == 2 * steps_per_epoch * members
        summary = result["summary"][name]
        assert summary["accuracy"] == {"mean": row["accuracy"], "std": 0.0}
        assert f"| {name} | 2.0 ± 0.0 |" in stdout
    assert result["summary"]["plain"]["auroc_mi"] is None


def test_tiny_budget_shared_by_the_ensemble(tmp_path, capsys):
    output = tmp_path / "budget.json"
    result = bench.main(
        [
            "--tiny",
            "--models=plain,ensemble",
            "--seeds=0,1",
            "--budget_seconds=2",
            "--ensemble_size=2",
            f"--output={output}",
        ]
    )
    assert json.loads(output.read_text())["summary"] == result["summary"]
    for name, rows in result["runs"].items():
        assert [row["seed"] for row in rows] == [0, 1]
        for row in rows:
            _check_row(row, stochastic=name == "ensemble")
            # The budget (1 s per member) runs from the first step's end to the step crossing it.
            assert 2.0 <= row["train_seconds"] - row["first_step_seconds"] < 10.0
            assert row["first_step_seconds"] > 0
            assert row["epochs"] == pytest.approx(row["steps"] / (11 * (1 + (name == "ensemble"))))
        # A second's worth of steps (several epochs) learns the digits above chance (0.1).
        assert min(row["accuracy"] for row in rows) > 0.3
        accuracies = [row["accuracy"] for row in rows]
        assert result["summary"][name]["accuracy"] == pytest.approx(
            {"mean": np.mean(accuracies), "std": np.std(accuracies, ddof=1)}
        )
    assert "| plain |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models=mnf,bayes"], "--models: unknown 'bayes'"),
        (["--models=mnf,mnf"], "--models: each model at most once"),
        (["--epochs=2", "--budget_seconds=5"], "not allowed with argument"),
        (["--budget_seconds=-1"], "--budget_seconds"),
        (["--epochs=0"], "--epochs"),
        (["--seeds=0,0"], "--seeds"),
        (["--ensemble_size=0"], "--ensemble_size"),
        (["--mnf_kwargs={bad"], "--mnf_kwargs: not valid JSON"),
        (["--mnf_kwargs=[1]"], "--mnf_kwargs: expected a JSON object"),
        (['--mnf_kwargs={"kernel_log_sd_init": -5}'], "kernel_log_sd_init"),
        (['--mnf_kwargs={"q_flow": "glow"}'], "--mnf_kwargs: not valid MNF layer arguments"),
        (['--mnf_kwargs={"seed": 1}'], "set by the benchmark"),
        (["--tiny", "--dataset=fashion"], "--tiny"),
        (["--dataset=cifar"], "--dataset"),
    ],
)
def test_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_flag_defaults(tmp_path):
    args = bench.parse_args([])
    assert args.dataset == "mnist-small" and args.budget_seconds == 120.0 and args.epochs is None
    assert args.seeds == (0, 1, 2) and args.test_samples == 20 and args.ensemble_size == 5
    assert args.models == bench.MODELS and args.architecture == bench.FULL_ARCHITECTURE
    assert args.output.endswith(os.path.join("benchmarks", "bench_uncertainty_mnist-small.json"))
    args = bench.parse_args(["--dataset=fashion", '--mnf_kwargs={"kernel_log_std_init": -5}'])
    assert args.budget_seconds == 240.0 and args.mnf_kwargs == {"kernel_log_std_init": -5}
    args = bench.parse_args(["--dataset=fashion", "--epochs=3"])
    assert args.budget_seconds is None and args.epochs == 3
    args = bench.parse_args(["--tiny"])
    assert args.epochs == bench.TINY_EPOCHS and args.architecture == bench.TINY_ARCHITECTURE


def test_missing_data_names_the_path(tmp_path):
    with pytest.raises(SystemExit, match=r"8k/2k MNIST split not found: .*nowhere.*--data_root"):
        bench.main([f"--data_root={tmp_path / 'nowhere'}", f"--output={tmp_path / 'x.json'}"])
    with pytest.raises(FileNotFoundError, match=r"MNIST test digits not found: .*--data_root"):
        bench.load_split("fashion", str(tmp_path))
    (tmp_path / "mnist").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"Fashion-MNIST not found: .*no-fashion.*--fashion"
    ):
        bench.load_split("fashion", str(tmp_path), str(tmp_path / "no-fashion"))
    (tmp_path / "mnist-small").mkdir()
    (tmp_path / "notmnist").mkdir()
    with pytest.raises(FileNotFoundError, match=r"mnist-small.*train-images-idx3-ubyte"):
        bench.load_split("mnist-small", str(tmp_path))


def test_fashion_split_from_idx_folders(tmp_path):
    rng = np.random.default_rng(0)
    for folder, prefixes in (("fashion", ("train", "t10k")), ("mnist", ("t10k",))):
        (tmp_path / folder).mkdir()
        for prefix in prefixes:
            data.write_idx(
                str(tmp_path / folder / f"{prefix}-images-idx3-ubyte.gz"),
                rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
            )
            data.write_idx(
                str(tmp_path / folder / f"{prefix}-labels-idx1-ubyte.gz"),
                rng.integers(0, 10, 7, dtype=np.uint8),
            )
    split = bench.load_split("fashion", str(tmp_path), str(tmp_path / "fashion"))
    assert split.x_train.shape == (7, 28, 28, 1) and split.x_ood.shape == (7, 28, 28, 1)
    assert "Fashion-MNIST" in split.description


@pytest.mark.skipif(
    not all(os.path.isdir(os.path.join(SHARED, d)) for d in ("mnist-small", "notmnist")),
    reason="offline data ../shared/data/{mnist-small,notmnist} not present",
)
def test_mnist_small_split():
    split = bench.load_split("mnist-small", SHARED)
    assert split.x_train.shape == (8000, 28, 28, 1) and split.x_test.shape == (2000, 28, 28, 1)
    assert split.x_ood.shape == (2000, 28, 28, 1)
    assert 0.0 <= split.x_ood.min() and split.x_ood.max() <= 1.0


def test_brier_score():
    probs = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    labels = np.array([0, 1, 0])
    # Per example: 0; 0.25 + 0.25; 1 + 1.
    assert evaluate.brier_score(probs, labels) == pytest.approx((0.0 + 0.5 + 2.0) / 3)
    with pytest.raises(ValueError, match="labels"):
        evaluate.brier_score(probs, np.array([0, 1]))


def test_cpu_info():
    info = bench.cpu_info()
    assert info["model"] and info["cpus"] >= 1
    assert all(flag == "avx2" or flag.startswith("avx512") for flag in info["isa"])
