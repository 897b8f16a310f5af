"""Run a program as on a machine without TensorFlow: `import tensorflow` fails and
`importlib.util.find_spec("tensorflow")` finds nothing.

    KERAS_BACKEND=jax python tests/without_tensorflow.py examples/train_cifar.py [flags ...]
"""

import importlib.util
import os
import runpy
import sys

_find_spec = importlib.util.find_spec


def find_spec(name, package=None):
    if name == "tensorflow" or name.startswith("tensorflow."):
        return None
    return _find_spec(name, package)


class BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
importlib.util.find_spec = find_spec
sys.meta_path.insert(0, BlockTensorFlow())
sys.argv = sys.argv[1:]
# As `python SCRIPT` would: the script's folder first, not this one (tests/keras would shadow keras).
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
