"""Small-data study: how much does DRLoc help each backbone as the training set shrinks?

    python examples/small_data_study.py --output runs/study                  # the default grid
    python examples/small_data_study.py --output runs/study                  # again: skips what is done
    python examples/small_data_study.py --output runs/study --aggregate-only # tables and plot only
    python examples/small_data_study.py --backbones vit resnet50 --seeds 0 -- --mode ce

The grid is backbones x lambda (0, and each backbone's default) x training-set fraction x
seeds. Every cell is one run of the training program's own code (drloc_keras.run, called in
this process), into OUTPUT/<backbone>-lam<lambda>-frac<fraction>-seed<seed>/. A cell
whose metrics.json says it finished is skipped; an interrupted one is resumed from its
last finished epoch (`--resume`); one stopped before its first epoch ended starts again.
Every cell makes the same number of optimizer steps: by default (`--epoch-images full`) an
epoch of every cell has as many images as the whole training set, a smaller subset cycled,
reshuffled, up to that size, so that a 5% subset is not also given a twentieth of the
updates (`--epoch-images off`: each subset's own size per epoch, the same number of passes
for every fraction).
After every cell, OUTPUT/results.csv (one row per finished cell) is rewritten atomically;
at the end, OUTPUT/results.md (mean +- std top-1 over seeds, without and with DRLoc, and
the difference) and OUTPUT/results.png (top-1 against the training fraction, one panel per
backbone, error bars of one standard deviation). Ctrl-C stops after saving what the running
cell has done; the finished cells stay, and the same command goes on where it stopped.

The default dataset is the built-in synthetic one (drloc_keras.data.load_synthetic): the
class is the direction of a disc seen from a square, with random textures, colours, sizes
and positions, so only the relative arrangement of the two shapes tells the class. It needs
no files. On it the study trains with the augmentations that keep that class (no flips,
RandAugment, MixUp, CutMix or erasing; `--full-recipe` keeps train_cifar.py's).
"""

import argparse
import csv
import hashlib
import json
import math
import os
import shlex
import shutil
import sys
import time
import traceback

import keras

from drloc_keras import catalog, options, run, run_folder
from drloc_keras.results import (  # noqa: F401  (the study's results, shared with scripts/)
    METRICS,
    RESULT_FIELDS,
    aggregate,
    comparison,
    markdown_table,
    mean_std,
    ordered_backbones,
    paired_differences,
    plot_results,
    read_results,
    write_results,
)

DEFAULT_BACKBONES = ("vit", "cvt", "swin", "resnet50")
DEFAULT_FRACTIONS = (0.05, 0.2, 1.0)
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_LAMS = ("0", "default")
DEFAULT_EPOCHS = 2
DEFAULT_EPOCH_IMAGES = "full"

# Reduced sizes of each family (drloc_keras.backbones.REDUCED_ARGS). They apply to family
# names only: a size name (e.g. swin_tiny_32) is trained at its own size; --full-size trains
# the families at theirs.
SMALL_BACKBONE_ARGS = catalog.REDUCED_ARGS

# train_cifar.py flags that keep the class of the synthetic dataset: a flip or a rotation
# changes the direction that is the class, CutMix and erasing can cut a shape out.
LABEL_SAFE_RECIPE = ["--no-flip", "--no-randaugment", "--mixup", "0", "--cutmix", "0",
                     "--random-erasing", "0"]

# train_cifar.py settings that the study itself sets for every cell: the passed-through
# flags may not change them (use the study's own flags).
RESERVED = {
    "backbone": "--backbones", "lam": "--lams", "train_fraction": "--fractions", "seed": "--seeds",
    "output": "--output", "dataset": "--dataset", "data_dir": "--data-dir",
    "image_size": "--image-size", "epochs": "--epochs", "batch_size": "--batch-size",
    "lr": "--lr", "warmup_epochs": "--warmup-epochs", "epoch_images": "--epoch-images", "backbone_args": "--backbone-args",
    "head_hidden": "--head-hidden",
    "verbose": "--verbose", "resume": None, "eval_only": None,
}

TIMING_NOTE = (
    "The default study is 72 cells (4 backbones x 2 lambdas x 3 fractions x 3 seeds) on the "
    "synthetic dataset (2000 training images, 500 test images, 32x32), each 2 epochs of 2000 "
    "images at batch 32 (124 steps). Its time depends on the machine and the backend "
    "(docs/results.md gives measured times): after each cell the study prints the time so far "
    "and an ETA from the cells done."
)


# --- The grid ------------------------------------------------------------------------------


def parse_cell(argv):
    """The settings of one cell's flags (`drloc_keras.options`); argparse exits on a bad flag,
    a value out of range raises `options.UsageError`."""
    return options.parse(argv)[0]


def train_cell(argv):
    """One cell's run: the training program's (`drloc_keras.run.train`) on its flags."""
    return run.train(*options.parse(argv))


def fail(message, code=2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


class Cell:
    """One run of the grid: a backbone, a lambda, a training fraction and a seed."""

    def __init__(self, backbone, lam, fraction, seed, folder, argv):
        self.backbone, self.lam, self.fraction, self.seed = backbone, lam, fraction, seed
        self.folder = folder
        self.argv = argv

    @property
    def name(self):
        return cell_name(self.backbone, self.lam, self.fraction, self.seed)

    def __repr__(self):
        return f"Cell({self.name})"


def cell_name(backbone, lam, fraction, seed):
    """The cell's folder name, e.g. `vit-lam0.5-frac0.05-seed0`."""
    return f"{backbone}-lam{float(lam):g}-frac{float(fraction):g}-seed{int(seed)}"


def resolve_lams(specs, backbone):
    """The lambdas of `--lams` for `backbone`: numbers, `default` its family's; no repeats."""
    lams = []
    for spec in specs:
        lam = catalog.default_lambda(backbone) if spec == "default" else float(spec)
        if lam not in lams:
            lams.append(lam)
    return lams


def backbone_args_for(name, args):
    """Constructor overrides for `name`: the reduced size of its family (family names only,
    unless --full-size), then --backbone-args' entry for the family, then for the name."""
    merged = {}
    if name in catalog.FAMILIES and not args.full_size:
        merged.update(SMALL_BACKBONE_ARGS.get(name, {}))
    family = catalog.family(name)
    merged.update(args.backbone_args.get(family, {}))
    if name != family:
        merged.update(args.backbone_args.get(name, {}))
    return merged


def cell_argv(args, backbone, lam, fraction, seed, folder):
    """The train_cifar.py flags of one cell: the study's, then the label-safe recipe (synthetic
    data), then the passed-through flags."""
    argv = [
        "--dataset", args.dataset, "--image-size", str(args.image_size),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--lr", repr(args.lr), "--warmup-epochs", str(args.warmup_epochs),
        *([] if args.epoch_images == "off" else ["--epoch-images", str(args.epoch_images)]),
        "--backbone", backbone, "--lam", repr(float(lam)), "--head-hidden", str(args.head_hidden),
        "--backbone-args", json.dumps(backbone_args_for(backbone, args), sort_keys=True),
        "--train-fraction", repr(float(fraction)), "--seed", str(seed),
        "--output", folder, "--verbose", str(args.verbose),
    ]
    if args.data_dir is not None:
        argv += ["--data-dir", args.data_dir]
    if args.dataset in catalog.FLIP_CHANGES_CLASS and not args.full_recipe:
        argv += LABEL_SAFE_RECIPE
    return argv + list(args.train_args)


def make_grid(args):
    """Every cell, seed by seed (so an early stop leaves whole comparisons), then fraction,
    backbone and lambda."""
    cells = []
    for seed in args.seeds:
        for fraction in args.fractions:
            for backbone in args.backbones:
                for lam in resolve_lams(args.lams, backbone):
                    folder = os.path.join(args.output, cell_name(backbone, lam, fraction, seed))
                    argv = cell_argv(args, backbone, lam, fraction, seed, folder)
                    cells.append(Cell(backbone, lam, fraction, seed, folder, argv))
    return cells


# --- The state of a cell ---------------------------------------------------------------------

FINISHED, PARTIAL, STARTED, NEW = "finished", "partial", "started", "new"


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cell_state(folder):
    """`finished` (metrics.json of a whole run), `partial` (an epoch or more saved: resume it),
    `started` (a folder without a finished epoch: start again) or `new`."""
    metrics = read_json(os.path.join(folder, "metrics.json"))
    if metrics is not None and is_finished(metrics):
        return FINISHED
    if run_folder.RunFolder(folder).read_state() is not None and os.path.exists(os.path.join(folder, "last.keras")):
        return PARTIAL
    if os.path.isdir(folder):
        return STARTED
    return NEW


def is_finished(metrics):
    config = metrics.get("config") or {}
    return (
        not metrics.get("interrupted", False)
        and metrics.get("final_top1") is not None
        and metrics.get("epochs", 0) >= config.get("epochs", math.inf)
    )


def config_mismatches(cells):
    """`[(cell, [(flag, saved, now)])]` for cells whose saved run has other settings."""
    found = []
    for cell in cells:
        saved = read_json(os.path.join(cell.folder, "config.json"))
        if saved is None or cell_state(cell.folder) not in (FINISHED, PARTIAL):
            continue
        saved = vars(options.namespace(saved))
        now = vars(parse_cell(cell.argv))
        diff = run_folder.config_difference(saved, now, ignore=options.RUN_ONLY)
        if diff:
            found.append((cell, diff))
    return found


# --- Results -------------------------------------------------------------------------------


def settings_key(config):
    """A short fingerprint of a run's settings (train_cifar.py's configuration without the
    flags that may change between a run and its resumption): two runs with the same key
    trained the same way. It ties a row of results.csv to the settings that made it."""
    kept = {k: v for k, v in config.items() if k not in options.RUN_ONLY}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def cell_settings_key(cell):
    return settings_key(vars(parse_cell(cell.argv)))


def result_row(cell_folder_name, metrics):
    config = metrics["config"]
    return {
        "settings": settings_key(config),
        "cell": cell_folder_name,
        "backbone": config["backbone"],
        "lam": config["lam"],
        "fraction": config["train_fraction"],
        "seed": config["seed"],
        "dataset": config["dataset"],
        "image_size": config["image_size"],
        "epochs": metrics["epochs"],
        "final_top1": metrics["final_top1"],
        "best_top1": metrics["best_top1"],
        "final_top5": metrics.get("final_top5"),
        "best_top5": metrics.get("best_top5"),
        "parameters": metrics.get("parameters"),
        "seconds_per_epoch": metrics.get("seconds_per_epoch"),
    }


def update_results(path, cells, carried=None, export=None):
    """Rewrite results.csv: the finished cells of the grid, the rows `carried` over from
    `--continue-from` for cells that have no finished run here, and the rows of other cells
    that an earlier study with another grid left there; the same rows to `export` too."""
    rows = {}
    carried = carried or {}
    if os.path.exists(path):
        rows = {row["cell"]: row for row in read_results(path)}
    for cell in cells:
        rows.pop(cell.name, None)
        metrics = read_json(os.path.join(cell.folder, "metrics.json"))
        if metrics is not None and is_finished(metrics):
            rows[cell.name] = result_row(cell.name, metrics)
        elif cell.name in carried:
            rows[cell.name] = carried[cell.name]
    write_results(path, list(rows.values()))
    if export:
        os.makedirs(os.path.dirname(os.path.abspath(export)), exist_ok=True)
        write_results(export, list(rows.values()))
    return list(rows.values())


def write_summary(output, metric="final_top1", preferred=()):
    """results.md and results.png from OUTPUT/results.csv; returns their paths."""
    csv_path = os.path.join(output, "results.csv")
    rows = read_results(csv_path)
    study = read_json(os.path.join(output, "study.json")) or {}
    md_path, png_path = os.path.join(output, "results.md"), os.path.join(output, "results.png")
    run_folder.atomic_write_text(md_path, markdown_table(rows, metric, preferred, study.get("summary")))
    if rows:
        plot_results(rows, png_path, metric, preferred)
    return md_path, png_path


# --- The command line ----------------------------------------------------------------------


def _lam_spec(text):
    if text == "default":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'default', found {text!r}")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"lambda must be >= 0, found {text!r}")
    return text


def _epoch_images(text):
    if text == "off":
        return text
    return options.epoch_images_type(text)


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], found {text!r}")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a fraction must be in (0, 1], found {text!r}")
    return value


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = []
    if "--" in argv:
        index = argv.index("--")
        argv, passthrough = argv[:index], argv[index + 1:]
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=TIMING_NOTE + " Flags after `--` (or in --train-args) go to every cell's "
               "train_cifar.py run, after the study's own, e.g. `-- --mode ce --sample-size 32`.",
    )
    g = p.add_argument_group("grid")
    g.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES), metavar="NAME",
                   choices=catalog.backbone_names(),
                   help=f"backbone families or sizes: {', '.join(catalog.backbone_names())}")
    g.add_argument("--lams", nargs="+", default=list(DEFAULT_LAMS), type=_lam_spec, metavar="LAMBDA",
                   help="DRLoc weights; 'default' is each backbone family's (0.1 CvT/T2T/CCT, 0.5 "
                        "Swin/ViT/ResNet-50); 0 trains without DRLoc")
    g.add_argument("--fractions", nargs="+", default=list(DEFAULT_FRACTIONS), type=_fraction,
                   metavar="F", help="class-balanced, seeded fractions of the training set")
    g.add_argument("--seeds", nargs="+", default=list(DEFAULT_SEEDS), type=int, metavar="SEED",
                   help="seeds (the model, the subset and, for synthetic data, the dataset itself)")
    g = p.add_argument_group("each run")
    g.add_argument("--dataset", default="synthetic", choices=catalog.DATASET_NAMES, help="dataset")
    g.add_argument("--data-dir", default=None, help="the dataset's files (see train_cifar.py)")
    g.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs of every run")
    g.add_argument("--epoch-images", type=_epoch_images, default=DEFAULT_EPOCH_IMAGES, metavar="N|full|off",
                   help="train_cifar.py --epoch-images of every run ('full': every cell makes as "
                        "many optimizer steps); 'off' leaves it out, so each subset trains for "
                        "--epochs passes of its own size")
    g.add_argument("--image-size", type=int, default=32, help="train and evaluate at this size")
    g.add_argument("--batch-size", type=int, default=32,
                   help="at most the smallest training subset")
    g.add_argument("--lr", type=float, default=8e-3,
                   help="base learning rate for batch 512 (train_cifar.py scales it by batch / 512)")
    g.add_argument("--warmup-epochs", type=int, default=1, help="linear learning-rate warm-up")
    g.add_argument("--backbone-args", type=json.loads, default={}, metavar="JSON",
                   help="constructor overrides per family or size, over the reduced sizes, e.g. "
                        '\'{"vit": {"depth": 6}}\'')
    g.add_argument("--head-hidden", type=options.head_hidden_type, default="auto", metavar="N|auto",
                   help="width of the DRLoc head's MLP for every run: 'auto' (default) is twice the "
                        "channels of the feature map, at most 512, so that the head of a reduced "
                        "backbone is in proportion to it (docs/results.md gives the measured cost); "
                        "512 is the authors'")
    g.add_argument("--full-size", action="store_true",
                   help="train the families at their registry size instead of the reduced one "
                        f"({json.dumps(SMALL_BACKBONE_ARGS)})")
    g.add_argument("--full-recipe", action="store_true",
                   help="keep train_cifar.py's augmentation on the synthetic dataset (flips, "
                        "RandAugment, MixUp, CutMix, erasing), though they can change its class")
    g.add_argument("--train-args", default="", metavar="FLAGS",
                   help="more train_cifar.py flags for every run, as one string")
    g.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2], help="Keras fit verbosity")
    g = p.add_argument_group("study")
    g.add_argument("--output", default=os.path.join("runs", "small_data_study"),
                   help="study folder: one sub-folder per cell, results.csv, results.md, results.png")
    g.add_argument("--metric", default="final_top1", choices=METRICS,
                   help="top-1 of the table and plot: after the last epoch, or the best epoch's")
    g.add_argument("--continue-from", default=None, metavar="CSV",
                   help="a results.csv of an earlier run of this study (e.g. committed under "
                        "docs/results/): its cells with the same settings are not trained again, "
                        "and their rows join OUTPUT/results.csv, so a study can be finished over "
                        "several sessions on fresh machines")
    g.add_argument("--export", default=None, metavar="CSV",
                   help="after every cell, write OUTPUT/results.csv's rows to CSV too (e.g. "
                        "docs/results/<study>.csv, to be committed as the study goes; pass the same "
                        "file to --continue-from to go on from it in a later session)")
    g.add_argument("--aggregate-only", action="store_true",
                   help="write results.md and results.png from results.csv and train nothing")
    g.add_argument("--list", action="store_true", help="print the cells and their state, train nothing")
    args = p.parse_args(argv)
    args.train_args = shlex.split(args.train_args) + passthrough

    if args.epochs < 1:
        p.error(f"--epochs must be >= 1; found {args.epochs}")
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1; found {args.batch_size}")
    if not isinstance(args.backbone_args, dict) or not all(
        isinstance(v, dict) for v in args.backbone_args.values()
    ):
        p.error("--backbone-args must be a JSON object of objects, keyed by family or size, e.g. "
                '\'{"vit": {"depth": 6}}\'')
    known = set(args.backbones) | {catalog.family(b) for b in args.backbones}
    unknown = sorted(set(args.backbone_args) - known)
    if unknown:
        p.error(f"--backbone-args names {', '.join(unknown)}, not among the backbones of the study "
                f"({', '.join(sorted(known))})")
    for name in ("backbones", "fractions", "seeds", "lams"):
        values = getattr(args, name)
        setattr(args, name, list(dict.fromkeys(values)))  # no repeats, order kept
    _check_passthrough(p, args.train_args)
    return args


def _check_passthrough(parser, flags):
    """Refuse passed-through flags that would change what the study sets per cell."""
    if not flags:
        return
    try:
        given = vars(parse_cell(flags))
        plain = vars(parse_cell([]))
    except options.UsageError as e:
        parser.error(f"the passed-through flags {' '.join(flags)}: {e}")
    except SystemExit:
        parser.error(f"train_cifar.py does not accept the passed-through flags {' '.join(flags)} "
                     "(see its message above)")
    clashes = [key for key in RESERVED if given.get(key) != plain.get(key)]
    if clashes:
        hints = [f"--{key.replace('_', '-')}" + (f" (use the study's {RESERVED[key]})" if RESERVED[key] else "")
                 for key in clashes]
        parser.error(f"the passed-through flags set what the study sets for each cell: {', '.join(hints)}")


def smallest_subset(args):
    """Training images of the smallest cell for the synthetic dataset (None for others)."""
    if args.dataset != "synthetic":
        return None
    probe = parse_cell(["--dataset", "synthetic", *args.train_args])
    n, classes = probe.synthetic_train_size, 4  # load_synthetic's default number of classes
    counts = [n // classes + (c < n % classes) for c in range(classes)]
    fraction = min(args.fractions)
    return sum(max(1, int(round(fraction * count))) for count in counts if count)


def _clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _summary_line(args):
    per_epoch = {"off": "", "full": " of the full set's size"}.get(args.epoch_images, f" of {args.epoch_images} images")
    return (f"dataset {args.dataset}, {args.image_size}x{args.image_size}, {args.epochs} epochs{per_epoch}, "
            f"batch {args.batch_size}, base lr {args.lr:g}, warm-up {args.warmup_epochs} epochs, "
            f"{'full-size' if args.full_size else 'reduced'} backbones, DRLoc head width {args.head_hidden}"
            + (", label-safe augmentation" if args.dataset in catalog.FLIP_CHANGES_CLASS
               and not args.full_recipe else "")
            + (f", extra flags `{' '.join(args.train_args)}`" if args.train_args else ""))


def _eta(left, durations):
    """Seconds the cells `left` should take: each the mean time of the cells of its backbone
    and fraction run so far, else of its fraction, else of any cell (None before the first)."""
    if not durations:
        return None

    def mean(values):
        return sum(values) / len(values)

    total = 0.0
    for cell in left:
        same = [s for (b, f), s in durations if (b, f) == (cell.backbone, cell.fraction)]
        fraction = [s for (_, f), s in durations if f == cell.fraction]
        total += mean(same or fraction or [s for _, s in durations])
    return total


def carried_rows(path, cells):
    """The rows of a results.csv (`--continue-from`, e.g. one committed by an earlier session)
    that finish cells of this grid: same cell name and the same settings fingerprint.
    Returns `({cell name: row}, [names of rows whose settings differ])`."""
    if not os.path.exists(path):
        fail(f"--continue-from {path}: no such file")
    try:
        rows = {row["cell"]: row for row in read_results(path)}
    except (KeyError, ValueError, csv.Error) as e:
        fail(f"--continue-from {path}: not a results.csv of the study ({type(e).__name__}: {e})")
    carried, other = {}, []
    for cell in cells:
        row = rows.get(cell.name)
        if row is None:
            continue
        if row.get("settings") == cell_settings_key(cell) and row.get("final_top1") not in (None, ""):
            carried[cell.name] = row
        else:
            other.append(cell.name)
    return carried, other


def _run_cell(i, cell, cells, args, report, start, durations, pending, carried):
    """Train (or skip, or resume) one cell, then rewrite results.csv."""
    where = (f"[{i}/{len(cells)}] {cell.backbone} lam={cell.lam:g} fraction={cell.fraction:g} "
             f"seed={cell.seed}")
    state = cell_state(cell.folder)
    if state == FINISHED:
        report["skipped"].append(cell.name)
        print(f"{where}: finished before, skipped")
        return
    if cell.name in carried and state == NEW:
        report["skipped"].append(cell.name)
        print(f"{where}: in --continue-from, skipped")
        return
    argv = list(cell.argv)
    if state == PARTIAL:  # a resumed run goes by its saved settings
        argv = ["--output", cell.folder, "--resume", "--verbose", str(args.verbose)]
    elif state == STARTED:
        shutil.rmtree(cell.folder)  # no finished epoch to keep: start it again cleanly
    eta = _eta(pending[pending.index(cell):], durations)
    eta = "unknown" if eta is None else _clock(eta)
    print(f"{where}: {'resuming' if state == PARTIAL else 'training'} "
          f"(elapsed {_clock(time.time() - start)}, ETA {eta})", flush=True)
    cell_start = time.time()
    try:
        result = train_cell(argv)
    except KeyboardInterrupt:
        report["interrupted"] = True
    except options.UsageError as e:
        report["failed"][cell.name] = f"error: {e}"
    except SystemExit as e:  # argparse refused a flag (its message is printed)
        report["failed"][cell.name] = f"the flags were refused (exit code {e.code})"
    except Exception as e:  # one broken cell does not stop the others
        traceback.print_exc()
        report["failed"][cell.name] = f"{type(e).__name__}: {e}"
    else:
        if isinstance(result, dict) and result.get("interrupted"):  # Ctrl-C inside the run: it saved itself
            report["interrupted"] = True
            report["stopped"].append(cell.name)
            print(f"{where}: stopped part-way after {_clock(time.time() - cell_start)}; the same command "
                  f"resumes it from its last finished epoch", flush=True)
            return
        report["ran"].append(cell.name)
        top1 = result.get("final_top1") if isinstance(result, dict) else None
        print(f"{where}: done in {_clock(time.time() - cell_start)}"
              + (f", top-1 {100 * top1:.2f}%" if top1 is not None else ""), flush=True)
    finally:
        keras.backend.clear_session()
    durations.append(((cell.backbone, cell.fraction), time.time() - cell_start))
    update_results(os.path.join(args.output, "results.csv"), cells, carried, args.export)


def main(argv=None):
    """Run (or resume) the study; returns a report dict. Exit codes of the command: 0 done,
    1 some cells failed, 130 interrupted."""
    args = parse_args(argv)
    csv_path = os.path.join(args.output, "results.csv")
    report = {"output": args.output, "results_csv": csv_path, "ran": [], "skipped": [], "stopped": [],
              "failed": {}, "interrupted": False, "cells": 0}

    if args.aggregate_only:
        if not os.path.exists(csv_path):
            fail(f"{csv_path} does not exist: run the study first (without --aggregate-only)")
        report["results_md"], report["results_png"] = write_summary(args.output, args.metric, args.backbones)
        print(f"wrote {report['results_md']} and {report['results_png']}")
        return report

    cells = make_grid(args)
    report["cells"] = len(cells)
    smallest = smallest_subset(args)
    if smallest is not None and smallest < args.batch_size:
        fail(f"--batch-size {args.batch_size} is larger than the smallest training subset "
                         f"({smallest} images at fraction {min(args.fractions):g}); lower it")
    # The flags of every cell are checked before any training (train_cifar.py's own checks).
    try:
        for cell in cells:
            parse_cell(cell.argv)
    except SystemExit:
        fail(f"train_cifar.py refused the flags of {cell.name}: "
                         f"{' '.join(shlex.quote(a) for a in cell.argv)}")
    mismatched = config_mismatches(cells)
    if mismatched:
        lines = "\n".join(
            f"  {cell.name}: " + ", ".join(f"--{k.replace('_', '-')} saved {a!r}, now {b!r}" for k, a, b in diff)
            for cell, diff in mismatched[:10]
        )
        more = f"\n  ... and {len(mismatched) - 10} more" if len(mismatched) > 10 else ""
        fail(f"{len(mismatched)} cell(s) in {args.output} were run with other settings:\n"
                         f"{lines}{more}\nUse another --output, the same settings, or delete those folders.")

    carried = {}
    if args.continue_from:
        carried, other = carried_rows(args.continue_from, cells)
        print(f"--continue-from {args.continue_from}: {len(carried)} cell(s) of this grid finished there"
              + (f"; {len(other)} row(s) with other settings ignored ({', '.join(other[:3])}"
                 f"{', ...' if len(other) > 3 else ''})" if other else ""))
    states = {cell.name: cell_state(cell.folder) for cell in cells}
    if args.list:
        for i, cell in enumerate(cells, 1):
            print(f"[{i}/{len(cells)}] {cell.name}: {states[cell.name]}")
        report["states"] = states
        return report

    os.makedirs(args.output, exist_ok=True)
    study = {
        "summary": _summary_line(args),
        "command": "python examples/small_data_study.py " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "backbones": args.backbones, "lams": args.lams, "fractions": args.fractions, "seeds": args.seeds,
        "backbone_args": {b: backbone_args_for(b, args) for b in args.backbones},
        "train_args": args.train_args,
    }
    run_folder.atomic_write_text(os.path.join(args.output, "study.json"), json.dumps(study, indent=2))
    pending = [c for c in cells if states[c.name] != FINISHED
               and not (c.name in carried and states[c.name] == NEW)]
    to_run = len(pending)
    print(f"small-data study: {len(cells)} cells, {len(cells) - to_run} finished before, {to_run} to run; "
          f"{study['summary']}; in {args.output}")

    start, durations = time.time(), []
    try:
        for i, cell in enumerate(cells, 1):
            _run_cell(i, cell, cells, args, report, start, durations, pending, carried)
            if report["interrupted"]:
                break
    except KeyboardInterrupt:  # between two cells, or while one is set up
        report["interrupted"] = True

    rows = update_results(csv_path, cells, carried, args.export)
    if rows:
        report["results_md"], report["results_png"] = write_summary(args.output, args.metric, args.backbones)
    if report["interrupted"]:
        stopped = (f"; {', '.join(report['stopped'])} stopped part-way (not in the results)"
                   if report["stopped"] else "")
        print(f"\ninterrupted: {len(report['ran'])} cell(s) finished in this session, kept in {csv_path}"
              f"{stopped}; run the same command again to go on", file=sys.stderr)
    for name, why in report["failed"].items():
        print(f"failed: {name}: {why}", file=sys.stderr)
    print(f"study: {len(report['ran'])} run, {len(report['skipped'])} skipped, {len(report['failed'])} failed "
          f"in {_clock(time.time() - start)}; {csv_path}"
          + (f", {report['results_md']}, {report['results_png']}" if rows else ""))
    return report


def exit_code(report):
    if report.get("interrupted"):
        return 130
    return 1 if report.get("failed") else 0
