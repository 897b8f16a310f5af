"""Data-parallel and multi-process training on fake CPU devices.

The number of devices must be fixed before JAX or TensorFlow starts, so every test that
needs several devices runs its own Python subprocess with its own environment:

- JAX: `JAX_NUM_CPU_DEVICES=N` gives N CPU devices;
- TensorFlow: the CPU is split into N logical devices before anything else runs
  (`tests/distribute/launch.py` does it for the training program, `DRLOC_TEST_LOGICAL_CPUS`);
- several processes: two processes on 127.0.0.1 with free ports, the coordinator or
  cluster given by `KERAS_DISTRIBUTION_*` (JAX) or `TF_CONFIG` (TensorFlow).

Every subprocess has a timeout, so a hung collective fails the test instead of hanging
the run. The tests in this file set the backend themselves: run them once.
"""

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(ROOT, "tests", "distribute", "launch.py")
TIMEOUT = 240  # seconds for one subprocess; a healthy one takes 5 to 25 here
MARK = "RESULT-JSON "

# One tiny epoch of the training program: 40 training images, 8 of them held out as the
# validation set, 32 trained on (2 steps of 16), and 18 test images, whose last batch (2
# images) does not split over 4 devices unless padded.
VIT = {"embed_dim": 16, "depth": 1, "num_heads": 2}


def program_argv(output, extra=()):
    return [
        "--dataset", "synthetic", "--synthetic-train-size", "40", "--val-fraction", "0.2", "--synthetic-test-size", "18",
        "--image-size", "16", "--batch-size", "16", "--epochs", "1", "--backbone", "vit",
        "--backbone-args", json.dumps(VIT), "--sample-size", "8", "--no-randaugment",
        "--output", str(output), "--verbose", "0", "--distribute", *extra,
    ]


OUTPUTS = ("history.csv", "metrics.json", "curves.png", "config.json", "last.keras", "best.keras",
           "state.json", "tensorboard")

# --- Subprocess helpers ---------------------------------------------------------------


def environment(backend, **extra):
    """A clean environment for one subprocess: no inherited cluster variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KERAS_DISTRIBUTION_", "JAX_", "XLA_")) and k not in ("TF_CONFIG", "KERAS_BACKEND")}
    env.update(KERAS_BACKEND=backend, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    if backend == "jax":
        env["JAX_PLATFORMS"] = "cpu"
    return env


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


def run(argv, env, expect=0):
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == expect, (
        f"exit {done.returncode}, expected {expect}\n--- stdout\n{tail(done.stdout)}\n--- stderr\n{tail(done.stderr)}"
    )
    return done


def run_script(code, env):
    """Run `code` in a fresh interpreter; it prints its result as `MARK + json`."""
    done = run([sys.executable, "-c", textwrap.dedent(code)], env)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    assert lines, f"no result printed\n{tail(done.stdout)}\n{tail(done.stderr)}"
    return json.loads(lines[-1][len(MARK):])


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_together(commands, timeout=TIMEOUT):
    """Start `(argv, env)` commands at once and wait for all; kills them all on a timeout."""
    processes = [subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for argv, env in commands]
    outputs = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=timeout)
            outputs.append(out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [(p.returncode, out) for p, out in zip(processes, outputs)]


def read_history(output):
    with open(os.path.join(output, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


def check_run_folder(output, replicas, processes):
    for name in OUTPUTS:
        assert os.path.exists(os.path.join(output, name)), name
    metrics = json.loads(open(os.path.join(output, "metrics.json")).read())
    assert metrics["epochs"] == 1 and metrics["replicas"] == replicas and metrics["processes"] == processes
    assert np.isfinite(metrics["final_loss"]) and np.isfinite(metrics["final_test_loss"])
    # 18 test images: an exact top-1 is a multiple of 1/18. The padding that makes the last
    # batch split evenly weighs 0; counted, it would give multiples of 1/32.
    correct = metrics["final_top1"] * 18
    assert abs(correct - round(correct)) < 1e-4, metrics["final_top1"]
    row = read_history(output)[0]
    for key in ("loss", "ce_loss", "drloc_loss", "lambda", "accuracy", "val_accuracy", "val_loss", "val_top5"):
        assert key in row, key
    assert float(row["lambda"]) == pytest.approx(0.5)  # ViT's lambda, not a sum over replicas
    assert not [n for n in os.listdir(output) if n.startswith(".tmp-")], "a half-written file was left"
    return metrics


# --- The model on several devices -----------------------------------------------------

# Shared by the JAX and TensorFlow scripts: a pair sampler that returns the head's
# positions, and one training step of a DRLocModel on a fixed batch.
COMMON = f"""
import json
import keras
import numpy as np
from keras import ops
from drloc_keras import DRLocModel
from drloc_keras.head import DRLocHead
from tests.keras.helpers import tiny_backbone

MARK = {MARK!r}

class PairSampler(keras.Model):
    def __init__(self):
        super().__init__()
        self.head = DRLocHead(sample_size=8, hidden=4, seed=5)

    def build(self, input_shape):
        self.head.build(input_shape)

    def call(self, features):
        p, q = self.head.sample(ops.shape(features)[0])
        return ops.concatenate([p, q], axis=-1)

def positions(n):
    return PairSampler().predict(np.zeros((n, 5, 5, 2), "float32"), batch_size=n, verbose=0)

rng = np.random.default_rng(0)
x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
y = rng.integers(0, 4, size=16)

def one_step(optimizer=None):
    keras.utils.set_random_seed(0)
    model = DRLocModel(tiny_backbone(), lam=0.5, sample_size=6, hidden=8, seed=3)
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.5))
    initial = [np.array(w) for w in model.get_weights()]
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    logs = {{k: float(v[-1]) for k, v in history.history.items()}}
    return model, logs, initial, [np.array(w) for w in model.get_weights()]

def compare(one, many):
    (_, logs_1, initial, weights_1), (_, logs_n, _, weights_n) = one, many
    return {{
        "logs_1": logs_1, "logs_n": logs_n,
        "weight_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(weights_1, weights_n)),
        "weight_change": max(float(np.max(np.abs(a - b))) for a, b in zip(initial, weights_1)),
    }}
"""


def check_same_step(result):
    logs_1, logs_n = result["logs_1"], result["logs_n"]
    assert set(logs_1) == set(logs_n) >= {"loss", "ce_loss", "drloc_loss", "lambda"}
    for key in logs_1:
        assert abs(logs_1[key] - logs_n[key]) <= 1e-5, (key, logs_1[key], logs_n[key])
    assert logs_n["lambda"] == pytest.approx(0.5)
    assert logs_n["loss"] == pytest.approx(logs_n["ce_loss"] + 0.5 * logs_n["drloc_loss"], abs=1e-5)
    assert result["weight_change"] > 1e-3, "the step changed nothing: the comparison would be empty"
    assert result["weight_difference"] <= 1e-5, result["weight_difference"]


def check_positions(single, distributed, per_shard):
    single, distributed = np.asarray(single), np.asarray(distributed)
    assert distributed.shape == single.shape == (16, 8, 4)
    # Every image draws its own positions, across shards as within them ...
    assert len({image.tobytes() for image in distributed}) == 16
    for i in range(per_shard):
        assert not np.array_equal(distributed[i], distributed[i + per_shard]), f"image {i} repeats across shards"
    # ... and the same ones one device draws for the global batch.
    np.testing.assert_array_equal(distributed, single)


def test_jax_data_parallel_step_equals_one_device_and_samples_per_image():
    result = run_script(COMMON + """
import jax
assert len(jax.devices()) == 4, jax.devices()
one = one_step()
single_positions = positions(16)
distribution = keras.distribution.DataParallel()
keras.distribution.set_distribution(distribution)
many = one_step()
result = compare(one, many)
result["variable_devices"] = len(many[0].trainable_variables[0].value.sharding.device_set)
result["batch_spec"] = list(map(str, distribution.get_data_layout((16, 8, 8, 3)).axes))
result["mesh"] = list(distribution.device_mesh.shape)
result["single_positions"] = single_positions.tolist()
result["distributed_positions"] = positions(16).tolist()
print(MARK + json.dumps(result))
""", environment("jax", JAX_NUM_CPU_DEVICES="4"))
    assert result["mesh"] == [4] and result["variable_devices"] == 4
    assert result["batch_spec"][0] == "batch"  # images split over the 4 devices
    check_same_step(result)
    check_positions(result["single_positions"], result["distributed_positions"], per_shard=4)


def test_tensorflow_mirrored_strategy_trains_two_replicas_in_sync():
    result = run_script("""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""" + COMMON + """
from tests.keras.helpers import position_backbone, position_images
strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
result = {"replicas": strategy.num_replicas_in_sync}
one = one_step()
single_positions = positions(16)
with strategy.scope():
    many = one_step()
    result["distributed_positions"] = positions(16).tolist()
result.update(compare(one, many))
result["single_positions"] = single_positions.tolist()
result["model_replicas"] = many[0].distribute_strategy.num_replicas_in_sync

# A small learnable task: features that encode position make DRLoc learnable.
keras.utils.set_random_seed(0)
px, py = position_images(64, grid=5)
with strategy.scope():
    model = DRLocModel(position_backbone(grid=5), lam=1.0, sample_size=16, hidden=32, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
history = model.fit(px, py, batch_size=16, epochs=8, verbose=0)
result["loss"] = history.history["loss"]
result["drloc_loss"] = history.history["drloc_loss"]
print(MARK + json.dumps(result))
""", environment("tensorflow"))
    assert result["replicas"] == 2 and result["model_replicas"] == 2
    check_same_step(result)
    check_positions(result["single_positions"], result["distributed_positions"], per_shard=8)
    loss, drloc = result["loss"], result["drloc_loss"]
    # From about 2.1 and 1.3 to about 1.65 and 0.96 (the CE of random labels stays near 0.69).
    assert all(np.isfinite(loss)) and loss[-1] < 0.85 * loss[0], loss
    assert drloc[-1] < 0.8 * drloc[0], drloc


# Gradient clipping under data parallelism: the global norm is that of the whole batch's
# gradient, as on one device (the authors clip after DDP has averaged the gradients). A large
# epsilon makes Adam's first step proportional to the gradient, so a gradient clipped to
# another size or direction moves the weights elsewhere; the gradient's norm is far above 0.01.
CLIPPED = """
from drloc_keras.optimizers import AdamW

def clipped_step(optimizer_class=AdamW):
    return one_step(optimizer_class(learning_rate=100.0, weight_decay=0.0, epsilon=1.0, global_clipnorm=0.01))

def compare_trainable(one, many):
    (model, _, initial, weights_1), (_, _, _, weights_n) = one, many
    trainable = [i for i, v in enumerate(model.weights) if v.trainable]  # not the step counter
    return {
        "difference": max(float(np.max(np.abs(weights_1[i] - weights_n[i]))) for i in trainable),
        "change": max(float(np.max(np.abs(weights_1[i] - initial[i]))) for i in trainable),
    }
"""


def check_clipped_step(result):
    assert result["change"] > 1e-3, "the step changed nothing: the comparison would be empty"
    assert result["difference"] <= 1e-3 * result["change"], result


def test_clipping_under_jax_data_parallel_is_of_the_whole_batch_gradient():
    result = run_script(COMMON + CLIPPED + """
import jax
assert len(jax.devices()) == 2
one = clipped_step()
keras.distribution.set_distribution(keras.distribution.DataParallel())
print(MARK + json.dumps(compare_trainable(one, clipped_step())))
""", environment("jax", JAX_NUM_CPU_DEVICES="2"))
    check_clipped_step(result)


def test_clipping_under_tensorflow_mirrored_strategy_is_of_the_summed_gradient():
    result = run_script("""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""" + COMMON + CLIPPED + """
strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
assert strategy.num_replicas_in_sync == 2
one = clipped_step()
with strategy.scope():
    many = clipped_step()
    keras_own = clipped_step(keras.optimizers.AdamW)
result = compare_trainable(one, many)
result["keras_difference"] = compare_trainable(one, keras_own)["difference"]
print(MARK + json.dumps(result))
""", environment("tensorflow"))
    check_clipped_step(result)
    # Keras' AdamW clips each replica's share before the sum: the check can tell the two
    # apart. (Should this fail, Keras clips after the all-reduce, and drloc's AdamW need
    # not move the clipping there.)
    assert result["keras_difference"] > 0.1 * result["change"], result


# The lambda schedule under a strategy: 4 epochs of 2 steps on the global batch of 16.
SCHEDULE = """
from drloc_keras import DRLocModel
import drloc_ref

class Lambdas(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(float(logs["lambda"]))

def schedule_run():
    keras.utils.set_random_seed(0)
    xs = np.random.default_rng(1).normal(size=(32, 8, 8, 3)).astype("float32")
    ys = np.arange(32) % 4
    model = DRLocModel(tiny_backbone(), lam=0.5, lam_schedule="warmup-decay", warmup_epochs=2,
                       total_epochs=4, sample_size=4, hidden=8, seed=0)
    model.compile(optimizer="sgd")
    lambdas = Lambdas()
    model.fit(xs, ys, batch_size=16, epochs=4, verbose=0, callbacks=[lambdas])
    return {"lambdas": lambdas.seen, "steps": int(np.asarray(model.step_variable.numpy()))}
"""


def check_schedule(result):
    """Lambda moves epoch by epoch (2 steps each) as on one device, and the step counter
    counts global steps (8), not steps times replicas."""
    import drloc_ref

    expected = [drloc_ref.lambda_at(step // 2, 0.5, 2, 4) for step in range(8)]
    np.testing.assert_allclose(result["lambdas"], expected, atol=1e-7)
    assert result["steps"] == 8


def test_the_lambda_schedule_under_tensorflow_mirrored_strategy():
    result = run_script("""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""" + COMMON + SCHEDULE + """
strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
assert strategy.num_replicas_in_sync == 2
with strategy.scope():
    result = schedule_run()
print(MARK + json.dumps(result))
""", environment("tensorflow"))
    check_schedule(result)


def test_the_lambda_schedule_under_jax_data_parallel():
    result = run_script(COMMON + SCHEDULE + """
import jax
assert len(jax.devices()) == 2
keras.distribution.set_distribution(keras.distribution.DataParallel())
result = schedule_run()
print(MARK + json.dumps(result))
""", environment("jax", JAX_NUM_CPU_DEVICES="2"))
    check_schedule(result)


# --- The training program on several devices ------------------------------------------


def test_the_program_trains_on_four_jax_devices(tmp_path):
    out = tmp_path / "run"
    done = run([sys.executable, LAUNCH, str(tmp_path / "report.json"), *program_argv(out)],
               environment("jax", JAX_NUM_CPU_DEVICES="4"))
    assert "JAX DataParallel, 4 devices in 1 process(es)" in done.stdout
    assert "cpu:0, cpu:1, cpu:2, cpu:3" in done.stdout and "4 images per device" in done.stdout
    check_run_folder(out, replicas=4, processes=1)


def test_the_program_trains_on_two_tensorflow_replicas(tmp_path):
    out = tmp_path / "run"
    done = run([sys.executable, LAUNCH, str(tmp_path / "report.json"), *program_argv(out)],
               environment("tensorflow", DRLOC_TEST_LOGICAL_CPUS="2"))
    assert "TensorFlow MirroredStrategy, 2 devices in 1 process(es)" in done.stdout
    assert "device:CPU:1" in done.stdout and "8 images per device" in done.stdout
    check_run_folder(out, replicas=2, processes=1)


def test_a_batch_size_that_does_not_split_over_the_devices_is_refused(tmp_path):
    argv = program_argv(tmp_path / "run")
    argv[argv.index("--batch-size") + 1] = "10"
    done = run([sys.executable, LAUNCH, str(tmp_path / "report.json"), *argv],
               environment("jax", JAX_NUM_CPU_DEVICES="4"), expect=2)
    assert "--batch-size 10 is not a multiple of the number of devices (4)" in done.stderr
    assert "--batch-size 12" in done.stderr  # the suggestion
    assert not (tmp_path / "run").exists(), "nothing is written before the check"


def test_distribute_on_torch_is_refused(tmp_path):
    done = run([sys.executable, LAUNCH, str(tmp_path / "report.json"), *program_argv(tmp_path / "run")],
               environment("torch"), expect=2)
    assert "--distribute needs KERAS_BACKEND=jax or tensorflow; found KERAS_BACKEND=torch" in done.stderr
    assert not (tmp_path / "run").exists()


# --- Several processes ------------------------------------------------------------------


def _check_two_processes(results, tmp_path, out, kind, replicas):
    for index, (code, log) in enumerate(results):
        assert code == 0, f"process {index} exited {code}\n{tail(log)}"
        assert f"{kind}, {replicas} devices in 2 process(es); process {index}" in log, tail(log)
    metrics = check_run_folder(out, replicas=replicas, processes=2)
    chief, worker = (json.loads((tmp_path / f"report{i}.json").read_text()) for i in (0, 1))
    for key in ("final_loss", "final_test_loss", "final_top1", "final_top5", "epochs"):
        assert chief[key] == worker[key] == metrics[key], (key, chief[key], worker[key])
    # The worker wrote into a temporary folder and deleted it; nothing else appeared.
    assert os.listdir(tmp_path / "worker-tmp") == []
    assert sorted(os.listdir(out)) == sorted(OUTPUTS)


def test_two_jax_processes_train_one_run(tmp_path):
    out = tmp_path / "run"
    (tmp_path / "worker-tmp").mkdir()
    (port,) = free_ports(1)
    commands = []
    for index in (0, 1):
        env = environment(
            "jax", JAX_NUM_CPU_DEVICES="2", KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
            KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(index),
            TMPDIR=str(tmp_path / ("worker-tmp" if index else "")),
        )
        commands.append(([sys.executable, LAUNCH, str(tmp_path / f"report{index}.json"), *program_argv(out)], env))
    results = run_together(commands)
    _check_two_processes(results, tmp_path, out, "JAX DataParallel", replicas=4)
    assert "cpu:0, cpu:1" in results[0][1] and "process 1 (writes a temporary folder" in results[1][1]


def test_two_tensorflow_workers_train_one_run(tmp_path):
    out = tmp_path / "run"
    (tmp_path / "worker-tmp").mkdir()
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    commands = []
    for index in (0, 1):
        env = environment(
            "tensorflow", TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            TMPDIR=str(tmp_path / ("worker-tmp" if index else "")),
        )
        commands.append(([sys.executable, LAUNCH, str(tmp_path / f"report{index}.json"), *program_argv(out)], env))
    results = run_together(commands)
    _check_two_processes(results, tmp_path, out, "TensorFlow MultiWorkerMirroredStrategy", replicas=2)


# --- In this process: no framework starts --------------------------------------------


def _train(argv):
    from drloc_keras import options, run

    return run.train(*options.parse(argv))


@pytest.mark.parametrize("variable,value", [
    ("KERAS_DISTRIBUTION_NUM_PROCESSES", "2"),
    ("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                              "task": {"type": "worker", "index": 0}})),
])
def test_a_cluster_without_distribute_is_refused(variable, value, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(variable, value)
    argv = [a for a in program_argv(tmp_path / "run") if a != "--distribute"]
    from drloc_keras.options import UsageError

    with pytest.raises(UsageError) as error:
        _train(argv)
    assert variable in str(error.value) and "--distribute is not given" in str(error.value)
    assert not (tmp_path / "run").exists()


def test_a_malformed_tf_config_names_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    from drloc_keras.options import UsageError

    with pytest.raises(UsageError, match="TF_CONFIG is not the JSON of a cluster"):
        _train(program_argv(tmp_path / "run"))


def test_padding_the_last_batch_keeps_the_metrics_of_the_real_images():
    import keras

    from drloc_keras import pipeline

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(18, 8, 8, 3)).astype("uint8")
    y = rng.integers(0, 4, size=18)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    model.compile(loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  weighted_metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(2, name="top2")])
    plain = pipeline.eval_dataset(x, y, 4, 16)
    padded = pipeline.eval_dataset(x, y, 4, 16, pad_last_batch=True)
    batches = list(padded)
    assert [tuple(b[0].shape) for b in batches] == [(16, 8, 8, 3)] * 2  # full batches only
    weights = np.concatenate([np.asarray(b[2]) for b in batches])
    np.testing.assert_allclose(weights, [32 / 18] * 18 + [0] * 14, rtol=1e-6)
    expected = model.evaluate(plain, verbose=0, return_dict=True)
    got = model.evaluate(padded, verbose=0, return_dict=True)
    for key in ("loss", "accuracy", "top2"):
        assert got[key] == pytest.approx(expected[key], abs=1e-5), key
    with pytest.raises(ValueError, match="empty"):
        pipeline.eval_dataset(x[:0], y[:0], 4, 16, pad_last_batch=True)


def test_independent_streams_of_the_augmentation_across_tensorflow_replicas():
    """Under MirroredStrategy the replicas share each generator's state; every replica still
    draws its own augmentation: identical images on two replicas come out different, and the
    crops and RandAugment choices of replica 1 are not replica 0's."""
    result = run_script("""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import json
import keras
import numpy as np
from drloc_keras.augmentation import Augmentation
strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
with strategy.scope():
    layer = Augmentation(crop="padded", random_erasing=0.0, seed=0)
image = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3)).astype("float32")
images = tf.constant(np.repeat(image, 16, axis=0))  # the same image everywhere

@tf.function
def step(x):
    return strategy.run(lambda part: layer(part, training=True), args=(x,))

dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(images))
out = step(next(iter(dataset)))
parts = [np.asarray(p) for p in strategy.experimental_local_results(out)]
same = [bool(np.array_equal(parts[0][i], parts[1][i])) for i in range(len(parts[0]))]
print(MARK + json.dumps({"replicas": len(parts), "same": same}))
""".replace("MARK", repr(MARK)), environment("tensorflow"))
    assert result["replicas"] == 2
    # Without the per-replica draws every image i of replica 1 equals image i of replica 0.
    assert sum(result["same"]) <= 1, result
