"""How the cost of DRLoc (sampling, gathering, the head and the loss) grows with m and the grid.

The "backbone" here is as small as a backbone can be: a trainable per-channel scale of
an input feature map `[B, H, W, C]` (so gradients flow back into the map, as in real
training) and a linear classifier on its average. Two such models are timed in
alternation, with DRLoc and without; the difference of their median step times is the
cost of DRLoc, forward and backward. It is measured as the number of sampled pairs per
image `m` goes 16 to 1024 on a fixed grid, and as the grid goes 7x7 to 28x28 at a fixed m.
The log-log slope of cost against m should be at most about 1 (linear), and the cost
should not grow with the grid's area: only the `m` sampled tokens enter the head.

    KERAS_BACKEND=jax python benchmarks/head_scaling.py --output docs/benchmarks/scaling-cpu-jax.json
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from drloc_keras import DRLocModel  # noqa: E402


@keras.saving.register_keras_serializable(package="drloc_benchmarks")
class ChannelScale(keras.layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


def feature_backbone(grid, channels, num_classes=10):
    inputs = keras.Input((grid, grid, channels))
    features = ChannelScale()(inputs)
    logits = keras.layers.Dense(num_classes)(keras.layers.GlobalAveragePooling2D()(features))
    return keras.Model(inputs, {"logits": logits, "feature_maps": [features]})


def build(grid, channels, batch_size, m, lam, mode, hidden):
    model = DRLocModel(feature_backbone(grid, channels), lam=lam, sample_size=m, mode=mode, hidden=hidden, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    rng = np.random.default_rng(0)
    x = common.to_device(rng.normal(size=(batch_size, grid, grid, channels)).astype("float32"))
    y = common.to_device(rng.integers(0, 10, batch_size).astype("int32"))
    return model, (x, y)


def measure(grid, channels, batch_size, m, args):
    runs = {
        "with": build(grid, channels, batch_size, m, 0.1, args.mode, args.hidden),
        "without": build(grid, channels, batch_size, m, 0.0, args.mode, args.hidden),
    }
    times = common.interleaved(runs, args.warmup, args.steps)
    with_s, without_s = (float(np.median(times[k])) for k in ("with", "without"))
    row = {
        "grid": grid, "channels": channels, "batch_size": batch_size, "m": m, "mode": args.mode,
        "hidden": args.hidden, "with": common.summary(times["with"]),
        "without": common.summary(times["without"]), "drloc_s": with_s - without_s,
    }
    print(f"grid {grid}x{grid}, m={m}: step {with_s * 1e3:.2f} ms with DRLoc, {without_s * 1e3:.2f} ms without,"
          f" DRLoc {row['drloc_s'] * 1e3:.2f} ms", flush=True)
    return row


def slope(xs, ys):
    """Least-squares slope of log(y) against log(x); None with fewer than two distinct x."""
    if len(set(xs)) < 2:
        return None
    return float(np.polyfit(np.log(xs), np.log(np.maximum(ys, 1e-9)), 1)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, nargs="+", default=[16, 64, 256, 1024], help="pairs per image")
    parser.add_argument("--grids", type=int, nargs="+", default=[7, 14, 28], help="grid sides")
    parser.add_argument("--grid", type=int, default=14, help="grid side of the m sweep")
    parser.add_argument("--grid-m", type=int, default=256, help="m of the grid sweep")
    parser.add_argument("--channels", type=int, default=384, help="feature channels (CvT-13's last stage)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 128 on a GPU, 32 on a CPU")
    parser.add_argument("--mode", default="l1", choices=["l1", "ce", "cbr"], help="DRLoc loss")
    parser.add_argument("--hidden", type=int, default=512, help="head width")
    parser.add_argument("--steps", type=int, default=15, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--output", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    for flag in ("m", "grids"):
        if any(v < 1 if flag == "m" else v < 2 for v in getattr(args, flag)):
            parser.error(f"--{flag}: values must be >= {1 if flag == 'm' else 2}, got {getattr(args, flag)}")
    batch_size = args.batch_size or (128 if common.on_gpu() else 32)

    info = common.machine()
    print(f"{info['backend']} on {info['device']}, batch {batch_size}, C={args.channels}, {args.mode} head "
          f"of width {args.hidden}", flush=True)
    by_m = [measure(args.grid, args.channels, batch_size, m, args) for m in args.m]
    by_grid = [measure(g, args.channels, batch_size, args.grid_m, args) for g in args.grids]
    result = {
        "machine": info, "by_m": by_m, "by_grid": by_grid,
        "slope_m": slope([r["m"] for r in by_m], [r["drloc_s"] for r in by_m]),
        "slope_area": slope([r["grid"] ** 2 for r in by_grid], [r["drloc_s"] for r in by_grid]),
        "slope_m_largest_two": slope([r["m"] for r in by_m[-2:]], [r["drloc_s"] for r in by_m[-2:]]),
    }
    common.write_json(args.output, result)

    print()
    print(f"| grid | m | step with DRLoc (ms) | without (ms) | DRLoc cost (ms) |")
    print("| --- | --- | --- | --- | --- |")
    for r in by_m + by_grid:
        print(f"| {r['grid']}x{r['grid']} | {r['m']} | {r['with']['median_s'] * 1e3:.2f} | "
              f"{r['without']['median_s'] * 1e3:.2f} | {r['drloc_s'] * 1e3:.2f} |")
    def fmt(value):
        return "-" if value is None else f"{value:.3f}"

    print(f"\nlog-log slope of DRLoc cost: against m {fmt(result['slope_m'])} "
          f"(largest two m: {fmt(result['slope_m_largest_two'])}); against grid area {fmt(result['slope_area'])}")
    return result


if __name__ == "__main__":
    main()
