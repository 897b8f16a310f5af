"""The training program end to end on tiny synthetic data: every backbone, resume, faults."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples"))
import train_cifar  # noqa: E402

TINY_ARGS = {
    "cvt": {"embed_dims": [8, 16, 16], "num_heads": [1, 2, 2], "depths": [1, 1, 1]},
    "cct": {"num_layers": 1, "num_heads": 2, "embed_dim": 16, "tokenizer_channels": 8},
    "swin": {"embed_dim": 8, "depths": [1, 1, 1], "num_heads": [1, 2, 2]},
    "t2t": {"token_dim": 8, "embed_dim": 16, "depth": 1, "num_heads": 2},
    "vit": {"embed_dim": 16, "depth": 1, "num_heads": 2},
    "resnet50": {"width_multiplier": 0.125},  # full width is tested in tests/backbones
}


def tiny_argv(output, backbone="cvt", epochs=1, train=32, extra=()):
    return [
        "--dataset", "synthetic", "--synthetic-train-size", str(train), "--synthetic-test-size", "16",
        "--image-size", "16", "--batch-size", "16", "--epochs", str(epochs), "--backbone", backbone,
        "--backbone-args", json.dumps(TINY_ARGS[backbone]), "--sample-size", "8",
        "--output", str(output), "--verbose", "0", *extra,
    ]


def history(output):
    with open(os.path.join(output, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("backbone", sorted(TINY_ARGS))
def test_one_epoch_of_every_backbone_leaves_every_output(backbone, tmp_path):
    report = train_cifar.main(tiny_argv(tmp_path, backbone))
    for name in ("history.csv", "metrics.json", "curves.png", "config.json", "last.keras", "state.json"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "tensorboard").is_dir()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["parameters"] > 0
    assert 0.0 <= metrics["final_top1"] <= 1.0 and 0.0 <= metrics["best_top5"] <= 1.0
    assert metrics["config"]["backbone"] == backbone and metrics["seconds_per_epoch"] > 0
    row = history(tmp_path)[0]
    for key in ("loss", "ce_loss", "drloc_loss", "lambda", "accuracy", "val_accuracy", "val_top5"):
        assert key in row, key
    assert report["final_top1"] == metrics["final_top1"]


def test_lambda_zero_trains_without_drloc_on_a_cycled_subset_and_part_of_the_test_set(tmp_path, capsys):
    # A quarter of the 32 training images (8), cycled to the whole set's 32 an epoch ('full'):
    # 2 steps of 16; half of the 16 test images.
    report = train_cifar.main(tiny_argv(tmp_path, extra=[
        "--lam", "0", "--train-fraction", "0.25", "--epoch-images", "full", "--test-fraction", "0.5"]))
    row = history(tmp_path)[0]
    assert "drloc_loss" not in row and float(row["loss"]) > 0
    out = capsys.readouterr().out
    assert "8 training and 8 test images" in out and "cycled to 32 images per epoch" in out
    assert report["epoch_images"] == 32 and report["epochs"] == 1
    assert train_cifar.parse_args(["--epoch-images", "48"]).epoch_images == 48


@pytest.mark.xdist_group("finished_run")  # one worker trains the shared run once
def test_the_saved_model_normalises_raw_images_with_the_training_set_statistics(finished_run):
    """The training images' per-channel mean and variance sit in a Normalization layer of the
    saved model: `predict` on raw 0-255 images after `load_model` is the model's own."""
    from drloc_keras import data, training

    config = json.loads((finished_run / "config.json").read_text())
    assert config["input_normalization"] == "train-set"
    model = keras.saving.load_model(finished_run / "last.keras")
    layer = model.backbone.get_layer("input_normalization")
    assert isinstance(layer, keras.layers.Normalization)
    dataset = data.load_dataset("synthetic", train_size=32, test_size=16, seed=0)
    mean, variance = training.channel_statistics(dataset.train[0])
    np.testing.assert_allclose(np.ravel(layer.mean), mean, rtol=1e-5)
    np.testing.assert_allclose(np.ravel(layer.variance), np.maximum(variance, 1.0), rtol=1e-5)
    size = model.backbone.inputs[0].shape[1]
    images = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype("float32")
    normalized = keras.ops.convert_to_numpy(layer(images))
    np.testing.assert_allclose(normalized, (images - mean) / np.sqrt(np.maximum(variance, 1.0)), atol=1e-4)
    inner = model.backbone.layers[-1]  # the backbone behind the normalisation
    direct = keras.ops.convert_to_numpy(inner(normalized)["logits"])
    np.testing.assert_allclose(model.predict(images, verbose=0), direct, rtol=1e-4, atol=1e-5)


def test_input_normalization_none_feeds_raw_pixels(tmp_path):
    train_cifar.main(tiny_argv(tmp_path, extra=["--input-normalization", "none", "--lam", "0"]))
    model = keras.saving.load_model(tmp_path / "last.keras")
    assert not any(isinstance(layer, keras.layers.Normalization) for layer in model.backbone.layers)


def test_head_flags_and_the_printed_lambda_schedule(tmp_path, capsys):
    train_cifar.main(tiny_argv(tmp_path, epochs=2, extra=[
        "--head-hidden", "auto", "--head-init", "trunc_normal", "--lam", "0.5",
        "--lam-schedule", "warmup-decay", "--lam-warmup-epochs", "1", "--lam-total-epochs", "3"]))
    out = capsys.readouterr().out
    assert ("lambda schedule: 0 at epoch 0, rising to 0.5 at epoch 1, then falling to 0 at epoch 3; "
            "epochs 0-1 of this run: 0, 0.5") in out
    assert [float(r["lambda"]) for r in history(tmp_path)] == [0.0, 0.5]
    model = keras.saving.load_model(tmp_path / "last.keras")
    head = model.heads[0]
    assert head.units == 2 * head.channels and head.initializer == "trunc_normal"
    assert model.warmup_epochs == 1 and model.total_epochs == 3


def test_weight_decay_leaves_out_biases_unless_asked(tmp_path):
    from drloc_keras.optimizers import AdamW

    train_cifar.main(tiny_argv(tmp_path / "default", extra=["--lam", "0"]))
    model = keras.saving.load_model(tmp_path / "default" / "last.keras")
    assert isinstance(model.optimizer, AdamW)
    decayed = model.optimizer.decayed_paths()
    assert decayed and all(path.endswith("/kernel") for path in decayed)
    train_cifar.main(tiny_argv(tmp_path / "all", extra=["--lam", "0", "--decay-all-weights"]))
    model = keras.saving.load_model(tmp_path / "all" / "last.keras")
    assert type(model.optimizer) is keras.optimizers.AdamW


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished tiny run (1 epoch), trained once for the tests that only read or refuse it."""
    output = tmp_path_factory.mktemp("finished_run")
    train_cifar.main(tiny_argv(output))
    return output


@pytest.fixture
def copy_of_finished_run(finished_run, tmp_path):
    output = tmp_path / "run"
    shutil.copytree(finished_run, output)
    return output


@pytest.mark.xdist_group("finished_run")  # one worker trains the shared run once
def test_eval_only_reads_the_saved_model(copy_of_finished_run, capsys):
    tmp_path = copy_of_finished_run
    report = train_cifar.main(tiny_argv(tmp_path, extra=["--eval-only"]))
    assert set(report) >= {"accuracy", "loss", "top5", "model"}
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == report["accuracy"]


def test_resume_finishes_the_remaining_epochs(tmp_path):
    train_cifar.main(tiny_argv(tmp_path, epochs=2))
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["epochs_done"] == 2
    # A finished run resumes to nothing more.
    train_cifar.main(tiny_argv(tmp_path, epochs=2, extra=["--resume"]))
    assert [int(r["epoch"]) for r in history(tmp_path)] == [0, 1]


@pytest.mark.xdist_group("finished_run")  # one worker trains the shared run once
def test_resume_with_a_different_configuration_is_refused(copy_of_finished_run, capsys):
    tmp_path = copy_of_finished_run
    with pytest.raises(SystemExit) as exit_info:
        train_cifar.main(tiny_argv(tmp_path, extra=["--resume", "--lam", "0.7", "--mode", "ce"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--lam: saved 0.1, now 0.7" in err and "--mode: saved 'l1', now 'ce'" in err


@pytest.mark.xdist_group("finished_run")  # one worker trains the shared run once
def test_a_second_run_in_the_same_folder_is_refused(copy_of_finished_run, capsys):
    tmp_path = copy_of_finished_run
    with pytest.raises(SystemExit):
        train_cifar.main(tiny_argv(tmp_path))
    assert "Pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag,value,expected",
    [
        ("--backbone", "vgg", ["invalid choice: 'vgg'", "cvt", "swin_tiny_32", "resnet50"]),
        ("--dataset", "mnist", ["invalid choice: 'mnist'", "cifar10", "fashion_mnist", "folder"]),
        ("--mode", "l2", ["invalid choice: 'l2'", "l1", "ce", "cbr"]),
        ("--sample-size", "0", ["--sample-size must be >= 1; found 0"]),
        ("--lam", "-1", ["--lam must be >= 0; found -1.0"]),
        ("--train-fraction", "0", ["--train-fraction must be in (0, 1]; found 0.0"]),
        ("--test-fraction", "1.5", ["--test-fraction must be in (0, 1]; found 1.5"]),
        ("--epoch-images", "0", ["--epoch-images: must be a positive number of images or 'full'"]),
        ("--head-hidden", "wide", ["--head-hidden: must be a positive width or 'auto'; found 'wide'"]),
        ("--head-init", "normal", ["invalid choice: 'normal'", "glorot", "trunc_normal"]),
        ("--input-normalization", "imagenet", ["invalid choice: 'imagenet'", "train-set", "none"]),
        ("--lam-warmup-epochs", "-1", ["--lam-warmup-epochs must be >= 0; found -1"]),
        ("--lam-total-epochs", "20", ["--lam-total-epochs must be greater than --lam-warmup-epochs (20)"]),
    ],
)
def test_bad_flags_name_the_choices(flag, value, expected, tmp_path, capsys):
    argv = tiny_argv(tmp_path)
    index = argv.index(flag) if flag in argv else None
    if index is None:
        argv += [flag, value]
    else:
        argv[index + 1] = value
    with pytest.raises(SystemExit) as exit_info:
        train_cifar.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for fragment in expected:
        assert fragment in err, (fragment, err)


def test_missing_dataset_files_name_the_file(tmp_path, capsys):
    argv = tiny_argv(tmp_path / "run") + ["--dataset", "cifar10", "--data-dir", str(tmp_path / "nothing")]
    with pytest.raises(SystemExit) as exit_info:
        train_cifar.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "cifar-10-batches-py" in err and "--data-dir" in err


def test_corrupt_dataset_file_names_the_file(tmp_path, capsys):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).write_bytes(b"not a gzip file")
    argv = tiny_argv(tmp_path / "run") + ["--dataset", "fashion_mnist", "--data-dir", str(folder)]
    with pytest.raises(SystemExit):
        train_cifar.main(argv)
    assert "-ubyte.gz" in capsys.readouterr().err


def test_a_nan_loss_stops_the_run_and_keeps_no_bad_checkpoint(tmp_path, capsys):
    argv = tiny_argv(tmp_path, epochs=3, extra=["--lr", "1e30", "--warmup-epochs", "0", "--weight-decay", "0"])
    with pytest.raises(SystemExit) as exit_info:
        train_cifar.main(argv)
    assert exit_info.value.code == 3
    assert "NaN" in capsys.readouterr().err
    if (tmp_path / "last.keras").exists():
        model = keras.saving.load_model(tmp_path / "last.keras")
        for w in model.get_weights():
            assert np.all(np.isfinite(w))


def _run_in_background(argv, output):
    env = dict(os.environ, PYTHONPATH=ROOT)
    log = open(os.path.join(output, "..", "run.log"), "w")
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "train_cifar.py"), *argv],
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_for_epochs(output, epochs, process, timeout=300):
    deadline = time.time() + timeout
    path = os.path.join(output, "state.json")
    while time.time() < deadline:
        if os.path.exists(path):
            try:
                if json.loads(open(path).read())["epochs_done"] >= epochs:
                    return
            except (ValueError, KeyError):
                pytest.fail("state.json was read half-written")
        if process.poll() is not None:
            pytest.fail(f"training ended early with code {process.returncode}")
        time.sleep(0.02)
    pytest.fail("training made no progress")


def test_sigkill_mid_epoch_then_resume_finishes_with_intact_checkpoints(tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    argv = tiny_argv(output, epochs=4, train=320)  # 20 steps per epoch
    process = _run_in_background(argv, output)
    try:
        _wait_for_epochs(output, 1, process)
        time.sleep(0.5)  # well inside the second epoch
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    state = json.loads((output / "state.json").read_text())
    assert 1 <= state["epochs_done"] < 4
    keras.saving.load_model(output / "last.keras")  # not corrupt

    train_cifar.main(argv + ["--resume"])
    rows = history(output)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert json.loads((output / "state.json").read_text())["epochs_done"] == 4
    assert json.loads((output / "metrics.json").read_text())["epochs"] == 4
    model = keras.saving.load_model(output / "last.keras")
    steps_done = int(keras.ops.convert_to_numpy(model.step_variable))
    assert steps_done == 4 * 20


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    argv = tiny_argv(output, epochs=50, train=320)
    process = _run_in_background(argv, output)
    try:
        _wait_for_epochs(output, 1, process)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert (output / "interrupted.keras").exists()
    keras.saving.load_model(output / "interrupted.keras")
    keras.saving.load_model(output / "last.keras")
    log = (tmp_path / "run.log").read_text()
    assert "interrupted" in log and "--resume" in log


@pytest.fixture
def restore_dtype_policy():
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_keep_the_loss_finite(precision, tmp_path, restore_dtype_policy):
    train_cifar.main(tiny_argv(tmp_path, extra=["--mixed-precision", precision]))
    row = history(tmp_path)[0]
    for key in ("loss", "ce_loss", "drloc_loss", "val_loss"):
        assert np.isfinite(float(row[key])), key
    model = keras.saving.load_model(tmp_path / "last.keras")
    assert model.heads[0].trunk[0].compute_dtype == {"bf16": "bfloat16", "fp16": "float16"}[precision]


def test_an_image_folder_of_mixed_sizes_and_modes_trains(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 4)):
        for name in ("cat", "dog"):
            folder = tmp_path / "images" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                size = (int(rng.integers(10, 40)), int(rng.integers(10, 40)))
                mode = "L" if i % 2 else "RGB"
                pixels = rng.integers(0, 256, size=size[::-1] + ((3,) if mode == "RGB" else ()))
                Image.fromarray(pixels.astype("uint8")).save(folder / f"{i}.png")
    argv = tiny_argv(tmp_path / "run") + ["--dataset", "folder", "--data-dir", str(tmp_path / "images")]
    report = train_cifar.main(argv)
    assert report["epochs"] == 1 and 0.0 <= report["final_top1"] <= 1.0
    model = keras.saving.load_model(tmp_path / "run" / "last.keras")
    assert model.num_classes == 2
