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
