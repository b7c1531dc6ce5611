"""Normalizing flows on TFP bijectors, Keras-free: the `Planar` bijector and MNF's flows."""

from tfp_mnf.bijectors.flow import FLOW_KINDS, NormalizingFlow
from tfp_mnf.bijectors.planar import Planar

__all__ = ["FLOW_KINDS", "NormalizingFlow", "Planar"]
