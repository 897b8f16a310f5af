"""How many optimizer steps does a baseline need? The calibration of a study's length.

    python examples/calibrate_steps.py --output runs/calibration-fashion --dataset fashion_mnist \\
        --data-dir /usr/share/datasets/fashion-mnist --fractions 0.05 --epochs 40 --epoch-images 800
    python examples/calibrate_steps.py ... --epochs 60     # lengthen the runs without a plateau
    python examples/calibrate_steps.py ... --report-only   # the table and the plot only

Each backbone trains once per fraction and seed without DRLoc (lambda 0), with the learning rate
held constant after its warm-up (`--lr-schedule constant`), and evaluates its validation set after
every epoch. A constant rate does not hide an unfinished run the way a decay to zero does (every
run is flat at the end of a cosine), and it lets a run be lengthened (`--resume --epochs`) without
changing the epochs it already trained.

The rule (`plateau_epoch`): at epoch E the run *has plateaued* when the validation top-1 over the
last fifth of its first E epochs (epochs 0.8E to E, at least 3 of them) rises by less than
`--tolerance` points (1 by default): the rise of a least-squares line through them, so that the
noise of a single epoch does not decide. A fall counts as a plateau: more steps would not help the
baseline. The end of the run must confirm it: the run went on for at least a quarter more epochs
(`MARGIN`), and the mean top-1 of its own last fifth is less than `--tolerance` points above the
mean of E's last fifth, so that a pause before the accuracy takes off, or a slow climb, is not
taken for the end. The run's plateau is the first epoch where both hold.

The study's length for a backbone is the largest plateau over its calibration runs, in optimizer
steps (epochs x steps per epoch); every cell of that backbone, with and without DRLoc, trains that
many steps with the study's cosine schedule. OUTPUT/calibration.csv holds one row per run (its
plateau epoch and steps, or an empty plateau when it has not plateaued), OUTPUT/curves.csv the
validation top-1 of every epoch of every run, OUTPUT/calibration.png the curves with the plateaus
marked. The study's flags (`examples/small_data_study.py --help`) choose the runs; `--lams` is
not one of them.
"""

import argparse
import csv
import io
import math
import os
import shutil
import sys

import keras

from drloc_keras import options, run_folder, study

TOLERANCE = 1.0     # points of top-1
MARGIN = 0.25       # the run must go on this fraction of the plateau's epochs past it
MIN_WINDOW = 3      # epochs in the last fifth, at the least

CALIBRATION_FIELDS = ["cell", "backbone", "fraction", "seed", "dataset", "epochs", "steps_per_epoch",
                      "plateau_epoch", "plateau_steps", "rise_at_plateau", "rise_at_end",
                      "val_top1_at_plateau", "val_top1_at_end", "level_at_plateau", "level_at_end",
                      "best_val_top1", "seconds_per_epoch", "settings"]


# --- The rule ------------------------------------------------------------------------------


def window(epoch):
    """The epochs (1-based, inclusive) of the last fifth of the first `epoch` epochs."""
    size = max(MIN_WINDOW, epoch // 5 + 1)
    return max(1, epoch - size + 1), epoch


def level(top1, epoch):
    """The mean validation top-1 of the last fifth of `top1[:epoch]`: the level the run had
    reached at `epoch`, less noisy than that epoch's figure alone."""
    first, last = window(epoch)
    values = [float(v) for v in top1[first - 1:last]]
    return sum(values) / len(values)


def rise(top1, epoch):
    """Points gained over the last fifth of `top1[:epoch]` (percent values, one per epoch):
    the rise of the least-squares line through them from its first epoch to its last."""
    first, last = window(epoch)
    ys = [float(v) for v in top1[first - 1:last]]
    xs = list(range(first, last + 1))
    if len(ys) < 2:
        return math.nan
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return slope * (last - first)


def plateau_epoch(top1, tolerance=TOLERANCE, margin=MARGIN):
    """The first epoch E (1-based) at which the run has plateaued, or None.

    `top1`: validation top-1 in percent, one value per epoch. At E the last fifth of the
    first E epochs must rise by less than `tolerance` points (`rise`), and the end of the run
    must confirm it: the run went on for at least `margin` x E more epochs, and the mean
    top-1 of its own last fifth is less than `tolerance` points above the mean of E's last
    fifth. Means of several epochs, not single ones, so that the noise of a small validation
    set neither ends a run that is still learning nor keeps going one that has stopped."""
    if isinstance(tolerance, bool) or not tolerance > 0:
        raise ValueError(f"`tolerance` must be a number of points > 0. Found tolerance={tolerance!r}")
    n = len(top1)
    for epoch in range(MIN_WINDOW, n + 1):
        if n < epoch * (1 + margin) or epoch == n:
            return None
        if rise(top1, epoch) < tolerance and level(top1, n) - level(top1, epoch) < tolerance:
            return epoch
    return None


# --- The runs ------------------------------------------------------------------------------


def _history(folder):
    """The validation top-1 (percent) of every finished epoch of the run in `folder`."""
    rows = run_folder.RunFolder(folder).history()
    return [100.0 * float(r["val_accuracy"]) for r in rows if r.get("val_accuracy") not in (None, "")]


def _steps_per_epoch(folder, config, metrics):
    """Optimizer steps of an epoch: from the run's report, else (a run stopped before it) from
    the steps its state.json counts over its finished epochs."""
    if metrics.get("epoch_images"):
        return metrics["epoch_images"] // config["batch_size"]
    state = study.read_json(os.path.join(folder, "state.json")) or {}
    if state.get("iterations") and state.get("epochs_done"):
        return state["iterations"] // state["epochs_done"]
    return None


def calibration_rows(cells, tolerance=TOLERANCE):
    """One row of CALIBRATION_FIELDS per cell with a finished epoch, and the curves."""
    rows, curves = [], []
    for cell in cells:
        config = study.read_json(os.path.join(cell.folder, "config.json"))
        metrics = study.read_json(os.path.join(cell.folder, "metrics.json")) or {}
        top1 = _history(cell.folder)
        if config is None or not top1:
            continue
        steps = _steps_per_epoch(cell.folder, config, metrics)
        # Only a run that finished its --epochs is judged: the first epochs of one still training
        # (or stopped) can look flat before the accuracy takes off.
        plateau = plateau_epoch(top1, tolerance) if metrics and study.is_finished(metrics) else None
        rows.append({
            "cell": cell.name, "backbone": cell.backbone, "fraction": cell.fraction, "seed": cell.seed,
            "dataset": config["dataset"], "epochs": len(top1), "steps_per_epoch": steps,
            "plateau_epoch": plateau or "",
            "plateau_steps": plateau * steps if plateau and steps else "",
            "rise_at_plateau": round(rise(top1, plateau), 3) if plateau else "",
            "rise_at_end": round(rise(top1, len(top1)), 3) if len(top1) >= MIN_WINDOW else "",
            "val_top1_at_plateau": round(top1[plateau - 1], 2) if plateau else "",
            "val_top1_at_end": round(top1[-1], 2),
            "level_at_plateau": round(level(top1, plateau), 2) if plateau else "",
            "level_at_end": round(level(top1, len(top1)), 2), "best_val_top1": round(max(top1), 2),
            "seconds_per_epoch": metrics.get("seconds_per_epoch") or "",
            "settings": study.settings_key({k: v for k, v in config.items() if k != "epochs"}),
        })
        curves += [{"cell": cell.name, "backbone": cell.backbone, "fraction": cell.fraction, "seed": cell.seed,
                    "epoch": e, "steps": e * steps if steps else "", "val_top1": round(v, 2)}
                   for e, v in enumerate(top1, 1)]
    return rows, curves


def study_steps(rows):
    """{backbone: steps} the study should train: the largest plateau of the backbone's runs,
    or None for a backbone with a run that has not plateaued."""
    steps = {}
    for row in rows:
        value = row["plateau_steps"]
        known = steps.get(row["backbone"], 0)
        steps[row["backbone"]] = None if value in ("", None) or known is None else max(known, int(value))
    return steps


def _write_csv(path, rows, fields):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    run_folder.atomic_write_text(path, buffer.getvalue())


def plot(curves, rows, path, tolerance=TOLERANCE):
    """Validation top-1 against optimizer steps, one panel per backbone, plateaus marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    fig, axes = plt.subplots(1, len(backbones), figsize=(4 * len(backbones), 3.2), squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        # In the order of fraction and seed, so that a fraction has the same colour in every panel.
        for row in sorted((r for r in rows if r["backbone"] == backbone),
                          key=lambda r: (float(r["fraction"]), int(r["seed"]))):
            points = [c for c in curves if c["cell"] == row["cell"]]
            xs = [c["steps"] or c["epoch"] for c in points]
            line, = ax.plot(xs, [c["val_top1"] for c in points], lw=1,
                            label=f"{row['fraction']:g}, seed {row['seed']}")
            if row["plateau_steps"] not in ("", None):
                ax.axvline(row["plateau_steps"], color=line.get_color(), ls="--", lw=0.8)
        ax.set_title(f"{backbone} (lambda 0, constant lr)")
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel("validation top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="fraction", title_fontsize=7)
    fig.suptitle(f"calibration, dashed: the plateau (its last fifth rises < {tolerance:g} point, and the run's "
                 f"last fifth is < {tolerance:g} point above it)", fontsize=9)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def report(cells, output, tolerance=TOLERANCE):
    rows, curves = calibration_rows(cells, tolerance)
    os.makedirs(output, exist_ok=True)
    _write_csv(os.path.join(output, "calibration.csv"), rows, CALIBRATION_FIELDS)
    _write_csv(os.path.join(output, "curves.csv"), curves,
               ["cell", "backbone", "fraction", "seed", "epoch", "steps", "val_top1"])
    if rows:
        plot(curves, rows, os.path.join(output, "calibration.png"), tolerance)
    for row in rows:
        where = (f"plateau at epoch {row['plateau_epoch']} ({row['plateau_steps']} steps, validation top-1 "
                 f"{row['level_at_plateau']}% over its last fifth)" if row["plateau_epoch"] else
                 f"no plateau in {row['epochs']} epochs (last fifth rises {row['rise_at_end'] or '-'} points): "
                 f"run it to the end, or again with a larger --epochs")
        print(f"{row['cell']}: {where}; {row['level_at_end']}% over the last fifth of {row['epochs']} epochs")
    for backbone, steps in study_steps(rows).items():
        print(f"{backbone}: " + (f"the study should train {steps} steps" if steps else "not calibrated yet"))
    return rows


# --- The command line ----------------------------------------------------------------------


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--tolerance", type=float, default=TOLERANCE)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    own, rest = p.parse_known_args(argv)
    if own.help:
        print(__doc__)
        print("Own flags: --tolerance POINTS (default 1), --report-only. The study's flags:\n")
        study.parse_args(["--help"])
    if "--lams" in rest:
        study.fail("--lams: the calibration trains without DRLoc (lambda 0) only")
    if not own.tolerance > 0:
        study.fail(f"--tolerance must be a number of points > 0; found {own.tolerance}")
    if "--" in rest:
        index = rest.index("--")
        rest = rest[:index] + ["--lams", "0", "--", "--lr-schedule", "constant"] + rest[index + 1:]
    else:
        rest = rest + ["--lams", "0", "--", "--lr-schedule", "constant"]
    args = study.parse_args(rest)
    if args.train_args.count("--lr-schedule") > 1:
        study.fail("--lr-schedule: the calibration trains with a constant learning rate")
    args.tolerance, args.report_only = own.tolerance, own.report_only
    return args


def _train(cells, args):
    """Train, lengthen or skip each calibration run; Ctrl-C stops after saving the running one."""
    for i, cell in enumerate(cells, 1):
        state = study.cell_state(cell.folder)
        done = len(_history(cell.folder))
        where = f"[{i}/{len(cells)}] {cell.name}"
        if state in (study.FINISHED, study.PARTIAL) and done >= args.epochs:
            print(f"{where}: {done} epochs trained before, skipped")
            continue
        plateau = plateau_epoch(_history(cell.folder), args.tolerance) if state == study.FINISHED else None
        if plateau is not None:
            print(f"{where}: plateaued at epoch {plateau} of the {done} trained before, not lengthened")
            continue
        if state in (study.FINISHED, study.PARTIAL):
            argv = ["--output", cell.folder, "--resume", "--epochs", str(args.epochs),
                    "--verbose", str(args.verbose)]
            print(f"{where}: lengthening from {done} to {args.epochs} epochs", flush=True)
        else:
            if state == study.STARTED:
                shutil.rmtree(cell.folder)
            argv = cell.argv
            print(f"{where}: training {args.epochs} epochs", flush=True)
        try:
            result = study.train_cell(argv)  # Ctrl-C here reaches main's handler, after the run saved
        finally:
            keras.backend.clear_session()
        if isinstance(result, dict) and result.get("interrupted"):
            break


def main(argv=None):
    """Train (or lengthen) the calibration runs, then write the report; returns its rows."""
    args = parse_args(argv)
    cells = study.make_grid(args)
    for cell in cells:
        study.parse_cell(cell.argv)  # the flags are checked before any training
    mismatched = []
    for cell in cells:
        saved = study.read_json(os.path.join(cell.folder, "config.json"))
        if saved is None:
            continue
        saved = vars(options.namespace(saved))
        diff = run_folder.config_difference(saved, vars(study.parse_cell(cell.argv)),
                                            ignore=options.RUN_ONLY + ("epochs",))
        if diff:
            mismatched.append(f"  {cell.name}: " + ", ".join(f"--{k.replace('_', '-')} saved {a!r}, now {b!r}"
                                                           for k, a, b in diff))
    if mismatched:
        study.fail(f"{len(mismatched)} run(s) in {args.output} were trained with other settings:\n"
                   + "\n".join(mismatched) + "\nUse another --output or the same settings.")
    if not args.report_only:
        try:
            _train(cells, args)
        except KeyboardInterrupt:  # between two runs
            print("interrupted: the epochs trained so far are kept; the same command goes on", file=sys.stderr)
    return report(cells, args.output, args.tolerance)
