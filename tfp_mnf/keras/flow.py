"""A standalone normalizing flow as a Keras 3 layer: one variable, a `tfb.Bijector`."""

from __future__ import annotations

import keras

from tfp_mnf.layers.flow import FlowLogic, flow_factory


@keras.saving.register_keras_serializable(package="tfp_mnf")
class Flow(FlowLogic, keras.layers.Layer):
    __doc__ = FlowLogic.__doc__


make_flow = flow_factory(Flow)
