"""The training program, the study and the offset figure on JAX and PyTorch where TensorFlow
cannot be imported (tests/without_tensorflow.py blocks it in a subprocess)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BLOCK = os.path.join(ROOT, "tests", "without_tensorflow.py")
VIT = json.dumps({"embed_dim": 16, "depth": 1, "num_heads": 2})


def without_tensorflow(backend, script, *argv, returncode=0):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_DISTRIBUTION_", "TF_CONFIG"))}
    env.update(KERAS_BACKEND=backend, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, BLOCK, os.path.join(ROOT, "examples", script), *argv],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == returncode, out.stdout[-2000:] + out.stderr[-4000:]
    return out


@pytest.mark.parametrize("script,argv", [
    ("train_cifar.py", ["--dataset", "synthetic", "--epochs", "1"]),
    ("small_data_study.py", ["--output", "unused"]),
    ("visualize_drloc.py", ["unused"]),
])
def test_the_tensorflow_backend_without_tensorflow_says_what_to_install(script, argv):
    out = without_tensorflow("tensorflow", script, *argv, returncode=2)
    assert "TensorFlow is not installed" in out.stderr
    assert 'pip install "drloc[tensorflow]"' in out.stderr and "KERAS_BACKEND=jax" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_train_study_and_figure_run_where_tensorflow_cannot_be_imported(backend, tmp_path):
    run = tmp_path / "run"
    without_tensorflow(backend, "train_cifar.py", "--dataset", "synthetic", "--backbone", "vit",
                       "--backbone-args", VIT, "--synthetic-train-size", "64", "--synthetic-test-size", "16",
                       "--image-size", "16", "--batch-size", "16", "--epochs", "2", "--sample-size", "8",
                       "--flip", "--mixup", "0.8", "--cutmix", "1.0", "--output", str(run), "--verbose", "0")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0 <= metrics["final_top1"] <= 1
    assert not (run / "tensorboard").exists()  # TensorBoard logs need TensorFlow
    out = without_tensorflow(backend, "visualize_drloc.py", str(run), "--images", "4")
    assert "mean absolute error" in out.stdout and (run / "drloc_offsets.png").exists()
    study = tmp_path / "study"
    without_tensorflow(backend, "small_data_study.py", "--output", str(study), "--backbones", "vit",
                       "--fractions", "1", "--seeds", "0", "--lams", "0", "--image-size", "16", "--epochs", "1",
                       "--batch-size", "8", "--backbone-args", json.dumps({"vit": json.loads(VIT)}),
                       "--train-args", "--synthetic-train-size 32 --synthetic-test-size 16 --sample-size 8")
    assert (study / "results.csv").exists()
