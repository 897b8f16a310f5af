"""drloc_keras: DRLoc for Keras 3 (TensorFlow, JAX and PyTorch backends).

The package loads its parts on first use: `import drloc_keras` imports neither Keras nor a
framework, so that a program can list its choices (`drloc_keras.options`,
`drloc_keras.catalog`) in a fraction of a second. `from drloc_keras import DRLocModel`, or
any other name below, imports Keras and registers drloc's layers, models, optimizer and
schedules with Keras' serialization; `drloc_keras.load_model(path)` does that and loads a
saved `.keras` file (`keras.saving.load_model` alone does not know drloc's classes).
"""

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "DRLocHead": "drloc_keras.head",
    "DRLocModel": "drloc_keras.model",
    "split_backbone_output": "drloc_keras.model",
    "load_model": "drloc_keras.run_folder",
    "register_keras_objects": "drloc_keras.run_folder",
}
_SUBMODULES = ("backbones", "catalog", "data", "distribute", "head", "losses", "model", "optimizers",
               "options", "pipeline", "recipe", "replicas", "run", "run_folder", "schedules")

__all__ = ["backbones", "DRLocHead", "DRLocModel", "load_model", "losses", "register_keras_objects",
           "schedules", "split_backbone_output"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"drloc_keras.{name}")
    else:
        raise AttributeError(f"module 'drloc_keras' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))
