"""A training run from its settings (`drloc_keras.options`): data, model, fit, report.

    from drloc_keras import options, run
    args, given = options.parse(["--dataset", "synthetic", "--epochs", "1"])
    report = run.train(args, given)

`train` is what `examples/train_cifar.py` and `examples/small_data_study.py` run, step by
step through a `Run`:

    with run.Run(args, given) as r:          # the folder, resume checks, seeds, devices
        data = r.load_data()                 # train / validation / test arrays
        model = r.build_model(data)          # new, or the last checkpoint of a resumed run
        r.fit(model, data)                   # checkpoints after every epoch
        report = r.report(model, data)       # metrics.json, curves.png

A resumed run (`--resume`) reads its settings from the folder and continues from the last
finished epoch with the same data order, augmentation and random streams as the run that
was not stopped. Errors a user can fix raise `options.UsageError` (the message says how).
"""

import importlib.util
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import NamedTuple

import keras
import numpy as np

from drloc_keras import data as datasets
from drloc_keras import compilation_cache, distribute, pipeline, recipe, run_folder
from drloc_keras.options import (
    EVAL_FLAGS,
    MIXED_PRECISION,
    RESUME_FLAGS,
    UsageError,
    flag,
    namespace,
)
from drloc_keras.run_folder import BEST, CONFIG, CURVES, EVAL, HISTORY, INTERRUPTED, LAST, METRICS, TENSORBOARD

# Images decoded for the channel statistics of a training set streamed from disk.
STATISTICS_SAMPLE = 2048


class Diverged(UsageError):
    """The loss became NaN or infinite."""

    code = 3


class RunData(NamedTuple):
    """The arrays of a run: training (cycled to the epoch's size), validation (None without
    one) and test images `uint8 [N, H, W, 3]` at the training size, with int labels."""

    train: tuple
    val: tuple
    test: tuple
    num_classes: int
    class_names: list
    train_images: int        # distinct training images (before cycling)
    input_stats: tuple       # per-channel (mean, variance) of the training images, or None
    steps_per_epoch: int


def describe_lambda_schedule(args):
    """One line: the warm-up/decay schedule of lambda and its values over the run's epochs."""
    from drloc_ref import lambda_at

    values = [lambda_at(e, args.lam, args.lam_warmup_epochs, args.lam_total_epochs) for e in range(args.epochs)]
    shown = ", ".join(f"{v:.3g}" for v in values[:6]) + (f", ..., {values[-1]:.3g}" if len(values) > 6 else "")
    return (f"lambda schedule: 0 at epoch 0, rising to {args.lam:g} at epoch {args.lam_warmup_epochs}, "
            f"then falling to 0 at epoch {args.lam_total_epochs}; epochs 0-{args.epochs - 1} of this run: {shown}")


def warmup_note(args):
    """One line when the learning-rate warm-up takes half of the run or more (the authors'
    20 epochs are meant for runs of 100 and more), else None."""
    if args.warmup_epochs > 0 and 2 * args.warmup_epochs >= args.epochs:
        return (f"note: the learning-rate warm-up (--warmup-epochs {args.warmup_epochs}) lasts at least half of "
                f"the run's {args.epochs} epochs; a run shorter than about 4 times the warm-up should lower it")
    return None


def load_data(args, statistics=True):
    """The run's data: the dataset of `args`, its validation set held out of the training
    set, the `--train-fraction` subset, the `--test-fraction` subset, the training set
    cycled to `--epoch-images`, and the training images' channel statistics."""
    options = {}
    if args.dataset == "synthetic":
        options = dict(train_size=args.synthetic_train_size, test_size=args.synthetic_test_size, seed=args.seed)
    # The folder loader needs the size (its images differ); the others are made RGB at the
    # training size below, once, after the subsets are taken.
    size = args.image_size if args.dataset == "folder" else None
    if args.dataset == "folder":
        options = dict(stream={"on": True, "off": False, "auto": "auto"}[args.stream_images])
    try:
        dataset = datasets.load_dataset(args.dataset, data_dir=args.data_dir, image_size=size, **options)
    except (datasets.DatasetUnavailableError, datasets.DatasetFormatError, ImportError) as e:
        raise UsageError(str(e)) from None
    (x_train, y_train), (x_test, y_test) = dataset.train, dataset.test
    val = None
    if args.val_fraction > 0:
        val, (x_train, y_train) = datasets.class_balanced_split(x_train, y_train, args.val_fraction, seed=args.seed)
    pool = len(x_train)
    if args.train_fraction < 1:
        x_train, y_train = datasets.class_balanced_subset(x_train, y_train, args.train_fraction, seed=args.seed)
    if args.test_fraction < 1:
        x_test, y_test = datasets.class_balanced_subset(x_test, y_test, args.test_fraction, seed=args.seed)
    # Held as the pipelines and the model take them: uint8 RGB at the training size.
    x_train, x_test = (pipeline.prepare_images(x, args.image_size) for x in (x_train, x_test))
    if val is not None:
        val = (pipeline.prepare_images(val[0], args.image_size), val[1])
    distinct = len(x_train)
    stats = None
    if statistics and args.input_normalization == "train-set":
        # The statistics of the images the run trains on (the subset, before augmentation),
        # so that any dataset or folder is normalised without a table of constants.
        if isinstance(x_train, datasets.ImageFiles):  # streamed: a seeded sample is decoded
            sample = np.random.default_rng(args.seed).permutation(len(x_train))[:STATISTICS_SAMPLE]
            stats = recipe.channel_statistics(x_train.read(np.sort(sample)))
        else:
            stats = recipe.channel_statistics(x_train)
    if args.epoch_images is not None:
        size = pool if args.epoch_images == "full" else args.epoch_images
        if size > len(x_train):
            x_train, y_train = datasets.cycle_to_size(x_train, y_train, size, seed=args.seed)
    steps = len(x_train) // args.batch_size
    if steps < 1:
        raise UsageError(f"--batch-size {args.batch_size} is larger than the training set ({len(x_train)} images)")
    return RunData((x_train, y_train), val, (x_test, y_test), dataset.num_classes, list(dataset.class_names),
                   distinct, stats, steps)


def out_of_memory(error):
    """Whether `error` is an accelerator's allocator running out of memory (XLA's
    RESOURCE_EXHAUSTED on JAX, TensorFlow's ResourceExhaustedError, PyTorch's
    OutOfMemoryError)."""
    name = type(error).__name__
    text = str(error)
    return (name in ("ResourceExhaustedError", "OutOfMemoryError") or "RESOURCE_EXHAUSTED" in text
            or "out of memory" in text.lower())


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _tensorboard_available():
    """Keras' TensorBoard callback writes through TensorFlow's summary ops."""
    return importlib.util.find_spec("tensorflow") is not None


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


class Run:
    """One run of the settings `args`; `given` names the flags given on the command line
    (a resumed or evaluated run accepts only `options.RESUME_FLAGS` / `EVAL_FLAGS`)."""

    def __init__(self, args, given=(), log=print):
        self.requested = args
        self.given = set(given)
        self.log = log
        self.args = None
        self.state = None
        self.interrupted = False
        self._saved_epochs = None

    # --- Set-up ---------------------------------------------------------------------------

    def __enter__(self):
        self.args = self._settings(self.requested)
        self._signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        # Ctrl-C and SIGTERM (a scheduler's stop) save and exit; a shell that started this
        # in the background may have left SIGINT ignored, so both handlers are set here.
        for s in self._signals:
            signal.signal(s, _interrupt)
        self._policy = keras.config.dtype_policy()
        try:
            # The distribution comes first: JAX's multi-process runtime and TensorFlow's
            # collective ops must be set up before either framework computes anything.
            self.dist = distribute.setup(self.args)
            # Only the chief (process 0) writes the run folder; the other processes write
            # the same files into a scratch folder deleted at exit (they take part in every
            # step, saving included, as MultiWorkerMirroredStrategy expects).
            self.folder = run_folder.RunFolder(self.args.output)
            if self.dist.chief:
                self.folder.create()
                self.out = self.folder
            else:
                self.out = run_folder.RunFolder(tempfile.mkdtemp(prefix=f"drloc-process{self.dist.process_index}-"))
            if not (self.args.resume or self.args.eval_only):
                self.out.write_json(CONFIG, _config(self.args))
            elif self.args.resume and self.args.epochs != self._saved_epochs:
                self.out.write_json(CONFIG, _config(self.args))
            # Before anything compiles: a later run with the same step loads it from disk.
            self.compilation_cache = compilation_cache.enable()
            keras.utils.set_random_seed(self.args.seed)
            if MIXED_PRECISION[self.args.mixed_precision]:
                keras.config.set_dtype_policy(MIXED_PRECISION[self.args.mixed_precision])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for s, handler in getattr(self, "_signals", {}).items():
            signal.signal(s, handler)
        if hasattr(self, "_policy"):
            keras.config.set_dtype_policy(self._policy)
        if hasattr(self, "dist"):
            self.dist.close()
            if not self.dist.chief and hasattr(self, "out"):
                shutil.rmtree(self.out.path, ignore_errors=True)
        return False

    def _settings(self, args):
        """The settings the run goes by: `args` for a new run, the saved ones (with the
        few flags a resumption may change) for `--resume` and `--eval-only`."""
        folder = run_folder.RunFolder(args.output)
        self.state = folder.read_state()
        if not (args.resume or args.eval_only):
            if self.state is not None or folder.exists(LAST):
                done = (self.state or {}).get("epochs_done", "some")
                raise UsageError(f"{args.output} already holds a run ({done} epochs done). Pass --resume "
                                 f"to continue it, --eval-only to evaluate it, or another --output.")
            return args
        what = "--resume" if args.resume else "--eval-only"
        saved = folder.read_config()
        if saved is None:
            raise UsageError(f"{args.output} holds no run to {'resume' if args.resume else 'evaluate'} "
                             f"(no {CONFIG})")
        allowed = RESUME_FLAGS if args.resume else EVAL_FLAGS
        extra = sorted(self.given - set(allowed))
        if extra:
            changed = ", ".join(flag(name) for name in extra)
            may = ", ".join(flag(name) for name in allowed if name not in ("resume", "eval_only", "output"))
            raise UsageError(f"{what} goes by the settings saved in {args.output}/{CONFIG}; {changed} would "
                             f"change them. Only {may} may be given (a different run needs another --output).")
        settings = namespace(saved)
        self._saved_epochs = settings.epochs
        for name in ("output", "distribute", "verbose", "resume", "eval_only"):
            setattr(settings, name, getattr(args, name))
        if "data_dir" in self.given:
            settings.data_dir = args.data_dir
        if args.resume and "epochs" in self.given:
            done = (self.state or {}).get("epochs_done", 0)
            if args.epochs < done:
                raise UsageError(f"--epochs {args.epochs} is fewer than the {done} epochs {args.output} has "
                                 f"already finished")
            settings.epochs = args.epochs
        return settings

    # --- Data -----------------------------------------------------------------------------

    def load_data(self):
        args = self.args
        fresh = not (args.resume and self.state) and not args.eval_only
        data = load_data(args, statistics=fresh)
        val = f", {len(data.val[0])} validation" if data.val is not None else ", no validation set"
        self.log(f"{args.dataset}: {data.train_images} training{val} and {len(data.test[0])} test images, "
                 f"{data.num_classes} classes, trained at {args.image_size}x{args.image_size}")
        if len(data.train[0]) > data.train_images:
            self.log(f"  cycled to {len(data.train[0])} images per epoch (--epoch-images {args.epoch_images})")
        if data.input_stats is not None:
            mean, variance = data.input_stats
            self.log("  input normalisation (training images): mean " + " ".join(f"{m:.1f}" for m in mean)
                     + ", std " + " ".join(f"{math.sqrt(v):.1f}" for v in variance))
        return data

    def _eval_dataset(self, x, y, data):
        ds = pipeline.eval_dataset(x, y, data.num_classes, self.args.batch_size, image_size=self.args.image_size,
                                   pad_last_batch=self.dist.replicas > 1)
        return self.dist.prepare_dataset(ds, -(-len(x) // self.args.batch_size))

    # --- Model ----------------------------------------------------------------------------

    def build_model(self, data):
        """A new model, or a resumed run's last checkpoint with its random streams."""
        args = self.args
        resuming = args.resume and self.state is not None
        with self.dist.scope:
            if resuming:
                model = self._resume_model(data)
            else:
                try:
                    model = recipe.build_model(args, data.num_classes, data.steps_per_epoch, data.input_stats)
                except ValueError as e:  # an unknown --backbone-args, a size the backbone refuses
                    raise UsageError(f"--backbone {args.backbone}: {e}") from None
                recipe.compile_model(model, args, data.steps_per_epoch, data.num_classes)
        self.dist.prepare_model(model)
        self.parameters = int(sum(math.prod(v.shape) for v in model.backbone.trainable_variables))
        self.log(f"{args.backbone}: {self.parameters / 1e6:.2f}M parameters; DRLoc lambda {args.lam:g} "
                 f"({args.lam_schedule}), mode {args.mode}, offsets {args.offsets}, {args.sample_size} pairs per image, "
                 f"head width {args.head_hidden}")
        if args.lam_schedule != "constant" and model.drloc_enabled:
            self.log("  " + describe_lambda_schedule(args))
        if warmup_note(args):
            self.log("  " + warmup_note(args))
        return model

    def _resume_model(self, data):
        args, state = self.args, self.state
        model = run_folder.load_model(self.folder.file(LAST))
        iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        expected = state.get("iterations")
        if expected is not None and iterations != expected:
            raise UsageError(f"{self.folder.file(LAST)} has made {iterations} optimizer steps, but "
                             f"{self.folder.file('state.json')} records {expected}: the two files do not "
                             f"belong together (was the run stopped while saving?)")
        if model.augmentation is None and (args.flip or args.randaugment or args.random_erasing > 0
                                           or args.mixup > 0 or args.cutmix > 0):
            raise UsageError(f"{self.folder.file(LAST)} was saved by an earlier drloc that augmented in the "
                             f"input pipeline, not in the model; this version cannot resume it with its "
                             f"augmentation. Start a new run (another --output).")
        if state.get("generators") is not None:
            run_folder.restore_generator_states(model, state["generators"])
        else:
            self.log("  note: this run was saved without its random-generator states; the resumed "
                     "epochs draw other dropout masks and DRLoc pairs than an unstopped run")
        saved_backend = state.get("backend")
        if saved_backend is not None and saved_backend != keras.backend.backend():
            self.log(f"  note: epochs 1-{state['epochs_done']} of this run were trained on {saved_backend}, the "
                     f"rest run on {keras.backend.backend()} (the same weights and optimizer state, but other "
                     f"kernels and other random draws); set KERAS_BACKEND={saved_backend} to stay on one backend")
        if args.epochs != self._saved_epochs and args.lr_schedule == "cosine":
            # A longer run: the cosine decay is stretched over the new length.
            model.optimizer.learning_rate = recipe.learning_rate_schedule(args, data.steps_per_epoch)
            self.log(f"  --epochs {self._saved_epochs} -> {args.epochs}: the learning-rate schedule now "
                     f"decays over {args.epochs} epochs")
        elif args.epochs != self._saved_epochs:
            self.log(f"  --epochs {self._saved_epochs} -> {args.epochs}: the learning rate stays constant")
        run_folder.truncate_history(self.out.file(HISTORY), state["epochs_done"])
        self.log(f"resuming {args.output} after epoch {state['epochs_done']} of {args.epochs}")
        return model

    # --- Fit ------------------------------------------------------------------------------

    def fit(self, model, data, callbacks=()):
        """Train to `--epochs`; a checkpoint after every epoch. Ctrl-C or SIGTERM saves the
        unfinished epoch's weights to interrupted.keras and returns (`self.interrupted`)."""
        args = self.args
        initial_epoch = (self.state or {}).get("epochs_done", 0) if args.resume else 0
        if initial_epoch >= args.epochs:
            self.log(f"{args.output} already finished its {args.epochs} epochs")
        # The batches are uint8; the model augments them inside its training step.
        train_ds, epoch_seeds = pipeline.train_dataset(*data.train, data.num_classes, args.batch_size,
                                                       image_size=args.image_size, seed=args.seed)
        train_ds = self.dist.prepare_dataset(train_ds, data.steps_per_epoch)
        val_ds = self._eval_dataset(*data.val, data) if data.val is not None else None
        best = (self.state or {}).get("best") if args.resume else None
        self.checkpoint = run_folder.EpochCheckpoint(
            self.out, monitor="val_accuracy" if val_ds is not None else None,
            initial_best=-math.inf if best is None else best,
        )
        self.timer = _EpochTimer()
        callbacks = [
            epoch_seeds,
            keras.callbacks.TerminateOnNaN(),
            run_folder.LearningRateLogger(),
            self.checkpoint,
            keras.callbacks.CSVLogger(self.out.file(HISTORY), append=initial_epoch > 0),
            *([keras.callbacks.TensorBoard(self.out.file(TENSORBOARD))] if _tensorboard_available() else []),
            self.timer,
            *callbacks,
        ]
        if initial_epoch < args.epochs:
            self.log(f"training epochs {initial_epoch + 1}-{args.epochs}: {data.steps_per_epoch} steps of "
                     f"{args.batch_size} images each; the first step also builds and compiles the "
                     f"training step")
        try:
            model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, initial_epoch=initial_epoch,
                      callbacks=callbacks, verbose=args.verbose, shuffle=False)
        except Exception as e:
            if not out_of_memory(e):
                raise
            raise UsageError(f"the device ran out of memory training batches of {args.batch_size} images "
                             f"({type(e).__name__}); give a smaller --batch-size (or --mixed-precision bf16). "
                             f"The finished epochs are kept: --resume continues from them") from None
        except KeyboardInterrupt:
            self.interrupted = True
            try:
                run_folder.atomic_save_model(model, self.out.file(INTERRUPTED))
            except Exception as e:  # stopped while the step was built or compiled: no weights yet
                print(f"\ninterrupted before the training step was ready ({type(e).__name__}: {e}); "
                      f"nothing was saved for this epoch; --resume continues from the last finished "
                      f"epoch, if any", file=sys.stderr)
            else:
                print(f"\ninterrupted: the weights of the unfinished epoch are in {args.output}/{INTERRUPTED}; "
                      f"--resume continues from the last finished epoch", file=sys.stderr)
        if self.checkpoint.nan_seen:
            done = (self.out.read_state() or {}).get("epochs_done", 0)
            where = (f"The last good checkpoint is {args.output}/{LAST} ({done} epochs)" if done
                     else "No checkpoint was written (the first epoch did not finish with a finite loss)")
            raise Diverged(f"the loss became NaN or infinite; training stopped. {where}. Try a lower --lr "
                           f"or --lam.")
        return model

    # --- Report ---------------------------------------------------------------------------

    def _evaluate(self, model, x, y, data):
        results = model.evaluate(self._eval_dataset(x, y, data), verbose=0, return_dict=True)
        return {"top1": float(results["accuracy"]), "top5": float(results["top5"]),
                "loss": float(results["loss"])}

    def _best_model(self):
        if not self.out.exists(BEST):
            return None
        with self.dist.scope:
            model = run_folder.load_model(self.out.file(BEST))
        return self.dist.prepare_model(model)

    def report(self, model, data):
        """metrics.json and curves.png: the test set's top-1/top-5 of the last model and of
        best.keras, the validation figures, and what every figure was measured on."""
        args = self.args
        rows = self.out.history()
        test, val = data.test, data.val
        final = self._evaluate(model, *test, data) if rows and not self.interrupted else None
        val_rows = [r for r in rows if "val_accuracy" in r]
        best_row = max(val_rows, key=lambda r: r["val_accuracy"]) if val_rows else None
        if best_row is not None and best_row is val_rows[-1] and final is not None:
            best = final  # best.keras holds the last epoch's weights
        else:
            best_model = self._best_model() if val is not None else None
            best = self._evaluate(best_model, *test, data) if best_model is not None else None
        earlier_backend = (self.state or {}).get("backend") if args.resume else None
        report = {
            "final_top1": final and final["top1"],
            "final_top5": final and final["top5"],
            "best_top1": best and best["top1"],
            "best_top5": best and best["top5"],
            "best_epoch": int(best_row["epoch"]) + 1 if best_row else None,
            "val_final_top1": val_rows[-1]["val_accuracy"] if val_rows else None,
            "val_best_top1": best_row["val_accuracy"] if best_row else None,
            "final_loss": rows[-1].get("loss") if rows else None,
            "final_test_loss": final and final["loss"],
            "sets": {
                "final_*": f"test set ({len(test[0])} images): the model after the last epoch",
                "best_*": f"test set ({len(test[0])} images): best.keras, the epoch of the best "
                          f"validation top-1" if val is not None else "no validation set: no best model",
                "val_*": (f"validation set ({len(val[0])} images held out of the training set)"
                          if val is not None else "no validation set"),
                "final_loss": "training loss (CE + lambda * DRLoc) of the last epoch, augmented data",
            },
            "epochs": len(rows),
            "train_images": data.train_images,
            "epoch_images": data.steps_per_epoch * args.batch_size,
            "val_images": len(val[0]) if val is not None else 0,
            "test_images": len(test[0]),
            "parameters": self.parameters,
            "seconds_per_epoch": (sum(self.timer.seconds) / len(self.timer.seconds)) if self.timer.seconds else None,
            # Per epoch of this process (the first also compiles the step): images per second
            # of the program are epoch_images / the later ones.
            "epoch_seconds": [round(s, 3) for s in self.timer.seconds],
            "interrupted": self.interrupted,
            "backend": keras.backend.backend(),
            # The backend of the epochs before a resumption, where it was another one.
            "earlier_backend": earlier_backend if earlier_backend != keras.backend.backend() else None,
            "replicas": self.dist.replicas,
            "processes": self.dist.processes,
            "config": _config(args),
        }
        self.out.write_json(METRICS, report)
        if rows:
            title = (f"{os.path.basename(os.path.normpath(args.output))}: {args.backbone} on {args.dataset}, "
                     f"lambda {args.lam:g}, {data.train_images} training images")
            try:
                run_folder.plot_curves(self.out.file(HISTORY), self.out.file(CURVES), title=title,
                                       num_classes=data.num_classes)
            except ImportError:
                print("matplotlib is not installed: no curves.png", file=sys.stderr)

        def percent(value):
            return "n/a" if value is None else f"{100 * value:.2f}%"

        where = (args.output if self.dist.chief
                 else f"{args.output} of the chief (process {self.dist.process_index} discards its copy)")
        self.log(f"done: {report['epochs']} epochs; test top-1 {percent(report['final_top1'])} (last model), "
                 f"{percent(report['best_top1'])} (best.keras, epoch {report['best_epoch']} of the validation "
                 f"set); results in {where}")
        return report

    def evaluate(self, data):
        """--eval-only: best.keras and last.keras on the run's own validation and test sets."""
        report = {"sets": {"test": f"test set ({len(data.test[0])} images)",
                           "val": (f"validation set ({len(data.val[0])} images held out of the training set)"
                                   if data.val is not None else "no validation set")}}
        for name in (BEST, LAST):
            if not self.folder.exists(name):
                continue
            with self.dist.scope:
                model = run_folder.load_model(self.folder.file(name))
                model.compile(optimizer=model.optimizer,
                              loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                              metrics=[], weighted_metrics=recipe.evaluation_metrics(data.num_classes))
            self.dist.prepare_model(model)
            entry = {"test": self._evaluate(model, *data.test, data)}
            if data.val is not None:
                entry["val"] = self._evaluate(model, *data.val, data)
            report[os.path.splitext(name)[0]] = entry
        if len(report) == 1:
            raise UsageError(f"{self.args.output} holds no saved model ({BEST} or {LAST})")
        self.out.write_json(EVAL, report)
        self.log(json.dumps(report, indent=2))
        return report


def _config(args):
    return {k: v for k, v in vars(args).items() if k not in ("resume", "eval_only")}


def train(args, given=(), log=print):
    """The whole run of the settings `args` (`options.parse`): its report (a dict)."""
    with Run(args, given, log=log) as r:
        data = r.load_data()
        if r.args.eval_only:
            return r.evaluate(data)
        model = r.build_model(data)
        r.fit(model, data)
        return r.report(model, data)


__all__ = ["Diverged", "Run", "RunData", "describe_lambda_schedule", "load_data", "train", "warmup_note"]
