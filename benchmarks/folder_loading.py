"""Reading an image folder (`--dataset folder`): one decoding thread against several.

Writes a folder of images (the synthetic dataset's scenes, `--side` pixels, JPEG or PNG,
`--images` training images over 4 classes and a tenth as many for val), then reads it with `drloc_keras.data.load_image_folder` at
`--image-size`, alternating one thread and `--workers` threads for `--repeats` rounds in one
process. The figures are the median seconds per read and images per second of each, and the
median per-round speed-up (one thread's time / the threads' time).

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
    p.add_argument("--output", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    workers = args.workers or min(32, 2 * (os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as root:
        total = write_folder(root, args.images, args.side, args.format)
        data.load_image_folder(root, image_size=args.image_size, workers=1, progress=lambda line: None)  # cache
        times = {1: [], workers: []}
        for _ in range(args.repeats):
            for count in times:
                start = time.perf_counter()
                data.load_image_folder(root, image_size=args.image_size, workers=count, progress=lambda line: None)
                times[count].append(time.perf_counter() - start)
    one, many = times[1], times[workers]
    result = {
        "command": "python benchmarks/folder_loading.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": common.machine(),
        "images": total, "format": args.format, "written_side": args.side, "read_side": args.image_size, "repeats": args.repeats,
        "one_thread": {"median_seconds": statistics.median(one), "images_per_second": total / statistics.median(one)},
        f"{workers}_threads": {"median_seconds": statistics.median(many),
                               "images_per_second": total / statistics.median(many)},
        "speedup_median_per_round": statistics.median(a / b for a, b in zip(one, many)),
    }
    for key in ("one_thread", f"{workers}_threads"):
        print(f"{key}: {result[key]['median_seconds']:.2f} s, {result[key]['images_per_second']:.0f} images/s")
    print(f"speed-up with {workers} threads: {result['speedup_median_per_round']:.2f}x ({total} images)")
    if args.output:
        common.write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
