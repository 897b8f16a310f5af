"""The converged study of docs/results.md: does DRLoc help baselines that have finished learning?

    python scripts/converged_study.py calibrate --jobs 2   # how many steps each baseline needs
    python scripts/converged_study.py grid --jobs 2        # backbones x lambda x fraction x seeds
    python scripts/converged_study.py grid --jobs 2 --by-seed --backbones cvt   # two seeds of a cell at once
    python scripts/converged_study.py length               # one cell at twice the grid's steps (one job)
    python scripts/converged_study.py ablation --jobs 2    # lambda, m, loss, offsets, schedule
    python scripts/converged_study.py heads                # what the heads learned
    python scripts/converged_study.py report               # docs/results/converged/summary.md
    python scripts/converged_study.py all --jobs 2 --hours 2.5

Every part is a list of jobs, each one command of examples/calibrate_steps.py or
examples/small_data_study.py, run `--jobs` at a time as subprocesses of one thread each (on a small
CPU two one-thread processes train about twice as fast as one process of two threads). The
results are written under docs/results/converged/ as they come: each study job exports its
results.csv there after every cell (`--export`) and continues from it (`--continue-from`), so the
same command in a later session, on a fresh machine with only the committed files, trains only
the cells that are missing. `--hours` stops starting jobs after that time and stops the running
ones (Ctrl-C: each keeps its finished cells) so that a session can end cleanly. Each job's
wall time is appended to docs/results/converged/wall-times.csv.

The grid needs the calibration: each backbone trains, with and without DRLoc, the number of steps
at which its baseline plateaued (`drloc_keras.calibration`), the largest over the calibration runs
of its dataset. The ablation runs on one cell, compared seed by seed with the grid's lambda-0 runs
of that cell: by default the finished grid cell where DRLoc helps most (`ablation_cell`; once its
ablation has begun, that cell), or the cell given by `--ablation`.
"""

import argparse
import csv
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from drloc_keras import catalog, results, run_folder, study  # noqa: E402

RESULTS = os.path.join("docs", "results", "converged")
RUNS = os.path.join("runs", "converged")
DOCS = os.path.join(ROOT, "docs", "results.md")  # its marked tables are rewritten by `report`
# Every job runs on one Keras backend, whatever KERAS_BACKEND the shell holds: a run resumed on
# another backend would mix kernels and random draws. The committed results are TensorFlow's.
BACKEND = "tensorflow"
TITLES = {"fashion": "Fashion-MNIST", "synthetic": "Synthetic"}
REPORT_TITLE, REPORT_COMMAND = "The converged study", "python scripts/converged_study.py report"
BACKBONES = ("vit", "swin", "resnet50", "cvt")  # cheapest first
FASHION_DIR = os.environ.get("DRLOC_FASHION_DIR", "/usr/share/datasets/fashion-mnist")

# The datasets of the study: the study's flags, the flags of every run, and the grid's
# (fraction, seeds) and images per epoch (every fraction of a dataset the same steps per epoch).
DATASETS = {
    "fashion": {
        "study": ["--dataset", "fashion_mnist", "--data-dir", FASHION_DIR],
        "train": ["--val-fraction", "0.02", "--no-randaugment", "--mixup", "0", "--cutmix", "0",
                  "--random-erasing", "0"],
        "calibration_fractions": ["0.05", "0.01"],
        "calibration_epoch_images": 1600,
        "grid": [("0.01", range(5)), ("0.05", range(3))],
        "epoch_images": 2944,  # 92 steps of 32: the 5% subset (2940 images) and the 1% one, cycled
    },
    # 2500 images, 500 of them the validation set: the 20% subset has 400 training images, 100
    # a class (Fashion-MNIST at 1% has 59). With all 2000, ViT and Swin reach 98-99% (docs).
    "synthetic": {
        "study": ["--dataset", "synthetic"],
        "train": ["--val-fraction", "0.2", "--synthetic-train-size", "2500", "--synthetic-test-size", "2000"],
        "calibration_fractions": ["0.2"],
        "calibration_epoch_images": 1600,
        "grid": [("0.2", range(5))],
        "epoch_images": 1600,  # 50 steps of 32: the 400 training images, cycled
    },
}
BATCH = 32
SHORTFALL = 3.0  # points below its calibration's plateau at which a grid baseline had not finished learning
STOP_GRACE = 300  # seconds a job has, after Ctrl-C at --hours, before it is sent SIGTERM

# The ablation: one change each against the grid's settings (lambda the family default, m = 64,
# l1, absolute offsets, constant lambda), 3 seeds, compared with the grid's lambda-0 runs.
def ablation_variants(backbone, epochs):
    default = catalog.default_lambda(backbone)
    variants = {f"lam{lam:g}": ([f"{lam:g}"], []) for lam in (0.1, 0.5, 1.0) if lam != default}
    variants.update({
        "m16": (["default"], ["--sample-size", "16"]),
        "m256": (["default"], ["--sample-size", "256"]),
        "ce": (["default"], ["--mode", "ce"]),
        "cbr": (["default"], ["--mode", "cbr"]),
        "signed": (["default"], ["--offsets", "signed"]),
        # The authors' schedule scaled to the run: warm-up over a fifth of it, decay toward 3x
        # its length (their 20 and 300 epochs of a 100-epoch run).
        "warmup-decay": (["default"], ["--lam-schedule", "warmup-decay", "--lam-warmup-epochs",
                                       str(max(1, round(epochs / 5))), "--lam-total-epochs", str(3 * epochs)]),
    })
    return variants


def path(*parts):
    return os.path.join(ROOT, *parts)


def in_repo(file):
    """`file` relative to the repository when it lies inside it (jobs run there), else as given.
    A relative `file` is taken as relative to the repository, as the jobs see it, whatever this
    process's working directory."""
    relative = os.path.relpath(os.path.join(ROOT, file), ROOT)
    return file if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


# --- Jobs --------------------------------------------------------------------------------------


class Job:
    def __init__(self, name, argv, after=None, before=None):
        self.name, self.argv, self.after, self.before = name, argv, after, before
        self.process = self.started = self.log = None


def calibration_jobs(args):
    """One calibration job per dataset, for the backbones the committed calibration has not
    settled; its runs' rows are merged into the committed files when it ends."""
    jobs = []
    for name, spec in DATASETS.items():
        if name not in args.datasets:
            continue
        output = path("runs", f"calibration-{name}")
        steps = calibrated_steps(name)
        needed = [b for b in args.backbones if not steps.get(b)]
        if not needed:
            print(f"calibration: {name} is calibrated for {', '.join(args.backbones)} "
                  f"({os.path.relpath(path(RESULTS), ROOT)}): skipped")
            continue
        argv = [sys.executable, path("examples", "calibrate_steps.py"), "--output", output, *spec["study"],
                "--fractions", *spec["calibration_fractions"], "--seeds", "0", "--backbones", *needed,
                "--epochs", str(args.calibration_epochs), "--epoch-images", str(spec["calibration_epoch_images"]),
                "--warmup-epochs", "1", "--batch-size", str(BATCH), "--verbose", "2", "--", *spec["train"]]
        jobs.append(Job(f"calibration-{name}", argv, lambda output=output, name=name: publish_calibration(output, name)))
    return jobs


def _read_csv(file):
    if not os.path.exists(file):
        return []
    with open(file, newline="") as f:
        return list(csv.DictReader(f))


def publish_calibration(output, name):
    """Merge the calibration report in `output` into the committed files of dataset `name`
    (its runs replace the committed rows of the same runs; the others stay), and redraw the plot."""
    from drloc_keras import calibration

    new_rows = _read_csv(os.path.join(output, "calibration.csv"))
    if not new_rows:
        return
    new_curves = _read_csv(os.path.join(output, "curves.csv"))
    target = path(RESULTS, f"calibration-{name}-calibration.csv")
    curves_target = path(RESULTS, f"calibration-{name}-curves.csv")
    fresh = {r["cell"] for r in new_rows}
    rows = [r for r in _read_csv(target) if r["cell"] not in fresh] + new_rows
    curves = [c for c in _read_csv(curves_target) if c["cell"] not in fresh] + new_curves
    os.makedirs(path(RESULTS), exist_ok=True)
    calibration._write_csv(target, rows, calibration.CALIBRATION_FIELDS)
    calibration._write_csv(curves_target, curves, ["cell", "backbone", "fraction", "seed", "epoch", "steps", "val_top1"])
    for r in rows:
        r["fraction"] = float(r["fraction"])
        r["plateau_steps"] = int(r["plateau_steps"]) if r["plateau_steps"] not in ("", None) else ""
    for c in curves:
        c.update(steps=int(c["steps"]) if c["steps"] else "", epoch=int(c["epoch"]), val_top1=float(c["val_top1"]))
    calibration.plot(curves, rows, path(RESULTS, f"calibration-{name}-calibration.png"))


def calibrated_steps(dataset):
    """{backbone: steps or None} from the committed calibration of `dataset`: None until the
    backbone has a plateau at every calibration fraction of the dataset."""
    from drloc_keras import calibration

    file = path(RESULTS, f"calibration-{dataset}-calibration.csv")
    if not os.path.exists(file):
        return {}
    wanted = {float(f) for f in DATASETS[dataset]["calibration_fractions"]}
    with open(file, newline="") as f:  # other fractions' runs are there to be read, not used
        rows = [r for r in csv.DictReader(f) if float(r["fraction"]) in wanted]
    steps = calibration.study_steps(rows)
    for backbone in steps:
        if {float(r["fraction"]) for r in rows if r["backbone"] == backbone} != wanted:
            steps[backbone] = None
    return steps


def grid_epochs(dataset, backbone):
    steps = calibrated_steps(dataset).get(backbone)
    if not steps:
        return None
    return max(2, math.ceil(steps / (DATASETS[dataset]["epoch_images"] // BATCH)))


def study_job(name, dataset, backbone, fraction, seeds, lams, epochs, extra=(), cell=None):
    """One small_data_study.py job. It exports its rows to `<name>.csv` and skips the runs that the
    results already hold: its own file, and with `cell` (a grid cell's name) every file of that
    cell, which the seed jobs of `grid --by-seed` share out (merged into one `--continue-from`
    file when the job starts)."""
    spec = DATASETS[dataset]
    export = path(RESULTS, f"{name}.csv")
    argv = [sys.executable, path("examples", "small_data_study.py"), "--output", path(RUNS, name),
            *spec["study"], "--backbones", backbone, "--lams", *lams, "--fractions", fraction,
            "--seeds", *map(str, seeds), "--epochs", str(epochs), "--epoch-images", str(spec["epoch_images"]),
            "--warmup-epochs", "1", "--batch-size", str(BATCH), "--verbose", "2", "--export", export]
    sources = cell_files(cell) if cell else [export] * os.path.exists(export)
    before = None
    if sources == [export]:
        argv += ["--continue-from", export]
    elif sources:
        merged = path(RUNS, name, "continue-from.csv")
        argv += ["--continue-from", merged]
        before = lambda: merge_results(cell_files(cell), merged, first=export)  # what has landed by then
    return Job(name, argv + ["--", *spec["train"], *extra], before=before)


def cell_files(cell):
    """The results files of grid cell `cell` (`grid-<dataset>-<fraction>-<backbone>`): the file of
    the job that trains all its seeds and those of its seed jobs (`...-seed<N>.csv`, `--by-seed`)."""
    names = os.listdir(path(RESULTS)) if os.path.isdir(path(RESULTS)) else []
    return [path(RESULTS, n) for n in sorted(names)
            if n == f"{cell}.csv" or re.fullmatch(re.escape(cell) + r"-seed\d+\.csv", n)]


def merge_results(files, target, first=None):
    """The rows of `files` in one results file, each run once (`first`'s row where files repeat one)."""
    rows = {}
    for file in sorted(files, key=lambda f: f != first):
        for row in results.read_results(file):
            rows.setdefault((row["cell"], row.get("settings")), row)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    results.write_results(target, list(rows.values()))


def grid_jobs(args):
    """One job per grid cell, its seeds one after the other; with `--by-seed` one job per seed of
    each cell (`grid-...-seed<N>`, its own run folder and results file), so that `--jobs 2` trains
    two seeds of one costly cell side by side. Either way a job skips the runs any file of its
    cell holds, so the two can follow each other across sessions."""
    jobs = []
    for dataset, spec in DATASETS.items():
        if dataset not in args.datasets:
            continue
        for fraction, seeds in spec["grid"]:
            for backbone in args.backbones:
                epochs = grid_epochs(dataset, backbone)
                if epochs is None:
                    print(f"grid: {backbone} on {dataset} is not calibrated yet (run `calibrate`): skipped")
                    continue
                cell = f"grid-{dataset}-{fraction}-{backbone}"
                parts = [(f"{cell}-seed{seed}", [seed]) for seed in seeds] if getattr(args, "by_seed", False) \
                    else [(cell, seeds)]
                for name, part_seeds in parts:
                    job = study_job(name, dataset, backbone, fraction, part_seeds, ["0", "default"], epochs,
                                    cell=cell)
                    # The heads' figure, while the run folders are here.
                    if fraction == spec["grid"][0][0] and 0 in part_seeds:
                        job.after = lambda dataset=dataset, backbone=backbone: heads_after_grid(dataset, backbone)
                    jobs.append(job)
    # Interleaved by backbone, so that the cheap ones finish first.
    return sorted(jobs, key=lambda j: [b in j.name for b in args.backbones].index(True))


def ablation_jobs(args):
    if args.ablation:
        dataset, fraction, backbone = args.ablation
    else:
        (dataset, fraction, backbone), why = ablation_cell()
        print(f"ablation: {backbone} on {dataset} at {fraction}: {why}")
    epochs = grid_epochs(dataset, backbone)
    if epochs is None:
        print(f"ablation: {backbone} on {dataset} is not calibrated yet: nothing to run")
        return []
    return [study_job(f"ablation-{dataset}-{fraction}-{backbone}-{variant}", dataset, backbone, fraction,
                      range(3), lams, epochs, extra)
            for variant, (lams, extra) in ablation_variants(backbone, epochs).items()]


def length_jobs(args):
    """The length check: the cell `--length` at `--length-factor` times the grid's steps, both arms,
    seeds 0-2. A baseline that gains there had not finished learning at the grid's length (its
    calibration plateaued at a constant rate; the grid decays the rate), and the check says what
    DRLoc's difference becomes with more steps."""
    dataset, fraction, backbone = args.length
    epochs = grid_epochs(dataset, backbone)
    if epochs is None:
        print(f"length: {backbone} on {dataset} is not calibrated yet: nothing to run")
        return []
    return [study_job(f"length-{dataset}-{fraction}-{backbone}-x{args.length_factor:g}", dataset, backbone,
                      fraction, range(3), ["0", "default"], round(args.length_factor * epochs))]


def grid_cells():
    """Every cell of the grid: `{(dataset, fraction, backbone): (paired differences in points, complete)}`,
    complete when both arms have every seed of the grid (a cell not begun has no differences)."""
    cells = {}
    for dataset, spec in DATASETS.items():
        for fraction, seeds in spec["grid"]:
            for backbone in BACKBONES:
                rows = grid_rows(dataset, fraction, backbone)
                diffs = [d for pairs in results.paired_differences(rows).values() for d in pairs]
                arms = [{int(r["seed"]) for r in rows if (float(r["lam"]) == 0) == base} for base in (True, False)]
                cells[(dataset, fraction, backbone)] = (diffs, arms[0] == arms[1] == set(seeds))
    return cells


def ablated_cells():
    """The (dataset, fraction, backbone) of every ablation in the results, from its files' names."""
    names = os.listdir(path(RESULTS)) if os.path.isdir(path(RESULTS)) else []
    return sorted({tuple(n[len("ablation-"):].split("-", 3)[:3]) for n in names
                   if n.startswith("ablation-") and n.endswith(".csv")})


def ablation_cell():
    """The ablation's cell and why: the cell whose ablation has begun (its files are in the results),
    else the complete grid cell where DRLoc helps most (the largest mean paired difference among the
    cells whose 95% interval lies above 0), else, where it helps nowhere, ViT at Fashion-MNIST's
    smallest fraction. Cells still missing seeds take no part, nor cells whose baselines had not
    finished learning (their mean more than SHORTFALL points below their calibration's level at
    the plateau); the choice is printed with its figures."""
    begun = ablated_cells()
    if begun:
        return begun[0], "its ablation has begun (" + ", ".join(" ".join(c) for c in begun) + ")"
    helping, incomplete, short = [], [], []
    against = baselines_against_calibration()
    for cell, (diffs, complete) in grid_cells().items():
        if not complete:
            incomplete.append(" ".join(cell))
            continue
        level, _, baseline, _, _ = against.get(cell, (None, None, None, None, None))
        if level is None or baseline < level - SHORTFALL:
            short.append(" ".join(cell) + ("" if level is None else f" ({baseline:.1f} against {level:.1f})"))
            continue
        mean, half, higher, n = results.paired_summary(diffs)
        if half is not None and mean - half > 0:
            helping.append((mean, cell, f"paired {mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}], {higher}/{n}"))
    waiting = f"; not finished, so not compared: {', '.join(sorted(incomplete))}" if incomplete else ""
    if short:
        waiting += (f"; baselines short of their calibration by more than {SHORTFALL:g} points (or not calibrated "
                    f"at that fraction), so not compared: {', '.join(short)}")
    if not helping:
        return ("fashion", DATASETS["fashion"]["grid"][0][0], "vit"), "DRLoc helps in no finished cell" + waiting
    mean, cell, figures = max(helping)
    others = ", ".join(f"{' '.join(c)} {m:+.2f}" for m, c, _ in sorted(helping, reverse=True) if c != cell)
    return cell, (f"DRLoc helps most there ({figures})" + (f"; also above 0: {others}" if others else "") + waiting)


def heads_job(dataset, backbone):
    """visualize_drloc.py on the seed-0 DRLoc run of the dataset's smallest grid fraction, or None
    when that run has not finished here or its figure is already in the results."""
    fraction = DATASETS[dataset]["grid"][0][0]
    lam = catalog.default_lambda(backbone)
    run = f"{backbone}-lam{lam:g}-frac{float(fraction):g}-seed0"
    cell = f"grid-{dataset}-{fraction}-{backbone}"
    # The cell's job's folder, or its seed-0 job's (`grid --by-seed`), whichever finished the run.
    folder = next((f for f in (path(RUNS, cell, run), path(RUNS, f"{cell}-seed0", run))
                   if study.cell_state(f) == study.FINISHED), path(RUNS, cell, run))
    target = path(RESULTS, f"offsets-{dataset}-{backbone}.png")
    # A run stopped part-way writes metrics.json too: only a whole run's model is drawn.
    if study.cell_state(folder) != study.FINISHED or os.path.exists(target):
        return None
    # The last model, the one whose test top-1 the grid reports (not best.keras); paths inside the
    # repository relative to it (jobs run there), so the JSON names them alike on every machine.
    argv = [sys.executable, path("examples", "visualize_drloc.py"), in_repo(folder), "--model", "last",
            "--images", "256", "--output", in_repo(target)]
    return Job(f"offsets-{dataset}-{backbone}", argv)


def heads_jobs(args):
    """The heads' figures that can be drawn from the run folders here."""
    found = (heads_job(d, b) for d in DATASETS if d in args.datasets for b in args.backbones)
    return [job for job in found if job is not None]


def heads_after_grid(dataset, backbone):
    """Run when a grid job ends, finished or stopped: its run folders (the trained models) are not
    committed, so a later session on a fresh machine could not draw the heads' figure."""
    job = heads_job(dataset, backbone)
    if job is not None:
        run_jobs([job], 1, None)


def run_jobs(jobs, workers, deadline):
    """Run `jobs`, `workers` at a time; at `deadline` (time.time()) stop them with Ctrl-C."""
    os.makedirs(path(RUNS, "logs"), exist_ok=True)
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    pending, running = list(jobs), []
    try:
        _schedule(pending, running, workers, deadline, env)
    except KeyboardInterrupt:  # Ctrl-C (or a scheduler's INT): every job saves what it has, then stops
        print(f"interrupted: stopping {len(running)} running job(s); they keep their finished cells",
              flush=True)
        for job in running:
            if job.process.poll() is None:
                job.process.send_signal(signal.SIGINT)
        for job in running:
            job.process.wait()
            job.log.close()
            if job.after is not None:
                job.after()
            _record_wall_time(job, time.time() - job.started, job.process.returncode)
        raise


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _schedule(pending, running, workers, deadline, env):
    stopping = None  # when the jobs were asked to stop
    while pending or running:
        if stopping is None and deadline is not None and time.time() > deadline:
            stopping = time.time()
            print(f"--hours reached: stopping {len(running)} running job(s); {len(pending)} not started", flush=True)
            for job in running:
                job.process.send_signal(signal.SIGINT)
            pending.clear()
        elif stopping is not None and time.time() > stopping + STOP_GRACE:
            for job in running:  # a job that did not stop on Ctrl-C (SIGTERM saves a run the same way)
                if job.process.poll() is None:
                    job.process.terminate()
            stopping = math.inf
        while pending and len(running) < workers and not stopping:
            job = pending.pop(0)
            if job.before is not None:
                job.before()
            job.log = open(path(RUNS, "logs", f"{job.name}.log"), "a")
            job.log.write(f"\n$ {' '.join(shlex.quote(a) for a in job.argv)}\n")
            job.log.flush()
            job.started = time.time()
            # SIGINT at its default in the job, whatever this process inherited (a shell that starts
            # a program in the background leaves SIGINT ignored): Ctrl-C must reach every job.
            job.process = subprocess.Popen(job.argv, cwd=ROOT, env=env, stdout=job.log, stderr=subprocess.STDOUT,
                                           preexec_fn=_default_sigint)
            print(f"started {job.name} (log {os.path.relpath(job.log.name, ROOT)})", flush=True)
            running.append(job)
        time.sleep(5)
        for job in list(running):
            code = job.process.poll()
            if code is None:
                continue
            running.remove(job)
            job.log.close()
            seconds = time.time() - job.started
            if job.after is not None:
                job.after()
            _record_wall_time(job, seconds, code)
            print(f"finished {job.name}: exit {code} in {seconds / 60:.1f} min", flush=True)


def _record_wall_time(job, seconds, code):
    file = path(RESULTS, "wall-times.csv")
    os.makedirs(os.path.dirname(file), exist_ok=True)
    new = not os.path.exists(file)
    with open(file, "a", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if new:
            writer.writerow(["finished", "job", "minutes", "exit", "machine"])
        writer.writerow([time.strftime("%Y-%m-%d %H:%M"), job.name, f"{seconds / 60:.1f}", code,
                         f"{os.cpu_count()} cores"])


# --- The report ------------------------------------------------------------------------------


def read_exports(prefix, names=None):
    """The rows of the results files whose names begin with `prefix` (and are among `names`, if
    given), each with its file's name; a run that two files hold (a grid cell's file and one of its
    seed jobs') once."""
    rows, seen = [], set()
    for name in sorted(os.listdir(path(RESULTS))) if os.path.isdir(path(RESULTS)) else []:
        if name.startswith(prefix) and name.endswith(".csv") and (names is None or name in names):
            for row in results.read_results(path(RESULTS, name)):
                if (row["cell"], row.get("settings")) not in seen:
                    seen.add((row["cell"], row.get("settings")))
                    rows.append({**row, "file": name})
    return rows


def grid_rows(dataset, fraction, backbone):
    """The runs of one grid cell, from all its files (`cell_files`), each once."""
    cell = f"grid-{dataset}-{fraction}-{backbone}"
    return read_exports(cell, {os.path.basename(f) for f in cell_files(cell)})


def baselines_against_calibration():
    """`{(dataset, fraction, backbone): (calibration level, grid baseline of seed 0 or None, mean, std, n)}`
    for every grid cell with baselines whose calibration ran at its fraction (top-1 %)."""
    levels = {}
    for dataset in DATASETS:
        for r in _read_csv(path(RESULTS, f"calibration-{dataset}-calibration.csv")):
            if (r.get("level_at_plateau") and r["backbone"] in BACKBONES
                    and r["fraction"] in [f for f, _ in DATASETS[dataset]["grid"]]):
                levels[(dataset, r["fraction"], r["backbone"])] = float(r["level_at_plateau"])
    found = {}
    for cell in sorted(levels):
        top1 = {int(r["seed"]): 100 * r["final_top1"] for r in grid_rows(*cell)
                if float(r["lam"]) == 0}
        if top1:
            found[cell] = (levels[cell], top1.get(0), *results.mean_std(list(top1.values())), len(top1))
    return found


def length_tables():
    """The grid's baselines against their calibration's level, and each length check beside its grid cell."""
    lines, table = [], []
    for (dataset, fraction, backbone), (level, seed0, mean, std, n) in baselines_against_calibration().items():
        table.append(f"| {TITLES[dataset]} | {fraction} | {backbone} | {level:.1f} | "
                     f"{'-' if seed0 is None else f'{seed0:.1f}'} | {mean:.1f} ± {std:.1f} ({n}) | {mean - level:+.1f} |")
    if table:
        lines += ["Each grid baseline (lambda 0, the grid's cosine decay, test set) against its calibration "
                  "run's level at the plateau (a constant rate, seed 0, validation set; the grid trains at least "
                  "as many steps). "
                  "A baseline far below its calibration had not finished learning at the grid's length.", "",
                  "| dataset | fraction | backbone | calibration at its plateau | grid baseline, seed 0 | "
                  "grid baselines (n) | grid - calibration |", "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
                  *table, ""]
    for name in sorted({r["file"] for r in read_exports("length-")}):
        dataset, fraction, backbone, factor = name[len("length-"):-len(".csv")].split("-")
        grid = [r for r in grid_rows(dataset, fraction, backbone) if int(r["seed"]) < 3]
        table = []
        for label, rows in (("grid length", grid), (f"{factor[1:]} times as long", read_exports(name))):
            if rows:
                table += results.markdown_table(rows, "final_top1").rstrip("\n").split("\n")[-1:]
                table[-1] = f"| {label} " + table[-1]
        lines += [f"**{backbone}, {TITLES[dataset]}, fraction {fraction}**, seeds 0-2 at the grid's length and "
                  f"{factor[1:]} times as long (test top-1 %):", "",
                  "| length | backbone | fraction | λ | without DRLoc (λ = 0) | n | with DRLoc | n | Δ | paired Δ | "
                  "95% CI | better |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                  *table, ""]
    return lines


def ablation_tables():
    """Each ablation cell of the results, each variant seed by seed against the grid's lambda-0 runs
    of the same cell, and against the grid's own DRLoc runs of the same seeds (the variant's
    change alone)."""
    lines = []
    for dataset, fraction, backbone in ablated_cells():
        grid = grid_rows(dataset, fraction, backbone)
        baselines = [r for r in grid if float(r["lam"]) == 0]
        grid_drloc = [r for r in grid if float(r["lam"]) != 0 and int(r["seed"]) < 3]
        lines += [f"**{backbone}, {TITLES[dataset]}, fraction {fraction}**: each variant against the grid's "
                  f"lambda-0 runs of the same seeds, and against the grid's DRLoc runs of the same seeds "
                  f"(test top-1 %, paired difference and 95% interval).", "",
                  "| variant | n | with DRLoc | paired Δ [95% CI] | seeds higher | against the grid's DRLoc [95% CI] | "
                  "seeds higher |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        prefix = f"ablation-{dataset}-{fraction}-{backbone}-"
        variants = [("grid (λ default, m 64, l1, absolute, constant)", grid_drloc)]
        for name in sorted({r["file"] for r in read_exports(prefix)}):
            variants.append((name[len(prefix):-len(".csv")], read_exports(name)))
        reference = {int(r["seed"]): 100 * r["final_top1"] for r in grid_drloc}

        def summary(diffs):
            mean, half, higher, n = results.paired_summary(diffs)
            interval = "-" if half is None else f"[{mean - half:+.2f}, {mean + half:+.2f}]"
            return f"{mean:+.2f} {interval} | {higher}/{n}"

        for label, rows in variants:
            diffs = [d for pairs in results.paired_differences(baselines + rows).values() for d in pairs]
            if not diffs:
                continue
            top, std = results.mean_std([100 * r["final_top1"] for r in rows])
            against = [100 * r["final_top1"] - reference[int(r["seed"])] for r in rows
                       if int(r["seed"]) in reference]
            lines.append(f"| {label} | {len(diffs)} | {top:.2f} ± {std:.2f} | {summary(diffs)} | "
                         f"{summary(against) if against and rows is not grid_drloc else '- | -'} |")
        lines.append("")
    return lines


def recorded_minutes(rows):
    """The training minutes the runs of `rows` recorded themselves (seconds per epoch of each run's
    last session times its epochs), and how many runs recorded them."""
    timed = [r for r in rows if r.get("seconds_per_epoch") not in (None, "") and r.get("epochs") not in (None, "")]
    return sum(r["seconds_per_epoch"] * r["epochs"] for r in timed) / 60, len(timed)


def wall_time_table():
    """The minutes of each job of wall-times.csv, summed over the sessions that ran it, and of each
    part; beside them the minutes the job's runs recorded themselves, which a session stopped before
    its jobs could write their wall time does not lose."""
    file = path(RESULTS, "wall-times.csv")
    if not os.path.exists(file):
        return []
    jobs = {}
    for row in _read_csv(file):
        minutes, sessions = jobs.get(row["job"], (0.0, 0))
        jobs[row["job"]] = (minutes + float(row["minutes"]), sessions + 1)
    parts = {}
    for job, (minutes, _) in jobs.items():
        part = job.split("-")[0]
        parts[part] = parts.get(part, 0.0) + minutes

    def recorded(prefix):
        minutes, runs = recorded_minutes(read_exports(prefix))
        return f"{minutes:.0f} ({runs} run{'s' * (runs != 1)})" if runs else "-"

    lines = ["## Wall time", "",
             "Minutes of each job (one thread, beside the other jobs), over every session that ran it, from "
             "`wall-times.csv`; calibration runs of the sessions before it was kept are in the calibration "
             "tables above. Each part's total is the machine time it cost one thread. A session that ended "
             "before its jobs stopped left no line there; the last column, the training minutes the runs "
             "recorded themselves in the results files (seconds per epoch times epochs, each run once), "
             "counts those too, but not the validation and checkpoints between epochs.", "",
             "| job | sessions | minutes | minutes the runs recorded |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {job} | {sessions} | {minutes:.0f} | {recorded(job + '.csv') if job.split('-')[0] in ('grid', 'length', 'ablation') else '-'} |"
              for job, (minutes, sessions) in jobs.items()]
    lines += [f"| **{part}, all jobs** | | **{minutes:.0f}** ({minutes / 60:.1f} h) | "
              f"{recorded(part + '-') if part in ('grid', 'length', 'ablation') else '-'} |"
              for part, minutes in parts.items()]
    return lines + [""]


def fill_docs(file, regions):
    """Replace the text between `<!-- name -->` and `<!-- end of name -->` in `file` for each region."""
    if file is None or not os.path.exists(file):
        return
    with open(file) as f:
        original = text = f.read()
    for name, lines in regions.items():
        start, end = f"<!-- {name} -->", f"<!-- end of {name} -->"
        if start in text and end in text and lines:
            head, rest = text.split(start, 1)
            text = head + start + "\n" + "\n".join(lines).strip("\n") + "\n" + end + rest.split(end, 1)[1]
    if text != original:  # unchanged, the file (and its time stamp) stays as it is
        run_folder.atomic_write_text(file, text)


def report(args):
    parts = [f"# {REPORT_TITLE}: results so far", "",
             f"Written by `{REPORT_COMMAND}` from the CSV files beside it.", ""]
    docs = {"calibration table": [], "grid table": []}  # the regions of docs/results.md this rewrites
    for dataset in DATASETS:
        steps = calibrated_steps(dataset)
        file = path(RESULTS, f"calibration-{dataset}-calibration.csv")
        if os.path.exists(file):
            with open(file, newline="") as f:
                runs = list(csv.DictReader(f))
            note = ("Validation top-1 (%) as the mean of a fifth of the epochs (the plateau's last fifth, "
                    "the run's last fifth), less noisy than one epoch's figure; minutes: seconds per epoch "
                    "of the run's last session times its epochs.")
            table = ["| run | steps per epoch | epochs | plateau (steps) | top-1 at the plateau | "
                     "at the end | minutes |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for r in runs:
                minutes = (f"{float(r['seconds_per_epoch']) * int(r['epochs']) / 60:.0f}"
                           if r.get("seconds_per_epoch") else "-")
                table.append(f"| {r['cell']} | {r['steps_per_epoch']} | {r['epochs']} | "
                             f"{r['plateau_steps'] or 'none yet'} | {r.get('level_at_plateau') or '-'} | "
                             f"{r.get('level_at_end') or r['val_top1_at_end']} | {minutes} |")
            parts += [f"## Calibration runs, {dataset}", "", note, "", *table, ""]
            docs["calibration table"] += [f"**{TITLES[dataset]}**, every run. {note}", "", *table, ""]
        if steps:
            table = ["| backbone | steps for the study | epochs of the grid |", "| --- | ---: | ---: |",
                     *(f"| {b} | {s or 'not settled yet'} | {grid_epochs(dataset, b) or '-'} |"
                       for b, s in steps.items())]
            parts += [f"## Calibration, {dataset}", "",
                      "A backbone is settled once every calibration fraction of the dataset "
                      f"({', '.join(DATASETS[dataset]['calibration_fractions'])}) has a run with a plateau.", "",
                      *table, ""]
            docs["calibration table"] += ["The steps of each backbone's grid cells (the largest plateau over the "
                                          "grid's fractions):", "", *table, ""]
        rows = read_exports(f"grid-{dataset}-")
        if rows:
            table = results.markdown_table(rows, "final_top1", BACKBONES).split("\n", 2)[2]
            parts += [f"## Grid, {dataset}", "", table]
            docs["grid table"] += [f"**{TITLES[dataset]}**", "", table.split("\n\n", 1)[1].strip(), ""]
    length = length_tables()
    if length:
        parts += ["## Length check", "", *length]
        docs["length table"] = length
    ablation = ablation_tables()
    if ablation:
        parts += ["## Ablation", "", *ablation]
        docs["ablation table"] = ablation
    heads = []
    for dataset in DATASETS:
        for backbone in BACKBONES:
            file = path(RESULTS, f"offsets-{dataset}-{backbone}.json")
            if os.path.exists(file):
                with open(file) as f:
                    found = json.load(f)
                for h in found["heads"]:
                    heads.append(f"| {dataset} | {backbone} | {h['grid'][0]}x{h['grid'][1]} | {h['mode']} | "
                                 f"{h['mae_rows']:.3f} / {h['constant_guess_mae_rows']:.3f} | "
                                 f"{h['mae_columns']:.3f} / {h['constant_guess_mae_columns']:.3f} |")
    if heads:
        parts += ["## What the heads learned", "",
                  "Mean absolute error of the predicted offset (feature-map cells) against that of a constant "
                  "guess (the mean true offset), seed 0 of the smallest fraction, `examples/visualize_drloc.py`.",
                  "", "| dataset | backbone | grid | loss | rows: head / constant | columns: head / constant |",
                  "| --- | --- | --- | --- | ---: | ---: |", *heads, ""]
    parts += wall_time_table()
    text = "\n".join(parts) + "\n"
    os.makedirs(path(RESULTS), exist_ok=True)
    run_folder.atomic_write_text(path(RESULTS, "summary.md"), text)
    fill_docs(DOCS, docs)
    print(text)


def run_parts(parts, jobs_of, args, deadline, report):
    """Run each part's jobs (`jobs_of(part)`), part after part, until `deadline`; with
    `args.dry_run` print their commands instead. Then `report(args)` (not for a dry run), and
    exit 130 when Ctrl-C stopped the jobs."""
    interrupted = False
    for part in parts:
        if deadline is not None and time.time() > deadline:
            break
        jobs = jobs_of(part)
        if args.dry_run:
            for job in jobs:
                print(f"{job.name}: {' '.join(shlex.quote(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a) for a in job.argv)}")
            continue
        try:
            run_jobs(jobs, args.jobs if part != "heads" else 1, deadline)
        except KeyboardInterrupt:
            interrupted = True
            break
    if not args.dry_run:
        report(args)
    if interrupted:
        sys.exit(130)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["calibrate", "grid", "length", "ablation", "heads", "report", "all"])
    p.add_argument("--jobs", type=int, default=2, help="jobs at a time (one thread each)")
    p.add_argument("--hours", type=float, default=None, help="stop starting and running jobs after this long")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--calibration-epochs", type=int, default=40,
                   help="epochs of each calibration run (a later, larger value lengthens them)")
    p.add_argument("--results", default=RESULTS, help="where the results are kept (committed)")
    p.add_argument("--runs", default=RUNS, help="where the study jobs train (their run folders and logs)")
    p.add_argument("--dry-run", action="store_true", help="print the commands of the jobs, run nothing")
    p.add_argument("--backend", default=BACKEND, choices=["tensorflow", "jax", "torch"],
                   help=f"the Keras backend of every job (default {BACKEND}, that of the committed results; "
                        f"another needs another --results)")
    p.add_argument("--by-seed", action="store_true",
                   help="grid: one job per seed of each cell (its own run folder and results file, "
                        "grid-...-seed<N>.csv), so that --jobs 2 trains two seeds of a costly cell side by side")
    p.add_argument("--ablation", nargs=3, default=None, metavar=("DATASET", "FRACTION", "BACKBONE"),
                   help="the cell of the ablation (default: the one whose ablation has begun, else the finished "
                        "grid cell where DRLoc helps most, else ViT at Fashion-MNIST's smallest fraction)")
    p.add_argument("--length", nargs=3, default=["synthetic", "0.2", "vit"], metavar=("DATASET", "FRACTION", "BACKBONE"),
                   help="the cell of the length check (default ViT on the synthetic set)")
    p.add_argument("--length-factor", type=float, default=2.0,
                   help="the length check's steps as a multiple of the grid's (default 2)")
    args = p.parse_args(argv)
    # SIGINT stops the jobs even when this was started in the background, where a shell leaves
    # SIGINT ignored (and the jobs would inherit that and ignore it between two runs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1; found {args.jobs}")
    if args.length_factor <= 0:
        p.error(f"--length-factor must be > 0; found {args.length_factor:g}")
    for option, cell in (("--length", args.length), ("--ablation", args.ablation)):
        if cell is not None and (cell[0] not in DATASETS or cell[2] not in BACKBONES
                                 or cell[1] not in [f for f, _ in DATASETS[cell[0]]["grid"]]):
            p.error(f"{option}: a dataset of {sorted(DATASETS)}, one of its grid fractions "
                    f"({'; '.join(f'{d}: ' + ' '.join(f for f, _ in s['grid']) for d, s in DATASETS.items())}) "
                    f"and a backbone of {BACKBONES}; found {' '.join(cell)}")
    if args.backend != BACKEND and os.path.normpath(path(args.results)) == os.path.normpath(path(RESULTS)):
        p.error(f"--backend {args.backend}: the results in {RESULTS} were trained on {BACKEND}; give another "
                f"--results (and --runs) for a study on {args.backend}")
    # Other results than the committed ones leave the docs' tables alone.
    globals().update(RESULTS=args.results, RUNS=args.runs, DOCS=DOCS if args.results == RESULTS else None,
                     BACKEND=args.backend)
    deadline = None if args.hours is None else time.time() + 3600 * args.hours
    makers = {"calibrate": calibration_jobs, "grid": grid_jobs, "length": length_jobs, "ablation": ablation_jobs,
              "heads": heads_jobs}
    run_parts(["calibrate", "grid", "length", "ablation", "heads"] if args.part == "all" else
              [args.part] if args.part != "report" else [], lambda part: makers[part](args), args, deadline, report)

if __name__ == "__main__":
    main()
