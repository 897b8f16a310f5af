"""Training throughput of the whole program's loop, before and after augmentation moved into
the model's compiled step, against `train_on_batch` on a resident batch and a plain PyTorch step.

For each model (the study's reduced ViT and CvT at 32x32, and `cvt_13_32`), side by side in one
process, timed in alternating rounds of one epoch each, images per second of:

- `program`: an epoch of `model.fit` on `drloc_keras.pipeline.train_dataset` (uint8 batches
  gathered from the in-memory arrays) with the model's `Augmentation` (flip, RandAugment,
  erasing, MixUp / CutMix) inside its step, and the `EpochSeeds` callback: what
  `examples/train_cifar.py` runs, timed from the epoch's start to its end;
- `before`: the same model without `augmentation`, fed by the input pipeline of the code before
  this change (read from git at `--before`): `tf.data` with the augmentation in a tf.data thread
  on TensorFlow, `ArrayBatches` with the augmentation called eagerly on JAX and PyTorch;
- `train_on_batch`: `train_on_batch` of the program's model (augmentation included) on one
  batch that already lives on the device: the step alone, no input pipeline;
- `train_on_batch, no augmentation`: the same without the augmentation, to show its cost.

For the reduced ViT also `plain PyTorch`: the same ViT written in PyTorch in this file (same
sizes and parameter count, checked), AdamW and cross-entropy, one `loss.backward();
opt.step()` per batch on a resident batch, no augmentation and no DRLoc; it is compared with
Keras' `train_on_batch` of the ViT with lambda 0 and no augmentation (same work), and with the
program.

    KERAS_BACKEND=jax python benchmarks/training_pipeline.py --output docs/benchmarks/training-pipeline-cpu-jax.json
"""

import argparse
import importlib.util
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from drloc_keras import DRLocModel, backbones, catalog, pipeline  # noqa: E402
from drloc_keras.augmentation import Augmentation  # noqa: E402

# name -> (backbone, constructor overrides); "vit" and "cvt" are the study's reduced sizes.
MODELS = {"vit": ("vit", catalog.REDUCED_ARGS["vit"]),
          "cvt": ("cvt", catalog.REDUCED_ARGS["cvt"]),
          "cvt_13_32": ("cvt_13_32", {}),
          "vit_32": ("vit_32", {})}
RECIPE = dict(flip=True, randaugment=True, random_erasing=0.25, mixup=0.8, cutmix=1.0)


def backbone(name, overrides):
    return backbones.get(name, image_size=32, num_classes=10, **overrides)


def drloc_model(name, overrides, augmentation, lam=None, seed=0):
    keras.utils.set_random_seed(seed)
    lam = catalog.default_lambda(name) if lam is None else lam
    model = DRLocModel(backbone(name, overrides), lam=lam, seed=seed,
                       augmentation=Augmentation(seed=seed, **RECIPE) if augmentation else None)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def before_module(commit):
    """`drloc_keras/pipeline.py` as it was at `commit` (the pipeline before this change)."""
    source = subprocess.run(["git", "show", f"{commit}:drloc_keras/pipeline.py"], cwd=common.ROOT,
                            capture_output=True, text=True, check=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "pipeline_before.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("pipeline_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def before_pipeline(module, x, y, batch_size, seed=0):
    """The old training pipeline with the old augmentation (Keras' own layers, as the old
    `recipe.augmenter` and `recipe.mixers` built them)."""
    augment = keras.layers.Pipeline([
        keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"),
        keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=seed, dtype="float32"),
        keras.layers.RandomErasing(factor=(0.25, 0.25), value_range=(0, 255), seed=seed, dtype="float32"),
    ])
    mixers = [keras.layers.MixUp(alpha=0.8, seed=seed, dtype="float32"),
              keras.layers.CutMix(factor=1.0, seed=seed, dtype="float32")]
    return module.train_dataset(x, y, 10, batch_size, image_size=32, augment=augment, mixers=mixers, seed=seed)


class _EpochClock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


class Fitted:
    """One epoch of `model.fit` per call, continuing the epochs; the time from the epoch's
    start to its end (what each epoch of the program costs: the epoch's iterator, every
    step, the callbacks), without the set-up of the `fit` call itself, which the program
    pays once per run."""

    def __init__(self, model, dataset, epoch_seeds):
        self.model, self.dataset, self.epoch_seeds, self.epoch = model, dataset, epoch_seeds, 0

    def __call__(self):
        clock = _EpochClock()
        self.model.fit(self.dataset, epochs=self.epoch + 1, initial_epoch=self.epoch, verbose=0,
                       callbacks=[self.epoch_seeds, clock], shuffle=False)
        self.epoch += 1
        return clock.seconds


class Resident:
    """`steps` calls of `train_on_batch` on one device-resident batch per call."""

    def __init__(self, model, batch, steps):
        self.model, self.batch, self.steps = model, batch, steps

    def __call__(self):
        start = time.perf_counter()
        for _ in range(self.steps):
            logs = self.model.train_on_batch(*self.batch, return_dict=True)
        if not np.isfinite(logs["loss"]):
            raise FloatingPointError(f"non-finite loss: {logs}")
        return time.perf_counter() - start


# --- The plain PyTorch ViT -------------------------------------------------------------------


def torch_vit(embed_dim, depth, num_heads, mlp_ratio, patch_size=4, image_size=32, num_classes=10,
              dropout=0.1):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            hidden = int(embed_dim * mlp_ratio)
            self.norm1, self.norm2 = nn.LayerNorm(embed_dim, eps=1e-6), nn.LayerNorm(embed_dim, eps=1e-6)
            self.qkv, self.proj = nn.Linear(embed_dim, 3 * embed_dim), nn.Linear(embed_dim, embed_dim)
            self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, embed_dim), nn.Dropout(dropout))
            self.drop = nn.Dropout(dropout)

        def forward(self, x):
            b, n, c = x.shape
            q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4)
            attended = nn.functional.scaled_dot_product_attention(q, k, v)
            x = x + self.drop(self.proj(attended.transpose(1, 2).reshape(b, n, c)))
            return x + self.mlp(self.norm2(x))

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            grid = (image_size // patch_size) ** 2
            self.patches = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)
            self.cls = nn.Parameter(torch.zeros(1, 1, embed_dim))
            self.pos = nn.Parameter(torch.randn(1, grid + 1, embed_dim) * 0.02)
            self.drop = nn.Dropout(dropout)
            self.blocks = nn.Sequential(*[Block() for _ in range(depth)])
            self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
            self.head = nn.Linear(embed_dim, num_classes)

        def forward(self, images):
            x = self.patches(images).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
            x = self.blocks(self.drop(x + self.pos))
            return self.head(self.norm(x[:, 0]))

    return ViT()


class PlainTorch:
    """`steps` plain PyTorch training steps (AdamW, cross-entropy) on one resident batch."""

    def __init__(self, overrides, batch_size, steps, expected_parameters):
        import torch

        torch.manual_seed(0)
        self.torch, self.steps = torch, steps
        self.model = torch_vit(overrides["embed_dim"], overrides["depth"], overrides["num_heads"],
                               overrides["mlp_ratio"])
        self.parameters = sum(p.numel() for p in self.model.parameters())
        if self.parameters != expected_parameters:
            raise AssertionError(f"the PyTorch ViT has {self.parameters} parameters, the Keras one "
                                 f"{expected_parameters}: not the same model")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        rng = np.random.default_rng(0)
        self.images = torch.tensor(rng.normal(size=(batch_size, 3, 32, 32)).astype("float32"))
        self.labels = torch.tensor(rng.integers(0, 10, batch_size))

    def __call__(self):
        torch = self.torch
        self.model.train()
        start = time.perf_counter()
        for _ in range(self.steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(self.model(self.images), self.labels)
            loss.backward()
            self.optimizer.step()
        value = loss.item()  # synchronises
        if not math.isfinite(value):
            raise FloatingPointError("non-finite loss")
        return time.perf_counter() - start


# --- The measurement -------------------------------------------------------------------------


def measure(variants, images_per_call, rounds):
    """One untimed call each (compilation), then `rounds` rounds in a rotating order:
    `{name: images per second (median over rounds)}` and the per-round figures."""
    names = list(variants)
    for name in names:
        variants[name]()
    seconds = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            seconds[name].append(variants[name]())
    return {name: {"images_per_second": images_per_call[name] / statistics.median(s),
                   "seconds": s} for name, s in seconds.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS)[:3], choices=list(MODELS))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--images", type=int, default=1024, help="training images (an epoch)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--before", default="91580ec",
                   help="the git commit of the pipeline before the change; 'none' leaves that variant out")
    p.add_argument("--plain-torch", action=argparse.BooleanOptionalAction, default=True,
                   help="time the plain PyTorch ViT next to the reduced ViT")
    p.add_argument("--output", help="write the figures as JSON here")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.images, 32, 32, 3)).astype("uint8")
    y = rng.integers(0, 10, args.images)
    steps = args.images // args.batch_size
    epoch = steps * args.batch_size
    old = None if args.before == "none" else before_module(args.before)
    results = {"machine": common.machine(), "batch_size": args.batch_size, "epoch_images": epoch,
               "rounds": args.rounds, "before": args.before, "models": {}}
    for label in args.models:
        name, overrides = MODELS[label]
        print(f"--- {label}", flush=True)
        program = drloc_model(name, overrides, augmentation=True)
        ds, seeds = pipeline.train_dataset(x, y, 10, args.batch_size, seed=0)
        onehot = np.eye(10, dtype="float32")[y[:args.batch_size]]
        resident = ({"images": keras.ops.convert_to_tensor(x[:args.batch_size]),
                     "labels": keras.ops.convert_to_tensor(onehot)}, keras.ops.convert_to_tensor(onehot))
        floats = (keras.ops.convert_to_tensor(x[:args.batch_size].astype("float32")),
                  keras.ops.convert_to_tensor(onehot))
        bare = drloc_model(name, overrides, augmentation=False)
        variants = {"program": Fitted(program, ds, seeds)}
        if old is not None:
            plain = drloc_model(name, overrides, augmentation=False)
            variants["before"] = Fitted(plain, *before_pipeline(old, x, y, args.batch_size))
        variants["train_on_batch"] = Resident(program, resident, steps)
        variants["train_on_batch, no augmentation"] = Resident(bare, floats, steps)
        sizes = dict.fromkeys(variants, epoch)
        if name == "vit" and importlib.util.find_spec("torch") is not None and args.plain_torch:
            vit_plain = drloc_model(name, overrides, augmentation=False, lam=0.0)
            count = int(sum(math.prod(v.shape) for v in vit_plain.backbone.trainable_variables))
            variants["keras ViT, lambda 0, no augmentation (train_on_batch)"] = Resident(vit_plain, floats, steps)
            variants["plain PyTorch ViT"] = PlainTorch(overrides, args.batch_size, steps, count)
            sizes.update(dict.fromkeys(list(variants)[-2:], epoch))
        found = measure(variants, sizes, args.rounds)
        for key, value in found.items():
            print(f"  {key:55s} {value['images_per_second']:8.1f} images/s", flush=True)
        ratios = {"program / train_on_batch": (found["program"]["images_per_second"]
                                               / found["train_on_batch"]["images_per_second"])}
        if "before" in found:
            ratios["program / before"] = found["program"]["images_per_second"] / found["before"]["images_per_second"]
        if "plain PyTorch ViT" in found:
            torch_rate = found["plain PyTorch ViT"]["images_per_second"]
            ratios["program / plain PyTorch"] = found["program"]["images_per_second"] / torch_rate
            ratios["keras ViT train_on_batch / plain PyTorch"] = (
                found["keras ViT, lambda 0, no augmentation (train_on_batch)"]["images_per_second"] / torch_rate)
        for key, value in ratios.items():
            print(f"  {key:55s} {value:8.3f}", flush=True)
        results["models"][label] = {"variants": found, "ratios": ratios}
        if args.output:
            common.write_json(args.output, results)
    return results


if __name__ == "__main__":
    main()
