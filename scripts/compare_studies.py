"""Two runs of the small-data study side by side: before and after a change of the recipe.

    python scripts/compare_studies.py docs/results/synthetic.csv docs/results/synthetic-recipe.csv \\
        --labels "raw pixels, all weights decayed" "fixed recipe"

For every backbone and training fraction that both results.csv files hold, a Markdown table
row: top-1 without and with DRLoc (mean +- sample std over the seeds) in each study, and the
paired difference (with minus without, seed by seed) with its 95% confidence interval
(Student's t over the seeds) and the number of seeds in which DRLoc scored higher.
"""

import argparse
import os

from drloc_keras import results as study
from drloc_keras.results import paired_summary, t_quantile  # noqa: F401

def cells(rows, metric):
    stats = study.aggregate(rows, metric)
    pairs = study.paired_differences(rows, metric)
    out = {}
    for (backbone, fraction, lam), stat in stats.items():
        if lam == 0.0:
            continue
        without = stats.get((backbone, fraction, 0.0))
        if without is None:
            continue
        diffs = pairs.get((backbone, fraction, lam), [])
        out[(backbone, fraction)] = (lam, without, stat, paired_summary(diffs) if diffs else None)
    return out


def text(stat):
    mean, std, n = stat
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


def paired_text(summary):
    if summary is None:
        return "-"
    mean, half, higher, n = summary
    interval = f" [{mean - half:+.1f}, {mean + half:+.1f}]" if half is not None else ""
    return f"{mean:+.1f}{interval} ({higher}/{n})"


def table(before, after, labels, metric="final_top1", preferred=("vit", "cvt", "swin", "resnet50")):
    a, b = cells(before, metric), cells(after, metric)
    keys = sorted(set(a) & set(b), key=lambda k: (
        list(preferred).index(k[0]) if k[0] in preferred else len(preferred), k[0], k[1]))
    lines = [
        f"| backbone | fraction | λ | {labels[0]}: without → with | paired Δ [95% CI] (higher) "
        f"| {labels[1]}: without → with | paired Δ [95% CI] (higher) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in keys:
        lam, w0, d0, p0 = a[key]
        _, w1, d1, p1 = b[key]
        lines.append(f"| {key[0]} | {key[1]:g} | {lam:g} | {text(w0)} → {text(d0)} | {paired_text(p0)} "
                     f"| {text(w1)} → {text(d1)} | {paired_text(p1)} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="results.csv of the first study")
    parser.add_argument("after", help="results.csv of the second study")
    parser.add_argument("--labels", nargs=2, default=["before", "after"], metavar=("BEFORE", "AFTER"))
    parser.add_argument("--metric", default="final_top1", choices=study.METRICS)
    args = parser.parse_args(argv)
    for path in (args.before, args.after):
        if not os.path.exists(path):
            parser.error(f"{path}: no such file")
    print(table(study.read_results(args.before), study.read_results(args.after), args.labels, args.metric), end="")


if __name__ == "__main__":
    main()
