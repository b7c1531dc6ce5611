"""The MNF layer flags shared by the example scripts (flow kinds and counts, inits)."""

from absl import flags

from tfp_mnf.bijectors import FLOW_KINDS

MNF_LAYER_FLAGS = (
    "q_flow",
    "num_q_flows",
    "r_flow",
    "num_r_flows",
    "flow_hidden_units",
    "kernel_log_std_init",
    "z_log_var_init",
)


def define_mnf_flags() -> None:
    """Defines the flags named in `MNF_LAYER_FLAGS`."""
    flags.DEFINE_enum("q_flow", "realnvp", list(FLOW_KINDS), "Flow of q(z).")
    flags.DEFINE_integer("num_q_flows", 2, "Number of q(z) flow layers.")
    flags.DEFINE_enum("r_flow", "realnvp", list(FLOW_KINDS), "Flow of r(z|W).")
    flags.DEFINE_integer("num_r_flows", 2, "Number of r(z|W) flow layers.")
    flags.DEFINE_integer("flow_hidden_units", 50, "Hidden units of each flow's network.")
    flags.DEFINE_float(
        "kernel_log_std_init", -5.0, "MNF weight log-std init (the layer default is -9)."
    )
    flags.DEFINE_float(
        "z_log_var_init", -3.0, "MNF q(z0) log-variance init (the layer default is -5)."
    )


def mnf_layer_kwargs() -> dict:
    """The MNF layer keyword arguments given by the parsed flags."""
    return {name: flags.FLAGS[name].value for name in MNF_LAYER_FLAGS}
