"""Markdown tables of the benchmark results in a folder of JSON files (docs/benchmarks/).

Files are recognised by their name: overhead-*.json (with memory-*.json, the
`overhead.py --memory-only` results of the same machine and backend), scaling-*.json and
throughput-*.json, as the scripts in this folder write them.

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
                  "| peak memory with / without | memory ratio | XLA step memory with / without | ratio |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
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
            lines.append(f"| {r['backbone']} | {r['image_size']} | {r['batch_size']} | {r['lam']} | "
                         f"{r['with']['median_s'] * 1e3:.1f} | {r['without']['median_s'] * 1e3:.1f} | "
                         f"{ratio['median']:.3f} ({ratio['q25']:.3f}-{ratio['q75']:.3f}) | {mem_cells} |")
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="folder of benchmark JSON files")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.folder):
        parser.error(f"folder: {args.folder!r} is not a directory")
    sections = [("Overhead", overhead), ("Scaling of the DRLoc cost", scaling), ("Throughput", throughput)]
    for title, make in sections:
        lines = make(args.folder)
        if lines:
            print(f"### {title}\n")
            print("\n".join(lines))


if __name__ == "__main__":
    main()
