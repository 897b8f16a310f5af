"""drloc_keras: DRLoc for Keras 3 (TensorFlow, JAX and PyTorch backends).

After `import drloc_keras`, `keras.saving.load_model` reads drloc's saved models: drloc's
layers, models, optimizer and schedules are registered with Keras' serialization as soon as
Keras is imported (at once if it already is, else when it is). The package itself loads its
parts on first use, so that `import drloc_keras.options` (a program's flags and defaults) and
`drloc_keras.catalog` (backbone and dataset names) answer without starting Keras or a
framework: `--help` in a fraction of a second. `drloc_keras.load_model(path)` loads a saved
`.keras` file in one call.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Augmentation": "drloc_keras.augmentation",
    "DRLocHead": "drloc_keras.head",
    "DRLocModel": "drloc_keras.model",
    "split_backbone_output": "drloc_keras.model",
    "load_model": "drloc_keras.run_folder",
    "register_keras_objects": "drloc_keras.run_folder",
}
_SUBMODULES = ("augmentation", "backbones", "catalog", "data", "distribute", "head", "initializers", "losses", "model",
               "offsets", "optimizers", "options", "pipeline", "recipe", "replicas", "results", "run", "run_folder",
               "schedules", "streams", "study")

__all__ = ["Augmentation", "backbones", "DRLocHead", "DRLocModel", "load_model", "losses", "register_keras_objects",
           "schedules", "split_backbone_output"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"drloc_keras.{name}")
    else:
        raise AttributeError(f"module 'drloc_keras' has no attribute {name!r}")
    globals()[name] = value
    if _pending:  # Keras came in with this module, while it was still running: register now
        _register()
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))


_pending = False


def _initializing():
    """Whether a drloc_keras module is still running its code (it imported Keras)."""
    return any(getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(sys.modules.items()) if name.startswith("drloc_keras."))


class _RegisterWhenReady(importlib.abc.MetaPathFinder):
    """Registers drloc's classes at the first import after the drloc module that brought in
    Keras has finished (registering while it runs would import it half-done)."""

    def find_spec(self, name, path=None, target=None):
        if _pending and not _initializing():
            _register()
        return None


def _register():
    global _pending
    if _initializing():
        _pending = True
        if not any(isinstance(finder, _RegisterWhenReady) for finder in sys.meta_path):
            sys.meta_path.insert(0, _RegisterWhenReady())  # before the finders that find modules
        return
    _pending = False
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _RegisterWhenReady)]
    try:
        importlib.import_module("drloc_keras.run_folder").register_keras_objects()
    except Exception as e:  # never break the user's `import keras`
        warnings.warn(f"drloc_keras could not register its Keras classes ({type(e).__name__}: {e}); "
                      f"keras.saving.load_model will not know them", stacklevel=2)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Finds `keras` through the other finders and registers drloc's classes once Keras'
    own module has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_keras = spec.loader.exec_module

        def exec_module(module):
            run_keras(module)
            _register()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    _register()
elif not any(isinstance(finder, _RegisterAfterKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKeras())
