"""The results of a study: one CSV row per finished run, and what is computed from them.

A results.csv (written by `examples/small_data_study.py`) holds per run its backbone,
lambda, training fraction, seed and top-1 / top-5 figures. This module reads and writes it,
aggregates the seeds (mean and sample standard deviation), pairs each DRLoc run with the
lambda-0 run of its seed (same subset, same initialisation seed) and gives the paired
difference a 95% confidence interval (Student's t over the seeds), as a Markdown table and
a figure. `scripts/compare_studies.py` puts two studies side by side with it.
"""

import csv
import io
import math

from drloc_keras import run_folder

RESULT_FIELDS = (
    "cell", "backbone", "lam", "fraction", "seed", "dataset", "image_size", "epochs",
    "final_top1", "best_top1", "final_top5", "best_top5", "parameters", "seconds_per_epoch",
    "settings",
)
METRICS = ("final_top1", "best_top1")


def read_results(path):
    """The rows of a results.csv, with the numbers as numbers."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        parsed = dict(row)
        for key in ("lam", "fraction", "final_top1", "best_top1", "final_top5", "best_top5",
                    "seconds_per_epoch"):
            if parsed.get(key) not in (None, ""):
                parsed[key] = float(parsed[key])
        for key in ("seed", "epochs", "image_size", "parameters"):
            if parsed.get(key) not in (None, ""):
                parsed[key] = int(float(parsed[key]))
        out.append(parsed)
    return out


def write_results(path, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r["backbone"], float(r["lam"]), float(r["fraction"]),
                                           int(r["seed"]), r["cell"])):
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in RESULT_FIELDS})
    run_folder.atomic_write_text(path, buffer.getvalue())


# Two-sided 95% quantiles of Student's t, by degrees of freedom.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t_quantile(df):
    """The 95% two-sided t quantile for `df` degrees of freedom (the next smaller tabled df,
    which errs on the wide side; 1.96 beyond the table)."""
    if df < 1:
        raise ValueError(f"`df` must be >= 1; found {df}")
    tabled = [d for d in T_975 if d <= df]
    return T_975[max(tabled)] if df <= 30 else 1.96


def paired_summary(differences):
    """`(mean, half width of the 95% interval or None, seeds higher, n)` of paired differences."""
    n = len(differences)
    mean, std = mean_std(differences)
    half = t_quantile(n - 1) * std / math.sqrt(n) if n > 1 else None
    return mean, half, sum(d > 0 for d in differences), n


def mean_std(values):
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def aggregate(rows, metric="final_top1"):
    """`{(backbone, fraction, lam): (mean %, std %, n)}` of `metric` over the seeds."""
    groups = {}
    for row in rows:
        value = row.get(metric)
        if value in (None, ""):
            continue
        key = (row["backbone"], float(row["fraction"]), float(row["lam"]))
        groups.setdefault(key, []).append(100.0 * float(value))
    return {key: (*mean_std(values), len(values)) for key, values in groups.items()}


def paired_differences(rows, metric="final_top1"):
    """`{(backbone, fraction, lam): [with - without, ...]}` in points of top-1, one per seed
    that finished both the cell with `lam` and the cell with lambda 0 (the same subset, the
    same initialisation seed: the pairing takes the seed-to-seed spread out of the comparison)."""
    values = {}
    for row in rows:
        value = row.get(metric)
        if value in (None, ""):
            continue
        key = (row["backbone"], float(row["fraction"]), float(row["lam"]), int(row["seed"]))
        values[key] = 100.0 * float(value)
    pairs = {}
    for (backbone, fraction, lam, seed), value in sorted(values.items()):
        baseline = values.get((backbone, fraction, 0.0, seed))
        if lam != 0.0 and baseline is not None:
            pairs.setdefault((backbone, fraction, lam), []).append(value - baseline)
    return pairs


def ordered_backbones(stats, preferred=()):
    names = {key[0] for key in stats}
    first = [b for b in preferred if b in names]
    return first + sorted(names - set(first))


def comparison(stats, preferred=(), pairs=None):
    """Table rows: per backbone and fraction, lambda 0 against each other lambda (with the
    paired differences per seed when `pairs`, from paired_differences, is given)."""
    pairs = pairs or {}
    table = []
    for backbone in ordered_backbones(stats, preferred):
        fractions = sorted({key[1] for key in stats if key[0] == backbone})
        for fraction in fractions:
            lams = sorted(key[2] for key in stats if key[:2] == (backbone, fraction))
            without = stats.get((backbone, fraction, 0.0))
            others = [lam for lam in lams if lam != 0.0] or [None]
            for lam in others:
                with_ = stats.get((backbone, fraction, lam)) if lam is not None else None
                diff = with_[0] - without[0] if with_ and without else None
                table.append({"backbone": backbone, "fraction": fraction, "lam": lam,
                              "without": without, "with": with_, "difference": diff,
                              "paired": pairs.get((backbone, fraction, lam), [])})
    return table


def _cell_text(stat):
    if stat is None:
        return "-", "0"
    mean, std, n = stat
    return (f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"), str(n)


def markdown_table(rows, metric="final_top1", preferred=(), settings=None):
    stats = aggregate(rows, metric)
    which = ("the model after the last epoch" if metric == "final_top1"
             else "best.keras, the epoch of the best validation top-1")
    lines = [
        "# Small-data study: top-1 without and with DRLoc",
        "",
        f"Top-1 accuracy (%) on the test set ({metric}: {which}), mean ± standard deviation "
        "over seeds (sample standard deviation; a single seed shows its value alone); n is the "
        "number of seeds. Δ is the mean with DRLoc minus the mean without. Paired Δ: the "
        "difference with minus without seed by seed (both cells of a seed train on the same "
        "subset from the same initialisation seed), mean ± standard deviation, and its 95% "
        "confidence interval (Student's t over the seeds); better: in how many of those seeds "
        "DRLoc scored higher.",
        "",
    ]
    if settings:
        lines += [f"Settings: {settings}", ""]
    lines += [
        "| backbone | fraction | λ | without DRLoc (λ = 0) | n | with DRLoc | n | Δ | paired Δ | 95% CI | better |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in comparison(stats, preferred, paired_differences(rows, metric)):
        without, n_without = _cell_text(entry["without"])
        with_, n_with = _cell_text(entry["with"])
        lam = "-" if entry["lam"] is None else f"{entry['lam']:g}"
        diff = "-" if entry["difference"] is None else f"{entry['difference']:+.2f}"
        paired, interval, better = "-", "-", "-"
        if entry["paired"]:
            mean, std = mean_std(entry["paired"])
            paired = f"{mean:+.2f} ± {std:.2f}" if len(entry["paired"]) > 1 else f"{mean:+.2f}"
            _, half, higher, n = paired_summary(entry["paired"])
            interval = "-" if half is None else f"[{mean - half:+.1f}, {mean + half:+.1f}]"
            better = f"{higher}/{n}"
        lines.append(f"| {entry['backbone']} | {entry['fraction']:g} | {lam} | {without} | "
                     f"{n_without} | {with_} | {n_with} | {diff} | {paired} | {interval} | {better} |")
    return "\n".join(lines) + "\n"


def plot_results(rows, path, metric="final_top1", preferred=()):
    """results.png: top-1 against the training fraction (log axis), one panel per backbone,
    one line per lambda, error bars of one standard deviation over the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = aggregate(rows, metric)
    names = ordered_backbones(stats, preferred)
    if not names:
        raise ValueError("no finished cell to plot")
    columns = min(4, len(names))
    panel_rows = -(-len(names) // columns)
    fig, axes = plt.subplots(panel_rows, columns, figsize=(4.2 * columns, 3.6 * panel_rows),
                             squeeze=False, sharey=True)
    for ax, backbone in zip(axes.flat, names):
        lams = sorted({key[2] for key in stats if key[0] == backbone})
        fractions = sorted({key[1] for key in stats if key[0] == backbone})
        for i, lam in enumerate(lams):
            points = sorted((f, stats[(backbone, f, lam)]) for f in fractions
                            if (backbone, f, lam) in stats)
            # A small shift along the log axis keeps the error bars of the lines apart.
            shift = 1.0 + 0.04 * (i - (len(lams) - 1) / 2)
            label = "without DRLoc (λ = 0)" if lam == 0 else f"with DRLoc (λ = {lam:g})"
            ax.errorbar([f * shift for f, _ in points], [s[0] for _, s in points],
                        yerr=[s[1] for _, s in points], marker="o", capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xticks(fractions)
        ax.set_xticklabels([f"{f:g}" for f in fractions])
        ax.minorticks_off()
        ax.set_title(backbone)
        ax.set_xlabel("training fraction")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"top-1 (%), {metric}")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.tight_layout()
    try:
        with run_folder.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
