"""The augmentation's share of the training step and of its compile time, before and after a
change to the augmentation, side by side in one run.

For the study's reduced ViT at 32x32 (DRLoc at its default lambda, the 512-wide head) and each
backend given, `train_on_batch` on a batch that already lives on the device
(`{"images": uint8, "labels": one-hot}`), for two versions of the code: the working tree
("after") and a git revision ("before", checked out into a temporary worktree). For each
version, two models: with the version's full default recipe in the step (flip, RandAugment,
random erasing, MixUp / CutMix; "after" also its default crop for 32x32) and without
augmentation. Each (version, backend) runs in its own process (a version is a different
`drloc_keras`), and the processes alternate, `--rounds` times each, so that a busy machine
slows both alike. Reported per version and backend (medians over the rounds):

- compile: seconds of the first `train_on_batch` (trace and compile), with and without the
  augmentation, and the augmentation's share `(with - without) / with`;
- step: milliseconds of a step after `--warmup` steps, median of `--steps`, with and without,
  and the share `(with - without) / with`.

    python benchmarks/augmentation_share.py --backends jax tensorflow --output docs/benchmarks/augmentation-share-cpu.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(args):
    """Runs in a child process whose `drloc_keras` is the version being measured; prints JSON."""
    import keras
    import numpy as np

    from drloc_keras import DRLocModel, backbones, catalog
    from drloc_keras.augmentation import Augmentation

    recipe = dict(flip=True, randaugment=True, random_erasing=0.25, mixup=0.8, cutmix=1.0, seed=0)
    if "crop" in Augmentation.__init__.__code__.co_varnames:  # versions with a crop
        recipe["crop"] = "padded"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch_size, 32, 32, 3)).astype("uint8")
    labels = np.eye(10, dtype="float32")[rng.integers(0, 10, args.batch_size)]
    batch = {"images": keras.ops.convert_to_tensor(images), "labels": keras.ops.convert_to_tensor(labels)}
    target = keras.ops.convert_to_tensor(labels)
    found = {}
    for name, augmentation in (("with", Augmentation(**recipe)), ("without", None)):
        keras.utils.set_random_seed(0)
        backbone = backbones.get("vit", image_size=32, num_classes=10, **catalog.REDUCED_ARGS["vit"])
        model = DRLocModel(backbone, lam=catalog.default_lambda("vit"), seed=0, augmentation=augmentation)
        model.compile(optimizer=keras.optimizers.AdamW(1e-4),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        start = time.perf_counter()
        model.train_on_batch(batch, target)
        compile_seconds = time.perf_counter() - start
        for _ in range(args.warmup):
            model.train_on_batch(batch, target)
        steps = []
        for _ in range(args.steps):
            start = time.perf_counter()
            model.train_on_batch(batch, target)
            steps.append(time.perf_counter() - start)
        found[name] = {"compile_seconds": compile_seconds, "step_ms": 1000 * statistics.median(steps)}
    print("RESULT " + json.dumps(found))


def child(version_root, backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=version_root, TF_CPP_MIN_LOG_LEVEL="3")
    argv = [sys.executable, os.path.abspath(__file__), "--child", "--batch-size", str(args.batch_size),
            "--steps", str(args.steps), "--warmup", str(args.warmup)]
    done = subprocess.run(argv, env=env, cwd=version_root, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"the {backend} child of {version_root} failed:\n{done.stderr[-3000:]}")


def share(with_, without):
    return (with_ - without) / with_


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default="7ef82c3", help="git revision of the code before (default %(default)s)")
    p.add_argument("--backends", nargs="+", default=["jax", "tensorflow"], choices=("jax", "tensorflow", "torch"))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per model (median)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per (version, backend)")
    p.add_argument("--output", help="JSON file for the results")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return measure(args)
    worktree = tempfile.mkdtemp(prefix="drloc-before-")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", worktree, args.before], check=True,
                   capture_output=True)
    try:
        versions = {"before": worktree, "after": ROOT}
        raw = {}
        for round_ in range(args.rounds):
            for backend in args.backends:
                for version, root in versions.items():
                    print(f"round {round_ + 1}/{args.rounds}: {version}, {backend}", flush=True)
                    raw.setdefault(f"{version}/{backend}", []).append(child(root, backend, args))
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", worktree], capture_output=True)
    rows = []
    for key, runs in raw.items():
        version, backend = key.split("/")
        med = {f"{name}_{what}": statistics.median(r[name][what] for r in runs)
               for name in ("with", "without") for what in ("compile_seconds", "step_ms")}
        rows.append({"version": version, "backend": backend, **med,
                     "compile_share": share(med["with_compile_seconds"], med["without_compile_seconds"]),
                     "step_share": share(med["with_step_ms"], med["without_step_ms"])})
    print("| backend | code | compile with / without (s) | augmentation's share of the compile | "
          "step with / without (ms) | augmentation's share of the step |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (r["backend"], r["version"] != "before")):
        print(f"| {r['backend']} | {r['version']} | {r['with_compile_seconds']:.1f} / {r['without_compile_seconds']:.1f} "
              f"| {100 * r['compile_share']:.0f}% | {r['with_step_ms']:.0f} / {r['without_step_ms']:.0f} "
              f"| {100 * r['step_share']:.0f}% |")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"settings": {k: v for k, v in vars(args).items() if k != "child"}, "rows": rows,
                       "raw": raw, "cpu_count": os.cpu_count()}, f, indent=1)


if __name__ == "__main__":
    main()
