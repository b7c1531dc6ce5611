"""Empty batches: the right output shape and finite KLs on every op path, whatever TF's conv does.

TensorFlow's oneDNN convolution returns a wrong shape for a zero-size batch on AVX-512 CPUs.
`faulty_tf_convolution` reproduces that on any CPU, so the tests show that no path trusts
TensorFlow's kernel for an empty batch.
"""

import numpy as np
import pytest
import tensorflow as tf

from tfp_mnf import layers, ops

CONV_CASES = [  # x shape, kernel shape, strides, padding, dilations, output shape
    ((0, 9, 3), (3, 3, 4), (1,), "SAME", (1,), (0, 9, 4)),
    ((0, 6, 6, 3), (3, 3, 3, 4), (1, 1), "SAME", (1, 1), (0, 6, 6, 4)),
    ((0, 9, 7, 3), (3, 2, 3, 5), (2, 1), "VALID", (1, 1), (0, 4, 6, 5)),
    ((0, 5, 5, 5, 2), (2, 2, 2, 2, 3), (1, 1, 1), "VALID", (1, 1, 1), (0, 4, 4, 4, 3)),
]


@pytest.fixture
def faulty_tf_convolution(monkeypatch):
    """Makes `tf.nn.convolution` return the input's channel count for an empty batch."""
    real = tf.nn.convolution

    def convolution(x, filters, **kwargs):
        out = real(x, filters, **kwargs)
        wrong = tf.concat([tf.shape(out)[:-1], tf.shape(x)[-1:]], axis=0)
        if x.shape[0] is not None:
            return tf.zeros(wrong, out.dtype) if x.shape[0] == 0 else out
        return tf.cond(tf.shape(x)[0] > 0, lambda: out, lambda: tf.zeros(wrong, out.dtype))

    monkeypatch.setattr(tf.nn, "convolution", convolution)


def test_the_emulation_is_faulty(faulty_tf_convolution):
    out = tf.nn.convolution(tf.zeros([0, 6, 6, 3]), tf.zeros([3, 3, 3, 4]), padding="SAME")
    assert out.shape == (0, 6, 6, 3)


def _value_and_grads(fn, x, kernel):
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        out = fn(x, kernel)
        loss = tf.reduce_sum(out)
    return out, tape.gradient(loss, [x, kernel])


@pytest.mark.parametrize("x_shape, k_shape, strides, padding, dilations, out_shape", CONV_CASES)
@pytest.mark.parametrize("regime", ["eager", "graph_unknown_batch"])
def test_convolution_of_an_empty_batch(
    faulty_tf_convolution, x_shape, k_shape, strides, padding, dilations, out_shape, regime
):
    conv = dict(strides=strides, padding=padding, dilations=dilations)
    x, kernel = tf.zeros(x_shape), tf.random.normal(k_shape)
    fn = lambda x, k: ops.convolution(x, k, **conv)  # noqa: E731
    if regime == "graph_unknown_batch":
        specs = [tf.TensorSpec([None, *x_shape[1:]]), tf.TensorSpec(k_shape)]
        fn = tf.function(fn, input_signature=specs)
    out, (grad_x, grad_kernel) = _value_and_grads(fn, x, kernel)
    assert out.shape == out_shape
    assert grad_x.shape == x_shape
    np.testing.assert_array_equal(grad_kernel, np.zeros(k_shape))


def test_convolution_of_a_nonempty_unknown_batch_is_tf_convolution(faulty_tf_convolution):
    x, kernel = tf.random.normal([3, 6, 6, 3]), tf.random.normal([3, 3, 3, 4])
    fn = tf.function(
        lambda x: ops.convolution(x, kernel, strides=(1, 1), padding="SAME", dilations=(1, 1)),
        input_signature=[tf.TensorSpec([None, 6, 6, 3])],
    )
    want = tf.nn.convolution(x, kernel, padding="SAME")
    np.testing.assert_allclose(fn(x), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("x_shape, k_shape, strides, padding, dilations, out_shape", CONV_CASES)
def test_conv_local_reparam_of_an_empty_batch(
    faulty_tf_convolution, op_path, x_shape, k_shape, strides, padding, dilations, out_shape
):
    conv = dict(strides=strides, padding=padding, dilations=dilations)
    channels = k_shape[-1]
    args = [
        tf.zeros(x_shape),
        tf.random.normal(k_shape),
        tf.fill(k_shape, 1e-3),
        tf.zeros([channels]),
        tf.fill([channels], 1e-3),
        tf.ones([0, channels]),
    ]
    with tf.GradientTape() as tape:
        tape.watch(args)
        out = ops.conv_local_reparam(*args, tf.constant([1, 2]), **conv)
        loss = tf.reduce_sum(out)
    grads = tape.gradient(loss, args)
    assert out.shape == out_shape
    assert [g.shape for g in grads] == [a.shape for a in args]


def _layer_cases():
    return [
        (lambda: layers.DenseMNF(3, seed=1), (7,), (3,)),
        (lambda: layers.Conv1DMNF(4, 3, padding="same", seed=1), (9, 2), (9, 4)),
        (lambda: layers.Conv2DMNF(4, 3, seed=1), (6, 6, 3), (4, 4, 4)),
        (lambda: layers.Conv2DMNF(4, 3, padding="same", seed=1), (6, 6, 3), (6, 6, 4)),
        (lambda: layers.Conv3DMNF(3, 2, seed=1), (4, 4, 4, 2), (3, 3, 3, 3)),
    ]


@pytest.mark.parametrize("make, in_shape, out_shape", _layer_cases())
@pytest.mark.parametrize("regime", ["eager", "graph_unknown_batch"])
@pytest.mark.parametrize("sample", [True, False])
def test_layer_on_an_empty_batch(
    faulty_tf_convolution, op_path, make, in_shape, out_shape, regime, sample
):
    layer = make()
    layer.build((None, *in_shape))

    def call(x):
        with tf.GradientTape() as tape:
            out = layer(x, sample=sample)
            loss = tf.reduce_sum(out) + tf.add_n([tf.constant(0.0), *layer.losses])
        grads = tape.gradient(loss, layer.trainable_variables)
        return out, layer.losses, grads

    if regime == "graph_unknown_batch":
        call = tf.function(call, input_signature=[tf.TensorSpec([None, *in_shape])])
    out, losses, grads = call(tf.zeros([0, *in_shape]))
    assert out.shape == (0, *out_shape)
    assert len(losses) == (1 if sample else 0)
    for kl in losses:
        assert np.isfinite(kl.numpy())
    for grad, variable in zip(grads, layer.trainable_variables, strict=True):
        if grad is not None:
            assert grad.shape == variable.shape
            assert np.all(np.isfinite(tf.convert_to_tensor(grad).numpy())), variable.name
