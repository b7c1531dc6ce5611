"""Smoke test of benchmarks/bench_models.py --quick: the table and the JSON (no timing asserts)."""

import json
import os
import subprocess
import sys

import pytest
import tf_keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("mnf_fused", "flipout", "plain")


def test_quick_run_writes_table_and_json(tmp_path):
    output = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "bench_models.py"),
            "--quick",
            f"--variants={','.join(VARIANTS)}",
            f"--output={output}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.startswith("CPU: ")  # the CPU model and ISA come first
    for variant in VARIANTS:
        assert f"| 16 | {variant} |" in done.stdout
    assert "| prediction S (x 50 images, 500 rows per pass) | model | samples |" in done.stdout
    for case in (
        "| 2 | mnf_fused | tiled |",
        "| 2 | flipout | tiled |",
        "| 2 | flipout | separate |",
    ):
        assert case in done.stdout
    result = json.loads(output.read_text())
    assert result["optimizer"] == "adam"  # what compile("adam") gives
    assert set(result["cpu"]) >= {"model", "isa", "op_library_march", "op_library_isa_features"}
    rows = result["training"]["16"]
    assert tuple(rows) == VARIANTS
    for row in rows.values():
        assert 0 < row["min_ms"] <= row["median_ms"]
        assert row["steps"] == 3
        assert row["tracing_counts"]["train_step"] == 1, "the train step must trace once"
    prediction = result["prediction"]["2"]
    assert set(prediction["cases"]) == {"mnf_fused tiled", "flipout tiled", "flipout separate"}
    for row in prediction["cases"].values():
        assert 0 < row["images_per_s"] <= row["best_images_per_s"]
        assert row["traces_while_timed"] == 0, "the untimed draw traces every pass shape"
    best = prediction["flipout_best"]
    assert best["case"] in ("flipout tiled", "flipout separate")
    assert best["images_per_s"] == max(
        prediction["cases"][case]["images_per_s"] for case in ("flipout tiled", "flipout separate")
    )
    ratio = prediction["over_flipout_best"]["mnf_fused"]
    assert ratio == prediction["cases"]["mnf_fused tiled"]["images_per_s"] / best["images_per_s"]
    assert set(result["memory"]) == set(VARIANTS)


def test_flags_default_and_validation():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import bench_models
    finally:
        sys.path.pop(0)
    args = bench_models.parse_args([])
    assert args.optimizer == "adam"
    assert args.predict_samples == (20, 100)
    assert bench_models.parse_args(["--predict_samples", "5"]).predict_samples == (5,)
    assert bench_models.parse_args(["--optimizer", "fused_adam"]).optimizer == "fused_adam"
    optimizer = bench_models.OPTIMIZERS[args.optimizer]()
    assert type(optimizer) is type(tf_keras.optimizers.get("adam"))
    assert isinstance(bench_models.OPTIMIZERS["fused_adam"](), tf_keras.optimizers.legacy.Optimizer)
    for bad in (
        ["--predict_samples", "0"],
        ["--predict_batch_size", "0"],
        ["--predict_rounds", "0"],
    ):
        with pytest.raises(SystemExit):
            bench_models.parse_args(bad)


def test_profile_step_attributes_the_mnf_step_to_layers_and_parts():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "profile_step.py"),
            "--batch_size=8",
            "--steps=2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ")]
    parts = {(row[0].strip("| "), row[1], row[2]) for row in rows if len(row) == 5}
    for layer in ("conv2dmnf", "conv2dmnf_1", "dense_mnf", "dense_mnf_1"):
        for phase in ("forward", "backward"):
            for part in ("sampling", "q flow", "KL"):
                assert (layer, phase, part) in parts, (layer, phase, part)
    assert ("-", "update", "optimizer") in parts
    assert "| MnfConv2DLocalReparam |" in done.stdout  # the fused conv step ran
