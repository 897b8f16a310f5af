"""A saved model loads in a fresh process after nothing but `import drloc_keras`."""

import os
import subprocess
import sys

import keras
import numpy as np

from drloc_keras import DRLocModel, backbones


def test_a_saved_drloc_model_loads_in_a_new_process(tmp_path):
    backbone = backbones.get("cvt", image_size=16, num_classes=3, embed_dims=(8, 16, 16),
                             num_heads=(1, 2, 2), depths=(1, 1, 1))
    model = DRLocModel(backbone, sample_size=4, hidden=8)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model.predict(x, verbose=0))
    model.save(tmp_path / "model.keras")
    code = (
        "import sys, numpy as np, keras, drloc_keras\n"
        "d = sys.argv[1]\n"
        "model = keras.saving.load_model(d + '/model.keras')\n"
        "got = model.predict(np.load(d + '/x.npy'), verbose=0)\n"
        "np.testing.assert_allclose(got, np.load(d + '/expected.npy'), rtol=1e-6, atol=1e-6)\n"
        "assert type(model).__name__ == 'DRLocModel', type(model)\n"
    )
    env = {"KERAS_BACKEND": keras.backend.backend()}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                            text=True, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_way_of_importing_drloc_registers_its_classes_without_a_warning(tmp_path):
    """Whichever drloc module is imported first (and so brings in Keras half-way through its
    own code), `keras.saving.load_model` reads a saved DRLocModel, and nothing warns."""
    backbone = backbones.get("vit", image_size=8, num_classes=2, patch_size=4, embed_dim=8, depth=1,
                             num_heads=1)
    DRLocModel(backbone, sample_size=2, hidden=4).save(tmp_path / "model.keras")
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    for first in ("from drloc_keras import DRLocModel", "from drloc_keras.model import DRLocModel",
                  "from drloc_keras.augmentation import RandAugment"):
        code = (f"import warnings; warnings.filterwarnings('error', 'drloc_keras could not register')\n"
                f"{first}\nimport sys, keras\n"
                f"model = keras.saving.load_model(sys.argv[1])\n"
                f"assert type(model).__name__ == 'DRLocModel', type(model)\n")
        result = subprocess.run([sys.executable, "-c", code,
                                 str(tmp_path / "model.keras")], capture_output=True, text=True, env=env)
        assert result.returncode == 0, (first, result.stderr[-3000:])
        assert "could not register" not in result.stderr, first
