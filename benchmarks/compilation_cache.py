"""A second identical run against the first: what JAX's persistent compilation cache saves.

The training program (examples/train_cifar.py) on JAX, end to end (its process from start to
exit), twice in a row on an empty cache folder (`DRLOC_COMPILATION_CACHE`): the first run
compiles and writes every program, the second finds them. `--rounds` pairs, each on a fresh
folder; reported per round and as medians, with the ratio second / first.

    python benchmarks/compilation_cache.py --output docs/benchmarks/compilation-cache-cpu.json
    python benchmarks/compilation_cache.py --backbone swin -- --epochs 2

Arguments after `--` go to the training program (they replace the defaults of the same flag).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from drloc_keras.catalog import REDUCED_ARGS  # noqa: E402

FASHION_DIR = os.environ.get("DRLOC_FASHION_DIR", "/usr/share/datasets/fashion-mnist")


def program_argv(args, output):
    """The training program's flags: the study's reduced backbone on Fashion-MNIST at 1%, one epoch."""
    flags = {"--dataset": "fashion_mnist", "--data-dir": FASHION_DIR, "--backbone": args.backbone,
             "--backbone-args": json.dumps(REDUCED_ARGS[args.backbone]), "--train-fraction": "0.01", "--epochs": "1", "--batch-size": "32",
             "--verbose": "0"}
    extra = list(args.program)
    for i, item in enumerate(extra):
        if item in flags and i + 1 < len(extra):
            flags.pop(item)
    if "--dataset" in extra and extra[extra.index("--dataset") + 1] != "fashion_mnist":
        flags.pop("--data-dir", None)  # the default's files, not another dataset's
    argv = [a for pair in flags.items() for a in pair] + extra + ["--output", output]
    return [sys.executable, os.path.join(ROOT, "examples", "train_cifar.py"), *argv]


def timed(argv, cache):
    env = dict(os.environ, KERAS_BACKEND="jax", DRLOC_COMPILATION_CACHE=cache, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: the training program failed:\n{done.stderr[-3000:]}")
    return seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="vit", choices=sorted(REDUCED_ARGS),
                   help="the backbone, at the study's reduced size (default %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="pairs of runs, each on an empty cache (default 2)")
    p.add_argument("--output", help="JSON file for the results")
    p.add_argument("program", nargs="*", help="flags for the training program (after --)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1; found {args.rounds}")
    rounds = []
    work = tempfile.mkdtemp(prefix="drloc-cache-")
    try:
        for i in range(args.rounds):
            cache = os.path.join(work, f"cache{i}")
            first = timed(program_argv(args, os.path.join(work, f"run{i}a")), cache)
            entries = len(os.listdir(cache))
            second = timed(program_argv(args, os.path.join(work, f"run{i}b")), cache)
            rounds.append({"first_s": first, "second_s": second, "ratio": second / first, "entries": entries,
                           "entries_after_second": len(os.listdir(cache))})
            print(f"round {i + 1}: first {first:.1f} s, second {second:.1f} s ({second / first:.2f}x), "
                  f"{entries} programs cached", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"command": " ".join(program_argv(args, "RUN")[1:]), "cpu_count": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rounds": rounds,
              "first_s": statistics.median(r["first_s"] for r in rounds),
              "second_s": statistics.median(r["second_s"] for r in rounds),
              "ratio": statistics.median(r["ratio"] for r in rounds)}
    print(f"median: first {result['first_s']:.1f} s, second {result['second_s']:.1f} s, "
          f"second / first {result['ratio']:.2f} ({100 * (1 - result['ratio']):.0f}% faster)")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return result


if __name__ == "__main__":
    main()
