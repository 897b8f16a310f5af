"""Seconds to compile the training step, whole and in parts, for every family, before and after a
change, side by side in one run.

For each family at its reduced size (the study's, `drloc_keras.catalog.REDUCED_ARGS`) and at its
32x32 registry size (`vit_32`, `swin_tiny_32`, `t2t_vit_14_32`, `cct_7_3x1`, `resnet50_32`,
`cvt_13_32`), the model of the training program (`recipe.build_model` and `recipe.compile_model`
of the program's default settings: the input normalisation, the default augmentation in the step,
DRLoc at the family's lambda, AdamW with clipping and its schedule), on a batch of `--batch-size`
uint8 images of 32x32 that lives on the device:

- `step`: the whole training step, `train_on_batch`'s first call less a later call's time
  (trace, compile and one run, less the run); on TensorFlow compiled by XLA (`jit_compile=True`,
  which Keras does not choose on a machine without an accelerator);
- each part compiled alone, the same way (the first call less a later one):
  `backbone` (forward and gradient of the cross-entropy, the last feature map included),
  `drloc` (the DRLoc heads and their loss on feature maps of the backbone's shape, forward and
  gradient), `augmentation` (the Augmentation layer on the batch and its labels) and `optimizer`
  (the optimizer's update of every trainable variable from given gradients).

The parts overlap the step only roughly (the step fuses them), so they say where the time goes,
not a sum. Each (version, backend, family, size) runs in its own process with JAX's persistent
compilation cache off (`DRLOC_COMPILATION_CACHE=off`), and the versions alternate: the working tree
("after") and a git revision (`--before`, checked out into a temporary worktree; `--before none`
measures the working tree alone).

    python benchmarks/compile_time.py --before 63a0079 --output docs/benchmarks/compile-time-cpu.json
    python benchmarks/compile_time.py --before none --families vit --sizes reduced --backends jax
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = ("vit", "swin", "t2t", "cct", "resnet50", "cvt")
REGISTRY_32 = {"vit": "vit_32", "swin": "swin_tiny_32", "t2t": "t2t_vit_14_32", "cct": "cct_7_3x1",
               "resnet50": "resnet50_32", "cvt": "cvt_13_32"}
PARTS = ("step", "backbone", "drloc", "augmentation", "optimizer")
GOALS = {"reduced": 10.0, "registry": 30.0}  # seconds for the whole step on the 2-core CPU
# `--tiny`: the smallest models of each family (a check that the script runs, not a figure).
TINY_ARGS = {"vit": {"embed_dim": 16, "depth": 1, "num_heads": 2},
             "swin": {"embed_dim": 8, "depths": [1, 1, 1], "num_heads": [1, 2, 2]},
             "t2t": {"token_dim": 8, "embed_dim": 16, "depth": 1, "num_heads": 2},
             "cct": {"num_layers": 1, "num_heads": 2, "embed_dim": 16, "tokenizer_channels": 8},
             "resnet50": {"width_multiplier": 0.0625},
             "cvt": {"embed_dims": [8, 16, 16], "num_heads": [1, 2, 2], "depths": [1, 1, 1]}}


# --- The child: one model, every part ----------------------------------------------------------


def _first_less_later(function, *args):
    """Seconds of `function(*args)`'s first call less its third call's (trace and compile)."""
    import keras

    def run():
        start = time.perf_counter()
        out = function(*args)
        for leaf in keras.tree.flatten(out):
            keras.ops.convert_to_numpy(leaf)
        return time.perf_counter() - start

    first = run()
    run()
    return max(first - run(), 0.0)


def _compiled(function):
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    import tensorflow as tf

    return tf.function(function, jit_compile=True, autograph=False)


def measure(family, size, batch_size):
    """`{part: seconds}` for one model, in this process (the child)."""
    import keras
    import numpy as np
    from keras import ops

    from drloc_keras import catalog, options, recipe
    from drloc_keras.model import split_backbone_output

    argv = ["--backbone", family if size != "registry" else REGISTRY_32[family], "--image-size", "32",
            "--batch-size", str(batch_size), "--epochs", "10"]
    if size != "registry":
        argv += ["--backbone-args", json.dumps((TINY_ARGS if size == "tiny" else catalog.REDUCED_ARGS)[family])]
    args, _ = options.parse(argv)
    steps = 100
    keras.utils.set_random_seed(0)
    stats = (np.full(3, 128.0), np.full(3, 4096.0))
    model = recipe.build_model(args, 10, steps, input_stats=stats)
    recipe.compile_model(model, args, steps, 10)
    model.jit_compile = True  # TensorFlow: XLA, as on an accelerator (JAX always compiles)
    rng = np.random.default_rng(0)
    images = ops.convert_to_tensor(rng.integers(0, 256, (batch_size, 32, 32, 3)).astype("uint8"))
    labels = ops.convert_to_tensor(np.eye(10, dtype="float32")[rng.integers(0, 10, batch_size)])
    found = {"step": _first_less_later(lambda: model.train_on_batch(images, labels))}
    found.update(_parts(model, images, labels, split_backbone_output))
    found["parameters"] = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    return found


def _parts(model, images, labels, split_backbone_output):
    import keras
    from keras import ops

    from drloc_keras.losses import drloc_loss

    backbone, heads, augmentation = model.backbone, model.heads, model.augmentation
    optimizer = model.optimizer
    x = ops.cast(images, "float32")
    out = split_backbone_output(backbone(x, training=False))
    maps = out[1]
    found = {}
    if keras.backend.backend() == "jax":
        import jax

        def stateless(layer, call):
            def function(trainable, non_trainable, *inputs):
                mapping = list(zip(layer.trainable_variables, trainable)) + list(
                    zip(layer.non_trainable_variables, non_trainable))
                with keras.StatelessScope(state_mapping=mapping):
                    return call(*inputs)
            return function, [v.value for v in layer.trainable_variables], [v.value for v in layer.non_trainable_variables]

        def backbone_loss(x, y):
            logits, maps = split_backbone_output(backbone(x, training=True))
            ce = keras.losses.categorical_crossentropy(y, logits, from_logits=True)
            return ops.mean(ce) + 1e-3 * ops.mean(ops.cast(maps[-1], "float32"))

        fn, tv, ntv = stateless(backbone, backbone_loss)
        grad = jax.jit(jax.grad(fn))
        found["backbone"] = _first_less_later(grad, tv, ntv, x, labels)
        if model.drloc_enabled:
            positions = model.sample_positions(maps)

            def heads_loss(features, positions):
                total = 0.0
                for head, index, (p, q) in zip(heads, model.map_indices, positions):
                    pred, target = head(features[index], positions=(p, q))
                    total = total + drloc_loss(pred, target, model.mode)
                return total

            owner = keras.layers.Layer()
            owner._tracker.unlock()
            owner.heads = list(heads)
            fn, tv, ntv = stateless(owner, heads_loss)
            found["drloc"] = _first_less_later(jax.jit(jax.grad(fn)), tv, ntv, list(maps), positions)
        if augmentation is not None:
            fn, tv, ntv = stateless(augmentation, lambda x, y: augmentation({"images": x, "labels": y}, training=True))
            found["augmentation"] = _first_less_later(jax.jit(fn), tv, ntv, images, labels)
        variables = model.trainable_variables
        grads = [ops.zeros(v.shape, v.dtype) for v in variables]
        optimizer_state = [v.value for v in optimizer.variables]
        values = [v.value for v in variables]
        found["optimizer"] = _first_less_later(jax.jit(optimizer.stateless_apply), optimizer_state, grads, values)
        return found

    import tensorflow as tf

    def backbone_grad(x, y):
        with tf.GradientTape() as tape:
            logits, maps = split_backbone_output(backbone(x, training=True))
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(y, logits, from_logits=True))
            loss += 1e-3 * tf.reduce_mean(tf.cast(maps[-1], "float32"))
        return tape.gradient(loss, backbone.trainable_variables)

    found["backbone"] = _first_less_later(_compiled(backbone_grad), x, labels)
    if model.drloc_enabled:
        positions = model.sample_positions(maps)

        def heads_grad(features):
            with tf.GradientTape() as tape:
                total = 0.0
                for head, index, (p, q) in zip(heads, model.map_indices, positions):
                    pred, target = head(features[index], positions=(p, q))
                    total += drloc_loss(pred, target, model.mode)
            return tape.gradient(total, [v for h in heads for v in h.trainable_variables])

        found["drloc"] = _first_less_later(_compiled(heads_grad), list(maps))
    if augmentation is not None:
        found["augmentation"] = _first_less_later(
            _compiled(lambda x, y: augmentation({"images": x, "labels": y}, training=True)), images, labels)
    variables = model.trainable_variables
    grads = [tf.zeros_like(v) for v in variables]
    found["optimizer"] = _first_less_later(_compiled(lambda g: optimizer.apply(g, variables)), grads)
    return found


# --- The parent: versions x backends x models, alternating ------------------------------------


def child(version_root, backend, family, size, args):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=version_root, TF_CPP_MIN_LOG_LEVEL="3",
               DRLOC_COMPILATION_CACHE="off")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    argv = [sys.executable, os.path.abspath(__file__), "--child", family, size, "--batch-size", str(args.batch_size)]
    done = subprocess.run(argv, env=env, cwd=version_root, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": (done.stderr or done.stdout)[-1500:]}


def summarise(raw, args):
    """The rows (medians per version, backend and model) and their markdown table; written to
    `--output` as they stand (after every measurement, so a stopped run keeps what it measured)."""
    rows = []
    for key, founds in raw.items():
        version, backend, family, size = key.split("/")
        good = [f for f in founds if "error" not in f]
        row = {"version": version, "backend": backend, "family": family, "size": size,
               "model": REGISTRY_32[family] if size == "registry" else f"{family} ({size})"}
        if not good:
            row["error"] = founds[-1]["error"]
        for part in PARTS:
            values = [f[part] for f in good if part in f]
            if values:
                row[part] = statistics.median(values)
        if good:
            row["parameters"] = good[0]["parameters"]
        rows.append(row)
    lines = ["| model | backend | version | step (s) | backbone | DRLoc head and loss | augmentation | optimizer |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        cells = [f"{row[p]:.1f}" if p in row else ("error" if "error" in row else "-") for p in PARTS]
        lines.append(f"| {row['model']} | {row['backend']} | {row['version']} | " + " | ".join(cells) + " |")
    if args.output:
        payload = {"settings": {k: v for k, v in vars(args).items() if k != "child"}, "goals_seconds": GOALS,
                   "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "rows": rows, "raw": raw}
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
    return rows, "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default="none", help="git revision of the code before, or none (default)")
    p.add_argument("--backends", nargs="+", default=["jax", "tensorflow"], choices=("jax", "tensorflow"))
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--sizes", nargs="+", default=["reduced", "registry"], choices=("reduced", "registry", "tiny"),
                   help="reduced (the study's), registry (32x32) and tiny (a check that the script runs)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step (default %(default)s)")
    p.add_argument("--rounds", type=int, default=1, help="measurements per (version, backend, model); medians")
    p.add_argument("--output", help="JSON file for the results")
    p.add_argument("--child", nargs=2, metavar=("FAMILY", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(measure(*args.child, args.batch_size)), flush=True)
        return None
    if args.batch_size < 1 or args.rounds < 1:
        p.error("--batch-size and --rounds must be >= 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the worktree is removed on the way out
    versions = {"after": ROOT}
    temporary = None
    if args.before != "none":
        temporary = tempfile.mkdtemp(prefix="drloc-before-")
        subprocess.run(["git", "worktree", "add", "--detach", temporary, args.before], cwd=ROOT, check=True,
                       capture_output=True)
        versions = {"before": temporary, "after": ROOT}
    raw = {}
    try:
        for round_ in range(args.rounds):
            for size in args.sizes:
                for family in args.families:
                    for backend in args.backends:
                        for version, root in versions.items():
                            key = f"{version}/{backend}/{family}/{size}"
                            found = child(root, backend, family, size, args)
                            raw.setdefault(key, []).append(found)
                            shown = found.get("error", "").strip().splitlines()[-1:] or [
                                " ".join(f"{k} {found[k]:.1f}s" for k in PARTS if k in found)]
                            print(f"round {round_ + 1}: {key}: {shown[0]}", flush=True)
                            summarise(raw, args)
    finally:
        if temporary:
            subprocess.run(["git", "worktree", "remove", "--force", temporary], cwd=ROOT, capture_output=True)
    rows, table = summarise(raw, args)
    print(table)
    return rows


if __name__ == "__main__":
    main()
