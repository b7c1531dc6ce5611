"""Normalizing flows on TFP bijectors: the `Planar` bijector and the MNF flow factory."""

from tfp_mnf.bijectors.flow import FLOW_KINDS, Flow, make_flow
from tfp_mnf.bijectors.planar import Planar

__all__ = ["FLOW_KINDS", "Flow", "Planar", "make_flow"]
