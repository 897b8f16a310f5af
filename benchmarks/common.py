"""What the benchmark scripts share: the machine's description, models, step timing, peaks.

Every script measures in one process and reports ratios of medians: the two variants it
compares are built side by side, warmed up (compilation happens there), then timed in
alternation (A, B, A, B, ...) so that drift of the machine (clock, other load) falls on
both. One "step" is `model.train_on_batch` on a batch that already lives on the device;
it returns the logs as NumPy, so every timed step ends with the device synchronised.
"""

import datetime
import json
import os
import platform
import subprocess
import sys
import time

import keras
import numpy as np

from benchmarks import peak
from drloc_keras import DRLocModel, backbones, compilation_cache

# Steady-state figures do not depend on it; a rerun skips compiling (benchmarks/compile_time.py,
# which measures compilation, turns it off in its own processes).
compilation_cache.enable()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine():
    """Where and how a figure was measured."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": device_name(),
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
    }
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        info["jax"] = jax.__version__
    elif backend == "torch":
        import torch

        info["torch"] = torch.__version__
    elif backend == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    return info


def device_name():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}: {device.device_kind}"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"gpu: {torch.cuda.get_device_name(0)}"
        return "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu: {gpus[0].name}" if gpus else "cpu"
    return "unknown"


def on_gpu():
    return device_name().startswith("gpu")


def to_device(array):
    """A backend tensor on the default device, so that steps time no host-to-device copy."""
    return keras.ops.convert_to_tensor(array)


def sync(value):
    """Block until `value` (any nest of tensors) is computed."""
    for leaf in keras.tree.flatten(value):
        keras.ops.convert_to_numpy(leaf)


def build(name, lam, batch_size, image_size=None, num_classes=10, precision="float32", **drloc):
    """A compiled `DRLocModel` on backbone `name` and one device-resident batch for it."""
    if precision != "float32":
        keras.config.set_dtype_policy({"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[precision])
    try:
        size = backbones.resolve(name, image_size)
        image_size = backbones.SIZES[size][2]
        backbone = backbones.get(size, num_classes=num_classes)
        model = DRLocModel(backbone, lam=lam, seed=0, **drloc)
        model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    finally:
        keras.config.set_dtype_policy("float32")
    rng = np.random.default_rng(0)
    x = to_device(rng.normal(size=(batch_size, image_size, image_size, 3)).astype("float32"))
    y = to_device(rng.integers(0, num_classes, batch_size).astype("int32"))
    return model, (x, y), size


def step(model, batch):
    """One training step, synchronised: `train_on_batch` returns NumPy logs."""
    return model.train_on_batch(*batch, return_dict=True)


def timed_step(model, batch):
    start = time.perf_counter()
    logs = step(model, batch)
    seconds = time.perf_counter() - start
    if not np.isfinite(logs["loss"]):
        raise FloatingPointError(f"non-finite loss while timing: {logs}")
    return seconds


def interleaved(runs, warmup, steps):
    """Time `{key: (model, batch)}` alternately; returns `{key: [seconds per step]}`.

    Each model runs `warmup` untimed steps first (compilation, allocator growth), then
    `steps` rounds in which every model runs once, in a rotating order.
    """
    keys = list(runs)
    for key in keys:
        for _ in range(warmup):
            step(*runs[key])
    times = {key: [] for key in keys}
    for i in range(steps):
        order = keys[i % len(keys):] + keys[: i % len(keys)]
        for key in order:
            times[key].append(timed_step(*runs[key]))
    return times


def summary(seconds):
    q = np.percentile(seconds, [25, 50, 75])
    return {"median_s": float(q[1]), "q25_s": float(q[0]), "q75_s": float(q[2]), "n": len(seconds)}


def paired_ratio(with_times, without_times):
    """Median of the per-round ratios and its interquartile range: drift cancels per round."""
    ratios = np.asarray(with_times) / np.asarray(without_times)
    q = np.percentile(ratios, [25, 50, 75])
    return {"median": float(q[1]), "q25": float(q[0]), "q75": float(q[2])}


def matmul_peak(dtype="float32", n=None, repeats=10):
    """The device's measured matrix-product rate in FLOP/s, through the backend's own ops.

    The operands are made and multiplied with the framework's native API on its default
    device (no Keras op in between), so this is the ceiling the framework can reach.
    """
    n = n or (8192 if on_gpu() else 2048)
    backend = keras.backend.backend()
    host = [] if backend == "torch" else [
        np.random.default_rng(i).normal(size=(n, n)).astype("float32") for i in range(2)]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        a, b = (jax.device_put(jnp.asarray(x, dtype=dtype)) for x in host)
        product = jax.jit(jnp.matmul)

        def run():
            product(a, b).block_until_ready()

    elif backend == "torch":
        run, n = peak.torch_product(dtype, n)

    elif backend == "tensorflow":
        import tensorflow as tf

        a, b = (tf.cast(tf.constant(x), dtype) for x in host)
        def run():  # one op, run eagerly; reading one element waits for all of it
            tf.matmul(a, b)[0, 0].numpy()

    else:
        raise NotImplementedError(backend)
    return peak.rate(run, n, repeats)


def known_gflops():
    """Forward GFLOPs per image of each backbone size, from docs/backbones.json."""
    path = os.path.join(ROOT, "docs", "backbones.json")
    with open(path) as f:
        rows = json.load(f)["rows"]
    return {row["name"]: row["gflops"] for row in rows}


def peak_memory_in_subprocess(script, args, timeout=1800):
    """Run `script --child ...` in a fresh process; it prints one JSON line last."""
    command = [sys.executable, script, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_memory_bytes():
    """The process's peak memory: the device allocator's on a GPU, else the peak RSS.

    Returns `(bytes, what)`.
    """
    backend = keras.backend.backend()
    if on_gpu():
        if backend == "jax":
            import jax

            stats = jax.local_devices()[0].memory_stats()
            return int(stats["peak_bytes_in_use"]), "device allocator peak (jax memory_stats)"
        if backend == "torch":
            import torch

            return int(torch.cuda.max_memory_allocated()), "device allocator peak (torch.cuda)"
        if backend == "tensorflow":
            import tensorflow as tf

            return int(tf.config.experimental.get_memory_info("GPU:0")["peak"]), "device allocator peak (tf)"
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process peak RSS"


def compiled_step_bytes(model, batch):
    """JAX only: the memory XLA plans for one compiled training step, in bytes.

    Arguments + outputs + temporaries - aliased buffers, from the compiled step's
    `memory_analysis()`: a figure that does not depend on the allocator or the process.
    """
    import jax

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    )
    stats = jax.jit(model.train_step).lower(state, (batch[0], batch[1], None)).compile().memory_analysis()
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
               - stats.alias_size_in_bytes)


def write_json(path, payload):
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
    print(f"wrote {path}")
