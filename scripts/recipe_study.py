"""The full-recipe study of docs/results.md: does DRLoc help under the augmentation people train with?

    python scripts/recipe_study.py calibrate --jobs 2      # each baseline's steps, under each recipe
    python scripts/recipe_study.py grid --jobs 2           # six families x lambda 0 / default x 5 seeds
    python scripts/recipe_study.py heads                   # what the heads learned (seed 0's DRLoc runs)
    python scripts/recipe_study.py report                  # docs/results/recipe-study/summary.md
    python scripts/recipe_study.py all --jobs 2 --hours 2.5
    python scripts/recipe_study.py calibrate --recipes full --calibration-epochs 200   # lengthen

Fashion-MNIST at 1% (59 images a class), the six families at their reduced sizes (ViT, Swin,
T2T-ViT, CCT, ResNet-50, CvT), each trained with lambda 0 and with its family's default lambda,
seeds 0-4, paired, under two recipes:

- `full`: the authors' recipe at the training program's defaults: RandAugment
  rand-m9-mstd0.5-inc1, MixUp 0.8 / CutMix 1.0 (switch 0.5), random erasing 0.25, the padded crop
  (`--crop auto` at 28 pixels), flips, label smoothing, drop path, gradient clipping at 5.
- `none`: the same without RandAugment, MixUp, CutMix, erasing or crop (flips stay): the converged
  study's recipe, run again with this code (the families' own initialisations), so that both
  recipes describe the code users get.

Each recipe is the converged study's procedure (`scripts/converged_study.py`: its calibration rule,
grid, heads and report) with these settings, and keeps its files under
docs/results/recipe-study/<recipe>/ (its runs under runs/recipe-study/<recipe>/). Every calibration
runs one backbone (so two can train side by side); every finished run lands in the results at once,
and the same command continues from the committed files on a fresh machine. Jobs of both recipes
share one queue, `--jobs` at a time, one thread each; `--hours` stops them cleanly.
"""

import argparse
import itertools
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, ROOT)

import converged_study as procedure  # noqa: E402

RESULTS = os.path.join("docs", "results", "recipe-study")
RUNS = os.path.join("runs", "recipe-study")
BACKBONES = ("vit", "swin", "t2t", "cct", "resnet50", "cvt")
NO_AUGMENTATION = ["--no-randaugment", "--mixup", "0", "--cutmix", "0", "--random-erasing", "0", "--crop", "none"]
RECIPES = {"full": [], "none": NO_AUGMENTATION}
# Epochs of 50 steps of each calibration run (a larger value lengthens the runs already there):
# augmented baselines learn slower (docs/results.md, "The recipe, measured").
CALIBRATION_EPOCHS = {"full": 160, "none": 60}


def configure(recipe, results=RESULTS, runs=RUNS):
    """Point the converged study's procedure at `recipe`'s settings and folders."""
    procedure.BACKBONES = BACKBONES
    procedure.DATASETS = {
        "fashion": {
            "study": ["--dataset", "fashion_mnist", "--data-dir", procedure.FASHION_DIR],
            "train": ["--val-fraction", "0.02", *RECIPES[recipe]],
            "calibration_fractions": ["0.01"],
            "calibration_epoch_images": 1600,
            "grid": [("0.01", range(5))],
            "epoch_images": 2944,  # 92 steps of 32, as the converged study's grid
        },
    }
    procedure.RESULTS = os.path.join(results, recipe)
    procedure.RUNS = os.path.join(runs, recipe)
    procedure.DOCS = None  # docs/results.md's tables of this study are written by `report` below
    procedure.BACKEND = "tensorflow"
    procedure.REPORT_TITLE = f"The full-recipe study, recipe {recipe}"
    procedure.REPORT_COMMAND = "python scripts/recipe_study.py report"


def calibration_jobs(args, recipe):
    """One calibration job per backbone not settled yet; its rows merge into the committed files."""
    jobs = []
    settled = procedure.calibrated_steps("fashion")
    spec = procedure.DATASETS["fashion"]
    for backbone in args.backbones:
        if settled.get(backbone):
            print(f"calibration: {backbone} ({recipe}) is calibrated: skipped")
            continue
        output = procedure.path(procedure.RUNS, f"calibration-{backbone}")
        epochs = args.calibration_epochs or CALIBRATION_EPOCHS[recipe]
        argv = [sys.executable, procedure.path("examples", "calibrate_steps.py"), "--output", output,
                *spec["study"], "--fractions", *spec["calibration_fractions"], "--seeds", "0",
                "--backbones", backbone, "--epochs", str(epochs),
                "--epoch-images", str(spec["calibration_epoch_images"]), "--warmup-epochs", "1",
                "--batch-size", str(procedure.BATCH), "--verbose", "2", "--", *spec["train"]]
        jobs.append(procedure.Job(f"calibration-{backbone}", argv,
                                  lambda output=output: procedure.publish_calibration(output, "fashion")))
    return jobs


def recipe_jobs(part, args, recipe):
    """The jobs of `part` for `recipe`, named `<recipe>-<job>`, each running its callbacks (and
    recording its wall time) with its recipe's settings in place."""
    configure(recipe, args.results, args.runs)
    if part == "calibrate":
        jobs = calibration_jobs(args, recipe)
    elif part == "grid":
        jobs = procedure.grid_jobs(args)
    else:
        jobs = procedure.heads_jobs(args)
    def in_place(function=None):
        def hook():
            configure(recipe, args.results, args.runs)
            os.makedirs(procedure.path(procedure.RUNS, "logs"), exist_ok=True)  # the job's log goes there
            if function is not None:
                function()
        return hook

    for job in jobs:
        job.name, job.recipe = f"{recipe}-{job.name}", recipe
        job.before, job.after = in_place(job.before), in_place(job.after)
    return jobs


def _record_wall_time(job, seconds, code, _record=procedure._record_wall_time):
    recipe = getattr(job, "recipe", None)
    if recipe is None:
        return _record(job, seconds, code)
    configure(recipe, *_folders)
    name, job.name = job.name, job.name[len(recipe) + 1:]
    try:
        _record(job, seconds, code)
    finally:
        job.name = name


_folders = (RESULTS, RUNS)


def report(args):
    """Each recipe's summary (the converged study's report), then both recipes side by side."""
    from drloc_keras import results

    grids = {}
    for recipe in args.recipes:
        configure(recipe, args.results, args.runs)
        procedure.report(argparse.Namespace())
        grids[recipe] = {b: procedure.grid_rows("fashion", "0.01", b) for b in BACKBONES}
    lines = ["# The full-recipe study: results so far", "",
             "Written by `python scripts/recipe_study.py report` from the CSV files of each recipe's folder "
             "(each folder's summary.md has its calibration, grid, baselines against calibration, heads and "
             "wall time).", "",
             "Fashion-MNIST at 1%, test top-1 (%) of the model after the last epoch, lambda 0 against the "
             "family's default, seeds paired (both arms of a seed train on the same images from the same "
             "initialisation); 95% interval: Student's t over the seeds.", "",
             "| backbone | recipe | λ | without DRLoc | with DRLoc | paired Δ [95% CI] | seeds higher |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for backbone in BACKBONES:
        for recipe in args.recipes:
            rows = grids[recipe][backbone]
            if not rows:
                continue
            base = [100 * r["final_top1"] for r in rows if float(r["lam"]) == 0]
            drloc = [100 * r["final_top1"] for r in rows if float(r["lam"]) != 0]
            lam = next((float(r["lam"]) for r in rows if float(r["lam"]) != 0), None)
            diffs = [d for pairs in results.paired_differences(rows).values() for d in pairs]

            def cell(values):
                if not values:
                    return "-"
                mean, std = results.mean_std(values)
                return f"{mean:.2f} ± {std:.2f} ({len(values)})"

            if diffs:
                mean, half, higher, n = results.paired_summary(diffs)
                interval = "" if half is None else f" [{mean - half:+.2f}, {mean + half:+.2f}]"
                paired, better = f"{mean:+.2f}{interval}", f"{higher}/{n}"
            else:
                paired = better = "-"
            lines.append(f"| {backbone} | {recipe} | {'-' if lam is None else f'{lam:g}'} | {cell(base)} | "
                         f"{cell(drloc)} | {paired} | {better} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, args.results), exist_ok=True)
    procedure.run_folder.atomic_write_text(os.path.join(ROOT, args.results, "summary.md"), text)
    table = lines[4:] if len(lines) > 8 else [
        "No grid cell has finished yet; the calibration is under way (each recipe's summary.md)."]
    procedure.fill_docs(os.path.join(ROOT, "docs", "results.md"), {"recipe study table": table})
    print(text)


def main(argv=None):
    global _folders
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["calibrate", "grid", "heads", "report", "all"])
    p.add_argument("--jobs", type=int, default=2, help="jobs at a time, of both recipes (one thread each)")
    p.add_argument("--hours", type=float, default=None, help="stop starting and running jobs after this long")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    p.add_argument("--calibration-epochs", type=int, default=None,
                   help="epochs of 50 steps of each calibration run (default: full "
                        f"{CALIBRATION_EPOCHS['full']}, none {CALIBRATION_EPOCHS['none']}; a larger value "
                        "lengthens the runs already there)")
    p.add_argument("--by-seed", action="store_true",
                   help="grid: one job per seed of each cell, so that two seeds of a costly cell train side by side")
    p.add_argument("--results", default=RESULTS, help="where the results are kept (committed)")
    p.add_argument("--runs", default=RUNS, help="where the jobs train (their run folders and logs)")
    p.add_argument("--dry-run", action="store_true", help="print the commands of the jobs, run nothing")
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1; found {args.jobs}")
    if args.calibration_epochs is not None and args.calibration_epochs < 2:
        p.error(f"--calibration-epochs must be >= 2; found {args.calibration_epochs}")
    args.datasets = ["fashion"]
    _folders = (args.results, args.runs)
    procedure._record_wall_time = _record_wall_time
    deadline = None if args.hours is None else time.time() + 3600 * args.hours

    def jobs_of(part):
        # The recipes' jobs alternate, so that both advance.
        per_recipe = [recipe_jobs(part, args, recipe) for recipe in args.recipes]
        procedure.RUNS = args.runs  # the scheduler's logs: runs/recipe-study/logs/
        return [job for group in itertools.zip_longest(*per_recipe) for job in group if job is not None]

    procedure.run_parts(["calibrate", "grid", "heads"] if args.part == "all" else
                        [args.part] if args.part != "report" else [], jobs_of, args, deadline, report)


if __name__ == "__main__":
    main()
