"""Parameters, FLOPs per image and DRLoc grids of every registered backbone size.

FLOPs come from XLA's cost analysis of the compiled inference forward pass (JAX backend,
batch 1); XLA counts a multiply-add as 2 FLOPs, so GMACs = GFLOPs / 2 (papers usually
quote MACs under the name "FLOPs"). Writes JSON and prints a markdown table.

    KERAS_BACKEND=jax python benchmarks/backbone_table.py --output docs/backbones.json
"""

import argparse
import datetime
import json
import os
import platform
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from drloc_keras import backbones  # noqa: E402

# The class count each published parameter count refers to.
NUM_CLASSES = {"cct_7_3x1": 10}
PUBLISHED_MILLIONS = {
    "cvt_13": 20.0, "swin_tiny": 28.3, "t2t_vit_14": 21.5, "vit_base_16": 86.6,
    "resnet50": 25.6, "cct_7_3x1": 3.76,
}


def flops_per_image(model, image_size):
    if keras.backend.backend() != "jax":
        return None
    import jax

    x = np.zeros((1, image_size, image_size, 3), "float32")
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def forward(values, images):
        out, _ = model.stateless_call(values[0], values[1], images, training=False)
        return out["logits"]

    values = (trainable, non_trainable)
    analysis = jax.jit(forward).lower(values, x).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis["flops"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=None, help="JSON file to write (default: none)")
    parser.add_argument("--sizes", nargs="*", default=None, help="size names (default: all)")
    args = parser.parse_args(argv)

    rows = []
    for size in args.sizes or list(backbones.SIZES):
        start = time.perf_counter()
        image_size = backbones.SIZES[size][2]
        num_classes = NUM_CLASSES.get(size, 1000)
        model = backbones.get(size, num_classes=num_classes)
        params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        grids = [tuple(int(d) for d in f.shape[1:]) for f in model.output["feature_maps"]]
        flops = flops_per_image(model, image_size)
        rows.append({
            "name": size, "image_size": image_size, "num_classes": num_classes,
            "params": params, "published_millions": PUBLISHED_MILLIONS.get(size),
            "gflops": None if flops is None else flops / 1e9,
            "feature_maps": grids, "seconds": time.perf_counter() - start,
        })
        print(f"{size}: {params:,} parameters, {rows[-1]['gflops']} GFLOPs, maps {grids}", flush=True)

    print()
    print("| name | input | classes | parameters | published | GFLOPs | GMACs | DRLoc grid (last map), all maps |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        published = f"{r['published_millions']}M" if r["published_millions"] else "-"
        gflops = f"{r['gflops']:.2f}" if r["gflops"] is not None else "-"
        gmacs = f"{r['gflops'] / 2:.2f}" if r["gflops"] is not None else "-"
        h, w, c = r["feature_maps"][-1]
        maps = ", ".join(f"{a}x{b}x{d}" for a, b, d in r["feature_maps"])
        print(f"| {r['name']} | {r['image_size']} | {r['num_classes']} | {r['params'] / 1e6:.2f}M "
              f"| {published} | {gflops} | {gmacs} | {h}x{w} (C={c}); {maps} |")
    if args.output:
        meta = {"date": datetime.date.today().isoformat(), "machine": platform.platform(),
                "processor": platform.processor(), "backend": keras.backend.backend(),
                "keras": keras.__version__}
        with open(args.output, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
