"""Markdown tables of the benchmark results in a folder of JSON files (docs/benchmarks/).

Files are recognised by their name: overhead-*.json (with memory-*.json, the
`overhead.py --memory-only` results of the same machine and backend), compiled-*.json,
scaling-*.json and throughput-*.json, as the scripts in this folder write them.

    python benchmarks/report.py docs/benchmarks
"""

import argparse
import glob
import json
import os


def load(folder, kind):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, f"{kind}-*.json"))):
        with open(path) as f:
            out[os.path.basename(path)[len(kind) + 1:-5]] = json.load(f)
    return out


def where(machine):
    return (f"{machine['backend']} on {machine['device']} ({machine['cpu_count']} CPU cores), keras {machine['keras']}, "
            f"{machine['date']}: `{machine['command']}`")


def flop_ratio(backbone, sample_size, hidden=512):
    """(3 x backbone + DRLoc head training FLOPs) / (3 x backbone), from docs/backbones.json.

    The l1 head's MACs per pair are 2C*h + h*h + 2h on the last map's C channels; the
    head and the backbone alike are counted as three forward passes per training step.
    """
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "backbones.json")
    with open(path) as f:
        rows = {r["name"]: r for r in json.load(f)["rows"]}
    row = rows.get(backbone)
    if not row or not row["gflops"]:
        return None
    channels = row["feature_maps"][-1][-1]
    head_gflops = 2 * sample_size * (2 * channels * hidden + hidden * hidden + 2 * hidden) / 1e9
    return 1 + head_gflops / row["gflops"]


def overhead(folder):
    lines = []
    memory = load(folder, "memory")
    for tag, result in load(folder, "overhead").items():
        lines += [f"**{tag}**: {where(result['machine'])}", ""]
        extra = memory.get(tag)
        if extra:
            lines += [f"Peak memory: {where(extra['machine'])}", ""]
        peaks = {r["backbone"]: r["memory"] for r in (extra or {}).get("rows", [])}
        lines += ["| backbone | input | batch | lambda | step with DRLoc (ms) | without (ms) | ratio, median (IQR) "
                  "| FLOP ratio "
                  "| peak memory with / without | memory ratio | XLA step memory with / without | ratio |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in result["rows"]:
            mem = r.get("memory") or peaks.get(r["backbone"])
            mem_cells = (f"{mem['with_bytes'] / 2**30:.2f} / {mem['without_bytes'] / 2**30:.2f} GiB | {mem['ratio']:.3f}"
                         if mem else "- | -")
            if mem and "compiled_ratio" in mem:
                mem_cells += (f" | {mem['compiled_with_bytes'] / 2**20:.0f} / {mem['compiled_without_bytes'] / 2**20:.0f} MiB"
                              f" | {mem['compiled_ratio']:.3f}")
            else:
                mem_cells += " | - | -"
            ratio = r["ratio"]
            flops = flop_ratio(r["backbone"], r["sample_size"])
            flops = f"{flops:.3f}" if flops else "-"
            lines.append(f"| {r['backbone']} | {r['image_size']} | {r['batch_size']} | {r['lam']} | "
                         f"{r['with']['median_s'] * 1e3:.1f} | {r['without']['median_s'] * 1e3:.1f} | "
                         f"{ratio['median']:.3f} ({ratio['q25']:.3f}-{ratio['q75']:.3f}) | {flops} | {mem_cells} |")
        lines.append("")
    return lines


def scaling(folder):
    lines = []
    for tag, result in load(folder, "scaling").items():
        first = (result["by_m"] or result["by_grid"])[0]
        lines += [f"**{tag}**: {where(result['machine'])}; batch {first['batch_size']}, C={first['channels']}, "
                  f"{first['mode']} head of width {first['hidden']}", ""]
        lines += ["| grid | m | step with DRLoc (ms) | without (ms) | DRLoc cost (ms) |", "| --- | --- | --- | --- | --- |"]
        for r in result["by_m"] + result["by_grid"]:
            lines.append(f"| {r['grid']}x{r['grid']} | {r['m']} | {r['with']['median_s'] * 1e3:.2f} | "
                         f"{r['without']['median_s'] * 1e3:.2f} | {r['drloc_s'] * 1e3:.2f} |")

        def fmt(value):
            return "-" if value is None else f"{value:.2f}"

        lines += ["", f"Log-log slope of the DRLoc cost against m: {fmt(result['slope_m'])} over all m, "
                      f"{fmt(result['slope_m_largest_two'])} between the two largest; against the grid's area: "
                      f"{fmt(result['slope_area'])}.", ""]
    return lines


def throughput(folder):
    lines = []
    for tag, result in load(folder, "throughput").items():
        peaks = ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in result["peak_tflops"].items())
        lines += [f"**{tag}**: {where(result['machine'])}; measured matrix-product peak: {peaks}", ""]
        lines += ["| backbone | input | batch | precision | step (ms) | images/s | achieved TFLOP/s | MFU |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in result["rows"]:
            achieved = f"{r['achieved_tflops']:.2f}" if r["achieved_tflops"] else "-"
            mfu = f"{r['mfu']:.1%}" if r["mfu"] else "-"
            lines.append(f"| {r['backbone']} | {r['image_size']} | {r['batch_size']} | {r['precision']} | "
                         f"{r['step']['median_s'] * 1e3:.1f} | {r['images_per_s']:.1f} | {achieved} | {mfu} |")
        lines.append("")
    return lines


def compiled(folder):
    lines = []
    for tag, result in load(folder, "compiled").items():
        lines += [f"**{tag}**: {where(result['machine'])}", ""]
        lines += ["| backbone | input | batch | XLA GFLOPs per step with DRLoc | without | ratio | FLOP ratio of the head alone "
                  "| planned memory with / without (MiB) | ratio |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in result["rows"]:
            head = flop_ratio(r["backbone"], 64)
            head = f"{head:.3f}" if head else "-"
            lines.append(f"| {r['backbone']} | {r['image_size']} | {r['batch_size']} | {r['with']['flops'] / 1e9:.1f} | "
                         f"{r['without']['flops'] / 1e9:.1f} | {r['flop_ratio']:.3f} | {head} | "
                         f"{r['with']['bytes'] / 2**20:.0f} / {r['without']['bytes'] / 2**20:.0f} | {r['memory_ratio']:.3f} |")
        lines.append("")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="folder of benchmark JSON files")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.folder):
        parser.error(f"folder: {args.folder!r} is not a directory")
    sections = [("Overhead", overhead), ("Compiled cost", compiled), ("Scaling of the DRLoc cost", scaling),
                ("Throughput", throughput)]
    for title, make in sections:
        lines = make(args.folder)
        if lines:
            print(f"### {title}\n")
            print("\n".join(lines))


if __name__ == "__main__":
    main()
