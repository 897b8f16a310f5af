"""The settings of a training run: every flag, its default, its choices and its check.

This module imports no framework (only the standard library and `drloc_keras.catalog`), so
that `examples/train_cifar.py --help` answers at once. The training program, the study and
the documentation read the defaults and the choices from here; nothing else repeats them.

    >>> from drloc_keras import options
    >>> args, given = options.parse(["--backbone", "vit", "--lam", "0"])
    >>> args.batch_size, sorted(given)
    (128, ['backbone', 'lam'])
"""

import argparse
import os

import drloc_ref
from drloc_keras import catalog

# --mixed-precision -> Keras dtype policy
MIXED_PRECISION = {"none": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
INPUT_NORMALIZATIONS = ("train-set", "none")
STREAM_CHOICES = ("auto", "on", "off")
OFFSETS = ("absolute", "signed")

# Settings added after runs were first saved, with the value those runs trained with, so
# that an old run folder still resumes and evaluates as it trained.
LEGACY_DEFAULTS = {
    "flip": True,                      # runs before --flip always flipped
    "crop": "none",                    # ... before --crop: no crop
    "interpolation": "bilinear",       # ... before --interpolation: Keras' RandAugment, bilinear
    "epoch_images": None,              # ... before --epoch-images: epochs of the training set's size
    "test_fraction": 1.0,
    "input_normalization": "none",     # ... before the normalisation: raw 0-255 pixels
    "decay_all_weights": True,         # ... before the weight-decay exclusions
    "head_hidden": 512,                # ... before --head-hidden: the authors' 512
    "head_init": "glorot",
    "lam_warmup_epochs": 20,           # ... before the schedule's flags: the authors' values
    "lam_total_epochs": 300,
    "val_fraction": 0.0,               # ... before --val-fraction: best.keras chosen on the test set
    "stream_images": "auto",           # ... before --stream-images: in memory (the same images)
    "lr_schedule": "cosine",           # ... before --lr-schedule: cosine decay
    "offsets": "absolute",             # ... before --offsets: absolute offsets
    "clip_grad": 0.0,                  # ... before --clip-grad: no gradient clipping
    "warmup_lr": 0.0,                  # ... before --warmup-lr and --min-lr: warm-up from 0,
    "min_lr": 0.0,                     #     cosine decay to 0
}

# What `--resume` and `--eval-only` accept besides the run's saved settings: the length of
# the run (--resume only), where the files are, how many devices, how much is printed.
RESUME_FLAGS = ("epochs", "output", "data_dir", "stream_images", "distribute", "verbose", "resume")
EVAL_FLAGS = ("output", "data_dir", "stream_images", "distribute", "verbose", "eval_only")
# Flags that do not change what a run trains: where its files are, on how many devices, how
# much it prints, whether it starts, resumes or evaluates.
RUN_ONLY = ("resume", "eval_only", "output", "data_dir", "distribute", "verbose")


class UsageError(Exception):
    """A setting, a file or the environment does not allow the run; the message says why.
    `code` is the exit status a program reports it with."""

    code = 2


def positive_int_or(keyword, what):
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

    parse.__name__ = f"{what} or {keyword}"
    return parse


def json_object(text):
    """An argparse type: a JSON object (constructor arguments)."""
    import json

    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"is not valid JSON ({e}); found {text!r}")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"depth\": 4}}'; found {text!r}")
    return value


epoch_images_type = positive_int_or("full", "number of images")
head_hidden_type = positive_int_or("auto", "width")

_FAMILY_LAMBDAS = ", ".join(f"{name} {lam:g}" for name, lam in catalog.DEFAULT_LAMBDA.items())

# (group, flag, argparse keywords). A default of None is worked out in `finish`, and the
# help says how.
OPTIONS = [
    ("model", "--backbone", dict(default="cvt", choices=catalog.backbone_names(), metavar="NAME",
     help=f"backbone family or size: {', '.join(catalog.backbone_names())}; a family builds its "
          f"32x32 size up to {catalog.SMALL_IMAGE_LIMIT}-pixel images, its 224 one above")),
    ("model", "--lam", dict(type=float, default=None,
     help=f"DRLoc weight lambda; 0 turns DRLoc off (default: the authors' value for the family: "
          f"{_FAMILY_LAMBDAS})")),
    ("model", "--lam-schedule", dict(default="constant", choices=catalog.LAMBDA_SCHEDULES,
     help="constant lambda, or the authors' linear warm-up over --lam-warmup-epochs then linear "
          "decay to 0 at --lam-total-epochs")),
    ("model", "--lam-warmup-epochs", dict(type=int, default=drloc_ref.WARMUP_EPOCHS,
     help="warmup-decay: epochs of the linear warm-up of lambda (the authors' value)")),
    ("model", "--lam-total-epochs", dict(type=int, default=drloc_ref.TOTAL_EPOCHS,
     help="warmup-decay: the epoch at which lambda has decayed to 0 (the authors' value; their runs "
          "stop at epoch 100)")),
    ("model", "--mode", dict(default=drloc_ref.MODE, choices=drloc_ref.MODES, help="the DRLoc loss")),
    ("model", "--offsets", dict(default="absolute", choices=OFFSETS,
     help="what the DRLoc head predicts: the absolute offset |p - q| between two tokens (the "
          "authors' --use_abs, their best in the paper's ablation) or the signed offset p - q")),
    ("model", "--sample-size", dict(type=int, default=drloc_ref.SAMPLE_SIZE, help="pairs per image and feature map (m)")),
    ("model", "--head-hidden", dict(type=head_hidden_type, default=drloc_ref.HIDDEN, metavar="N|auto",
     help="width of the DRLoc head's MLP: the authors' 512, or 'auto': twice the channels of the "
          "feature map, at most 512 (a head in proportion to a small backbone)")),
    ("model", "--head-init", dict(default="auto", choices=catalog.HEAD_INIT_CHOICES,
     help="initialisation of the DRLoc head's layers: 'auto', as the authors' code of the backbone's "
          "family does (Swin, T2T-ViT, CCT: normal of std 0.02, zero biases; CvT, ViT, ResNet-50: "
          "PyTorch's default, uniform within 1/sqrt(fan_in)), or one of those for every family, or "
          "Keras' Glorot-uniform")),
    ("model", "--multiscale", dict(action="store_true",
     help="one DRLoc head per feature map the backbone exposes (Swin: every stage)")),
    ("model", "--drop-path", dict(type=float, default=0.1, help="stochastic depth rate")),
    ("model", "--backbone-args", dict(type=json_object, default={}, metavar="JSON",
     help="backbone constructor arguments, e.g. '{\"depths\": [1, 1, 2]}' (unknown ones are "
          "refused with the list of valid ones)")),
    ("data", "--dataset", dict(default="cifar10", choices=catalog.DATASET_NAMES, help="the dataset")),
    ("data", "--data-dir", dict(default=None,
     help="local copy of the dataset's files (the error message of a missing file shows the "
          "layout); not for --dataset synthetic (default: Keras' download for CIFAR and "
          "Fashion-MNIST, required for svhn and folder)")),
    ("data", "--image-size", dict(type=int, default=32, help="train and evaluate at this side")),
    ("data", "--stream-images", dict(default="auto", choices=STREAM_CHOICES,
     help="--dataset folder: 'on' decodes the images of each batch from disk as it is needed (a "
          "folder larger than memory trains; training starts once the files are indexed), 'off' "
          "decodes every image into memory first, 'auto' streams when the decoded images would "
          "take more than a quarter of the machine's memory")),
    ("data", "--input-normalization", dict(default="train-set", choices=INPUT_NORMALIZATIONS,
     help="scale the pixels to mean 0 and standard deviation 1 per channel with the statistics of "
          "the training images (the --train-fraction subset), inside the saved model; 'none' feeds "
          "raw 0-255 values")),
    ("data", "--synthetic-train-size", dict(type=int, default=2000,
     help="training images of --dataset synthetic")),
    ("data", "--synthetic-test-size", dict(type=int, default=500, help="test images of --dataset synthetic")),
    ("data", "--val-fraction", dict(type=float, default=0.1,
     help="class-balanced, seeded fraction of the training set held out as the validation set: it "
          "chooses best.keras and is evaluated after every epoch; the test set is only reported. "
          "0: no validation set and no best.keras")),
    ("data", "--train-fraction", dict(type=float, default=1.0,
     help="class-balanced, seeded fraction of the training set (after the validation set is held "
          "out) to train on: the small-data regime")),
    ("data", "--test-fraction", dict(type=float, default=1.0,
     help="class-balanced, seeded fraction of the test set to report on (the same images for "
          "every run of a seed)")),
    ("data", "--epoch-images", dict(type=epoch_images_type, default=None, metavar="N|full",
     help="at least N images per training epoch: a smaller training set is cycled, reshuffled, up "
          "to N images, so that it gets as many optimizer steps per epoch as a larger one (a "
          "larger one keeps its size); 'full': the size of the whole training set before "
          "--train-fraction (default: the training set's size)")),
    ("recipe", "--epochs", dict(type=int, default=100, help="training epochs")),
    ("recipe", "--batch-size", dict(type=int, default=128,
     help="global batch size: with --distribute it is split evenly over all devices of all "
          "processes, so it must be a multiple of their number")),
    ("recipe", "--lr", dict(type=float, default=5e-4,
     help="base learning rate for batch 512, scaled by batch-size / 512")),
    ("recipe", "--weight-decay", dict(type=float, default=0.05,
     help="AdamW weight decay; not applied to biases, normalisation parameters, position "
          "embeddings, class tokens and relative position bias tables")),
    ("recipe", "--decay-all-weights", dict(action=argparse.BooleanOptionalAction, default=False,
     help="apply the weight decay to every variable, as keras.optimizers.AdamW does")),
    ("recipe", "--warmup-epochs", dict(type=int, default=20,
     help="epochs of the linear learning-rate warm-up from --warmup-lr to --lr (the authors' value; "
          "a run shorter than about 4 times the warm-up should lower it)")),
    ("recipe", "--warmup-lr", dict(type=float, default=5e-7,
     help="learning rate at the start of the warm-up, for batch 512, scaled by batch-size / 512 like "
          "--lr (the authors' value)")),
    ("recipe", "--min-lr", dict(type=float, default=5e-6,
     help="--lr-schedule cosine: the learning rate the decay ends at, for batch 512, scaled by "
          "batch-size / 512 like --lr (the authors' value)")),
    ("recipe", "--lr-schedule", dict(default="cosine", choices=catalog.LR_SCHEDULES,
     help="after the warm-up: cosine decay to --min-lr at the last epoch (the authors'), or the learning "
          "rate held constant (the calibration of the run's length, examples/calibrate_steps.py: a "
          "constant-rate run can be lengthened with --resume --epochs without changing its past)")),
    ("recipe", "--clip-grad", dict(type=float, default=5.0,
     help="clip the gradients to this global norm (of the whole batch's gradient, over all devices), "
          "as the authors do; 0 turns clipping off")),
    ("recipe", "--label-smoothing", dict(type=float, default=0.1, help="label smoothing")),
    ("recipe", "--flip", dict(action=argparse.BooleanOptionalAction, default=None,
     help="random horizontal flips (default: on, except for datasets whose class a mirror image "
          f"changes: {', '.join(sorted(catalog.FLIP_CHANGES_CLASS))})")),
    ("recipe", "--crop", dict(default="auto", choices=catalog.CROPS,
     help="random crop of each training image: 'padded' (shifted by up to 4 pixels, zeros coming in: "
          "torchvision's RandomCrop(size, padding=4)), 'resized' (timm's RandomResizedCrop: area 8-100%%, "
          "aspect 3/4-4/3, resized back), 'none', or 'auto': padded up to 32 pixels, resized above (the "
          "authors' data/build.py)")),
    ("recipe", "--randaugment", dict(nargs="?", const=catalog.RANDAUGMENT_POLICY, default=catalog.RANDAUGMENT_POLICY,
     metavar="POLICY",
     help="timm's RandAugment per image, as a timm string (the authors': %(default)s: 2 operations of "
          "timm's increasing set, each with probability 0.5, magnitude 9 of 10 with noise of std 0.5)")),
    ("recipe", "--no-randaugment", dict(dest="randaugment", action="store_const", const=None,
     help="turn RandAugment off")),
    ("recipe", "--interpolation", dict(default="bicubic", choices=("bicubic", "bilinear"),
     help="resampling of the resized crop and of RandAugment's geometric operations (the authors': bicubic)")),
    ("recipe", "--mixup", dict(type=float, default=0.8,
     help="MixUp's alpha (lambda ~ Beta(alpha, alpha), one per batch, as timm's Mixup in batch mode); "
          "0 turns it off")),
    ("recipe", "--cutmix", dict(type=float, default=1.0,
     help="CutMix's alpha (one lambda per batch, corrected to the pasted box's area); 0 turns it off. "
          "With both on, each batch takes CutMix with probability 0.5")),
    ("recipe", "--random-erasing", dict(type=float, default=0.25,
     help="probability of erasing one box of an image with Gaussian noise (N(0, 1) after the input "
          "normalisation: timm's RandomErasing, mode 'pixel'); 0 turns it off")),
    ("recipe", "--seed", dict(type=int, default=0,
     help="random seed: the subsets, the data order, the augmentation, the initial weights, the "
          "DRLoc pairs")),
    ("run", "--output", dict(default=None,
     help="the run folder (default: runs/<dataset>-<backbone>-lam<lambda>)")),
    ("run", "--resume", dict(action="store_true",
     help="continue the run in --output from its last finished epoch, with its saved settings "
          "(only --epochs, which may be raised, --data-dir, --distribute and --verbose may be given)")),
    ("run", "--eval-only", dict(action="store_true",
     help="evaluate the run in --output (its best and last models) on its own validation and test "
          "sets")),
    ("run", "--mixed-precision", dict(default="none", choices=list(MIXED_PRECISION),
     help="bf16 or fp16 compute; DRLoc and the loss stay float32")),
    ("run", "--distribute", dict(action="store_true",
     help="data parallel over all devices: JAX keras.distribution.DataParallel, TensorFlow "
          "MirroredStrategy (not PyTorch). Several processes or hosts: set "
          "KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES and "
          "KERAS_DISTRIBUTION_PROCESS_ID (JAX) or TF_CONFIG (TensorFlow) in each process; process 0 "
          "writes --output. See docs/scaling.md")),
    ("run", "--verbose", dict(type=int, default=1, choices=[0, 1, 2],
     help="0 silent, 1 a progress bar, 2 a line per epoch")),
]

GROUPS = {"model": "model", "data": "data", "recipe": "the training recipe", "run": "the run"}


def dest(flag):
    return flag.lstrip("-").replace("-", "_")


def flag(name):
    return "--" + name.replace("_", "-")


DEFAULTS = {dest(f): kw.get("default", False if kw.get("action") == "store_true" else None)
            for _, f, kw in OPTIONS}


class _HelpFormatter(argparse.HelpFormatter):
    """Appends the default to a flag's help once, when it is a value (not None, not a switch)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default not in (None, argparse.SUPPRESS, False, {}) and action.option_strings
                and "%(default)" not in text and not isinstance(action, argparse._StoreTrueAction)):
            text += " (default: %(default)s)"
        return text


def build_parser(prog=None, description=None, epilog=None):
    """An `argparse.ArgumentParser` with every flag of `OPTIONS`."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                     formatter_class=_HelpFormatter)
    groups = {}
    for group, name, keywords in OPTIONS:
        if group not in groups:
            groups[group] = parser.add_argument_group(GROUPS[group])
        groups[group].add_argument(name, **keywords)
    return parser


# (setting, test, what is allowed) for the values argparse cannot check by itself.
def _checks(a):
    return [
        ("sample_size", a.sample_size >= 1, ">= 1"),
        ("epochs", a.epochs >= 1, ">= 1"),
        ("batch_size", a.batch_size >= 1, ">= 1"),
        ("lr", a.lr > 0, "> 0"),
        ("weight_decay", a.weight_decay >= 0, ">= 0"),
        ("warmup_epochs", a.warmup_epochs >= 0, ">= 0"),
        ("warmup_lr", 0 <= a.warmup_lr <= a.lr, f"in [0, --lr ({a.lr:g})]"),
        ("min_lr", 0 <= a.min_lr <= a.lr, f"in [0, --lr ({a.lr:g})]"),
        ("clip_grad", 0 <= a.clip_grad < float("inf"), "a number >= 0 (0: no clipping)"),
        ("label_smoothing", 0 <= a.label_smoothing < 1, "in [0, 1)"),
        ("mixup", a.mixup >= 0, ">= 0 (MixUp's Beta alpha; 0 turns it off)"),
        ("cutmix", a.cutmix >= 0, ">= 0 (CutMix's Beta alpha; 0 turns it off)"),
        ("randaugment", a.randaugment in (None, True, False) or _policy_error(a.randaugment) is None,
         _policy_error(a.randaugment)),
        ("train_fraction", 0 < a.train_fraction <= 1, "in (0, 1]"),
        ("test_fraction", 0 < a.test_fraction <= 1, "in (0, 1]"),
        ("val_fraction", 0 <= a.val_fraction < 1, "in [0, 1)"),
        ("lam", a.lam is None or a.lam >= 0, ">= 0"),
        ("image_size", a.image_size >= 8, ">= 8"),
        ("drop_path", 0 <= a.drop_path < 1, "in [0, 1)"),
        ("random_erasing", 0 <= a.random_erasing <= 1, "in [0, 1]"),
        ("synthetic_train_size", a.synthetic_train_size >= 1, ">= 1"),
        ("synthetic_test_size", a.synthetic_test_size >= 1, ">= 1"),
        ("lam_warmup_epochs", a.lam_warmup_epochs >= 0, ">= 0"),
        ("lam_total_epochs", a.lam_total_epochs > a.lam_warmup_epochs,
         f"greater than --lam-warmup-epochs ({a.lam_warmup_epochs})"),
    ]


def _policy_error(policy):
    """What is wrong with a RandAugment string, or None."""
    from drloc_keras.catalog import parse_randaugment

    try:
        parse_randaugment(policy)
    except ValueError as error:
        return str(error).replace("`randaugment` ", "a timm string such as "
                                  f"{catalog.RANDAUGMENT_POLICY!r}; ", 1)
    return None


def check(args):
    """Raise `UsageError` for the first setting of `args` that is out of range."""
    for name, ok, allowed in _checks(args):
        if not ok:
            raise UsageError(f"{flag(name)} must be {allowed}; found {getattr(args, name)}")
    if args.resume and args.eval_only:
        raise UsageError("--resume and --eval-only exclude each other")
    if args.dataset == "synthetic" and args.data_dir is not None:
        raise UsageError("--data-dir is not used by --dataset synthetic (its images are generated "
                         "from --seed); drop --data-dir, or choose the dataset of those files")
    if args.dataset in ("folder", "svhn") and args.data_dir is None and not (args.resume or args.eval_only):
        layout = ("train/ and val/ with a sub-folder of images per class" if args.dataset == "folder"
                  else "train_32x32.mat and test_32x32.mat")
        raise UsageError(f"--dataset {args.dataset} needs --data-dir: a folder with {layout}")


def finish(args):
    """Fill in the defaults that depend on other settings (lambda, flips, the run folder)."""
    if args.lam is None:
        args.lam = catalog.default_lambda(args.backbone)
    if args.flip is None:
        args.flip = args.dataset not in catalog.FLIP_CHANGES_CLASS
    if args.crop == "auto":
        args.crop = catalog.default_crop(args.image_size)
    if args.randaugment is True:  # a run saved when --randaugment was on or off
        args.randaugment = catalog.RANDAUGMENT_POLICY
    elif args.randaugment is False:
        args.randaugment = None
    if args.output is None:
        args.output = os.path.join("runs", f"{args.dataset}-{args.backbone}-lam{args.lam:g}")
    return args


def given_flags(argv, parser=None):
    """The settings given on the command line `argv` (as `dest` names)."""
    parser = parser or build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def parse(argv=None, prog=None, description=None, epilog=None):
    """`(args, given)`: the settings (an `argparse.Namespace`, every default filled in) and
    the names of those given on the command line. A bad flag exits with argparse's usage
    message and code 2; a value out of range raises `UsageError`."""
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(prog, description, epilog)
    args = parser.parse_args(argv)
    check(args)
    return finish(args), given_flags(argv)


# Keras' backend name -> the module it needs, and the extra of this package that installs it.
BACKEND_PACKAGES = {"tensorflow": ("tensorflow", "TensorFlow"), "jax": ("jax", "JAX"), "torch": ("torch", "PyTorch")}


def keras_backend_name():
    """The backend Keras will use, found as Keras finds it but without importing Keras:
    `KERAS_BACKEND`, else the `backend` of `$KERAS_HOME/keras.json` (`~/.keras`), else
    TensorFlow."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            import json

            return json.load(f).get("backend") or "tensorflow"
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def check_backend():
    """A `UsageError` that says what to install when Keras' backend is not installed (for
    instance the default, TensorFlow, on a machine with JAX only)."""
    import importlib.util

    name = keras_backend_name()
    if name not in BACKEND_PACKAGES:
        return
    module, label = BACKEND_PACKAGES[name]
    if importlib.util.find_spec(module) is not None:
        return
    others = [f"KERAS_BACKEND={other} (pip install \"drloc[{other}]\")" for other, (m, _) in BACKEND_PACKAGES.items()
              if other != name and importlib.util.find_spec(m) is not None]
    default = " (the default)" if not os.environ.get("KERAS_BACKEND") else ""
    hint = f"; or use an installed one: {', '.join(others)}" if others else ""
    raise UsageError(f"Keras' backend is {name}{default}, but {label} is not installed. Install it with "
                     f"pip install \"drloc[{name}]\"{hint}. KERAS_BACKEND chooses the backend.")


def namespace(config):
    """An `argparse.Namespace` of a saved config.json, with `LEGACY_DEFAULTS` and today's
    defaults for the settings it does not hold."""
    return argparse.Namespace(**{**DEFAULTS, **LEGACY_DEFAULTS, **config})
