"""Smoke test of benchmarks/bench_models.py --quick: the table and the JSON (no timing asserts)."""

import json
import os
import subprocess
import sys

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
    for variant in VARIANTS:
        assert f"| 16 | {variant} |" in done.stdout
    assert "| prediction (2 samples x 50 images) | images/s | / flipout |" in done.stdout
    result = json.loads(output.read_text())
    rows = result["training"]["16"]
    assert tuple(rows) == VARIANTS
    for row in rows.values():
        assert 0 < row["min_ms"] <= row["median_ms"]
        assert row["steps"] == 3
        assert row["tracing_counts"]["train_step"] == 1, "the train step must trace once"
    assert set(result["prediction"]) == {"mnf_fused", "flipout"}
    assert all(p["images_per_s"] > 0 for p in result["prediction"].values())
    assert set(result["memory"]) == set(VARIANTS)


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
