"""Bazel test: loads the Bazel-built op library with `tf.load_op_library` and runs one op.

The BUILD target passes the library's path in `TFP_MNF_OPS_LIBRARY`, the variable the ops
loader honours. The op tests proper live in tests/test_ops.py; this only checks that the Bazel
build links and registers working kernels.
"""

import os

import tensorflow as tf


class MnfOpsLoadTest(tf.test.TestCase):
    """Runs MnfConvLocalReparamEpilogue: out = mu * z + sqrt(var) * eps (Algorithm 1)."""

    def setUp(self) -> None:
        super().setUp()
        self.ops = tf.load_op_library(os.environ["TFP_MNF_OPS_LIBRARY"])

    def test_mean_scaled_by_z_per_example_and_channel(self) -> None:
        mu = tf.reshape(tf.range(2 * 3 * 4 * 5, dtype=tf.float32), [2, 3, 4, 5])
        z = tf.random.stateless_uniform([2, 5], seed=[1, 2])
        out = self.ops.mnf_conv_local_reparam_epilogue(
            mu=mu, var=tf.zeros_like(mu), z=z, seed=tf.constant([3, 4], tf.int64)
        )
        self.assertAllClose(out, mu * z[:, None, None, :], rtol=1e-6, atol=0.0)

    def test_noise_is_the_stateless_normal_stream_of_the_seed(self) -> None:
        shape = [2, 3, 4, 5]
        seed = tf.constant([7, 11], tf.int64)
        out = self.ops.mnf_conv_local_reparam_epilogue(
            mu=tf.zeros(shape), var=tf.fill(shape, 4.0), z=tf.ones([2, 5]), seed=seed
        )
        eps = tf.random.stateless_normal(shape, seed=seed)
        self.assertAllClose(out, 2.0 * eps, rtol=1e-5, atol=1e-5)


if __name__ == "__main__":
    tf.test.main()
