"""Reading an image folder (`--dataset folder`): one decoding thread against several, and
in memory against streamed from disk.

Writes a folder of images (the synthetic dataset's scenes, `--side` pixels, JPEG or PNG,
`--images` training images over 4 classes and a tenth as many for val), then, alternating
the variants for `--repeats` rounds in one process, at `--image-size`:

- `load_image_folder(stream=False)` with one thread and with `--workers` threads: the
  seconds until training can start (every image decoded into memory);
- `load_image_folder(stream=True)`: the seconds until training can start (the files
  indexed), and one epoch of training batches (`--batch-size`) read from the streamed files
  by `drloc_keras.pipeline.ArrayBatches` with `--workers` threads: images per second that
  the decoding can feed a training step.

The figures are medians over the rounds, and the median per-round speed-up of the threads.

    python benchmarks/folder_loading.py --output docs/benchmarks/folder-loading-cpu.json
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from drloc_keras import data  # noqa: E402


def write_folder(root, images, side, fmt="jpeg", seed=0):
    from PIL import Image

    scenes = data.load_synthetic(train_size=images, test_size=max(4, images // 10), image_size=side, seed=seed)
    for split, (x, y) in (("train", scenes.train), ("val", scenes.test)):
        for i, (image, label) in enumerate(zip(x, y)):
            folder = os.path.join(root, split, scenes.class_names[label])
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).save(os.path.join(folder, f"{i:06d}.{'jpg' if fmt == 'jpeg' else 'png'}"))
    return len(scenes.train[0]) + len(scenes.test[0])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=4000, help="training images written (val: a tenth more)")
    p.add_argument("--side", type=int, default=320, help="side of the written images (ImageNet's are ~400)")
    p.add_argument("--format", default="jpeg", choices=["jpeg", "png"], help="file format written")
    p.add_argument("--image-size", type=int, default=32, help="side they are read at (resized)")
    p.add_argument("--workers", type=int, default=None, help="threads (default: the loader's)")
    p.add_argument("--repeats", type=int, default=3, help="rounds, each reading once per setting")
    p.add_argument("--batch-size", type=int, default=128, help="training batch of the streamed epoch")
    p.add_argument("--output", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    workers = args.workers or min(32, 2 * (os.cpu_count() or 1))
    quiet = dict(image_size=args.image_size, progress=lambda line: None)

    def in_memory(count):
        def read():
            start = time.perf_counter()
            data.load_image_folder(root, workers=count, stream=False, **quiet)
            return time.perf_counter() - start
        return read

    def streamed_start():
        start = time.perf_counter()
        data.load_image_folder(root, workers=workers, stream=True, **quiet)
        return time.perf_counter() - start

    def streamed_epoch():
        from drloc_keras import pipeline

        files, labels = data.load_image_folder(root, workers=workers, stream=True, **quiet).train
        batches = pipeline.ArrayBatches(files, labels, 4, args.batch_size, training=True)
        start = time.perf_counter()
        for i in range(len(batches)):
            batches[i]
        return time.perf_counter() - start, len(batches) * args.batch_size

    with tempfile.TemporaryDirectory() as root:
        total = write_folder(root, args.images, args.side, args.format)
        train_images = args.images
        in_memory(1)()  # the files in the page cache
        variants = {"one_thread": in_memory(1), f"{workers}_threads": in_memory(workers),
                    "streamed_start": streamed_start}
        times = {name: [] for name in [*variants, "streamed_epoch"]}
        epoch_images = None
        for _ in range(args.repeats):
            for name, read in variants.items():
                times[name].append(read())
            seconds, epoch_images = streamed_epoch()
            times["streamed_epoch"].append(seconds)
    one, many = times["one_thread"], times[f"{workers}_threads"]
    result = {
        "command": "python benchmarks/folder_loading.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": common.machine(),
        "images": total, "train_images": train_images, "format": args.format, "written_side": args.side,
        "read_side": args.image_size, "repeats": args.repeats, "workers": workers,
        "one_thread": {"median_seconds": statistics.median(one), "images_per_second": total / statistics.median(one)},
        f"{workers}_threads": {"median_seconds": statistics.median(many),
                               "images_per_second": total / statistics.median(many)},
        "speedup_median_per_round": statistics.median(a / b for a, b in zip(one, many)),
        "streamed_start": {"median_seconds": statistics.median(times["streamed_start"])},
        "streamed_epoch": {"median_seconds": statistics.median(times["streamed_epoch"]),
                           "images": epoch_images, "batch_size": args.batch_size,
                           "images_per_second": epoch_images / statistics.median(times["streamed_epoch"])},
        "seconds": times,
    }
    for key in ("one_thread", f"{workers}_threads"):
        print(f"in memory, {key}: {result[key]['median_seconds']:.2f} s before training, "
              f"{result[key]['images_per_second']:.0f} images/s")
    print(f"speed-up with {workers} threads: {result['speedup_median_per_round']:.2f}x ({total} images)")
    print(f"streamed: {result['streamed_start']['median_seconds']:.3f} s before training (indexing); an epoch of "
          f"{epoch_images} images read in batches of {args.batch_size} at "
          f"{result['streamed_epoch']['images_per_second']:.0f} images/s ({workers} threads)")
    if args.output:
        common.write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
