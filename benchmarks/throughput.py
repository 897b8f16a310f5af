"""Training throughput with DRLoc: images per second and model FLOPs utilisation (MFU).

Times DRLoc training steps (the family's default lambda, 64 pairs per image) of each
backbone after a warm-up and reports images/s = batch / median step time. Where the
backbone's forward FLOPs are known (docs/backbones.json, XLA's count), MFU is
3 x forward FLOPs per image x images/s (a training step is taken as three forward
passes; the DRLoc head is left out, so this slightly understates the work) divided by the
device's peak, itself measured here as the rate of a large matrix product through the
same backend and dtype.

    KERAS_BACKEND=jax python benchmarks/throughput.py --output docs/benchmarks/throughput-cpu-jax.json
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from drloc_keras import backbones  # noqa: E402

PEAK_DTYPE = {"float32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=None, metavar="NAME:BATCH",
                        help="backbone size and batch size pairs (default: cvt_13_32:64 and "
                             "cvt_13:128 on a GPU, cvt_13_32:64 and cvt_13:16 on a CPU)")
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=list(PEAK_DTYPE),
                        help="dtype policies to measure, one after another")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--output", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    gpu = common.on_gpu()
    runs = args.runs or (["cvt_13_32:64", "cvt_13:128"] if gpu else ["cvt_13_32:64", "cvt_13:16"])
    parsed = []
    for run in runs:
        name, _, batch = run.partition(":")
        if name not in backbones.SIZES or not batch.isdigit() or int(batch) < 1:
            parser.error(f"--runs: {run!r} is not SIZE:BATCH with SIZE one of {', '.join(backbones.SIZES)} "
                         f"and BATCH a positive integer")
        parsed.append((name, int(batch)))
    if args.steps < 1 or args.warmup < 1:
        parser.error(f"--steps and --warmup must be >= 1, got {args.steps} and {args.warmup}")

    info = common.machine()
    gflops = common.known_gflops()
    peaks = {}
    rows = []
    print(f"{info['backend']} on {info['device']}", flush=True)
    for precision in args.precision:
        dtype = PEAK_DTYPE[precision]
        peaks[dtype] = common.matmul_peak(dtype)
        print(f"matrix-product peak, {dtype}: {peaks[dtype] / 1e12:.2f} TFLOP/s", flush=True)
        for name, batch_size in parsed:
            model, batch, _ = common.build(name, backbones.default_lambda(name), batch_size, precision=precision)
            times = common.interleaved({"with": (model, batch)}, args.warmup, args.steps)["with"]
            median = float(np.median(times))
            images_per_s = batch_size / median
            flops = gflops.get(name)
            achieved = 3 * flops * 1e9 * images_per_s if flops else None
            row = {
                "backbone": name, "image_size": backbones.SIZES[name][2], "batch_size": batch_size,
                "precision": precision, "step": common.summary(times), "images_per_s": images_per_s,
                "forward_gflops_per_image": flops, "achieved_tflops": achieved / 1e12 if achieved else None,
                "peak_tflops": peaks[dtype] / 1e12, "mfu": achieved / peaks[dtype] if achieved else None,
            }
            rows.append(row)
            mfu = f", {row['achieved_tflops']:.2f} TFLOP/s = MFU {row['mfu']:.1%}" if achieved else ""
            print(f"{name} batch {batch_size} {precision}: {median * 1e3:.1f} ms per step, "
                  f"{images_per_s:.1f} images/s{mfu}", flush=True)
            del model, batch
            common.write_json(args.output, {"machine": info, "peak_tflops": {k: v / 1e12 for k, v in peaks.items()},
                                            "rows": rows})

    print()
    print("| backbone | input | batch | precision | step (ms) | images/s | TFLOP/s | peak TFLOP/s | MFU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        tf = f"{r['achieved_tflops']:.2f}" if r["achieved_tflops"] else "-"
        mfu = f"{r['mfu']:.1%}" if r["mfu"] else "-"
        print(f"| {r['backbone']} | {r['image_size']} | {r['batch_size']} | {r['precision']} | "
              f"{r['step']['median_s'] * 1e3:.1f} | {r['images_per_s']:.1f} | {tf} | {r['peak_tflops']:.2f} | {mfu} |")
    return rows


if __name__ == "__main__":
    main()
