"""Each MNF layer packs its small parameters: few variables for an optimizer, all trained."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_mnf import models, parameters
from tfp_mnf.layers import Conv2DMNF, DenseMNF


def _built(layer, shape):
    layer.build(shape)
    return layer


def test_mnf_lenet_has_three_trainable_variables_per_layer():
    model = models.MNFLeNet(kl_scale=1e-4, seed=0)
    assert len(model.trainable_variables) == 12
    assert len(model.variables) == 16  # + one packed prior per layer, not trainable


def test_learned_priors_add_one_trainable_variable():
    layer = _built(DenseMNF(3, learn_prior=True), (None, 4))
    assert [v.name.split("/")[-1] for v in layer.trainable_variables] == [
        "kernel_mean:0",
        "kernel_log_std:0",
        "posterior_parameters:0",
        "prior_parameters:0",
    ]


def test_parameter_values_and_assign_parameters_round_trip():
    layer = _built(Conv2DMNF(4, 3, seed=2), (None, 6, 6, 2))
    values = layer.parameter_values()
    assert {
        "bias_mean",
        "q0_mean",
        "r_b2",
        "q_flow_0/hidden/kernel",
        "r_flow_1/output/bias",
    } <= set(values)
    before = layer.posterior_parameters.numpy().copy()
    layer.assign_parameters(bias_mean=np.arange(4.0), kernel_prior_log_var=np.full(4, 0.5))
    np.testing.assert_array_equal(layer.bias_mean, np.arange(4.0))
    np.testing.assert_array_equal(layer.kernel_prior_log_var, np.full(4, 0.5))
    after = layer.parameter_values()
    for name, value in values.items():
        if name not in ("bias_mean", "kernel_prior_log_var"):
            np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert not np.array_equal(layer.posterior_parameters.numpy(), before)


def test_assign_parameters_names_bad_arguments():
    layer = _built(DenseMNF(3), (None, 4))
    with pytest.raises(ValueError, match=r"unknown parameters \['bias'\]"):
        layer.assign_parameters(bias=np.zeros(3))
    with pytest.raises(ValueError, match="'bias_mean' must have shape"):
        layer.assign_parameters(bias_mean=np.zeros(4))


def test_a_file_of_the_old_weights_format_gets_a_clear_error():
    layer = _built(DenseMNF(3), (None, 4))
    old_store = {str(i): np.zeros(1) for i in range(11)}
    with pytest.raises(ValueError, match="holds 11 variables.*tfp_mnf 0.1"):
        layer.load_own_variables(old_store)


def test_pack_checks_and_unpacks_in_order():
    pack = parameters.ParameterPack()
    pack.add("a", [2, 3], parameters.constant([2, 3], 1.0))
    pack.add("b", [], parameters.constant([], 2.0))
    assert pack.size == 7 and pack.names == ["a", "b"]
    packed = pack.initializer((7,))
    np.testing.assert_array_equal(packed, [1, 1, 1, 1, 1, 1, 2])
    assert pack.unpack(packed)["a"].shape == (2, 3)
    with pytest.raises(ValueError, match="shape"):
        pack.initializer((6,))
    with pytest.raises(ValueError, match="declared twice"):
        pack.add("a", [1], parameters.constant([1], 0.0))


def test_seeded_initial_values_are_reproducible_and_unseeded_ones_differ():
    def packed(seed):
        return _built(DenseMNF(3, seed=seed), (None, 4)).posterior_parameters.numpy()

    np.testing.assert_array_equal(packed(5), packed(5))
    assert not np.array_equal(packed(5), packed(6))
    assert not np.array_equal(packed(None), packed(None))


@pytest.mark.parametrize("regime", ["eager", "graph"])
def test_the_layers_prior_takes_the_sums_form_in_every_regime(regime):
    """The kernel prior's parameters vary along z only, so the KL uses the kernel moments'
    sums (no pass over the kernel) eagerly and in a graph alike."""
    layer = _built(DenseMNF(3, seed=1), (None, 4))

    def forms():
        prior = layer.kernel_prior.distribution.distribution
        post = layer.posterior
        return [post._as_z_vector(t) is not None for t in (prior.loc, tf.square(prior.scale))]

    if regime == "graph":
        result = []
        tf.function(lambda: result.extend(forms()) or tf.constant(0))()
    else:
        result = forms()
    assert result == [True, True]
    assert layer.kernel_prior.event_shape == (4, 3)
