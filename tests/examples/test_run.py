"""The training run (drloc_keras.run) end to end on tiny synthetic data: every backbone, the
run folder, exact resume, evaluation, faults; and the command line of examples/train_cifar.py
(in subprocesses)."""

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

from drloc_keras import options, run, run_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "examples", "train_cifar.py")

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


def train(argv, **kwargs):
    """The run of the flags `argv`, as examples/train_cifar.py runs it."""
    return run.train(*options.parse(argv), **kwargs)


def parse(argv):
    return options.parse(argv)[0]


def history(output):
    with open(os.path.join(output, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("backbone", sorted(TINY_ARGS))
def test_one_epoch_of_every_backbone_leaves_every_output(backbone, tmp_path):
    report = train(tiny_argv(tmp_path, backbone))
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
    report = train(tiny_argv(tmp_path, extra=[
        "--lam", "0", "--train-fraction", "0.25", "--epoch-images", "full", "--test-fraction", "0.5",
        "--val-fraction", "0"]))
    row = history(tmp_path)[0]
    assert "drloc_loss" not in row and float(row["loss"]) > 0
    out = capsys.readouterr().out
    assert "8 training, no validation set and 8 test images" in out and "cycled to 32 images per epoch" in out
    assert report["epoch_images"] == 32 and report["epochs"] == 1
    assert parse(["--epoch-images", "48"]).epoch_images == 48


@pytest.mark.xdist_group("finished_run")  # one worker trains the shared run once
def test_the_saved_model_normalises_raw_images_with_the_training_set_statistics(finished_run):
    """The training images' per-channel mean and variance sit in a Normalization layer of the
    saved model: `predict` on raw 0-255 images after `load_model` is the model's own."""
    from drloc_keras import data, recipe

    config = json.loads((finished_run / "config.json").read_text())
    assert config["input_normalization"] == "train-set"
    model = run_folder.load_model(finished_run / "last.keras")
    layer = model.backbone.get_layer("input_normalization")
    assert isinstance(layer, keras.layers.Normalization)
    mean, variance = recipe.channel_statistics(run.load_data(parse(tiny_argv(finished_run))).train[0])
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
    train(tiny_argv(tmp_path, extra=["--input-normalization", "none", "--lam", "0"]))
    model = run_folder.load_model(tmp_path / "last.keras")
    assert not any(isinstance(layer, keras.layers.Normalization) for layer in model.backbone.layers)


def test_head_flags_and_the_printed_lambda_schedule(tmp_path, capsys):
    train(tiny_argv(tmp_path, epochs=2, extra=[
        "--head-hidden", "auto", "--head-init", "trunc_normal", "--lam", "0.5",
        "--lam-schedule", "warmup-decay", "--lam-warmup-epochs", "1", "--lam-total-epochs", "3"]))
    out = capsys.readouterr().out
    assert ("lambda schedule: 0 at epoch 0, rising to 0.5 at epoch 1, then falling to 0 at epoch 3; "
            "epochs 0-1 of this run: 0, 0.5") in out
    assert [float(r["lambda"]) for r in history(tmp_path)] == [0.0, 0.5]
    model = run_folder.load_model(tmp_path / "last.keras")
    head = model.heads[0]
    assert head.units == 2 * head.channels and head.initializer == "trunc_normal"
    assert model.warmup_epochs == 1 and model.total_epochs == 3
    assert model.use_abs and head.use_abs  # absolute offsets by default


def test_signed_offsets_give_the_head_2k_minus_1_classes_per_axis(tmp_path, capsys):
    train(tiny_argv(tmp_path, extra=["--lam", "0.5", "--mode", "ce", "--offsets", "signed"]))
    assert "offsets signed" in capsys.readouterr().out
    model = run_folder.load_model(tmp_path / "last.keras")
    head = model.heads[0]
    assert not model.use_abs and not head.use_abs
    rows, cols = head.offset_classifiers
    assert (rows.units, cols.units) == (2 * head.height - 1, 2 * head.width - 1)


def test_weight_decay_leaves_out_biases_unless_asked(tmp_path):
    from drloc_keras.optimizers import AdamW

    train(tiny_argv(tmp_path / "default", extra=["--lam", "0"]))
    model = run_folder.load_model(tmp_path / "default" / "last.keras")
    assert isinstance(model.optimizer, AdamW)
    decayed = model.optimizer.decayed_paths()
    assert decayed and all(path.endswith("/kernel") for path in decayed)
    assert model.optimizer.global_clipnorm == options.DEFAULTS["clip_grad"]  # a resumed run clips the same
    train(tiny_argv(tmp_path / "all", extra=["--lam", "0", "--decay-all-weights", "--clip-grad", "0"]))
    model = run_folder.load_model(tmp_path / "all" / "last.keras")
    assert set(model.optimizer.decayed_paths()) == {v.path for v in model.trainable_variables}
    assert model.optimizer.global_clipnorm is None


def test_a_warmup_of_half_the_run_or_more_gets_a_note():
    note = run.warmup_note(parse(["--epochs", "40"]))  # the default warm-up, 20 epochs
    assert note.startswith("note: the learning-rate warm-up (--warmup-epochs 20) lasts at least half")
    assert run.warmup_note(parse(["--epochs", "41"])) is None
    assert run.warmup_note(parse(["--epochs", "1", "--warmup-epochs", "0"])) is None


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished tiny run (1 epoch), trained once for the tests that only read or refuse it."""
    output = tmp_path_factory.mktemp("finished_run")
    train(tiny_argv(output))
    return output


@pytest.fixture
def copy_of_finished_run(finished_run, tmp_path):
    output = tmp_path / "run"
    shutil.copytree(finished_run, output)
    return output


@pytest.mark.xdist_group("finished_run")  # one worker trains the shared run once
def test_eval_only_evaluates_the_runs_own_validation_and_test_sets(copy_of_finished_run, finished_run):
    tmp_path = copy_of_finished_run
    report = train(["--output", str(tmp_path), "--eval-only", "--verbose", "0"])
    assert json.loads((tmp_path / "eval.json").read_text()) == report
    metrics = json.loads((finished_run / "metrics.json").read_text())
    # The last model on the test set: the figure the run itself reported.
    assert report["last"]["test"]["top1"] == pytest.approx(metrics["final_top1"])
    assert report["best"]["test"]["top1"] == pytest.approx(metrics["best_top1"])
    assert "val" in report["last"] and str(metrics["test_images"]) in report["sets"]["test"]
    # Another test set would be another evaluation: refused, not silently used.
    with pytest.raises(options.UsageError, match="--synthetic-test-size would change them"):
        train(["--output", str(tmp_path), "--eval-only", "--synthetic-test-size", "99"])


def test_resume_finishes_the_remaining_epochs(tmp_path):
    train(tiny_argv(tmp_path, epochs=2))
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["epochs_done"] == 2
    # A finished run resumes to nothing more.
    train(["--output", str(tmp_path), "--resume", "--verbose", "0"])
    assert [int(r["epoch"]) for r in history(tmp_path)] == [0, 1]
    # --epochs may be raised: the run goes on with its saved settings.
    train(["--output", str(tmp_path), "--resume", "--epochs", "3", "--verbose", "0"])
    assert [int(r["epoch"]) for r in history(tmp_path)] == [0, 1, 2]
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 3
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 3


def test_a_run_resumed_on_another_backend_says_so_and_records_both(tmp_path):
    train(tiny_argv(tmp_path, epochs=1))
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["backend"] == keras.backend.backend()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["backend"] == keras.backend.backend() and metrics["earlier_backend"] is None
    other = "torch" if keras.backend.backend() != "torch" else "jax"
    (tmp_path / "state.json").write_text(json.dumps(dict(state, backend=other)))
    lines = []
    train(["--output", str(tmp_path), "--resume", "--epochs", "2", "--verbose", "0"], log=lines.append)
    note = [line for line in lines if f"trained on {other}" in line]
    assert len(note) == 1 and f"KERAS_BACKEND={other}" in note[0]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["backend"] == keras.backend.backend() and metrics["earlier_backend"] == other
    assert json.loads((tmp_path / "state.json").read_text())["backend"] == keras.backend.backend()


@pytest.mark.xdist_group("finished_run")  # one worker trains the shared run once
def test_resume_refuses_flags_that_change_the_run(copy_of_finished_run):
    tmp_path = copy_of_finished_run
    with pytest.raises(options.UsageError, match="--lam, --mode would change them. Only --epochs"):
        train(["--output", str(tmp_path), "--resume", "--lam", "0.7", "--mode", "ce"])



@pytest.mark.xdist_group("finished_run")  # one worker trains the shared run once
def test_a_second_run_in_the_same_folder_is_refused(copy_of_finished_run):
    with pytest.raises(options.UsageError, match="Pass --resume"):
        train(tiny_argv(copy_of_finished_run))


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
    try:
        options.parse(argv)
    except SystemExit as e:  # argparse: usage, then the error
        assert e.code == 2
        err = capsys.readouterr().err
    except options.UsageError as e:
        err = str(e)
    else:
        pytest.fail("accepted")
    for fragment in expected:
        assert fragment in err, (fragment, err)


def test_missing_dataset_files_name_the_file(tmp_path):
    argv = tiny_argv(tmp_path / "run") + ["--dataset", "cifar10", "--data-dir", str(tmp_path / "nothing")]
    with pytest.raises(options.UsageError) as error:
        train(argv)
    assert "cifar-10-batches-py" in str(error.value) and "--data-dir" in str(error.value)


def test_corrupt_dataset_file_names_the_file(tmp_path, capsys):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).write_bytes(b"not a gzip file")
    argv = tiny_argv(tmp_path / "run") + ["--dataset", "fashion_mnist", "--data-dir", str(folder)]
    with pytest.raises(options.UsageError, match="-ubyte.gz"):
        train(argv)


def test_a_nan_loss_stops_the_run_and_keeps_no_bad_checkpoint(tmp_path, capsys):
    argv = tiny_argv(tmp_path, epochs=3, extra=["--lr", "1e30", "--warmup-epochs", "0", "--weight-decay", "0"])
    with pytest.raises(run.Diverged, match="NaN") as error:
        train(argv)
    assert error.value.code == 3
    if (tmp_path / "last.keras").exists():
        assert "The last good checkpoint is" in str(error.value)
        model = run_folder.load_model(tmp_path / "last.keras")
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
    argv = tiny_argv(output, epochs=4, train=320)  # 18 steps per epoch (32 images held out)
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
    run_folder.load_model(output / "last.keras")  # not corrupt

    train(["--output", str(output), "--resume", "--verbose", "0"])
    rows = history(output)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert json.loads((output / "state.json").read_text())["epochs_done"] == 4
    assert json.loads((output / "metrics.json").read_text())["epochs"] == 4
    model = run_folder.load_model(output / "last.keras")
    steps_done = int(keras.ops.convert_to_numpy(model.step_variable))
    steps_per_epoch = json.loads((output / "metrics.json").read_text())["epoch_images"] // 16
    assert steps_per_epoch == 18 and steps_done == 4 * steps_per_epoch  # 288 images after the validation set


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
    run_folder.load_model(output / "interrupted.keras")
    run_folder.load_model(output / "last.keras")
    log = (tmp_path / "run.log").read_text()
    assert "interrupted" in log and "--resume" in log


@pytest.fixture
def restore_dtype_policy():
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_keep_the_loss_finite(precision, tmp_path, restore_dtype_policy):
    train(tiny_argv(tmp_path, extra=["--mixed-precision", precision]))
    row = history(tmp_path)[0]
    for key in ("loss", "ce_loss", "drloc_loss", "val_loss"):
        assert np.isfinite(float(row[key])), key
    model = run_folder.load_model(tmp_path / "last.keras")
    assert model.heads[0].trunk[0].compute_dtype == {"bf16": "bfloat16", "fp16": "float16"}[precision]


@pytest.mark.parametrize("stream", ["auto", "on"])
def test_an_image_folder_of_mixed_sizes_and_modes_trains(tmp_path, stream):
    """In memory (what "auto" picks for a small folder) and streamed from disk, with the
    training images' statistics in the saved model either way."""
    from PIL import Image

    from drloc_keras import data, recipe

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
    argv = tiny_argv(tmp_path / "run") + ["--dataset", "folder", "--data-dir", str(tmp_path / "images"),
                                          "--stream-images", stream]
    report = train(argv)
    assert report["epochs"] == 1 and 0.0 <= report["final_top1"] <= 1.0
    model = run_folder.load_model(tmp_path / "run" / "last.keras")
    assert model.num_classes == 2
    loaded = run.load_data(parse(argv))
    assert isinstance(loaded.train[0], data.ImageFiles) == (stream == "on")
    mean, variance = recipe.channel_statistics(np.asarray(loaded.train[0]))
    layer = model.backbone.get_layer("input_normalization")
    np.testing.assert_allclose(np.ravel(layer.mean), mean, rtol=1e-5)


# === Exact resume ================================================================================


class _StopMidEpoch(keras.callbacks.Callback):
    """Raises KeyboardInterrupt (what Ctrl-C and SIGTERM raise) after batch 2 of epoch 1."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 2:
            raise KeyboardInterrupt


class _StopAtTrainBegin(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        raise KeyboardInterrupt


def test_a_run_stopped_before_its_step_is_ready_stops_cleanly(tmp_path, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM) while the first step compiles, when the model cannot be saved yet:
    the run stops as interrupted, says nothing was saved, and leaves no partial file."""
    argv = tiny_argv(tmp_path, "vit", epochs=2, train=64)

    def unsavable(model, path):
        raise TypeError("'NoneType' object is not callable")

    monkeypatch.setattr(run_folder, "atomic_save_model", unsavable)
    with run.Run(*options.parse([*argv, "--output", str(tmp_path / "stopped")]), log=lambda *a: None) as r:
        data = r.load_data()
        model = r.build_model(data)
        r.fit(model, data, callbacks=[_StopAtTrainBegin()])
    assert r.interrupted
    assert "nothing was saved" in capsys.readouterr().err
    assert not list((tmp_path / "stopped").glob("*.keras"))


def _weights(path):
    return [keras.ops.convert_to_numpy(w) for w in run_folder.load_model(path).weights]


def test_a_run_stopped_mid_epoch_resumes_exactly(tmp_path):
    """Killed in its second epoch and resumed, a run ends with the history and the weights of
    the run that was not stopped: the data order, the augmentation (flips, erasing, MixUp /
    CutMix), dropout paths and the DRLoc pairs all continue where they were."""
    argv = tiny_argv(tmp_path, "vit", epochs=3, train=96, extra=[
        "--flip", "--random-erasing", "0.5", "--mixup", "0.8", "--cutmix", "1.0", "--drop-path", "0.1"])
    whole = tmp_path / "whole"
    train([*argv, "--output", str(whole)])
    keras.backend.clear_session()
    stopped = tmp_path / "stopped"
    with run.Run(*options.parse([*argv, "--output", str(stopped)]), log=lambda *a: None) as r:
        data = r.load_data()
        model = r.build_model(data)
        r.fit(model, data, callbacks=[_StopMidEpoch()])
    assert r.interrupted and json.loads((stopped / "state.json").read_text())["epochs_done"] == 1
    keras.backend.clear_session()
    train(["--output", str(stopped), "--resume", "--verbose", "0"])
    a, b = history(whole), history(stopped)
    assert [row["epoch"] for row in b] == ["0", "1", "2"]
    for row_a, row_b in zip(a, b):
        for key in ("loss", "ce_loss", "drloc_loss", "accuracy", "val_loss", "learning_rate"):
            assert float(row_b[key]) == pytest.approx(float(row_a[key]), rel=1e-5, abs=1e-6), key
    for wa, wb in zip(_weights(whole / "last.keras"), _weights(stopped / "last.keras")):
        np.testing.assert_allclose(wb, wa, rtol=1e-5, atol=1e-6)


# === The validation set and what the report says =================================================


@pytest.mark.xdist_group("finished_run")
def test_best_keras_is_chosen_on_the_validation_set_and_the_report_names_every_set(finished_run):
    metrics = json.loads((finished_run / "metrics.json").read_text())
    state = json.loads((finished_run / "state.json").read_text())
    assert state["monitor"] == "val_accuracy"
    # 32 training images, 8 a class: a tenth of each class (1) is held out.
    assert metrics["val_images"] == 4 and metrics["train_images"] == 28 and metrics["test_images"] == 16
    assert "test set" in metrics["sets"]["final_*"] and "best.keras" in metrics["sets"]["best_*"]
    assert "validation set (4 images" in metrics["sets"]["val_*"]
    assert metrics["val_best_top1"] == max(float(r["val_accuracy"]) for r in history(finished_run))
    loaded = run.load_data(parse(tiny_argv(finished_run)))
    held, kept = loaded.val[1], loaded.train[1]
    assert sorted(np.bincount(held)) == [1, 1, 1, 1] and len(kept) == 28


def test_without_a_validation_set_there_is_no_best_model(tmp_path):
    report = train(tiny_argv(tmp_path, extra=["--val-fraction", "0"]))
    assert not (tmp_path / "best.keras").exists()
    assert report["best_top1"] is None and report["final_top1"] is not None
    # Keras' CSVLogger writes the val_ columns as NA without validation data.
    assert "val_accuracy" not in run_folder.read_history(tmp_path / "history.csv")[0]


@pytest.mark.xdist_group("finished_run")
def test_outputs_are_readable_by_others_and_the_history_has_the_learning_rate(finished_run):
    for name in ("config.json", "state.json", "metrics.json", "history.csv", "last.keras", "curves.png"):
        assert (finished_run / name).stat().st_mode & 0o777 == 0o644 & ~_umask(), name
    rows = history(finished_run)
    assert float(rows[0]["learning_rate"]) > 0


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.xdist_group("finished_run")
def test_a_saved_model_loads_in_a_fresh_process_with_drloc_keras_load_model(finished_run):
    code = (f"import drloc_keras; m = drloc_keras.load_model({str(finished_run / 'last.keras')!r}); "
            f"print(type(m).__name__, m.num_classes)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["DRLocModel", "4"]


def test_an_unknown_backbone_argument_is_refused_with_the_valid_ones(tmp_path):
    argv = tiny_argv(tmp_path)
    argv[argv.index("--backbone-args") + 1] = json.dumps({"depth": 3})
    with pytest.raises(options.UsageError) as error:
        train(argv)
    assert "depth" in str(error.value) and "embed_dims" in str(error.value)


# === The command line (examples/train_cifar.py in a subprocess) ==================================


def _cli(*argv, timeout=300):
    return subprocess.run([sys.executable, CLI, *argv], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=ROOT))


def test_help_answers_in_under_two_seconds_and_shows_each_default_once():
    start = time.perf_counter()
    out = _cli("--help")
    seconds = time.perf_counter() - start
    assert out.returncode == 0 and seconds < 2.0, seconds
    assert "--val-fraction" in out.stdout and "(default: 128)" in out.stdout
    text = " ".join(out.stdout.split())
    assert text.count("(default: 128)") == 1 and "(default: None)" not in text
    assert "(default: False)" not in text and "default: True) (default" not in text


@pytest.mark.parametrize("argv,fragment", [
    (["--dataset", "folder"], "--dataset folder needs --data-dir"),
    (["--dataset", "synthetic", "--data-dir", "somewhere"], "--data-dir is not used by --dataset synthetic"),
    (["--backbone-args", "[1, 2]"], "must be a JSON object"),
])
def test_a_bad_flag_ends_in_one_error_line_and_exit_code_2_before_any_framework(argv, fragment, tmp_path):
    out = _cli(*argv, "--output", str(tmp_path / "run"), timeout=30)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and fragment in lines[0], out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()


def test_an_image_size_the_backbone_cannot_take_is_one_error_line(tmp_path):
    out = _cli("--dataset", "synthetic", "--synthetic-train-size", "16", "--synthetic-test-size", "8",
               "--backbone", "vit", "--image-size", "34", "--batch-size", "4", "--output", str(tmp_path / "run"))
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--backbone vit" in lines[0] and "34" in lines[0]
