"""The run folder: its files, written atomically, the checkpoint after every epoch, the state
that a resumed run continues from, and the report's curves.

    runs/<name>/
        config.json        the run's settings (drloc_keras.options), written once
        state.json         epochs finished, best validation score, random-generator states
        last.keras         the model after the last finished epoch (optimizer included)
        best.keras         the model of the best validation top-1 (with a validation set)
        interrupted.keras  the weights of an epoch stopped by Ctrl-C or SIGTERM
        history.csv        one row per epoch: losses, lambda, learning rate, metrics
        metrics.json       the final report: every figure with the set it comes from
        eval.json          the report of --eval-only
        curves.png         accuracy, losses and learning rate per epoch
        tensorboard/       TensorBoard logs

Every file is written to a temporary name and renamed, so a reader (or a resumed run) sees
the old file or the new one, never half of one; files are created with mode 0644 (less the
umask's bits).
"""

import contextlib
import csv
import json
import math
import os
import tempfile

import keras
import numpy as np

from drloc_keras import streams

CONFIG = "config.json"
STATE = "state.json"
LAST = "last.keras"
BEST = "best.keras"
INTERRUPTED = "interrupted.keras"
HISTORY = "history.csv"
METRICS = "metrics.json"
EVAL = "eval.json"
CURVES = "curves.png"
TENSORBOARD = "tensorboard"


def _file_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _replace(tmp, path):
    os.chmod(tmp, _file_mode())  # mkstemp makes 0600 files
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path):
    """A temporary file name beside `path` to write to; on leaving the block the file is
    synced to disk and renamed to `path` (0644), or removed if the block raised."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    """Write `text` to `path` so that a reader sees the old file or the new one, never half."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def atomic_save_model(model, path):
    """`model.save(path)` through a temporary file and `os.replace`."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def register_keras_objects():
    """Import every drloc module that registers layers, models, optimizers or schedules with
    Keras' serialization (`keras.saving.load_model` then reads drloc's files)."""
    import drloc_keras.backbones  # noqa: F401
    import drloc_keras.model  # noqa: F401
    import drloc_keras.optimizers  # noqa: F401
    import drloc_keras.recipe  # noqa: F401


def load_model(path, **kwargs):
    """`keras.saving.load_model(path, **kwargs)` with drloc's classes registered first."""
    register_keras_objects()
    return keras.saving.load_model(path, **kwargs)


# --- Random-generator states ---------------------------------------------------------------


def generator_states(model):
    """The states of `streams.generators(model)` as lists of ints (JSON)."""
    return [keras.ops.convert_to_numpy(g.state).astype("int64").tolist() for g in streams.generators(model)]


def restore_generator_states(model, states):
    """Set the states saved by `generator_states` (a model saved by Keras restarts its
    generators. A run's `pipeline.EpochSeeds` re-seeds them all before the next epoch; the
    saved states serve a model that goes on without it)."""
    generators = streams.generators(model)
    if len(generators) != len(states):
        raise ValueError(f"the saved state has {len(states)} random-generator states, the model has "
                         f"{len(generators)}: the checkpoint and state.json do not belong together")
    for generator, state in zip(generators, states):
        generator.state.assign(np.asarray(state).astype(keras.backend.standardize_dtype(generator.state.dtype)))


# --- The folder ----------------------------------------------------------------------------


class RunFolder:
    """The files of one run in the folder `path`."""

    def __init__(self, path):
        self.path = path

    def file(self, name):
        return os.path.join(self.path, name)

    def exists(self, name):
        return os.path.exists(self.file(name))

    def create(self):
        os.makedirs(self.path, exist_ok=True)

    def read_json(self, name):
        if not self.exists(name):
            return None
        with open(self.file(name)) as f:
            return json.load(f)

    def write_json(self, name, value):
        atomic_write_text(self.file(name), json.dumps(value, indent=2) + "\n")

    def read_config(self):
        return self.read_json(CONFIG)

    def read_state(self):
        return self.read_json(STATE)

    def history(self):
        return read_history(self.file(HISTORY))


def read_history(path):
    """`history.csv` as a list of dicts of floats (empty if there is none)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None, "NA")} for row in csv.DictReader(f)]


def truncate_history(path, epochs_done):
    """Drop the rows of `history.csv` for epochs after the last checkpoint (a killed run)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) < epochs_done]
    atomic_write_text(path, "".join(",".join(r) + "\n" for r in kept))


def weights_are_finite(model):
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(v))) for v in model.weights
               if "float" in str(v.dtype))


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: `last.keras`, `best.keras` on a new best of `monitor`, then
    `state.json` (epochs finished, best score, optimizer steps, random-generator states).

    `state.json` is written last: a run killed between the two files resumes from the
    epoch `state.json` names, and `iterations` tells a mismatched `last.keras` apart. A
    checkpoint whose loss or weights are not finite is never written: the last good one
    stays, and `nan_seen` is set.
    """

    def __init__(self, folder, monitor="val_accuracy", initial_best=-math.inf):
        super().__init__()
        self.folder = folder
        self.monitor = monitor
        self.best = initial_best
        self.nan_seen = False

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss = logs.get("loss")
        if loss is None or not math.isfinite(loss) or not weights_are_finite(self.model):
            self.nan_seen = True
            self.model.stop_training = True
            return
        atomic_save_model(self.model, self.folder.file(LAST))
        score = logs.get(self.monitor) if self.monitor else None
        if score is not None and score > self.best:
            self.best = float(score)
            atomic_save_model(self.model, self.folder.file(BEST))
        self.folder.write_json(STATE, {
            "epochs_done": epoch + 1,
            "best": self.best if math.isfinite(self.best) else None,
            "monitor": self.monitor,
            "iterations": int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)),
            "generators": generator_states(self.model),
            "backend": keras.backend.backend(),
        })


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the learning rate of the epoch's last step to the epoch's logs (`learning_rate`,
    a column of history.csv)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            optimizer = self.model.optimizer
            step = keras.ops.convert_to_numpy(optimizer.iterations)
            rate = optimizer._learning_rate
            value = rate(max(int(step) - 1, 0)) if callable(rate) else rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(value))


# --- Curves --------------------------------------------------------------------------------


def plot_curves(history_csv, path, title=None, num_classes=None):
    """`curves.png`: top-1 (and top-5 where there are more than 5 classes) per epoch; the
    training loss and its CE and DRLoc terms; the validation loss; the learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = read_history(history_csv)
    if not rows:
        return

    def column(name):
        return [r[name] for r in rows] if all(name in r for r in rows) else None

    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    panels = [
        (axes[0], "top-1 accuracy",
         [("accuracy", "train (augmented, mixed labels)"), ("val_accuracy", "validation")]),
        (axes[1], "training loss", [("loss", "total"), ("ce_loss", "cross-entropy"),
                                    ("drloc_loss", "DRLoc (before lambda)")]),
        (axes[2], "validation loss", [("val_loss", "cross-entropy")]),
        (axes[3], "learning rate", [("learning_rate", "learning rate")]),
    ]
    if num_classes is None or num_classes > 5:
        panels[0][2].append(("val_top5", "validation top-5"))
    for ax, label, curves in panels:
        drawn = False
        for name, legend in curves:
            values = column(name)
            if values:
                ax.plot(epochs, values, marker="o", markersize=3, label=legend)
                drawn = True
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)


def config_difference(saved, current, ignore=()):
    """`[(key, saved value, current value)]` for every setting that differs."""
    keys = sorted((set(saved) | set(current)) - set(ignore))
    return [(k, saved.get(k), current.get(k)) for k in keys if saved.get(k) != current.get(k)]
