"""Tables of the recipe's measurement and of the initialisation check, from the committed CSVs
(docs/results/recipe/ and docs/results/converged/), as markdown on standard output.

    python scripts/recipe_report.py            # print
    python scripts/recipe_report.py --write    # also rewrite the marked tables of docs/results.md

Test top-1 of the last model (`final_top1`, %) per seed; a cell whose seeds have not all landed
shows what has, and `-` for the rest.
"""

import csv
import os
import re
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "docs", "results", "recipe")
CONVERGED = os.path.join(ROOT, "docs", "results", "converged")
SEEDS = (0, 1)
ARMS = [
    ("no augmentation, the code before (the converged study's grid)", os.path.join(CONVERGED, "grid-fashion-0.05-{b}.csv")),
    ("old defaults, the code before (Keras' RandAugment, MixUp, CutMix, erasing)",
     os.path.join(RECIPE, "old-defaults-fashion-0.05-{b}.csv")),
    ("no augmentation, this code", os.path.join(RECIPE, "recipe-none-fashion-0.05-{b}.csv")),
    ("the authors' recipe, padded crop", os.path.join(RECIPE, "recipe-padded-fashion-0.05-{b}.csv")),
    ("the authors' recipe, resized crop", os.path.join(RECIPE, "recipe-resized-fashion-0.05-{b}.csv")),
]
# The outside check's PyTorch Swin (the authors' code, reduced), Fashion-MNIST 1%, seeds 0-3.
AUTHORS_SWIN_1PCT = {0: 76.00, 1: 74.30, 2: 75.46, 3: 73.73}


def rows(path, lam=0.0):
    """{seed: row} of the lambda-`lam` rows of a study export (missing file: {})."""
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        return {int(r["seed"]): r for r in csv.DictReader(f) if float(r["lam"]) == lam}


def top1(row):
    return 100 * float(row["final_top1"])


def cell(found, seeds):
    values = [f"{top1(found[s]):.2f}" if s in found else "-" for s in seeds]
    done = [top1(found[s]) for s in seeds if s in found]
    mean = f"{statistics.mean(done):.2f}" if len(done) == len(seeds) else "-"
    return " / ".join(values), mean


def recipe_table():
    lines = ["| augmentation | Swin, seeds 0 / 1 | Swin mean | ViT, seeds 0 / 1 | ViT mean | minutes an epoch (Swin, ViT) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, pattern in ARMS:
        out = [name]
        minutes = []
        for backbone in ("swin", "vit"):
            found = rows(pattern.format(b=backbone))
            out += list(cell(found, SEEDS))
            seconds = [float(found[s]["seconds_per_epoch"]) for s in SEEDS if s in found]
            minutes.append(f"{statistics.mean(seconds) / 60:.2f}" if seconds else "-")
        lines.append("| " + " | ".join(out + [", ".join(minutes)]) + " |")
    return "\n".join(lines)


def initialisation_table():
    ours = rows(os.path.join(CONVERGED, "grid-fashion-0.01-swin.csv"))
    authors_init = rows(os.path.join(RECIPE, "init-fashion-0.01-swin.csv"))
    lines = ["| seed | this project, Keras' initialisation (the converged grid) | this project, the authors' initialisation | the authors' PyTorch Swin (outside check) |",
             "| --- | --- | --- | --- |"]
    for seed, theirs in AUTHORS_SWIN_1PCT.items():
        a = f"{top1(ours[seed]):.2f}" if seed in ours else "-"
        b = f"{top1(authors_init[seed]):.2f}" if seed in authors_init else "-"
        lines.append(f"| {seed} | {a} | {b} | {theirs:.2f} |")
    return "\n".join(lines)


def write(file=os.path.join(ROOT, "docs", "results.md")):
    """Rewrite the tables between `<!-- recipe-table -->` and `<!-- init-table -->` markers."""
    with open(file) as f:
        text = f.read()
    for name, table in (("recipe-table", recipe_table()), ("init-table", initialisation_table())):
        pattern = re.compile(rf"(<!-- {name} -->\n).*?(\n<!-- /{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{file} has no <!-- {name} --> ... <!-- /{name} --> region")
        text = pattern.sub(lambda m: m.group(1) + table + m.group(2), text)
    with open(file + ".tmp", "w") as f:
        f.write(text)
    os.replace(file + ".tmp", file)


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    print("Reduced Swin and ViT, Fashion-MNIST 5%, lambda 0, test top-1 (%) of the last model:\n")
    print(recipe_table())
    print("\nReduced Swin, Fashion-MNIST 1%, lambda 0, no augmentation, test top-1 (%):\n")
    print(initialisation_table())
