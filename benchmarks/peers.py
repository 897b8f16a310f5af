"""drloc's training step against what a PyTorch user would run instead, and the training
program end to end against its step alone.

Training step. For each architecture size, precision and Keras backend given,
`DRLocModel.train_on_batch` (the family's default lambda; the default head: 64 pairs per
image, an MLP 512 wide, the l1 loss on the absolute offsets |p - q| in grid units, not
normalised, as `DRLocModel`'s defaults) on a batch that already lives on the device, against
PyTorch running the same architecture with a DRLoc head of the same shape written in plain
PyTorch here (same pairs, widths, targets, loss and lambda): eager, and with `torch.compile`
around the forward pass and the loss. The PyTorch backbone is timm's (`vit_small_patch16_224`,
`swin_tiny_patch4_window7_224`, and timm's `VisionTransformer` / `SwinTransformer` classes with
drloc's arguments for the 32x32 sizes; the DRLoc grid is `forward_features` without the class
token); where `import timm` fails, or with `--plain`, it is the plain PyTorch ViT / Swin of this
file, with the widths, depths, heads, windows and dropouts of drloc's backbone (and as many
parameters: each row reports its count), and the rows say so in `peer`. Both sides use AdamW
with the training program's learning rate (5e-4 x batch / 512) and weight decay 0.05 on every
weight, and cross-entropy on random labels. bf16 is Keras' `mixed_bfloat16` policy and
`torch.autocast(dtype=torch.bfloat16)` (float32 weights on both sides). Every row runs in its
own process (KERAS_BACKEND is per process, and a CPU process's peak memory is its peak RSS),
with JAX's persistent compilation cache off. Reported per row:

- images/s: batch / median time of `--steps` timed steps after `--warmup` untimed ones; every
  step ends synchronised (Keras returns its logs as NumPy; PyTorch's loss is read);
- compile seconds: the time of the first step (tracing and compilation);
- MFU: 3 x forward FLOPs per image x images/s over the matrix-product peak of that framework
  and dtype, measured in the row's process after its steps (`common.matmul_peak` on Keras' rows,
  the same measurement through PyTorch on PyTorch's). Forward FLOPs: the backbone's from
  docs/backbones.json (XLA's count) for a registered size, else counted here from its matrix
  products, plus the DRLoc head's. On a busy CPU the peak, and so the MFU, is noisy;
- peak memory: on a GPU the device allocator's peak (`torch.cuda.max_memory_allocated()`,
  JAX's `memory_stats()["peak_bytes_in_use"]`), on a CPU the process's peak RSS;
- each Keras row's images/s over those of the PyTorch eager and `torch.compile` rows of the
  same size and precision.

Sizes: `vit_s16` (drloc's ViT with ViT-S/16's arguments: drloc registers no ViT-S),
`swin_tiny` (224) and `vit_32` (32x32) by default on a GPU; `vit_mini` and `swin_mini`, tiny
32x32 shapes with batch 8 and a few steps, with `--tiny` and by default without a GPU.
torch.compile rows run by default with a GPU only: inductor's C++ build takes minutes per row
on a small CPU (`--compile` asks for them there).

End to end. For one size (`--e2e-size`), per Keras backend, images/s of an epoch (`--steps`
batches) of `model.fit` of the training program's model (`recipe.build_model` and
`compile_model` with the program's default settings for that backbone, its default
`Augmentation` inside the step, uint8 batches from `pipeline.train_dataset`, `EpochSeeds`)
against `train_on_batch` of the same model on one resident batch, and their ratio, timed in
alternating rounds (`--rounds`) with `benchmarks/training_pipeline.py`'s `Fitted`, `Resident`
and `measure` (its model builder is not used: it leaves out the program's crop, input
normalisation and optimizer). JAX's compilation cache is on there, as in the program, in a new
empty folder: `train_on_batch` passes its batch with another structure than `fit` and
retraces, and the cache spares it a second compilation of the same program. The first-call
seconds are reported apart. The program trains at 32x32, so the default size is a 32x32 ViT.

    python benchmarks/peers.py --output docs/benchmarks/peers-gpu.json    # on a GPU
    python benchmarks/peers.py --tiny --no-compile --backends jax         # a CPU check
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PEAK_DTYPE = {"float32": "float32", "bf16": "bfloat16"}
LEARNING_RATE = 5e-4  # the training program's --lr, for batch 512
WEIGHT_DECAY = 0.05
SAMPLE_SIZE, HIDDEN = 64, 512  # drloc's default head (drloc_ref.SAMPLE_SIZE, HIDDEN)
PLAIN_PEER = "plain PyTorch (timm not importable)"

# Architecture sizes. `config` is the whole constructor configuration given to drloc's
# backbone (`backbones.get(family, image_size=..., **config)`) and to the PyTorch peer;
# `registry` names the drloc size it equals (its FLOPs are in docs/backbones.json).
VIT_S16 = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0, dropout_rate=0.1,
               drop_path_rate=0.0)
SIZES = {
    "vit_s16": dict(family="vit", image_size=224, num_classes=1000, config=VIT_S16,
                    timm="vit_small_patch16_224", registry=None),
    "swin_tiny": dict(family="swin", image_size=224, num_classes=1000,
                      config=dict(patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                                  window_size=7, mlp_ratio=4.0, dropout_rate=0.0, drop_path_rate=0.2),
                      timm="swin_tiny_patch4_window7_224", registry="swin_tiny"),
    "vit_32": dict(family="vit", image_size=32, num_classes=10,
                   config=dict(patch_size=4, embed_dim=192, depth=9, num_heads=12, mlp_ratio=2.0, dropout_rate=0.0,
                               drop_path_rate=0.1),
                   timm=None, registry="vit_32"),
    # Tiny shapes for a CPU: the same code paths in seconds.
    "vit_mini": dict(family="vit", image_size=32, num_classes=10,
                     config=dict(patch_size=4, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.0, dropout_rate=0.0,
                                 drop_path_rate=0.1),
                     timm=None, registry=None),
    "swin_mini": dict(family="swin", image_size=32, num_classes=10,
                      config=dict(patch_size=4, embed_dim=32, depths=[2, 2], num_heads=[1, 2], window_size=4,
                                  mlp_ratio=4.0, dropout_rate=0.0, drop_path_rate=0.1),
                      timm=None, registry=None),
}
GPU_SIZES, TINY_SIZES = ["vit_s16", "swin_tiny", "vit_32"], ["vit_mini", "swin_mini"]
GPU_SETTINGS = dict(batch_size=128, steps=20, warmup=5, rounds=3, e2e_size="vit_32")
TINY_SETTINGS = dict(batch_size=8, steps=5, warmup=2, rounds=3, e2e_size="vit_mini")


def learning_rate(batch_size):
    return LEARNING_RATE * batch_size / 512


def grid_shape(size):
    """`(height, width, channels)` of the DRLoc grid (the last feature map) of a size."""
    spec = SIZES[size]
    c = spec["config"]
    side = spec["image_size"] // c["patch_size"]
    if spec["family"] == "vit":
        return side, side, c["embed_dim"]
    stages = len(c["depths"])
    return side // 2 ** (stages - 1), side // 2 ** (stages - 1), c["embed_dim"] * 2 ** (stages - 1)


def stage_windows(stage_side, window_size):
    """(window, shift) of a Swin stage: the window shrinks to a stage no larger than it (as drloc's)."""
    if stage_side <= window_size:
        return stage_side, 0
    return window_size, window_size // 2


# --- FLOPs ----------------------------------------------------------------------------------


def counted_forward_flops(size):
    """Forward FLOPs per image of the backbone, from its matrix products (2 per multiply-add)."""
    spec = SIZES[size]
    c, image, classes = spec["config"], spec["image_size"], spec["num_classes"]
    p, dim = c["patch_size"], c["embed_dim"]
    side = image // p
    macs = side * side * 3 * p * p * dim
    if spec["family"] == "vit":
        t, hidden = side * side + 1, int(dim * c["mlp_ratio"])
        macs += c["depth"] * (t * 4 * dim * dim + 2 * t * t * dim + 2 * t * dim * hidden)
    else:
        for stage, depth in enumerate(c["depths"]):
            if stage > 0:
                side //= 2
                macs += side * side * 4 * (dim // 2) * dim  # patch merging
            window, _ = stage_windows(side, c["window_size"])
            tokens = side * side
            macs += depth * (tokens * 4 * dim * dim + 2 * tokens * window * window * dim
                             + 2 * tokens * dim * int(dim * c["mlp_ratio"]))
            dim *= 2
        dim //= 2
    return 2.0 * (macs + dim * classes)


def head_forward_flops(size):
    """Forward FLOPs per image of the DRLoc head (m pairs through the 3-layer MLP)."""
    channels = grid_shape(size)[2]
    return 2.0 * SAMPLE_SIZE * (2 * channels * HIDDEN + HIDDEN * HIDDEN + 2 * HIDDEN)


def forward_flops(size, known):
    """`(forward FLOPs per image with the head, where the backbone's figure comes from)`."""
    registry = SIZES[size]["registry"]
    if registry and known.get(registry):
        backbone, source = known[registry] * 1e9, "docs/backbones.json (XLA)"
    else:
        backbone, source = counted_forward_flops(size), "matrix products"
    return backbone + head_forward_flops(size), source


# --- Children: one measurement each ------------------------------------------------------


def child_keras(job):
    """`train_on_batch` of drloc's `DRLocModel` on a resident batch."""
    import keras
    import numpy as np

    from benchmarks import common
    from drloc_keras import DRLocModel, backbones

    spec, batch_size = SIZES[job["size"]], job["batch_size"]
    if job["precision"] == "bf16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        backbone = backbones.get(spec["family"], image_size=spec["image_size"], num_classes=spec["num_classes"],
                                 **spec["config"])
        model = DRLocModel(backbone, lam=job["lam"], seed=0)
        model.compile(optimizer=keras.optimizers.AdamW(learning_rate(batch_size), weight_decay=WEIGHT_DECAY,
                                                       epsilon=1e-8), metrics=[])
    finally:
        keras.config.set_dtype_policy("float32")
    rng = np.random.default_rng(0)
    side = spec["image_size"]
    batch = (common.to_device(rng.normal(size=(batch_size, side, side, 3)).astype("float32")),
             common.to_device(rng.integers(0, spec["num_classes"], batch_size).astype("int32")))
    compile_seconds = common.timed_step(model, batch)
    for _ in range(job["warmup"]):
        common.step(model, batch)
    times = [common.timed_step(model, batch) for _ in range(job["steps"])]
    memory, what = common.peak_memory_bytes()
    parameters = int(sum(math.prod(v.shape) for v in model.trainable_variables))
    peak = common.matmul_peak(PEAK_DTYPE[job["precision"]], n=job["peak_n"])  # after the memory: its operands
    return {"times": times, "compile_seconds": compile_seconds, "peak_memory_bytes": memory, "memory_what": what,
            "parameters": parameters, "peak_flops": peak, "machine": common.machine()}


def child_end_to_end(job):
    """An epoch of the training program's `fit` against `train_on_batch` on a resident batch."""
    import keras
    import numpy as np

    from benchmarks import training_pipeline
    from drloc_keras import compilation_cache, options, pipeline, recipe

    compilation_cache.enable()  # as the program; the parent gives a new, empty folder

    spec, batch_size, steps = SIZES[job["size"]], job["batch_size"], job["steps"]
    args, _ = options.parse(["--backbone", spec["family"], "--image-size", str(spec["image_size"]),
                             "--batch-size", str(batch_size), "--backbone-args", json.dumps(spec["config"])])
    rng = np.random.default_rng(0)
    n, side, classes = steps * batch_size, spec["image_size"], spec["num_classes"]
    x = rng.integers(0, 256, (n, side, side, 3)).astype("uint8")
    y = rng.integers(0, classes, n)
    stats = recipe.channel_statistics(x) if args.input_normalization != "none" else None
    model = recipe.build_model(args, classes, steps, stats)
    recipe.compile_model(model, args, steps, classes)
    dataset, epoch_seeds = pipeline.train_dataset(x, y, classes, batch_size, image_size=side, seed=args.seed)
    onehot = np.eye(classes, dtype="float32")[y[:batch_size]]
    resident = ({"images": keras.ops.convert_to_tensor(x[:batch_size]), "labels": keras.ops.convert_to_tensor(onehot)},
                keras.ops.convert_to_tensor(onehot))
    first = {}

    def recording(name, variant):
        def call():
            seconds = variant()
            first.setdefault(name, seconds)  # measure's first, untimed call: tracing and compilation
            return seconds
        return call

    variants = {"fit": recording("fit", training_pipeline.Fitted(model, dataset, epoch_seeds)),
                "train_on_batch": recording("train_on_batch", training_pipeline.Resident(model, resident, steps))}
    found = training_pipeline.measure(variants, dict.fromkeys(variants, n), job["rounds"])
    augmentation = {k: getattr(args, k) for k in ("flip", "crop", "randaugment", "random_erasing", "mixup", "cutmix")}
    return {"found": found, "first_call_seconds": first, "epoch_images": n, "augmentation": augmentation}


def child_torch(job):
    """The PyTorch peer's training step (backbone, plain PyTorch DRLoc head, AdamW)."""
    import torch

    torch.manual_seed(0)
    spec, batch_size = SIZES[job["size"]], job["batch_size"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone, peer = torch_backbone(job["size"], job["plain"])
    height, width, channels = grid_shape(job["size"])
    model = torch_classes()["TorchDRLoc"](backbone, channels, height, width, job["lam"]).to(device)
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate(batch_size), weight_decay=WEIGHT_DECAY,
                                  eps=1e-8)
    forward = torch.compile(model) if job["compile"] else model
    side = spec["image_size"]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, side, side, generator=generator).to(device)
    labels = torch.randint(0, spec["num_classes"], (batch_size,), generator=generator).to(device)
    bf16 = job["precision"] == "bf16"
    model.train()

    def timed_step():
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = forward(images, labels)
        loss.backward()
        optimizer.step()
        value = loss.item()  # synchronises
        seconds = time.perf_counter() - start
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite loss {value}")
        return seconds

    compile_seconds = timed_step()
    for _ in range(job["warmup"]):
        timed_step()
    times = [timed_step() for _ in range(job["steps"])]
    if device == "cuda":
        memory, what = int(torch.cuda.max_memory_allocated()), "device allocator peak (torch.cuda)"
    else:
        import resource

        memory, what = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process peak RSS"
    peak = torch_matmul_peak(PEAK_DTYPE[job["precision"]], job["peak_n"])
    name = f"gpu: {torch.cuda.get_device_name(0)}" if device == "cuda" else "cpu"
    machine = {"torch": torch.__version__, "device": name, "threads": torch.get_num_threads(),
               "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    return {"times": times, "compile_seconds": compile_seconds, "peak_memory_bytes": memory, "memory_what": what,
            "parameters": int(parameters), "peer": peer, "peak_flops": peak, "machine": machine}


def torch_matmul_peak(dtype, n=None, repeats=10):
    """PyTorch's matrix-product rate in FLOP/s, as `common.matmul_peak` measures it on the torch
    backend (`benchmarks.peak`), without importing Keras into the measured process."""
    from benchmarks import peak

    run, n = peak.torch_product(dtype, n)
    return peak.rate(run, n, repeats)


CHILDREN = {"keras": child_keras, "torch": child_torch, "end_to_end": child_end_to_end}


# --- The PyTorch peers -----------------------------------------------------------------------


def torch_backbone(size, plain):
    """`(module mapping NCHW images to (logits, grid [B, H, W, C]), peer label)`."""
    if not plain:
        try:
            import timm  # noqa: F401
        except Exception:  # noqa: BLE001 (a broken torchvision raises RuntimeError, not ImportError)
            plain = None
    if plain is False:
        return torch_classes()["TimmBackbone"](timm_model(size), grid_shape(size)), "timm"
    spec = SIZES[size]
    build = torch_classes()["PlainViT" if spec["family"] == "vit" else "PlainSwin"]
    return (build(spec["image_size"], spec["num_classes"], **spec["config"]),
            "plain PyTorch (--plain)" if plain else PLAIN_PEER)


def timm_model(size):
    import timm

    spec = SIZES[size]
    c = dict(spec["config"])
    rates = dict(drop_path_rate=c.pop("drop_path_rate"))
    dropout = c.pop("dropout_rate")
    if spec["family"] == "vit":
        rates.update(drop_rate=dropout, pos_drop_rate=dropout, proj_drop_rate=dropout)
    else:
        rates.update(drop_rate=dropout, proj_drop_rate=dropout)
    if spec["timm"]:
        return timm.create_model(spec["timm"], num_classes=spec["num_classes"], **rates)
    if spec["family"] == "vit":
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(img_size=spec["image_size"], num_classes=spec["num_classes"], **c, **rates)
    from timm.models.swin_transformer import SwinTransformer

    return SwinTransformer(img_size=spec["image_size"], num_classes=spec["num_classes"], **c, **rates)


_CLASSES = {}


def torch_classes():
    """The PyTorch modules of the peers, defined on first use (this module imports without torch)."""
    if _CLASSES:
        return _CLASSES
    import torch
    from torch import nn

    functional = nn.functional

    class DropPath(nn.Module):
        def __init__(self, rate):
            super().__init__()
            self.rate = rate

        def forward(self, x):
            if not self.training or self.rate == 0:
                return x
            keep = 1.0 - self.rate
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
            return x * mask / keep

    class Mlp(nn.Sequential):
        def __init__(self, dim, hidden, dropout):
            super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                             nn.Dropout(dropout))

    class ViTBlock(nn.Module):
        def __init__(self, dim, heads, mlp_ratio, dropout, drop_path):
            super().__init__()
            self.heads = heads
            self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.proj_drop = nn.Dropout(dropout)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)
            self.drop_path = DropPath(drop_path)

        def forward(self, x):
            b, n, c = x.shape
            q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            attended = functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
            x = x + self.drop_path(self.proj_drop(self.proj(attended)))
            return x + self.drop_path(self.mlp(self.norm2(x)))

    class PlainViT(nn.Module):
        """Patch convolution, class token, position embedding, pre-norm blocks; drloc's ViT."""

        def __init__(self, image_size, num_classes, patch_size, embed_dim, depth, num_heads, mlp_ratio,
                     dropout_rate, drop_path_rate):
            super().__init__()
            self.side = image_size // patch_size
            self.patches = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)
            self.cls = nn.Parameter(torch.randn(1, 1, embed_dim))
            self.pos = nn.Parameter(torch.randn(1, self.side * self.side + 1, embed_dim))
            self.drop = nn.Dropout(dropout_rate)
            rates = torch.linspace(0, drop_path_rate, depth).tolist()
            self.blocks = nn.Sequential(*[ViTBlock(embed_dim, num_heads, mlp_ratio, dropout_rate, r) for r in rates])
            self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
            self.head = nn.Linear(embed_dim, num_classes)

        def forward(self, images):
            x = self.patches(images).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(len(x), -1, -1).to(x.dtype), x], dim=1)
            x = self.blocks(self.drop(x + self.pos))
            grid = x[:, 1:].reshape(len(x), self.side, self.side, x.shape[-1])
            return self.head(self.norm(x[:, 0])), grid

    def relative_index(window):
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        d = coords[:, :, None] - coords[:, None, :] + window - 1
        return (d[0] * (2 * window - 1) + d[1]).reshape(-1)

    def shift_mask(side, window, shift):
        labels = torch.zeros(side, side)
        edges = [0, side - window, side - shift, side]
        for i in range(3):
            for j in range(3):
                labels[edges[i]:edges[i + 1], edges[j]:edges[j + 1]] = 3 * i + j
        windows = labels.reshape(side // window, window, side // window, window).permute(0, 2, 1, 3)
        windows = windows.reshape(-1, window * window)
        return (windows[:, :, None] != windows[:, None, :]).float() * -100.0

    class SwinBlock(nn.Module):
        def __init__(self, dim, heads, side, window, shift, mlp_ratio, dropout, drop_path):
            super().__init__()
            self.dim, self.heads, self.window, self.shift = dim, heads, window, shift
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.proj_drop = nn.Dropout(dropout)
            self.table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.02)
            self.register_buffer("index", relative_index(window), persistent=False)
            mask = shift_mask(side, window, shift) if shift else None
            self.register_buffer("mask", mask, persistent=False)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)
            self.drop_path = DropPath(drop_path)

        def attention(self, x):
            b, h, w, c = x.shape
            s, n = self.window, self.window ** 2
            windows = x.reshape(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, c)
            q, k, v = self.qkv(windows).reshape(-1, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            bias = self.table[self.index].reshape(n, n, self.heads).permute(2, 0, 1)
            if self.mask is not None:  # [windows, heads, N, N] for each image
                bias = (bias[None] + self.mask[:, None]).unsqueeze(0).expand(b, -1, -1, -1, -1)
                bias = bias.reshape(-1, self.heads, n, n)
            out = functional.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
            out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(-1, n, c)))
            return out.reshape(b, h // s, w // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)

        def forward(self, x):  # [B, H, W, C]
            y = self.norm1(x)
            if self.shift:
                y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
            y = self.attention(y)
            if self.shift:
                y = torch.roll(y, (self.shift, self.shift), (1, 2))
            x = x + self.drop_path(y)
            return x + self.drop_path(self.mlp(self.norm2(x)))

    class PatchMerging(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.norm, self.reduction = nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim, bias=False)

        def forward(self, x):
            x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
            return self.reduction(self.norm(x))

    class PlainSwin(nn.Module):
        """Patch convolution and norm, (shifted) window attention stages, patch merging; drloc's Swin."""

        def __init__(self, image_size, num_classes, patch_size, embed_dim, depths, num_heads, window_size,
                     mlp_ratio, dropout_rate, drop_path_rate):
            super().__init__()
            self.patches = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)
            self.patch_norm, self.drop = nn.LayerNorm(embed_dim), nn.Dropout(dropout_rate)
            rates = iter(torch.linspace(0, drop_path_rate, sum(depths)).tolist())
            side, dim, layers = image_size // patch_size, embed_dim, []
            for stage, (depth, heads) in enumerate(zip(depths, num_heads)):
                if stage > 0:
                    layers.append(PatchMerging(dim))
                    side, dim = side // 2, dim * 2
                window, shift = stage_windows(side, window_size)
                layers += [SwinBlock(dim, heads, side, window, shift if i % 2 else 0, mlp_ratio, dropout_rate,
                                     next(rates)) for i in range(depth)]
            self.stages = nn.Sequential(*layers)
            self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

        def forward(self, images):
            x = self.drop(self.patch_norm(self.patches(images).permute(0, 2, 3, 1)))
            grid = self.stages(x)
            return self.head(self.norm(grid).mean(dim=(1, 2))), grid

    class TimmBackbone(nn.Module):
        """A timm model as `(logits, grid)`: its `forward_features`, the grid without prefix tokens."""

        def __init__(self, model, grid):
            super().__init__()
            self.model, self.grid = model, grid

        def forward(self, images):
            features = self.model.forward_features(images)
            logits = self.model.forward_head(features)
            if features.ndim == 3:  # ViT tokens: drop the class token, reshape to the patch grid
                features = features[:, getattr(self.model, "num_prefix_tokens", 1):]
            return logits, features.reshape(len(images), *self.grid)

    class TorchDRLoc(nn.Module):
        """Cross-entropy + lambda x DRLoc l1, with drloc's default head: `m` uniform pairs per image,
        `concat(F[p], F[q])` -> Linear 512, ReLU, Linear 512, ReLU, Linear 2 against |p - q|."""

        def __init__(self, backbone, channels, height, width, lam, m=SAMPLE_SIZE, hidden=HIDDEN):
            super().__init__()
            self.backbone, self.lam, self.m, self.height, self.width = backbone, lam, m, height, width
            self.mlp = nn.Sequential(nn.Linear(2 * channels, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2))

        def forward(self, images, labels):
            logits, grid = self.backbone(images)
            b, h, w, c = grid.shape
            limits = torch.tensor([h, w], device=grid.device)
            p, q = (torch.floor(torch.rand(2, b, self.m, 2, device=grid.device) * limits).long())
            flat = grid.reshape(b * h * w, c)
            offset = (torch.arange(b, device=grid.device) * (h * w))[:, None]
            pairs = torch.cat([flat[offset + p[..., 0] * w + p[..., 1]], flat[offset + q[..., 0] * w + q[..., 1]]], -1)
            drloc = (self.mlp(pairs).float() - (p - q).abs().float()).abs().mean()
            return functional.cross_entropy(logits.float(), labels) + self.lam * drloc

    _CLASSES.update(TimmBackbone=TimmBackbone, PlainViT=PlainViT, PlainSwin=PlainSwin, TorchDRLoc=TorchDRLoc)
    return _CLASSES


# --- The parent -----------------------------------------------------------------------------


def run_child(job, backend, timeout):
    """Run one measurement in a new process (KERAS_BACKEND=`backend`); its `RESULT {json}` line,
    or `{"error": ...}`. JAX's persistent compilation cache is off there, so that the first step
    compiles, except end to end, where it is on as in the program, in a new empty folder."""
    import shutil
    import tempfile

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", DRLOC_COMPILATION_CACHE="off")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    cache = None
    if job["kind"] == "end_to_end":
        cache = env["DRLOC_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="drloc-peers-cache-")
    if backend:
        env["KERAS_BACKEND"] = backend
    argv = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(job)]
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[len("RESULT "):]), "process_seconds": time.perf_counter() - start}
    return {"error": f"exit status {done.returncode}: {(done.stderr or done.stdout)[-3000:]}"}


def gpu_present():
    """Whether PyTorch sees a GPU, asked in a short child process (this one imports no framework)."""
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() == "True"


def known_gflops():
    """`common.known_gflops()` (docs/backbones.json's forward GFLOPs per size), read without Keras."""
    with open(os.path.join(ROOT, "docs", "backbones.json")) as f:
        return {row["name"]: row["gflops"] for row in json.load(f)["rows"]}


def describe(row):
    if row["framework"] == "pytorch":
        return f"PyTorch {row['mode']}"
    return f"Keras ({row['framework'].split('-')[1]})"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", metavar="SIZE",
                   help=f"architectures, of {', '.join(SIZES)} (default: {' '.join(GPU_SIZES)} on a GPU, "
                        f"{' '.join(TINY_SIZES)} with --tiny or without a GPU)")
    p.add_argument("--tiny", action="store_true",
                   help=f"tiny shapes and few steps for a CPU: sizes {' '.join(TINY_SIZES)}, "
                        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in TINY_SETTINGS.items()))
    p.add_argument("--backends", nargs="+", default=["jax", "torch"], metavar="NAME", help="Keras backends (jax, torch)")
    p.add_argument("--precisions", nargs="+", default=["float32", "bf16"], metavar="NAME", help="float32, bf16")
    p.add_argument("--batch-size", type=int, help=f"images per step (default {GPU_SETTINGS['batch_size']}; "
                                                  f"{TINY_SETTINGS['batch_size']} with --tiny)")
    p.add_argument("--steps", type=int, help="timed steps per row, and steps per epoch end to end (default "
                                             f"{GPU_SETTINGS['steps']}; {TINY_SETTINGS['steps']} with --tiny)")
    p.add_argument("--warmup", type=int, help="untimed steps after the first (default "
                                              f"{GPU_SETTINGS['warmup']}; {TINY_SETTINGS['warmup']} with --tiny)")
    p.add_argument("--rounds", type=int, help="end to end: alternating rounds of an epoch each (default 3)")
    p.add_argument("--e2e-size", help="the size timed end to end, or 'none' (default vit_32; vit_mini with --tiny)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="the torch.compile rows (default: with a GPU; --no-compile leaves them out, and they are "
                        "left out on a CPU unless --compile is given: inductor's C++ build takes minutes a row there)")
    p.add_argument("--plain", action="store_true", help="the plain PyTorch peers of this file even where timm imports")
    p.add_argument("--child-timeout", type=float, default=1800, help="seconds per measurement process")
    p.add_argument("--output", help="JSON file for the results")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return p, args
    for name, values, allowed in (("--backends", args.backends, ("jax", "torch")),
                                  ("--precisions", args.precisions, tuple(PEAK_DTYPE)),
                                  ("--sizes", args.sizes or [], tuple(SIZES))):
        bad = [v for v in values if v not in allowed]
        if bad or len(set(values)) != len(values):
            p.error(f"{name}: {' '.join(bad) if bad else 'a value is repeated'}; choose from {', '.join(allowed)}")
    for name, minimum in (("batch_size", 1), ("steps", 1), ("warmup", 0), ("rounds", 1)):
        value = getattr(args, name)
        if value is not None and value < minimum:
            p.error(f"--{name.replace('_', '-')} must be >= {minimum}; found {value}")
    if args.e2e_size is not None and args.e2e_size not in (*SIZES, "none"):
        p.error(f"--e2e-size: {args.e2e_size}; choose from {', '.join(SIZES)} or none")
    if args.child_timeout <= 0:
        p.error(f"--child-timeout must be > 0; found {args.child_timeout}")
    return p, args


def main(argv=None):
    _, args = parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        print("RESULT " + json.dumps(CHILDREN[job["kind"]](job)), flush=True)
        return None
    from drloc_keras import catalog  # the registry only: no Keras in this process

    started = time.perf_counter()
    gpu = None if args.tiny else gpu_present()  # the defaults depend on it
    if gpu is not None:
        print(f"{'a' if gpu else 'no'} GPU: the defaults for {'it' if gpu else 'a CPU (--tiny)'}", flush=True)
    tiny = args.tiny or not gpu
    settings = TINY_SETTINGS if tiny else GPU_SETTINGS
    for key, value in settings.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    sizes = args.sizes or (TINY_SIZES if tiny else GPU_SIZES)
    if args.compile is None:
        args.compile = bool(gpu)
    known = known_gflops()
    # --tiny: a smaller matrix product for the peak, enough for a CPU (else common.matmul_peak's size)
    peak_n = 1024 if args.tiny else None
    peers_plain = args.plain
    common_job = dict(batch_size=args.batch_size, steps=args.steps, warmup=args.warmup, peak_n=peak_n)

    rows, errors, machines = [], [], {}
    for size in sizes:
        spec = SIZES[size]
        lam = catalog.default_lambda(spec["family"])
        flops, source = forward_flops(size, known)
        for precision in args.precisions:
            runs = [("keras-" + b, b, {"kind": "keras"}, "train_on_batch") for b in args.backends]
            runs.append(("pytorch", "torch", {"kind": "torch", "compile": False, "plain": peers_plain}, "eager"))
            if args.compile:
                runs.append(("pytorch", "torch", {"kind": "torch", "compile": True, "plain": peers_plain},
                             "torch.compile"))
            for framework, backend, extra, mode in runs:
                label = f"{size} {precision} {framework} {mode}"
                print(f"{label} ...", flush=True)
                job = {**common_job, **extra, "size": size, "precision": precision, "lam": lam}
                found = run_child(job, backend, args.child_timeout)
                if "error" in found:
                    print(f"  failed: {found['error'][-500:]}", flush=True)
                    errors.append({"row": label, "error": found["error"]})
                    continue
                machines.setdefault(framework, found.pop("machine"))
                median = statistics.median(found.pop("times"))
                images_per_s = args.batch_size / median
                peak = found.pop("peak_flops")
                achieved = 3 * flops * images_per_s
                row = {"size": size, "family": spec["family"], "image_size": spec["image_size"],
                       "batch_size": args.batch_size, "precision": precision, "framework": framework, "mode": mode,
                       "peer": found.pop("peer", None), "lambda": lam, "step_median_s": median,
                       "images_per_s": images_per_s, "forward_gflops_per_image": flops / 1e9, "flops_source": source,
                       "achieved_tflops": achieved / 1e12, "peak_tflops": peak / 1e12, "mfu": achieved / peak, **found}
                rows.append(row)
                print(f"  {images_per_s:.1f} images/s, compile {row['compile_seconds']:.1f} s, "
                      f"MFU {row['mfu']:.2%}, peak {row['peak_memory_bytes'] / 2**20:.0f} MiB "
                      f"(process: {row['process_seconds']:.0f} s)", flush=True)
    for row in rows:
        if row["framework"] == "pytorch":
            continue
        for mode, key in (("eager", "vs_pytorch_eager"), ("torch.compile", "vs_torch_compile")):
            peer = next((r for r in rows if r["framework"] == "pytorch" and r["mode"] == mode
                         and r["size"] == row["size"] and r["precision"] == row["precision"]), None)
            row[key] = row["images_per_s"] / peer["images_per_s"] if peer else None
        same = [r["parameters"] for r in rows if r["framework"] == "pytorch" and r["size"] == row["size"]]
        if any(count != row["parameters"] for count in same):
            print(f"note: {row['size']}: {row['parameters']:,} parameters in Keras, {same} in PyTorch", flush=True)

    end_to_end = []
    if args.e2e_size != "none":
        spec = SIZES[args.e2e_size]
        for backend in args.backends:
            print(f"end to end: {args.e2e_size} on {backend} ...", flush=True)
            job = {**common_job, "kind": "end_to_end", "size": args.e2e_size, "rounds": args.rounds}
            found = run_child(job, backend, args.child_timeout)
            if "error" in found:
                print(f"  failed: {found['error'][-500:]}", flush=True)
                errors.append({"row": f"end to end {args.e2e_size} {backend}", "error": found["error"]})
                continue
            fit, resident = found["found"]["fit"], found["found"]["train_on_batch"]
            end_to_end.append({
                "size": args.e2e_size, "image_size": spec["image_size"], "backend": backend,
                "batch_size": args.batch_size, "epoch_images": found["epoch_images"], "rounds": args.rounds,
                "augmentation": found["augmentation"],
                "fit_images_per_s": fit["images_per_second"], "fit_epoch_seconds": fit["seconds"],
                "train_on_batch_images_per_s": resident["images_per_second"],
                "train_on_batch_seconds": resident["seconds"],
                "fit_over_train_on_batch": fit["images_per_second"] / resident["images_per_second"],
                "first_call_seconds": found["first_call_seconds"]})

    print()
    print("| size | input | precision | framework | peer | images/s | MFU | compile (s) | peak memory (MiB) | "
          "vs PyTorch eager | vs torch.compile |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratios = [f"{r[k]:.2f}x" if r.get(k) else "-" for k in ("vs_pytorch_eager", "vs_torch_compile")]
        print(f"| {r['size']} | {r['image_size']} | {r['precision']} | {describe(r)} | {r['peer'] or 'drloc'} | "
              f"{r['images_per_s']:.1f} | {r['mfu']:.2%} | {r['compile_seconds']:.1f} | "
              f"{r['peak_memory_bytes'] / 2**20:.0f} | {ratios[0]} | {ratios[1]} |")
    if end_to_end:
        print()
        print("| size | backend | fit images/s | train_on_batch images/s | fit / train_on_batch | first epoch (s) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in end_to_end:
            print(f"| {r['size']} | {r['backend']} | {r['fit_images_per_s']:.1f} | "
                  f"{r['train_on_batch_images_per_s']:.1f} | {r['fit_over_train_on_batch']:.2f} | "
                  f"{r['first_call_seconds']['fit']:.1f} |")
    memory = {r["memory_what"] for r in rows}
    print(f"\npeak memory: {', '.join(sorted(memory)) or '-'}; wall time {time.perf_counter() - started:.0f} s")
    for error in errors:
        print(f"error: {error['row']} failed", file=sys.stderr)
    if args.output:
        payload = {"settings": {k: v for k, v in vars(args).items() if k != "child"}, "sizes": sizes,
                   "machines": machines,
                   "rows": rows, "end_to_end": end_to_end, "errors": errors}
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(payload, f, indent=1)
        print(f"wrote {args.output}")
    if errors:
        sys.exit(1)
    return rows, end_to_end


if __name__ == "__main__":
    main()
