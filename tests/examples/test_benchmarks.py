"""The benchmark scripts run end to end at their smallest settings and write sound JSON."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytest.importorskip("jax")
pytest.importorskip("torch")


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_peers_times_a_keras_row_its_pytorch_peer_and_the_program_end_to_end(tmp_path):
    output = tmp_path / "peers.json"
    # A smoke test: XLA's cheapest optimisation level halves the compile times, and the figures
    # need only be sound, not fast.
    env = dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "peers.py"), "--tiny", "--sizes", "vit_mini",
         "--steps", "2", "--warmup", "1", "--rounds", "1", "--backends", "jax", "--precisions", "float32",
         "--no-compile", "--output", str(output)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result["errors"] == []
    rows = {(r["framework"], r["mode"]): r for r in result["rows"]}
    assert set(rows) == {("keras-jax", "train_on_batch"), ("pytorch", "eager")}
    for row in rows.values():
        assert row["size"] == "vit_mini" and row["precision"] == "float32" and row["batch_size"] == 8
        for key in ("images_per_s", "step_median_s", "mfu", "compile_seconds", "peak_memory_bytes",
                    "forward_gflops_per_image", "peak_tflops", "parameters"):
            assert _positive(row[key]), (key, row)
        assert math.isclose(row["images_per_s"], 8 / row["step_median_s"])
    keras_row, torch_row = rows["keras-jax", "train_on_batch"], rows["pytorch", "eager"]
    assert torch_row["peer"] in ("timm", "plain PyTorch (timm not importable)")
    if torch_row["peer"] != "timm":  # the plain PyTorch ViT is drloc's ViT: as many parameters
        assert torch_row["parameters"] == keras_row["parameters"]
    assert math.isclose(keras_row["vs_pytorch_eager"], keras_row["images_per_s"] / torch_row["images_per_s"])
    assert keras_row["vs_torch_compile"] is None  # --no-compile
    [e2e] = result["end_to_end"]
    assert e2e["backend"] == "jax" and e2e["size"] == "vit_mini" and e2e["epoch_images"] == 16
    for key in ("fit_images_per_s", "train_on_batch_images_per_s", "fit_over_train_on_batch"):
        assert _positive(e2e[key]), (key, e2e)
    assert all(_positive(s) for s in e2e["first_call_seconds"].values())
    assert e2e["augmentation"]["randaugment"] and e2e["augmentation"]["mixup"] > 0
    assert math.isclose(e2e["fit_over_train_on_batch"], e2e["fit_images_per_s"] / e2e["train_on_batch_images_per_s"])
    assert "| vit_mini | 32 | float32 | Keras (jax) |" in done.stdout  # the markdown table
