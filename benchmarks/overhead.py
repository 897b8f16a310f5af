"""DRLoc's overhead per training step and in peak memory, backbone by backbone.

For each backbone, two `DRLocModel`s on the same backbone architecture are built in one
process: one trains with DRLoc (the family's default lambda, 64 pairs per image, the
authors' 512-wide head) and one with `lam=0` (DRLoc off: plain cross-entropy). After a
warm-up their training steps are timed in alternation; the figure is the median over
rounds of (step with DRLoc) / (step without). Peak memory is measured for each variant
in a fresh process (the device allocator's peak on a GPU, the peak RSS on the CPU).

    KERAS_BACKEND=jax python benchmarks/overhead.py --backbones cvt_13_32 --batch-size 64 \\
        --output docs/benchmarks/overhead-cpu-jax.json
"""

import argparse
import gc
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from drloc_keras import backbones  # noqa: E402

NATIVE = ["cvt_13", "cct_7_3x1", "swin_tiny", "t2t_vit_14", "vit_base_16", "resnet50"]
SMALL = ["cvt_13_32", "cct_7_3x1", "swin_tiny_32", "t2t_vit_14_32", "vit_32", "resnet50_32"]


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=None, metavar="NAME",
                        help=f"size names (default: native sizes on a GPU, {' '.join(NATIVE)}; "
                             f"the 32x32 sizes on a CPU, {' '.join(SMALL)})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per step (default: 128 on a GPU, 64 on a CPU)")
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (each model once per round)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--precision", default="float32", choices=["float32", "bf16", "fp16"],
                        help="dtype policy of both models")
    parser.add_argument("--sample-size", type=int, default=64, help="DRLoc pairs per image (m)")
    memory = parser.add_mutually_exclusive_group()
    memory.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    memory.add_argument("--memory-only", action="store_true",
                        help="measure peak memory only (no step timing), --jobs processes at a time")
    parser.add_argument("--jobs", type=int, default=1,
                        help="peak-memory processes run at once with --memory-only (default 1)")
    parser.add_argument("--output", default=None, help="JSON file to write")
    parser.add_argument("--child", choices=["with", "without"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in args.backbones or []:
        if name not in backbones.SIZES:
            parser.error(f"--backbones: unknown size {name!r}; choose from {', '.join(backbones.SIZES)}")
    for flag in ("batch_size", "steps", "sample_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.warmup < 1:
        parser.error(f"--warmup must be >= 1 (the first step compiles), got {args.warmup}")
    return args


def lam_for(name, variant):
    return backbones.default_lambda(name) if variant == "with" else 0.0


def child(args):
    """Peak memory of one variant after a few steps, in this fresh process."""
    name = args.backbones[0]
    model, batch, _ = common.build(name, lam_for(name, args.child), args.batch_size,
                                   precision=args.precision, sample_size=args.sample_size)
    for _ in range(args.warmup + 2):
        common.step(model, batch)
    peak, what = common.peak_memory_bytes()
    result = {"peak_bytes": peak, "what": what}
    if common.keras.backend.backend() == "jax":
        result["compiled_step_bytes"] = common.compiled_step_bytes(model, batch)
    print(common.json.dumps(result))


def memory_args(args, name, variant):
    return ["--backbones", name, "--batch-size", str(args.batch_size), "--warmup", str(args.warmup),
            "--precision", args.precision, "--sample-size", str(args.sample_size), "--child", variant]


def memory_row(peaks):
    row = {
        "with_bytes": peaks["with"]["peak_bytes"], "without_bytes": peaks["without"]["peak_bytes"],
        "ratio": peaks["with"]["peak_bytes"] / peaks["without"]["peak_bytes"], "what": peaks["with"]["what"],
    }
    if "compiled_step_bytes" in peaks["with"]:
        row["compiled_with_bytes"] = peaks["with"]["compiled_step_bytes"]
        row["compiled_without_bytes"] = peaks["without"]["compiled_step_bytes"]
        row["compiled_ratio"] = row["compiled_with_bytes"] / row["compiled_without_bytes"]
    return row


def memory_only(args, info):
    """Peak memory of every (backbone, variant) in fresh processes, `--jobs` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    script = os.path.abspath(__file__)
    jobs = [(name, variant) for name in args.backbones for variant in ("with", "without")]
    with ThreadPoolExecutor(args.jobs) as pool:
        peaks = dict(zip(jobs, pool.map(
            lambda job: common.peak_memory_in_subprocess(script, memory_args(args, *job)), jobs)))
    rows = []
    for name in args.backbones:
        memory = memory_row({v: peaks[(name, v)] for v in ("with", "without")})
        rows.append({"backbone": name, "image_size": backbones.SIZES[name][2], "batch_size": args.batch_size,
                     "sample_size": args.sample_size, "precision": args.precision, "memory": memory})
        compiled = (f"; compiled step {memory['compiled_with_bytes'] / 2**20:.1f} / "
                    f"{memory['compiled_without_bytes'] / 2**20:.1f} MiB, ratio {memory['compiled_ratio']:.3f}"
                    if "compiled_ratio" in memory else "")
        print(f"{name}: peak {memory['with_bytes'] / 2**30:.2f} GiB with DRLoc, "
              f"{memory['without_bytes'] / 2**30:.2f} GiB without, ratio {memory['ratio']:.3f}{compiled}", flush=True)
    common.write_json(args.output, {"machine": info, "rows": rows})
    return rows


def main(argv=None):
    args = parse(argv)
    gpu = common.on_gpu()
    args.backbones = args.backbones or (NATIVE if gpu else SMALL)
    args.batch_size = args.batch_size or (128 if gpu else 64)
    if args.child:
        return child(args)

    info = common.machine()
    if args.memory_only:
        return memory_only(args, info)
    print(f"{info['backend']} on {info['device']}, batch {args.batch_size}, {args.precision}, "
          f"{args.steps} rounds after {args.warmup} warm-up steps", flush=True)
    rows = []
    for name in args.backbones:
        lam = backbones.default_lambda(name)
        runs = {}
        for variant in ("with", "without"):
            model, batch, size = common.build(name, lam_for(name, variant), args.batch_size,
                                              precision=args.precision, sample_size=args.sample_size)
            runs[variant] = (model, batch)
        times = common.interleaved(runs, args.warmup, args.steps)
        row = {
            "backbone": name, "image_size": backbones.SIZES[name][2], "lam": lam,
            "batch_size": args.batch_size, "sample_size": args.sample_size, "precision": args.precision,
            "with": common.summary(times["with"]), "without": common.summary(times["without"]),
            "ratio": common.paired_ratio(times["with"], times["without"]),
            "times_with": times["with"], "times_without": times["without"],
        }
        del runs
        gc.collect()
        if not args.no_memory:
            script = os.path.abspath(__file__)
            row["memory"] = memory_row({
                v: common.peak_memory_in_subprocess(script, memory_args(args, name, v)) for v in ("with", "without")
            })
        rows.append(row)
        memory = f", peak memory x{row['memory']['ratio']:.3f}" if "memory" in row else ""
        print(f"{name}: {row['with']['median_s'] * 1e3:.1f} ms with DRLoc, "
              f"{row['without']['median_s'] * 1e3:.1f} ms without, "
              f"ratio {row['ratio']['median']:.3f} (IQR {row['ratio']['q25']:.3f}-{row['ratio']['q75']:.3f})"
              f"{memory}", flush=True)
        common.write_json(args.output, {"machine": info, "rows": rows})

    print()
    print("| backbone | input | batch | step with DRLoc (ms) | without (ms) | ratio (IQR) | peak memory ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        memory = f"{r['memory']['ratio']:.3f}" if "memory" in r else "-"
        print(f"| {r['backbone']} | {r['image_size']} | {r['batch_size']} | {r['with']['median_s'] * 1e3:.1f} | "
              f"{r['without']['median_s'] * 1e3:.1f} | {r['ratio']['median']:.3f} "
              f"({r['ratio']['q25']:.3f}-{r['ratio']['q75']:.3f}) | {memory} |")
    return rows


if __name__ == "__main__":
    main()
