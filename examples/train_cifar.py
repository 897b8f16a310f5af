"""Train a registered backbone with (or without) DRLoc on CIFAR, SVHN, Fashion-MNIST or your images.

    python examples/train_cifar.py --backbone cvt --lam 0.1
    python examples/train_cifar.py --dataset synthetic --epochs 1        # offline smoke run

The program reads top to bottom: parse the flags, load the data, build the model, fit,
report. Everything lands in `--output`: history.csv, TensorBoard logs, metrics.json,
curves.png, config.json and a checkpoint per epoch (last.keras, best.keras).
"""

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time

import keras

from drloc_keras import DRLocModel, backbones, data, training

MIXED_PRECISION = {"none": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# Flags that may change between a run and its resumption.
RESUMABLE = ("resume", "eval_only", "output", "data_dir")


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
                   help="constant lambda, or the authors' warm-up over 20 epochs then linear decay")
    g.add_argument("--mode", default="l1", choices=["l1", "ce", "cbr"], help="DRLoc loss")
    g.add_argument("--sample-size", type=int, default=64, help="pairs per image (m)")
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
    g.add_argument("--synthetic-train-size", type=int, default=2000,
                   help="training images of --dataset synthetic")
    g.add_argument("--synthetic-test-size", type=int, default=500, help="test images of --dataset synthetic")
    g.add_argument("--train-fraction", type=float, default=1.0,
                   help="class-balanced, seeded fraction of the training set (small-data regime)")
    g = p.add_argument_group("recipe")
    g.add_argument("--epochs", type=int, default=100, help="training epochs")
    g.add_argument("--batch-size", type=int, default=128, help="batch size")
    g.add_argument("--lr", type=float, default=5e-4,
                   help="base learning rate for batch 512; scaled by batch-size / 512")
    g.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    g.add_argument("--warmup-epochs", type=int, default=5, help="linear learning-rate warm-up")
    g.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing")
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
                   help="data parallel over all local devices (JAX DataParallel, TF MirroredStrategy)")
    g.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras fit verbosity")
    args = p.parse_args(argv)

    checks = [
        ("sample_size", args.sample_size >= 1, ">= 1"),
        ("epochs", args.epochs >= 1, ">= 1"),
        ("batch_size", args.batch_size >= 1, ">= 1"),
        ("train_fraction", 0 < args.train_fraction <= 1, "in (0, 1]"),
        ("lam", args.lam is None or args.lam >= 0, ">= 0"),
        ("image_size", args.image_size >= 8, ">= 8"),
        ("drop_path", 0 <= args.drop_path < 1, "in [0, 1)"),
        ("random_erasing", 0 <= args.random_erasing <= 1, "in [0, 1]"),
    ]
    for name, ok, allowed in checks:
        if not ok:
            p.error(f"--{name.replace('_', '-')} must be {allowed}; found {getattr(args, name)}")
    if args.resume and args.eval_only:
        p.error("--resume and --eval-only exclude each other")
    if args.lam is None:
        args.lam = backbones.default_lambda(args.backbone)
    if args.output is None:
        args.output = os.path.join("runs", f"{args.dataset}-{args.backbone}-lam{args.lam:g}")
    return args


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
    config = dict(vars(args))
    out = args.output
    os.makedirs(out, exist_ok=True)
    config_path = os.path.join(out, "config.json")
    state = training.read_state(out)

    # --- Resume, evaluate or start: check the folder first, before any work. ---------------
    if args.resume or args.eval_only:
        if not os.path.exists(config_path):
            fail(f"{out} holds no run to {'resume' if args.resume else 'evaluate'} (no config.json)")
        with open(config_path) as f:
            saved = json.load(f)
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
        training.atomic_write_text(config_path, json.dumps(config, indent=2))

    keras.utils.set_random_seed(args.seed)
    if MIXED_PRECISION[args.mixed_precision]:
        keras.config.set_dtype_policy(MIXED_PRECISION[args.mixed_precision])
    scope = distribution_scope(args.distribute)

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
    if args.train_fraction < 1:
        x_train, y_train = data.class_balanced_subset(x_train, y_train, args.train_fraction, seed=args.seed)
    print(f"{args.dataset}: {len(x_train)} training and {len(x_test)} test images, "
          f"{num_classes} classes, trained at {args.image_size}x{args.image_size}")
    augment = training.augmenter(args.image_size, args.randaugment, args.random_erasing, seed=args.seed)
    train_ds = training.make_dataset(
        x_train, y_train, num_classes, args.batch_size, training=True, image_size=args.image_size,
        augment=augment, mixup=args.mixup, cutmix=args.cutmix, seed=args.seed,
    )
    val_ds = training.make_dataset(
        x_test, y_test, num_classes, args.batch_size, training=False, image_size=args.image_size
    )
    steps_per_epoch = len(x_train) // args.batch_size
    if steps_per_epoch < 1:
        fail(f"--batch-size {args.batch_size} is larger than the training set ({len(x_train)} images)")

    # --- Model ---------------------------------------------------------------------------
    top5 = keras.metrics.TopKCategoricalAccuracy(min(5, num_classes), name="top5")
    last_path, best_path = os.path.join(out, "last.keras"), os.path.join(out, "best.keras")
    initial_epoch = 0
    with scope:
        if args.eval_only:
            path = best_path if os.path.exists(best_path) else last_path
            if not os.path.exists(path):
                fail(f"{out} holds no saved model (best.keras or last.keras)")
            model = keras.saving.load_model(path)
            model.compile(optimizer=model.optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy", top5])
            results = model.evaluate(val_ds, verbose=args.verbose, return_dict=True)
            report = {"model": path, **{k: float(v) for k, v in results.items()}}
            training.atomic_write_text(os.path.join(out, "eval.json"), json.dumps(report, indent=2))
            print(json.dumps(report, indent=2))
            return report
        if args.resume and state is not None:
            model = keras.saving.load_model(last_path)
            initial_epoch = state["epochs_done"]
            training.truncate_history(os.path.join(out, "history.csv"), initial_epoch)
            print(f"resuming {out} after epoch {initial_epoch} of {args.epochs}")
        else:
            backbone = backbones.get(
                args.backbone, image_size=args.image_size, num_classes=num_classes,
                **{**backbones.drop_path_overrides(args.backbone, args.image_size, args.drop_path),
                   **args.backbone_args},
            )
            model = DRLocModel(
                backbone, lam=args.lam, lam_schedule=args.lam_schedule, mode=args.mode,
                sample_size=args.sample_size, feature_maps="all" if args.multiscale else "last",
                steps_per_epoch=steps_per_epoch, seed=args.seed,
            )
            lr = training.scaled_learning_rate(args.lr, args.batch_size)
            optimizer = training.make_optimizer(
                lr, args.weight_decay, steps_per_epoch, args.epochs, args.warmup_epochs
            )
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing),
                metrics=["accuracy", top5],
            )
    params = int(sum(math.prod(v.shape) for v in model.backbone.trainable_variables))
    print(f"{args.backbone}: {params / 1e6:.2f}M parameters; DRLoc lambda {args.lam:g} "
          f"({args.lam_schedule}), mode {args.mode}, {args.sample_size} pairs per image")

    # --- Fit -----------------------------------------------------------------------------
    if initial_epoch >= args.epochs:
        print(f"{out} already finished its {args.epochs} epochs")
    checkpoint = training.EpochCheckpoint(out, initial_best=(state or {}).get("best", -math.inf))
    timer = EpochTimer()
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        checkpoint,
        keras.callbacks.CSVLogger(os.path.join(out, "history.csv"), append=initial_epoch > 0),
        keras.callbacks.TensorBoard(os.path.join(out, "tensorboard")),
        timer,
    ]
    interrupted = False
    try:
        model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, initial_epoch=initial_epoch,
                  callbacks=callbacks, verbose=args.verbose, shuffle=False)
    except KeyboardInterrupt:
        interrupted = True
        training.atomic_save_model(model, os.path.join(out, "interrupted.keras"))
        print(f"\ninterrupted: the weights of the unfinished epoch are in {out}/interrupted.keras; "
              f"--resume continues from the last finished epoch ({out}/last.keras)", file=sys.stderr)
    if checkpoint.nan_seen:
        done = (training.read_state(out) or {}).get("epochs_done", 0)
        fail(f"the loss became NaN or infinite; stopped. The last good checkpoint ({done} epochs) is "
             f"{last_path}. Try a lower --lr or --lam.", code=3)

    # --- Report --------------------------------------------------------------------------
    history_csv = os.path.join(out, "history.csv")
    rows = training.read_history(history_csv)
    report = {
        "final_top1": rows[-1].get("val_accuracy") if rows else None,
        "final_top5": rows[-1].get("val_top5") if rows else None,
        "best_top1": max((r["val_accuracy"] for r in rows if "val_accuracy" in r), default=None),
        "best_top5": max((r["val_top5"] for r in rows if "val_top5" in r), default=None),
        "epochs": len(rows),
        "parameters": params,
        "seconds_per_epoch": (sum(timer.seconds) / len(timer.seconds)) if timer.seconds else None,
        "interrupted": interrupted,
        "config": config,
    }
    training.atomic_write_text(os.path.join(out, "metrics.json"), json.dumps(report, indent=2))
    try:
        training.plot_curves(history_csv, os.path.join(out, "curves.png"))
    except ImportError:
        print("matplotlib is not installed: no curves.png", file=sys.stderr)
    def percent(value):
        return "n/a" if value is None else f"{100 * value:.2f}%"

    print(f"done: {report['epochs']} epochs, final top-1 {percent(report['final_top1'])}, "
          f"best top-1 {percent(report['best_top1'])}; results in {out}")
    if interrupted:
        sys.exit(130)
    return report


def distribution_scope(enabled):
    if not enabled:
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    fail("--distribute needs KERAS_BACKEND=jax or tensorflow")


if __name__ == "__main__":
    main()
