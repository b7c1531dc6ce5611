"""The MNF layer flags shared by the example scripts: every one defaults to the layer's own."""

from absl import flags

from tfp_mnf import arguments
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
_DEFAULTS = {a.name: a for a in arguments.MNF_ARGUMENTS}


def define_mnf_flags() -> None:
    """Defines the flags named in `MNF_LAYER_FLAGS`, with the layers' defaults and docs."""
    for name in MNF_LAYER_FLAGS:
        argument = _DEFAULTS[name]
        if name in ("q_flow", "r_flow"):
            flags.DEFINE_enum(name, argument.default, list(FLOW_KINDS), argument.doc)
        elif isinstance(argument.default, int):
            flags.DEFINE_integer(name, argument.default, argument.doc)
        else:
            flags.DEFINE_float(name, argument.default, argument.doc)


def mnf_layer_kwargs() -> dict:
    """The MNF layer keyword arguments given by the parsed flags."""
    return {name: flags.FLAGS[name].value for name in MNF_LAYER_FLAGS}
