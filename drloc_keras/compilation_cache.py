"""The JAX persistent compilation cache, on by default for the training program, the studies
and the benchmarks.

XLA's compilation of a training step takes seconds on a CPU and up to a minute on a GPU
(docs/benchmarks.md). With the cache, a later run whose step has the same program (the same
model, batch shape, precision and device; the input normalisation's statistics and the random
states are inputs of the step, not constants, so runs on other subsets or seeds share it)
loads the compiled step from disk instead.

Where: `DRLOC_COMPILATION_CACHE` names the folder; `off` (or `0`, `none`, empty) turns the
cache off. Unset, JAX's own `JAX_COMPILATION_CACHE_DIR` is used when set, else a folder per
user: `$XDG_CACHE_HOME/drloc/jax-compilation` (`~/.cache/drloc/jax-compilation`). The cache
holds compiled programs only, never a run's state, so deleting it costs one compilation per
program. Other backends are left alone (TensorFlow and PyTorch have no such cache here).
"""

import os

ENVIRONMENT = "DRLOC_COMPILATION_CACHE"
OFF = ("off", "0", "none", "")
# Programs that compile faster than this are not written. JAX's default, 1 s, leaves out the
# many small programs of a run's set-up; they add up to seconds on a CPU: with 0.1 s a second
# identical run took 0.68 of the first (17 programs kept), with 0 s 0.58 (98 programs,
# 1.6 MB; docs/benchmarks.md). `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`, when set, wins.
MIN_COMPILE_SECONDS = 0.0


def default_folder():
    """The per-user cache folder: `$XDG_CACHE_HOME/drloc/jax-compilation`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "drloc", "jax-compilation")


def folder():
    """The folder the cache uses under the current environment, or None when it is off."""
    setting = os.environ.get(ENVIRONMENT)
    if setting is not None:
        return None if setting.strip().lower() in OFF else os.path.abspath(os.path.expanduser(setting))
    return os.environ.get("JAX_COMPILATION_CACHE_DIR") or default_folder()


def enable():
    """Turn the cache on for this process when Keras' backend is JAX (`folder()`); returns the
    folder, or None when the cache is off or the backend is another. Safe to call again."""
    import keras

    where = folder()
    if keras.backend.backend() != "jax" or where is None:
        return None
    import jax

    try:
        os.makedirs(where, exist_ok=True)
    except OSError as e:  # a read-only home: run without the cache rather than fail
        import warnings

        warnings.warn(f"the JAX compilation cache is off: cannot create {where} ({e}); set {ENVIRONMENT} "
                      f"to a writable folder, or to off")
        return None
    if jax.config.jax_compilation_cache_dir != where:
        jax.config.update("jax_compilation_cache_dir", where)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:  # JAX's own setting wins
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return where


__all__ = ["ENVIRONMENT", "default_folder", "enable", "folder"]
