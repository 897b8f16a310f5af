"""The JAX persistent compilation cache of the training program (drloc_keras.compilation_cache):
where it lives, how it is turned off, and that a second identical run compiles nothing new."""

import json
import os
import subprocess
import sys

import pytest

from drloc_keras import compilation_cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("setting,expected", [
    ("off", None), ("OFF", None), ("0", None), ("none", None), ("", None),
    ("{tmp}/cache", "{tmp}/cache"),
])
def test_the_environment_variable_moves_or_turns_off_the_cache(setting, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("DRLOC_COMPILATION_CACHE", setting.format(tmp=tmp_path))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax-own"))
    assert compilation_cache.folder() == (None if expected is None else expected.format(tmp=tmp_path))


def test_unset_it_takes_jax_own_setting_else_a_folder_per_user(tmp_path, monkeypatch):
    monkeypatch.delenv("DRLOC_COMPILATION_CACHE", raising=False)
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax-own"))
    assert compilation_cache.folder() == str(tmp_path / "jax-own")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache.folder() == str(tmp_path / "xdg" / "drloc" / "jax-compilation")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compilation_cache.folder() == str(tmp_path / "home" / ".cache" / "drloc" / "jax-compilation")


def _run(output, cache):
    argv = ["--dataset", "synthetic", "--synthetic-train-size", "32", "--synthetic-test-size", "16",
            "--image-size", "16", "--batch-size", "16", "--epochs", "1", "--backbone", "vit",
            "--backbone-args", json.dumps({"embed_dim": 16, "depth": 1, "num_heads": 2}), "--sample-size", "8",
            "--output", str(output), "--verbose", "0"]
    # Every program is written, however fast it compiled (by default those under 0.1 s are not,
    # and a busy machine could move one across that line between the two runs).
    env = dict(os.environ, KERAS_BACKEND="jax", DRLOC_COMPILATION_CACHE=str(cache), TF_CPP_MIN_LOG_LEVEL="3",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_cifar.py"), *argv], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_second_identical_run_finds_every_program_compiled(tmp_path):
    """The first run writes its compiled programs; the second, the same settings in another run
    folder, finds all of them (it adds no entry: a program with a run-specific constant would)."""
    cache = tmp_path / "cache"
    _run(tmp_path / "first", cache)
    written = set(os.listdir(cache))
    assert written, "the first run wrote nothing to the cache"
    _run(tmp_path / "second", cache)
    assert set(os.listdir(cache)) == written
