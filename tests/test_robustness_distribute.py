"""Distribution strategies: MirroredStrategy over 2 logical CPUs and MultiWorkerMirrored
with two local workers, each in fresh processes (logical devices and TF_CONFIG must be set
before TensorFlow initializes).

Keras sums `model.losses` per replica and scales them by 1 / replicas, so the KL counts once
per step: the 2-replica losses match a single-device run on the same data and seed (within
the noise of different per-replica samples), while a KL counted per replica would add the
whole KL/N again. MirroredStrategy runs for the tf_keras and the Keras 3 front-end,
MultiWorkerMirrored for tf_keras.
"""

import json
import socket

import numpy as np
import pytest
from _frontends import FRONTENDS
from _robustness import finish, start


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("frontend", list(FRONTENDS))
def test_mirrored_strategy_counts_the_kl_once(tmp_path, frontend):
    finish(
        start("replicas", tmp_path, "1", frontend=frontend),
        start("replicas", tmp_path, "2", frontend=frontend),
    )
    one, two = (json.loads((tmp_path / f"replicas_{n}.json").read_text()) for n in (1, 2))
    assert (one["replicas"], two["replicas"]) == (1, 2)
    kl = one["initial_kl"]
    assert kl > 1.0  # the KL term is large enough to show a double count
    for a, b in [
        (one["initial_loss"], two["initial_loss"]),
        *zip(one["losses"], two["losses"], strict=True),
    ]:
        assert np.isfinite(b)
        assert abs(a - b) < 0.05 * kl, (a, b, kl)


def test_multi_worker_mirrored_strategy_trains_with_two_local_workers(tmp_path):
    hosts = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        env = {"TF_CONFIG": json.dumps(tf_config)}
        procs.append(start("mwms", tmp_path, str(index), env=env))
    finish(*procs, timeout=400)
    results = [json.loads((tmp_path / f"mwms_{i}.json").read_text()) for i in range(2)]
    assert [r["replicas"] for r in results] == [2, 2]
    for r in results:
        assert np.all(np.isfinite(r["losses"]))
    np.testing.assert_allclose(results[0]["losses"], results[1]["losses"], rtol=1e-5)
