"""What the DRLoc head's width costs on the small-data study's reduced backbones.

For each reduced backbone (`drloc_keras.backbones.REDUCED_ARGS`), three `DRLocModel`s are
built side by side in one process: without DRLoc (`lam=0`), with the authors' 512-wide
head, and with `hidden="auto"` (twice the channels of the feature map, at most 512). After
a warm-up their training steps are timed in alternation on one resident batch; the figures
are the median time per step and the median per-round ratio of each DRLoc model to the
model without it (images per second without DRLoc / with it).

    python benchmarks/head_width.py --batch-size 32 --output docs/benchmarks/head-width-cpu-tensorflow-b32.json
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from drloc_keras import DRLocModel, backbones  # noqa: E402
from drloc_keras.head import hidden_width  # noqa: E402

VARIANTS = {"without": (0.0, 512), "hidden512": (None, 512), "auto": (None, "auto")}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["vit", "cvt", "swin", "resnet50"],
                        choices=sorted(backbones.REDUCED_ARGS), metavar="FAMILY",
                        help="families, at their reduced sizes (default: vit cvt swin resnet50)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default 32, the study's)")
    parser.add_argument("--image-size", type=int, default=32, help="input side (default 32)")
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (each model once per round)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--output", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    for flag in ("batch_size", "steps", "warmup"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    return args


def build(name, lam, hidden, batch):
    backbone = backbones.get(name, image_size=batch[0].shape[1], num_classes=10, **backbones.REDUCED_ARGS[name])
    model = DRLocModel(backbone, lam=lam, hidden=hidden, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    return model


def main(argv=None):
    args = parse(argv)
    info = common.machine()
    print(f"{info['backend']} on {info['device']}, batch {args.batch_size}, {args.steps} rounds after "
          f"{args.warmup} warm-up steps", flush=True)
    rng = np.random.default_rng(0)
    batch = (common.to_device(rng.normal(size=(args.batch_size, args.image_size, args.image_size, 3)).astype("float32")),
             common.to_device(rng.integers(0, 10, args.batch_size).astype("int32")))
    rows = []
    for name in args.backbones:
        runs = {}
        for variant, (lam, hidden) in VARIANTS.items():
            lam = backbones.default_lambda(name) if lam is None else lam
            runs[variant] = (build(name, lam, hidden, batch), batch)
        channels = runs["auto"][0].heads[0].channels
        times = common.interleaved(runs, args.warmup, args.steps)
        row = {
            "backbone": name, "backbone_args": backbones.REDUCED_ARGS[name], "batch_size": args.batch_size,
            "channels": channels, "auto_hidden": hidden_width("auto", channels),
            **{variant: common.summary(times[variant]) for variant in VARIANTS},
            "ratio_512": common.paired_ratio(times["hidden512"], times["without"]),
            "ratio_auto": common.paired_ratio(times["auto"], times["without"]),
        }
        rows.append(row)
        print(f"{name} (C={channels}): without {row['without']['median_s'] * 1e3:.1f} ms, "
              f"512 {row['hidden512']['median_s'] * 1e3:.1f} ms (x{row['ratio_512']['median']:.3f}), "
              f"auto={row['auto_hidden']} {row['auto']['median_s'] * 1e3:.1f} ms "
              f"(x{row['ratio_auto']['median']:.3f})", flush=True)
        common.write_json(args.output, {"machine": info, "rows": rows})
        del runs
    print()
    print("| backbone | C | step without DRLoc (ms) | head 512: step (ms), ratio | head auto: width, step (ms), ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['backbone']} | {r['channels']} | {r['without']['median_s'] * 1e3:.1f} | "
              f"{r['hidden512']['median_s'] * 1e3:.1f}, {r['ratio_512']['median']:.3f} | "
              f"{r['auto_hidden']}, {r['auto']['median_s'] * 1e3:.1f}, {r['ratio_auto']['median']:.3f} |")
    return rows


if __name__ == "__main__":
    main()
