"""tfp_mnf: Multiplicative Normalizing Flows (Louizos & Welling, 2017) for TFP users."""

__version__ = "0.1.0"
