"""What did the DRLoc head learn? Predicted against true offsets of token pairs, per axis.

    python examples/visualize_drloc.py runs/cifar10-cvt-lam0.1
    python examples/visualize_drloc.py runs/small_data_study/vit-lam0.5-frac1-seed0 --images 128

Reads a run folder of examples/train_cifar.py: config.json (the dataset, its options and the
image size) and the model (best.keras, else last.keras; --model picks). On validation images
(the run's validation set, its test set if it has none, prepared as the run evaluates them) it runs the backbone,
draws pairs of positions on the feature map of every DRLoc head with the model's pair sampler
(`DRLocModel.sample_positions`, `sample_size` pairs per image), and calls the head with them, which gives
its prediction and the true offset of each pair. The figure (default RUN/drloc_offsets.png)
has one row per head and one panel per axis (rows, columns): the predicted offset against
the true one, with the mean prediction per true offset and the diagonal of a perfect head.
The prediction is the regressed offset for `l1`, the most likely class for `ce` and the
expected class under the softmax for `cbr`; offsets are in feature-map cells (signed targets
shown signed, normalised ones scaled back). The mean absolute error per axis is printed, put
in the panel titles and written to drloc_offsets.json beside the figure, with the error of
a constant guess (the mean true offset) for comparison.
"""

import argparse
import json
import os
import sys

import keras
import numpy as np

from drloc_keras import DRLocModel, options, run, run_folder
from drloc_keras.model import split_backbone_output

AXES = ("rows", "columns")


def fail(message, code=2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", help="a run folder of examples/train_cifar.py (its --output)")
    p.add_argument("--model", default="auto",
                   help="best, last, or the path of a .keras file; auto: best.keras, else last.keras")
    p.add_argument("--images", type=int, default=64, help="validation images (a seeded random choice)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--seed", type=int, default=0, help="seeds the choice of images")
    p.add_argument("--output", default=None, help="the figure (default: RUN/drloc_offsets.png)")
    args = p.parse_args(argv)
    if args.images < 1 or args.batch_size < 1:
        p.error("--images and --batch-size must be >= 1")
    if args.output is None:
        args.output = os.path.join(args.run, "drloc_offsets.png")
    return args


def load_run(run, which="auto"):
    """`(config, model, model path)` of a run folder; exits with a clear message if the folder,
    its config.json or its model is missing, or the model has no DRLoc head."""
    if not os.path.isdir(run):
        fail(f"{run} is not a folder; pass the --output folder of a train_cifar.py run")
    config_path = os.path.join(run, "config.json")
    if not os.path.exists(config_path):
        fail(f"{run} holds no config.json: it is not a run folder of train_cifar.py")
    with open(config_path) as f:
        config = json.load(f)
    if which in ("auto", "best", "last"):
        names = {"auto": ("best.keras", "last.keras"), "best": ("best.keras",), "last": ("last.keras",)}[which]
        paths = [os.path.join(run, name) for name in names]
        path = next((p for p in paths if os.path.exists(p)), None)
        if path is None:
            fail(f"{run} holds no saved model ({' or '.join(names)}): the run saves one after its first "
                 f"epoch; train it (or resume it) first, or pass --model PATH")
    else:
        path = which
        if not os.path.exists(path):
            fail(f"--model {path} does not exist")
    try:
        model = run_folder.load_model(path)
    except Exception as e:
        fail(f"{path} cannot be loaded as a Keras model ({type(e).__name__}: {e})")
    if not isinstance(model, DRLocModel) or not model.heads:
        fail(f"{path} holds a {type(model).__name__}, not a DRLocModel with DRLoc heads")
    return config, model, path


def validation_images(config, count, seed=0):
    """`count` images of the run's validation set (its test set if it has none), a seeded
    choice, float32 `[N, S, S, 3]` prepared as the training program evaluates them."""
    settings = options.namespace(config)
    try:
        loaded = run.load_data(settings, statistics=False)
    except options.UsageError as e:
        fail(str(e))
    x, y = loaded.val if loaded.val is not None else loaded.test
    if len(x) == 0:
        fail(f"the evaluation images of {settings.dataset} are empty")
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(x), min(count, len(x)), replace=False))
    # uint8 RGB at the training size already (run.load_data); a streamed folder's are decoded here
    return np.asarray(x[index]).astype("float32")


def head_offsets(head, pred, target):
    """Predicted and true offsets of a head's pairs in feature-map cells, each `[pairs, 2]`."""
    k_minus_1 = np.array([head.height - 1.0, head.width - 1.0])
    if head.mode == "l1":
        values = np.asarray(keras.ops.convert_to_numpy(pred), np.float64)
    else:
        per_axis = []
        for logits in pred:
            logits = np.asarray(keras.ops.convert_to_numpy(logits), np.float64)
            if head.mode == "ce":
                per_axis.append(np.argmax(logits, axis=-1).astype(np.float64))
            else:  # cbr: the expected class under the softmax
                weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
                weights /= weights.sum(axis=-1, keepdims=True)
                per_axis.append((weights * np.arange(logits.shape[-1])).sum(axis=-1))
        values = np.stack(per_axis, axis=-1)
    target = np.asarray(keras.ops.convert_to_numpy(target), np.float64)
    if head.normalize:
        scale = k_minus_1 if head.use_abs else 2 * k_minus_1
        values, target = values * scale, target * scale
    if not head.use_abs:  # signed targets are d + (K - 1): show d
        values, target = values - k_minus_1, target - k_minus_1
    return values.reshape(-1, 2), target.reshape(-1, 2)


def collect(model, images, batch_size=64):
    """Per head: `(predicted [P, 2], true [P, 2])` over every image and sampled pair."""
    found = [([], []) for _ in model.heads]
    for start in range(0, len(images), batch_size):
        batch = keras.ops.convert_to_tensor(images[start: start + batch_size])
        _, maps = split_backbone_output(model.backbone(batch, training=False))
        drawn = model.sample_positions(maps)
        for k, (head, index, positions) in enumerate(zip(model.heads, model.map_indices, drawn)):
            pred, target = head(maps[index], positions=positions)
            values, true = head_offsets(head, pred, target)
            found[k][0].append(values)
            found[k][1].append(true)
    return [(np.concatenate(p), np.concatenate(t)) for p, t in found]


def summarize(model, results):
    summary = []
    for k, (head, (pred, true)) in enumerate(zip(model.heads, results)):
        entry = {"head": k, "feature_map": int(model.map_indices[k]), "grid": [head.height, head.width],
                 "mode": head.mode, "pairs": int(len(true))}
        for axis, name in enumerate(AXES):
            entry[f"mae_{name}"] = float(np.mean(np.abs(pred[:, axis] - true[:, axis])))
            entry[f"constant_guess_mae_{name}"] = float(np.mean(np.abs(true[:, axis] - true[:, axis].mean())))
        summary.append(entry)
    return summary


def plot(model, results, summary, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(len(results), 2, figsize=(10, 4.4 * len(results)), squeeze=False)
    for k, ((pred, true), entry) in enumerate(zip(results, summary)):
        for axis, name in enumerate(AXES):
            ax = axes[k, axis]
            t, p = true[:, axis], pred[:, axis]
            jitter = rng.uniform(-0.15, 0.15, len(t))  # true offsets are integers
            ax.scatter(t + jitter, p, s=6, alpha=0.25, label="sampled pairs")
            levels = np.unique(t)
            ax.plot(levels, [p[t == v].mean() for v in levels], "o-", color="C3", label="mean prediction")
            low, high = min(t.min(), p.min()), max(t.max(), p.max())
            ax.plot([low, high], [low, high], "k--", linewidth=1, label="perfect")
            ax.set_xlabel(f"true offset along the {name} (cells)")
            ax.set_ylabel(f"predicted offset ({entry['mode']})")
            ax.set_title(f"head {k}, {entry['grid'][0]}x{entry['grid'][1]} map, {name}: "
                         f"MAE {entry[f'mae_{name}']:.2f} (constant guess "
                         f"{entry[f'constant_guess_mae_{name}']:.2f})", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with run_folder.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    config, model, model_path = load_run(args.run, args.model)
    images = validation_images(config, args.images, args.seed)
    results = collect(model, images, args.batch_size)
    summary = summarize(model, results)
    untrained = not model.drloc_enabled
    title = (f"{os.path.basename(os.path.normpath(args.run))} ({os.path.basename(model_path)}): "
             f"{config['dataset']}, {config['backbone']}, lambda {model.lam:g}, {len(images)} validation "
             f"images x {model.heads[0].sample_size} pairs")
    if untrained:
        title += "\nlambda = 0: these heads were never trained, so they show chance"
    plot(model, results, summary, args.output, title)
    report = {"run": args.run, "model": model_path, "images": int(len(images)), "heads": summary,
              "untrained": untrained, "figure": args.output}
    json_path = os.path.splitext(args.output)[0] + ".json"
    run_folder.atomic_write_text(json_path, json.dumps(report, indent=2))
    report["json"] = json_path
    for entry in summary:
        print(f"head {entry['head']} ({entry['grid'][0]}x{entry['grid'][1]}, {entry['mode']}, "
              f"{entry['pairs']} pairs): mean absolute error rows {entry['mae_rows']:.3f}, "
              f"columns {entry['mae_columns']:.3f} cells (a constant guess: "
              f"{entry['constant_guess_mae_rows']:.3f}, {entry['constant_guess_mae_columns']:.3f})")
    if untrained:
        print("note: the run trained with lambda = 0, so its DRLoc heads were never trained", file=sys.stderr)
    print(f"wrote {args.output} and {json_path}")
    return report
