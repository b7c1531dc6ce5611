"""MNF Bayesian tf_keras layers, drop-in for the corresponding `tfp.layers`."""

from tfp_mnf.layers.base import MNFLayer
from tfp_mnf.layers.conv import Conv1DMNF, Conv2DMNF, Conv3DMNF, ConvMNF
from tfp_mnf.layers.dense import DenseMNF
from tfp_mnf.layers.divergence import ScaledKL
from tfp_mnf.layers.flow import Flow, make_flow
from tfp_mnf.layers.mode import mnf_layers, posterior_mean

__all__ = [
    "Conv1DMNF",
    "Conv2DMNF",
    "Conv3DMNF",
    "ConvMNF",
    "DenseMNF",
    "Flow",
    "MNFLayer",
    "ScaledKL",
    "make_flow",
    "mnf_layers",
    "posterior_mean",
]
