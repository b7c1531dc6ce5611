"""The two Keras front-ends as test namespaces, for the `frontend` fixture and the workers.

`FRONTENDS["tf_keras"]` is `tfp_mnf.layers` on tf_keras, `FRONTENDS["keras3"]` is
`tfp_mnf.keras` on Keras 3. A `Frontend` gives the front-end's layers and helpers
(`F.DenseMNF`, `F.posterior_mean`, ...) and its Keras (`F.Sequential`, `F.Input`,
`F.optimizers`, ...) under the same names, plus what differs between them: the save
formats that load back, `save`/`load`, and a variable's unique name.

`EVERY_FRONTEND` is what the costliest duplicates (bit-determinism in two processes, a
second training run, the extreme initial scales, the composite reload and the in-process
h5 round trip) run for: tf_keras alone by default, both front-ends when the environment sets
TFP_MNF_ALL_FRONTENDS=1. The default run covers the same Keras 3 code through their
cheaper siblings, keeping the suite within its time budget.
"""

import dataclasses
import os
from types import ModuleType

import keras
import tf_keras

import tfp_mnf.keras
import tfp_mnf.keras.models
import tfp_mnf.layers
import tfp_mnf.models


@dataclasses.dataclass(frozen=True)
class Frontend:
    """One Keras front-end of tfp_mnf.

    Attributes:
      name: "tf_keras" or "keras3" (the test ids).
      keras: the Keras module.
      layers: the front-end's layer module (`tfp_mnf.layers` or `tfp_mnf.keras`).
      models: its ready-made models (`tfp_mnf.models` or `tfp_mnf.keras.models`).
      formats: the `model.save` formats whose files `load_model` restores.
    """

    name: str
    keras: ModuleType
    layers: ModuleType
    models: ModuleType
    formats: tuple[str, ...]

    def __getattr__(self, name):
        """The front-end's layers and helpers first, then its Keras' top-level names."""
        if hasattr(self.layers, name):
            return getattr(self.layers, name)
        return getattr(self.keras, name)

    def model_path(self, directory, fmt):
        """Where a model of save format `fmt` goes in `directory` (a pathlib.Path)."""
        return str(directory / ("savedmodel" if fmt == "tf" else f"model.{fmt}"))

    def save(self, model, path, fmt):
        """`model.save` in format `fmt` ("keras", "h5" or, for tf_keras, "tf")."""
        if self.keras is tf_keras:
            model.save(path, save_format=None if fmt == "keras" else fmt)
        else:
            model.save(path)

    def load(self, path, fmt):
        """`load_model` of a file saved by `save`."""
        if self.keras is tf_keras and fmt == "keras":
            return tf_keras.models.load_model(path, safe_mode=False)
        return self.keras.models.load_model(path)

    def register(self, fn, package):
        """Registers `fn` as serializable with this front-end's Keras; returns it."""
        return self.keras.saving.register_keras_serializable(package=package)(fn)

    @staticmethod
    def variable_name(variable):
        """A name unique within a model (Keras 3 names omit the layer; paths include it)."""
        return getattr(variable, "path", variable.name)


FRONTENDS = {
    "tf_keras": Frontend(
        "tf_keras", tf_keras, tfp_mnf.layers, tfp_mnf.models, ("keras", "h5", "tf")
    ),
    "keras3": Frontend("keras3", keras, tfp_mnf.keras, tfp_mnf.keras.models, ("keras", "h5")),
}

EVERY_FRONTEND = list(FRONTENDS) if os.environ.get("TFP_MNF_ALL_FRONTENDS") == "1" else ["tf_keras"]
