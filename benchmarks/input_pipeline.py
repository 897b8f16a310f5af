"""The input pipelines alone, no model: images per second of one training epoch.

`tf.data` (`drloc_keras.pipeline.train_dataset` on the TensorFlow backend: augmentation in a
tf.data thread) against `ArrayBatches` (the JAX and PyTorch pipeline: a NumPy gather and the
Keras augmentation layers called eagerly on the current backend), with the recipe's full
augmentation (flip, RandAugment, random erasing, MixUp / CutMix) at batch 128 on 32x32 images.
Run once per backend: `tf.data` is timed on the TensorFlow backend, `ArrayBatches` on each.

    KERAS_BACKEND=jax python benchmarks/input_pipeline.py --output docs/benchmarks/input-pipeline-cpu-jax.json
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from drloc_keras import pipeline, recipe  # noqa: E402


def epoch_seconds(batches, epoch_seeds, epoch):
    epoch_seeds.on_epoch_begin(epoch)
    start = time.perf_counter()
    if isinstance(batches, pipeline.ArrayBatches):
        for i in range(len(batches)):
            batches[i]
    else:
        for _ in batches:
            pass
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one untimed)")
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.images, 32, 32, 3)).astype("uint8")
    y = rng.integers(0, 10, args.images)
    steps = args.images // args.batch_size
    results = {}
    augment = recipe.augmenter(32, True, 0.25, True, seed=0)
    mixers = recipe.mixers(0.8, 1.0, seed=0)
    batches = pipeline.ArrayBatches(x, y, 10, args.batch_size, training=True, augment=augment, mixers=mixers)
    variants = {"ArrayBatches": (batches, pipeline.EpochSeeds(batches.set_epoch, [augment, *mixers], 0))}
    if keras.backend.backend() == "tensorflow":
        variants["tf.data"] = pipeline.train_dataset(x, y, 10, args.batch_size, 32, recipe.augmenter(
            32, True, 0.25, True, seed=0), recipe.mixers(0.8, 1.0, seed=0), seed=0)
    for name, (data, seeds) in variants.items():
        epoch_seconds(data, seeds, 0)  # traces, warms caches
        times = [epoch_seconds(data, seeds, e + 1) for e in range(args.epochs)]
        median = statistics.median(times)
        results[name] = {"median_epoch_seconds": median, "images_per_second": steps * args.batch_size / median}
        print(f"{keras.backend.backend()} {name}: {results[name]['images_per_second']:.0f} images/s")
    payload = {"command": "python benchmarks/input_pipeline.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "backend": keras.backend.backend(), "machine": common.machine(), "images": args.images,
               "batch_size": args.batch_size, "results": results}
    if args.output:
        common.write_json(args.output, payload)
    return payload


if __name__ == "__main__":
    main()
