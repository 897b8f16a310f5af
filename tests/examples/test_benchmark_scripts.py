"""Smoke tests of the compile-time and compilation-cache benchmarks: they run, at tiny sizes, and
write what their docstrings promise (the figures are measured in docs/benchmarks.md, not here)."""

import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_compile_time_reports_the_step_and_each_part(tmp_path):
    out = tmp_path / "compile.json"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "compile_time.py"), "--before", "none",
                           "--backends", "jax", "--families", "vit", "--sizes", "tiny", "--batch-size", "4",
                           "--output", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["backend"] == "jax" and row["model"] == "vit (tiny)" and "error" not in row
    for part in ("step", "backbone", "drloc", "augmentation", "optimizer"):
        assert math.isfinite(row[part]) and row[part] > 0, (part, row)
    assert "| vit (tiny) | jax | after |" in done.stdout


def test_compilation_cache_times_a_first_and_a_second_run(tmp_path):
    out = tmp_path / "cache.json"
    tiny = json.dumps({"embed_dim": 16, "depth": 1, "num_heads": 2})
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "compilation_cache.py"), "--rounds", "1",
                           "--output", str(out), "--", "--dataset", "synthetic", "--synthetic-train-size", "64",
                           "--synthetic-test-size", "16", "--image-size", "16", "--train-fraction", "1",
                           "--backbone-args", tiny],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())
    (round_,) = found["rounds"]
    assert round_["entries"] > 0 and round_["first_s"] > 0 and round_["second_s"] > 0
    assert found["ratio"] == round_["second_s"] / round_["first_s"]
