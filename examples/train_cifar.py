"""Train a registered backbone with (or without) DRLoc on CIFAR, SVHN, Fashion-MNIST or your images.

    python examples/train_cifar.py --backbone cvt --lam 0.1
    python examples/train_cifar.py --dataset synthetic --epochs 1        # offline smoke run

The program reads top to bottom: parse the flags, load the data, build the model, fit,
report. Everything lands in `--output`: history.csv, TensorBoard logs, metrics.json,
curves.png, config.json and a checkpoint per epoch (last.keras, best.keras).

`--distribute` trains data parallel over every device (JAX `DataParallel`, TensorFlow
`MirroredStrategy`) and, with `KERAS_DISTRIBUTION_*` (JAX) or `TF_CONFIG` (TensorFlow,
`MultiWorkerMirroredStrategy`) set, over several processes or hosts; docs/scaling.md
shows the launch commands.
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time

import keras

from drloc_keras import DRLocModel, backbones, data, training

MIXED_PRECISION = {"none": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# Settings added after runs were first saved, with the value those runs trained with:
# runs saved before --flip existed always flipped.
# runs saved before --epoch-images existed had epochs of their training set's size.
# runs saved before the input normalisation, the weight-decay exclusions and the head flags
# existed fed raw 0-255 pixels, decayed every variable and had a 512-wide Glorot head.
LEGACY_DEFAULTS = {"flip": True, "epoch_images": None, "test_fraction": 1.0,
                   "input_normalization": "none", "decay_all_weights": True, "head_hidden": 512,
                   "head_init": "glorot", "lam_warmup_epochs": 20, "lam_total_epochs": 300}
# Flags that may change between a run and its resumption (the global batch, not the
# number of devices, fixes the optimisation, so a run may resume with or without --distribute).
RESUMABLE = ("resume", "eval_only", "output", "data_dir", "distribute")
# The environment variables that ask for a run over several processes.
JAX_PROCESS_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                         "KERAS_DISTRIBUTION_PROCESS_ID")


def _positive_int_or(keyword, what):
    """An argparse type: an integer >= 1, or the word `keyword`."""

    def parse(text):
        if text == keyword:
            return text
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a positive {what} or '{keyword}'; found {text!r}")
        return value

    return parse


_epoch_images = _positive_int_or("full", "number of images")
_head_hidden = _positive_int_or("auto", "width")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument("--backbone", default="cvt", choices=backbones.names(), metavar="NAME",
                   help=f"backbone family or size: {', '.join(backbones.names())}")
    g.add_argument("--lam", type=float, default=None,
                   help="DRLoc weight lambda; 0 turns DRLoc off (default: the authors' value "
                        "for the family: 0.1 CvT/T2T/CCT, 0.5 Swin/ViT/ResNet-50)")
    g.add_argument("--lam-schedule", default="constant", choices=["constant", "warmup-decay"],
                   help="constant lambda, or the authors' linear warm-up over --lam-warmup-epochs "
                        "then linear decay to 0 at --lam-total-epochs")
    g.add_argument("--lam-warmup-epochs", type=int, default=20,
                   help="warmup-decay: epochs of the linear warm-up of lambda (the authors' 20)")
    g.add_argument("--lam-total-epochs", type=int, default=300,
                   help="warmup-decay: the epoch at which lambda has decayed to 0 (the authors' 300; "
                        "their runs stop at epoch 100)")
    g.add_argument("--mode", default="l1", choices=["l1", "ce", "cbr"], help="DRLoc loss")
    g.add_argument("--sample-size", type=int, default=64, help="pairs per image (m)")
    g.add_argument("--head-hidden", type=_head_hidden, default=512, metavar="N|auto",
                   help="width of the DRLoc head's MLP: the authors' 512, or 'auto': twice the channels "
                        "of the feature map, at most 512 (a head in proportion to a small backbone)")
    g.add_argument("--head-init", default="glorot", choices=["glorot", "trunc_normal"],
                   help="initialisation of the DRLoc head's kernels: Keras' Glorot-uniform, or the "
                        "authors' truncated normal of std 0.02 (their Swin and T2T-ViT)")
    g.add_argument("--multiscale", action="store_true",
                   help="one DRLoc head per feature map the backbone exposes (Swin: every stage)")
    g.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth rate")
    g.add_argument("--backbone-args", type=json.loads, default={}, metavar="JSON",
                   help='backbone constructor overrides, e.g. \'{"depths": [1, 1, 2]}\'')
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="cifar10", choices=sorted(data.DATASETS), help="dataset")
    g.add_argument("--data-dir", default=None,
                   help="local copy of the dataset files (see the error message for the layout)")
    g.add_argument("--image-size", type=int, default=32, help="train and evaluate at this size")
    g.add_argument("--input-normalization", default="train-set", choices=["train-set", "none"],
                   help="scale the pixels to mean 0 and standard deviation 1 per channel with the "
                        "statistics of the training images (the --train-fraction subset), inside the "
                        "saved model; 'none' feeds raw 0-255 values")
    g.add_argument("--synthetic-train-size", type=int, default=2000,
                   help="training images of --dataset synthetic")
    g.add_argument("--synthetic-test-size", type=int, default=500, help="test images of --dataset synthetic")
    g.add_argument("--train-fraction", type=float, default=1.0,
                   help="class-balanced, seeded fraction of the training set (small-data regime)")
    g.add_argument("--test-fraction", type=float, default=1.0,
                   help="class-balanced, seeded fraction of the test set to evaluate on (quicker "
                        "epochs on a large test set; the same images for every run of a seed)")
    g.add_argument("--epoch-images", type=_epoch_images, default=None, metavar="N|full",
                   help="at least N images per training epoch: a smaller training set (a "
                        "--train-fraction subset) is cycled, reshuffled, up to N images, so that it "
                        "gets as many optimizer steps per epoch as a larger one (a larger one keeps "
                        "its size); 'full': the size of the whole training set before "
                        "--train-fraction (default: the training set's size)")
    g = p.add_argument_group("recipe")
    g.add_argument("--epochs", type=int, default=100, help="training epochs")
    g.add_argument("--batch-size", type=int, default=128,
                   help="global batch size: with --distribute it is split evenly over all devices "
                        "of all processes, so it must be a multiple of their number")
    g.add_argument("--lr", type=float, default=5e-4,
                   help="base learning rate for batch 512; scaled by batch-size / 512")
    g.add_argument("--weight-decay", type=float, default=0.05,
                   help="AdamW weight decay; not applied to biases, normalisation parameters, "
                        "position embeddings, class tokens and relative position bias tables")
    g.add_argument("--decay-all-weights", action=argparse.BooleanOptionalAction, default=False,
                   help="apply the weight decay to every variable, as keras.optimizers.AdamW does")
    g.add_argument("--warmup-epochs", type=int, default=5, help="linear learning-rate warm-up")
    g.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default: on, except for datasets whose class a "
                        f"mirror image changes: {', '.join(sorted(data.FLIP_CHANGES_CLASS))})")
    g.add_argument("--randaugment", action=argparse.BooleanOptionalAction, default=True,
                   help="RandAugment (2 ops)")
    g.add_argument("--mixup", type=float, default=0.8, help="MixUp alpha; 0 turns it off")
    g.add_argument("--cutmix", type=float, default=1.0, help="CutMix factor; 0 turns it off")
    g.add_argument("--random-erasing", type=float, default=0.25, help="random erasing probability")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g = p.add_argument_group("run")
    g.add_argument("--output", default=None, help="output folder (default: runs/<dataset>-<backbone>-lam<lam>)")
    g.add_argument("--resume", action="store_true", help="continue from --output's last checkpoint")
    g.add_argument("--eval-only", action="store_true", help="evaluate --output's best (or last) model")
    g.add_argument("--mixed-precision", default="none", choices=list(MIXED_PRECISION),
                   help="bf16 or fp16 compute; DRLoc and the loss stay float32")
    g.add_argument("--distribute", action="store_true",
                   help="data parallel over all devices: JAX keras.distribution.DataParallel, TensorFlow "
                        "MirroredStrategy (not PyTorch). Several processes or hosts: set "
                        "KERAS_DISTRIBUTION_JOB_ADDRESSES (the coordinator's host:port), "
                        "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID for JAX, "
                        "or TF_CONFIG for TensorFlow (MultiWorkerMirroredStrategy) in each process; "
                        "process 0 (the chief) writes --output. See docs/scaling.md")
    g.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras fit verbosity")
    args = p.parse_args(argv)

    checks = [
        ("sample_size", args.sample_size >= 1, ">= 1"),
        ("epochs", args.epochs >= 1, ">= 1"),
        ("batch_size", args.batch_size >= 1, ">= 1"),
        ("train_fraction", 0 < args.train_fraction <= 1, "in (0, 1]"),
        ("test_fraction", 0 < args.test_fraction <= 1, "in (0, 1]"),
        ("lam", args.lam is None or args.lam >= 0, ">= 0"),
        ("image_size", args.image_size >= 8, ">= 8"),
        ("drop_path", 0 <= args.drop_path < 1, "in [0, 1)"),
        ("random_erasing", 0 <= args.random_erasing <= 1, "in [0, 1]"),
        ("lam_warmup_epochs", args.lam_warmup_epochs >= 0, ">= 0"),
        ("lam_total_epochs", args.lam_total_epochs > args.lam_warmup_epochs,
         f"greater than --lam-warmup-epochs ({args.lam_warmup_epochs})"),
    ]
    for name, ok, allowed in checks:
        if not ok:
            p.error(f"--{name.replace('_', '-')} must be {allowed}; found {getattr(args, name)}")
    if args.resume and args.eval_only:
        p.error("--resume and --eval-only exclude each other")
    if args.lam is None:
        args.lam = backbones.default_lambda(args.backbone)
    if args.flip is None:
        args.flip = args.dataset not in data.FLIP_CHANGES_CLASS
    if args.output is None:
        args.output = os.path.join("runs", f"{args.dataset}-{args.backbone}-lam{args.lam:g}")
    return args


def describe_lambda_schedule(args):
    """One line: the warm-up/decay schedule of lambda and its values over this run's epochs."""
    from drloc_ref import lambda_at

    values = [lambda_at(e, args.lam, args.lam_warmup_epochs, args.lam_total_epochs) for e in range(args.epochs)]
    shown = ", ".join(f"{v:.3g}" for v in values[:6]) + (f", ..., {values[-1]:.3g}" if len(values) > 6 else "")
    return (f"lambda schedule: 0 at epoch 0, rising to {args.lam:g} at epoch {args.lam_warmup_epochs}, "
            f"then falling to 0 at epoch {args.lam_total_epochs}; epochs 0-{args.epochs - 1} of this run: {shown}")


def fail(message, code=2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


class EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv=None):
    args = parse_args(argv)
    # Ctrl-C and SIGTERM (a scheduler's stop) save and exit; a shell that started this in the
    # background may have left SIGINT ignored, so both handlers are set here.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    # The distribution comes first: JAX's multi-process runtime and TensorFlow's collective
    # ops must be set up before either framework computes anything.
    dist = setup_distribution(args)
    # Only the chief (process 0) writes the run folder. The other processes write the same
    # files into a temporary folder that they delete at exit: they take part in every step,
    # saving included (MultiWorkerMirroredStrategy expects every worker to), but what they
    # write is thrown away.
    if dist.chief:
        save_dir = args.output
        os.makedirs(save_dir, exist_ok=True)
    else:
        save_dir = tempfile.mkdtemp(prefix=f"drloc-process{dist.process_index}-")
    try:
        return train(args, dist, save_dir)
    finally:
        dist.close()
        if not dist.chief:
            shutil.rmtree(save_dir, ignore_errors=True)


def train(args, dist, save_dir):
    """The run itself: reads `args.output` (resume, evaluate) and writes `save_dir`."""
    config = dict(vars(args))
    out = args.output
    config_path = os.path.join(out, "config.json")
    state = training.read_state(out)

    # --- Resume, evaluate or start: check the folder first, before any work. ---------------
    if args.resume or args.eval_only:
        if not os.path.exists(config_path):
            fail(f"{out} holds no run to {'resume' if args.resume else 'evaluate'} (no config.json)")
        with open(config_path) as f:
            saved = json.load(f)
        saved = {**LEGACY_DEFAULTS, **saved}
        diff = training.config_difference(saved, config, ignore=RESUMABLE)
        if diff and args.resume:
            lines = "\n".join(f"  --{k.replace('_', '-')}: saved {a!r}, now {b!r}" for k, a, b in diff)
            fail(f"--resume with a different configuration than the run in {out}:\n{lines}\n"
                 f"Resume with the saved flags, or start a new run with another --output.")
        if args.eval_only:
            config = {**saved, "eval_only": True, "output": out}
    elif state is not None:
        fail(f"{out} already holds a run ({state['epochs_done']} epochs done). "
             f"Pass --resume to continue it, or another --output.")
    else:
        training.atomic_write_text(os.path.join(save_dir, "config.json"), json.dumps(config, indent=2))

    keras.utils.set_random_seed(args.seed)
    if MIXED_PRECISION[args.mixed_precision]:
        keras.config.set_dtype_policy(MIXED_PRECISION[args.mixed_precision])

    # --- Data ----------------------------------------------------------------------------
    try:
        options = {}
        if args.dataset == "synthetic":
            options = dict(train_size=args.synthetic_train_size, test_size=args.synthetic_test_size,
                           seed=args.seed)
        # The `folder` loader needs the size (its images differ); the others are resized in
        # the input pipeline, which keeps the arrays in memory at their native size.
        size = args.image_size if args.dataset == "folder" else None
        dataset = data.load_dataset(args.dataset, data_dir=args.data_dir, image_size=size, **options)
    except (data.DatasetUnavailableError, data.DatasetFormatError, ImportError) as e:
        fail(str(e))
    (x_train, y_train), (x_test, y_test) = dataset.train, dataset.test
    num_classes = dataset.num_classes
    full_size = len(x_train)
    if args.train_fraction < 1:
        x_train, y_train = data.class_balanced_subset(x_train, y_train, args.train_fraction, seed=args.seed)
    if args.test_fraction < 1:
        x_test, y_test = data.class_balanced_subset(x_test, y_test, args.test_fraction, seed=args.seed)
    print(f"{args.dataset}: {len(x_train)} training and {len(x_test)} test images, "
          f"{num_classes} classes, trained at {args.image_size}x{args.image_size}")
    input_stats = None
    if args.input_normalization == "train-set" and not args.eval_only and not (args.resume and state):
        # The statistics of the images the run trains on (the subset, before augmentation),
        # so that any dataset or folder is normalised without a table of constants.
        input_stats = training.channel_statistics(x_train)
        print("  input normalisation (training images): mean "
              + " ".join(f"{m:.1f}" for m in input_stats[0]) + ", std "
              + " ".join(f"{math.sqrt(v):.1f}" for v in input_stats[1]))
    if args.epoch_images is not None:
        epoch_images = full_size if args.epoch_images == "full" else args.epoch_images
        if epoch_images > len(x_train):
            x_train, y_train = data.cycle_to_size(x_train, y_train, epoch_images, seed=args.seed)
            print(f"  cycled to {len(x_train)} images per epoch (--epoch-images {args.epoch_images})")
    augment = training.augmenter(args.image_size, args.randaugment, args.random_erasing, flip=args.flip,
                                 seed=args.seed)
    train_ds = training.make_dataset(
        x_train, y_train, num_classes, args.batch_size, training=True, image_size=args.image_size,
        augment=augment, mixup=args.mixup, cutmix=args.cutmix, seed=args.seed,
    )
    # Data-parallel evaluation needs full batches (an equal share per device): the last one
    # is padded with copies that weigh 0, and the metrics stay those of the real test set.
    val_ds = training.make_dataset(
        x_test, y_test, num_classes, args.batch_size, training=False, image_size=args.image_size,
        pad_last_batch=dist.replicas > 1,
    )
    steps_per_epoch = len(x_train) // args.batch_size
    if steps_per_epoch < 1:
        fail(f"--batch-size {args.batch_size} is larger than the training set ({len(x_train)} images)")
    train_ds = dist.prepare_dataset(train_ds, steps_per_epoch)
    val_ds = dist.prepare_dataset(val_ds, -(-len(x_test) // args.batch_size))

    # --- Model ---------------------------------------------------------------------------
    top5 = keras.metrics.TopKCategoricalAccuracy(min(5, num_classes), name="top5")
    last_path, best_path = os.path.join(out, "last.keras"), os.path.join(out, "best.keras")
    initial_epoch = 0
    with dist.scope:
        if args.eval_only:
            path = best_path if os.path.exists(best_path) else last_path
            if not os.path.exists(path):
                fail(f"{out} holds no saved model (best.keras or last.keras)")
            model = keras.saving.load_model(path)
            model.compile(optimizer=model.optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                          metrics=[], weighted_metrics=["accuracy", top5])
            dist.prepare_model(model)
            results = model.evaluate(val_ds, verbose=args.verbose, return_dict=True)
            report = {"model": path, **{k: float(v) for k, v in results.items()}}
            training.atomic_write_text(os.path.join(save_dir, "eval.json"), json.dumps(report, indent=2))
            print(json.dumps(report, indent=2))
            return report
        if args.resume and state is not None:
            model = keras.saving.load_model(last_path)
            initial_epoch = state["epochs_done"]
            training.truncate_history(os.path.join(save_dir, "history.csv"), initial_epoch)
            print(f"resuming {out} after epoch {initial_epoch} of {args.epochs}")
        else:
            backbone = backbones.get(
                args.backbone, image_size=args.image_size, num_classes=num_classes,
                **{**backbones.drop_path_overrides(args.backbone, args.image_size, args.drop_path),
                   **args.backbone_args},
            )
            if args.input_normalization == "train-set":
                backbone = training.with_input_normalization(backbone, *input_stats)
            model = DRLocModel(
                backbone, lam=args.lam, lam_schedule=args.lam_schedule,
                warmup_epochs=args.lam_warmup_epochs, total_epochs=args.lam_total_epochs, mode=args.mode,
                sample_size=args.sample_size, hidden=args.head_hidden, head_initializer=args.head_init,
                feature_maps="all" if args.multiscale else "last",
                steps_per_epoch=steps_per_epoch, seed=args.seed,
            )
            lr = training.scaled_learning_rate(args.lr, args.batch_size)
            optimizer = training.make_optimizer(
                lr, args.weight_decay, steps_per_epoch, args.epochs, args.warmup_epochs,
                decay_all=args.decay_all_weights,
            )
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing),
                # Weighted, so that the zero-weight padding of a distributed evaluation
                # does not count (without sample weights they equal the plain metrics).
                metrics=[], weighted_metrics=["accuracy", top5],
            )
    dist.prepare_model(model)
    params = int(sum(math.prod(v.shape) for v in model.backbone.trainable_variables))
    print(f"{args.backbone}: {params / 1e6:.2f}M parameters; DRLoc lambda {args.lam:g} "
          f"({args.lam_schedule}), mode {args.mode}, {args.sample_size} pairs per image, "
          f"head width {args.head_hidden}")
    if args.lam_schedule != "constant" and model.drloc_enabled:
        print("  " + describe_lambda_schedule(args))

    # --- Fit -----------------------------------------------------------------------------
    if initial_epoch >= args.epochs:
        print(f"{out} already finished its {args.epochs} epochs")
    checkpoint = training.EpochCheckpoint(save_dir, initial_best=(state or {}).get("best", -math.inf))
    timer = EpochTimer()
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        checkpoint,
        keras.callbacks.CSVLogger(os.path.join(save_dir, "history.csv"), append=initial_epoch > 0),
        keras.callbacks.TensorBoard(os.path.join(save_dir, "tensorboard")),
        timer,
    ]
    interrupted = False
    try:
        model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, initial_epoch=initial_epoch,
                  callbacks=callbacks, verbose=args.verbose, shuffle=False)
    except KeyboardInterrupt:
        interrupted = True
        training.atomic_save_model(model, os.path.join(save_dir, "interrupted.keras"))
        print(f"\ninterrupted: the weights of the unfinished epoch are in {out}/interrupted.keras; "
              f"--resume continues from the last finished epoch ({out}/last.keras)", file=sys.stderr)
    if checkpoint.nan_seen:
        done = (training.read_state(save_dir) or {}).get("epochs_done", 0)
        fail(f"the loss became NaN or infinite; stopped. The last good checkpoint ({done} epochs) is "
             f"{last_path}. Try a lower --lr or --lam.", code=3)

    # --- Report --------------------------------------------------------------------------
    history_csv = os.path.join(save_dir, "history.csv")
    rows = training.read_history(history_csv)
    report = {
        "final_top1": rows[-1].get("val_accuracy") if rows else None,
        "final_top5": rows[-1].get("val_top5") if rows else None,
        "best_top1": max((r["val_accuracy"] for r in rows if "val_accuracy" in r), default=None),
        "best_top5": max((r["val_top5"] for r in rows if "val_top5" in r), default=None),
        "final_loss": rows[-1].get("loss") if rows else None,
        "final_val_loss": rows[-1].get("val_loss") if rows else None,
        "epochs": len(rows),
        "epoch_images": steps_per_epoch * args.batch_size,
        "parameters": params,
        "seconds_per_epoch": (sum(timer.seconds) / len(timer.seconds)) if timer.seconds else None,
        "interrupted": interrupted,
        "replicas": dist.replicas,
        "processes": dist.processes,
        "config": config,
    }
    training.atomic_write_text(os.path.join(save_dir, "metrics.json"), json.dumps(report, indent=2))
    try:
        training.plot_curves(history_csv, os.path.join(save_dir, "curves.png"))
    except ImportError:
        print("matplotlib is not installed: no curves.png", file=sys.stderr)
    def percent(value):
        return "n/a" if value is None else f"{100 * value:.2f}%"

    where = out if dist.chief else f"{out} of the chief (process {dist.process_index} discards its copy)"
    print(f"done: {report['epochs']} epochs, final top-1 {percent(report['final_top1'])}, "
          f"best top-1 {percent(report['best_top1'])}; results in {where}")
    if interrupted:
        sys.exit(130)
    return report


# --- Distribution ------------------------------------------------------------------------


class Distribution:
    """How a run is spread over devices and processes.

    `scope` is entered to build the model. `replicas` counts the devices of all processes:
    each takes `--batch-size / replicas` images of a step. `devices` are this process's.
    The chief (process 0) is the one process that writes the run folder.
    """

    def __init__(self, kind="one device", scope=None, replicas=1, devices=(), processes=1,
                 process_index=0, batch_size=None, on_close=None):
        self.kind = kind
        self.scope = scope if scope is not None else contextlib.nullcontext()
        self.replicas = replicas
        self.devices = list(devices)
        self.processes = processes
        self.process_index = process_index
        self.chief = process_index == 0
        self.batch_size = batch_size
        self._on_close = on_close

    def prepare_dataset(self, ds, batches):
        """This process's part of a dataset of `batches` global batches."""
        import tensorflow as tf

        if self.kind == MULTI_WORKER:
            # Every worker builds the same pipeline and keeps its replicas' shares of each
            # global batch (tf.distribute splits the batches; DATA says so explicitly).
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            ds = ds.with_options(options)
        elif self.kind == JAX_DATA_PARALLEL and self.processes > 1:
            # Process p takes the p-th slice of every global batch; JAX assembles the global
            # batch from the processes' slices in process order. (Keras would shard the same
            # way, but its sharded dataset has an unknown length: fit would warn that the data
            # "ran out" at the end of the first epoch.)
            ds = ds.rebatch(self.batch_size // self.processes).shard(self.processes, self.process_index)
            ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
        return ds

    def prepare_model(self, model):
        if self.kind == MULTI_WORKER:
            _work_around_keras_multi_worker_bugs(model)
        return model

    def close(self):
        if self._on_close is not None:
            self._on_close()


JAX_DATA_PARALLEL = "JAX DataParallel"
MIRRORED = "TensorFlow MirroredStrategy"
MULTI_WORKER = "TensorFlow MultiWorkerMirroredStrategy"


def _int_variable(name, minimum, maximum=None):
    value = os.environ[name]
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        fail(f"{name} must be an integer >= {minimum}{upper}; found {value!r}")
    return number


def _tf_config_tasks():
    """The number of tasks (chief and workers) that TF_CONFIG describes, 0 if it is unset."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return 0
    try:
        cluster = json.loads(text).get("cluster", {})
        return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    except (ValueError, AttributeError, TypeError) as e:
        fail(f"TF_CONFIG is not the JSON of a cluster ({e}); found {text[:200]!r}. See docs/scaling.md")


def setup_distribution(args):
    """The `Distribution` that `--distribute` and the environment ask for; prints the devices."""
    backend = keras.backend.backend()
    jax_variables = [name for name in JAX_PROCESS_VARIABLES if os.environ.get(name)]
    tf_tasks = _tf_config_tasks()
    if not args.distribute:
        if jax_variables or tf_tasks > 1:
            asked = ", ".join(jax_variables) if jax_variables else f"TF_CONFIG ({tf_tasks} tasks)"
            fail(f"{asked} asks for a run over several processes, but --distribute is not given: "
                 f"every process would train alone and write the same --output. Add --distribute, "
                 f"or unset the variable.")
        return Distribution()
    if backend == "jax":
        if tf_tasks > 1 and not jax_variables:
            fail("TF_CONFIG describes a cluster, but the JAX backend reads KERAS_DISTRIBUTION_JOB_ADDRESSES, "
                 "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID (see docs/scaling.md)")
        dist = _setup_jax(args, jax_variables)
    elif backend == "tensorflow":
        if jax_variables and tf_tasks <= 1:
            fail(f"{', '.join(jax_variables)} describe a JAX cluster; the TensorFlow backend reads TF_CONFIG "
                 f"(MultiWorkerMirroredStrategy, see docs/scaling.md)")
        dist = _setup_tensorflow(args, tf_tasks)
    else:
        fail(f"--distribute needs KERAS_BACKEND=jax or tensorflow; found KERAS_BACKEND={backend}, "
             f"which trains on one device (drop --distribute)")
    role = "the chief: writes --output" if dist.chief else "writes a temporary folder it deletes at exit"
    print(f"--distribute: {dist.kind}, {dist.replicas} devices in {dist.processes} process(es); "
          f"process {dist.process_index} ({role}) drives {', '.join(dist.devices)}; "
          f"global batch {args.batch_size}, {args.batch_size // dist.replicas} images per device")
    return dist


def _check_batch_size(batch_size, replicas):
    if batch_size % replicas:
        larger = -(-batch_size // replicas) * replicas
        fail(f"--batch-size {batch_size} is not a multiple of the number of devices ({replicas}): with "
             f"--distribute each device takes an equal share of the global batch. Use --batch-size "
             f"{larger}, for instance")


def _setup_jax(args, jax_variables):
    import jax

    if jax_variables:
        if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
            count = _int_variable("KERAS_DISTRIBUTION_NUM_PROCESSES", 1)
            if os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID"):
                _int_variable("KERAS_DISTRIBUTION_PROCESS_ID", 0, count - 1)
        # A seed set before `initialize` spares it agreeing on one across the processes.
        keras.utils.set_random_seed(args.seed)
        try:
            keras.distribution.initialize()  # reads the KERAS_DISTRIBUTION_* variables
        except Exception as e:  # the coordinator unreachable, a wrong address, ...
            fail(f"keras.distribution.initialize() failed: {type(e).__name__}: {e}\n"
                 f"Check KERAS_DISTRIBUTION_JOB_ADDRESSES (the coordinator's host:port, the same in every "
                 f"process), KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID (0 .. N-1).")
    devices = keras.distribution.list_devices()  # the devices of every process
    _check_batch_size(args.batch_size, len(devices))
    previous = keras.distribution.distribution()
    # Several processes: `prepare_dataset` gives each process its slice of the global batch.
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    )
    return Distribution(
        JAX_DATA_PARALLEL, replicas=len(devices), processes=jax.process_count(),
        devices=[f"{d.platform}:{d.id}" for d in jax.local_devices()], process_index=jax.process_index(),
        batch_size=args.batch_size,
        # The distribution is process-wide state: restore it for a caller that goes on.
        on_close=lambda: keras.distribution.set_distribution(previous),
    )


def _setup_tensorflow(args, tf_tasks):
    import tensorflow as tf

    if tf_tasks > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        if resolver.task_type not in ("chief", "worker"):
            fail(f"TF_CONFIG's task type must be 'chief' or 'worker' for MultiWorkerMirroredStrategy; "
                 f"found {resolver.task_type!r}")
        has_chief = "chief" in resolver.cluster_spec().as_dict()
        index = 0 if resolver.task_type == "chief" else resolver.task_id + int(has_chief)
        kind, processes = MULTI_WORKER, tf_tasks
    else:
        strategy = tf.distribute.MirroredStrategy()
        kind, processes, index = MIRRORED, 1, 0
    _check_batch_size(args.batch_size, strategy.num_replicas_in_sync)
    return Distribution(
        kind, scope=strategy.scope(), replicas=strategy.num_replicas_in_sync, processes=processes,
        devices=list(strategy.extended.worker_devices), process_index=index, batch_size=args.batch_size,
    )


def _work_around_keras_multi_worker_bugs(model):
    """Two fixes that Keras 3's TensorFlow trainer needs under MultiWorkerMirroredStrategy.

    Keras 3 (up to 3.15 at least; keras-team/keras#20585) fails in `fit` under
    MultiWorkerMirroredStrategy in two places, both in `keras/src/backend/tensorflow/trainer.py`:

    1. `_maybe_symbolic_build` reduces the whole first data batch, a tuple of `PerReplica`,
       with one `strategy.reduce` call, which MultiWorkerMirroredStrategy cannot do:
       "ValueError: Attempt to convert a value (PerReplica:{...}) with an unsupported type
       (<class '...PerReplica'>) to a Tensor." It only needs the shapes of a replica's
       batch, so the replacement takes this worker's first replica's batch.
    2. `reduce_per_replica` reduces each step's (scalar) logs with
       `strategy.reduce("MEAN", v, axis=0)`: "ValueError: Invalid reduction dimension 0 for
       input with 0 dimensions". The replacement averages over the replicas (`axis=None`),
       as Keras does for MirroredStrategy.

    Both replacements are installed only in a MultiWorkerMirroredStrategy run.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    missing = [name for name in ("reduce_per_replica", "_collective_all_reduce_multi_worker")
               if not hasattr(tf_trainer, name)]
    if missing or not hasattr(model, "_maybe_symbolic_build") or not hasattr(model, "_symbolic_build"):
        fail(f"this Keras ({keras.__version__}) changed the internals that the MultiWorkerMirroredStrategy "
             f"work-around replaces ({', '.join(missing) or '_maybe_symbolic_build'}); see docs/scaling.md")
    import tensorflow as tf

    if not getattr(tf_trainer.reduce_per_replica, "drloc_work_around", False):
        original = tf_trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction):
            if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
                return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
            return original(values, strategy, reduction)

        reduce_per_replica.drloc_work_around = True
        tf_trainer.reduce_per_replica = reduce_per_replica

    def maybe_symbolic_build(iterator=None, data_batch=None):
        strategy = model.distribute_strategy
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(batches)
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build


if __name__ == "__main__":
    main()
