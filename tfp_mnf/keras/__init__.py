"""MNF Bayesian layers for Keras 3 (`import keras`, or `tf.keras` in TensorFlow >= 2.16).

`DenseMNF`, `Conv1DMNF`, `Conv2DMNF`, `Conv3DMNF` have the names, arguments, variables and
maths of their tf_keras twins in `tfp_mnf.layers`: both front-ends are the one
`tfp_mnf.frontend` layer logic on their Keras' `Layer`, with that Keras' adapter
(`frontend.KerasAPI`). They work in `keras.Sequential`, functional `keras.Model`s and
subclassed models on the TensorFlow backend. `posterior_mean` and `mnf_layers` are the
functions of `tfp_mnf.layers` (they serve both front-ends), `ScaledKL` the same class
registered with Keras 3 too; `Flow` / `make_flow` is the standalone flow layer, and
`tfp_mnf.keras.models` has the ready-made `LeNet`, `MNFLeNet`, `MCDropoutLeNet`, `MNFMLP`
and `DeepEnsembleLeNet`. There is no Flipout or Reparameterization LeNet: they are built
of `tfp.layers`, which exist for tf_keras only (`tfp_mnf.models`).

Keras 3 behaviour:
- KL: every sampling call adds the divergences with `add_loss`. Keras 3 clears a model's
  losses when an outermost call starts, so `fit` adds the KL of each step's forward pass
  once; under `tf.distribute` each replica's losses are scaled by 1 / replicas before the
  gradients are summed, so the KL counts once per step there too.
- Saving: layers, `Flow`, `MCDropout`, `DeepEnsembleLeNet` and `ScaledKL` are registered
  with `keras.saving.register_keras_serializable(package="tfp_mnf")`; `model.save("m.keras")`
  (or `.h5`) and `keras.models.load_model` restore them in a process that imported
  `tfp_mnf.keras`. Divergence functions must be registered too (lambdas are refused at
  save time).
- Mixed precision (`keras.mixed_precision.set_global_policy`): variables stay float32; the
  layer reads them in their own dtype (`keras.src.backend.AutocastScope(None)`, Keras 3's
  switch of variable autocasting) for the posterior maths (z, flows, KL) and, under
  `mixed_float16`, for the local-reparameterization step; the outputs are in the compute
  dtype.
- `jit_compile`: with `compile(jit_compile=True)` the train, test and predict steps are
  traced inside XLA, where the ops policy (`tfp_mnf.ops.policy`) builds the composite path
  by itself: standard TensorFlow ops that XLA compiles, since the fused custom kernels have
  no XLA lowering. With `jit_compile=False` the steps are plain `tf.function`s and the
  policy builds the fused kernels wherever the op library has them (on a CPU, for the dense
  and 2-D conv steps, where `TFP_MNF_FUSED=auto` times them faster than the composite path
  for the step's shapes; `always` pins them). Keras 3's default `jit_compile="auto"` turns
  XLA on only when a GPU is visible and no `tf.distribute` strategy is used, so on a
  CPU-only machine it is `False`. Both settings train the same model; the noise draws
  differ (XLA has its own random-number layout, and ignores the seeds of stateful random
  ops such as the per-call seed draw).
- Optimizers: Keras 3's own (`compile("adam")`) with no special-casing; each layer has four
  variables (see `tfp_mnf.frontend`).

Importing this package also imports tf_keras (`tfp_mnf.layers`, a dependency of tfp_mnf),
where the shared implementations live.
"""

from tfp_mnf.keras import models
from tfp_mnf.keras.base import MNFLayer
from tfp_mnf.keras.conv import Conv1DMNF, Conv2DMNF, Conv3DMNF, ConvMNF
from tfp_mnf.keras.dense import DenseMNF
from tfp_mnf.keras.divergence import ScaledKL
from tfp_mnf.keras.flow import Flow, make_flow
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
    "models",
    "posterior_mean",
]
