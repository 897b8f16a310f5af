"""timm's own augmentation code, the reference `drloc_keras.augmentation` is tested against.

timm's package `__init__` imports torchvision, which the test environments do not have (or
cannot load beside the CPU build of torch). The three files the authors' recipe runs,
`timm/data/auto_augment.py` (Pillow only), `timm/data/mixup.py` and
`timm/data/random_erasing.py` (torch), import no other part of timm, so they are loaded
here straight from the installed files, under private module names, without importing
`timm` itself. The random resized crop lives in `timm/data/transforms.py`, which imports
torchvision: its `get_params` is copied below (`resized_crop_params`).

The `record_*` functions run timm's own sampling code many times, with Python's `random`
and NumPy's global generator seeded (and restored afterwards), and return what it drew.
"""

import contextlib
import importlib.metadata
import importlib.util
import math
import random
import sys

import numpy as np


def timm_data_folder():
    """The installed `timm/data` folder, found from the distribution's metadata (finding
    it through `importlib.util.find_spec("timm.data")` would import `timm`)."""
    try:
        folder = importlib.metadata.distribution("timm").locate_file("timm/data")
    except importlib.metadata.PackageNotFoundError as error:
        raise ImportError("timm is not installed: it is a test dependency (the `test` extra)") from error
    if not (folder / "auto_augment.py").is_file():
        raise ImportError(f"timm's data folder has no auto_augment.py: {folder}")
    return folder


def load(name):
    """timm's `timm/data/{name}.py` as a module named `_timm_reference_{name}`."""
    module_name = f"_timm_reference_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, timm_data_folder() / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


@contextlib.contextmanager
def seeded(seed, with_torch=False):
    """Python's `random` and NumPy's global generator (and torch's, `with_torch`) seeded
    with `seed`, restored after."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    if with_torch:
        import torch

        torch_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if with_torch:
            torch.random.set_rng_state(torch_state)


def level_args(name, magnitude, negate, hparams=None):
    """timm's arguments of RandAugment operation `name` at `magnitude` (its
    `LEVEL_TO_ARG[name]`), with the random sign forced to `negate`."""
    auto_augment = load("auto_augment")
    level_fn = auto_augment.LEVEL_TO_ARG[name]
    if level_fn is None:
        return ()
    original = auto_augment._randomly_negate
    auto_augment._randomly_negate = (lambda v: -v) if negate else (lambda v: v)
    try:
        return level_fn(magnitude, dict(hparams or {}))
    finally:
        auto_augment._randomly_negate = original


def resized_crop_params(height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """`(top, left, h, w)`: timm's `RandomResizedCropAndInterpolation.get_params`
    (timm/data/transforms.py, timm 1.0), itself torchvision's `RandomResizedCrop.get_params`
    (torchvision/transforms/transforms.py), copied line for line with Python's `random`."""
    area = width * height
    for _ in range(10):
        target_area = random.uniform(*scale) * area
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        aspect_ratio = math.exp(random.uniform(*log_ratio))
        target_w = int(round(math.sqrt(target_area * aspect_ratio)))
        target_h = int(round(math.sqrt(target_area / aspect_ratio)))
        if target_w <= width and target_h <= height:
            i = random.randint(0, height - target_h)
            j = random.randint(0, width - target_w)
            return i, j, target_h, target_w
    # Fallback to central crop
    in_ratio = width / height
    if in_ratio < min(ratio):
        target_w = width
        target_h = int(round(target_w / min(ratio)))
    elif in_ratio > max(ratio):
        target_h = height
        target_w = int(round(target_h * max(ratio)))
    else:  # whole image
        target_w = width
        target_h = height
    return (height - target_h) // 2, (width - target_w) // 2, target_h, target_w


def record_resized_crops(count, seed, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """`resized_crop_params` run `count` times: arrays `top`, `left`, `height`, `width`."""
    with seeded(seed):
        boxes = np.array([resized_crop_params(height, width, scale, ratio) for _ in range(count)])
    return dict(zip(("top", "left", "height", "width"), boxes.T))


class _RecordedOp:
    """One of timm's `AugmentOp`s that records its draws instead of transforming: the image
    is a list of records, one per operation the op is called for (`applied` false when
    timm's coin skips it)."""

    def __init__(self, op):
        self.op, self.name = op, op.name
        op.aug_fn = self._record_arguments
        if op.level_fn is not None:
            level_fn = op.level_fn

            def record_magnitude(magnitude, hparams):
                self._current["magnitude"] = magnitude
                return level_fn(magnitude, hparams)

            op.level_fn = record_magnitude

    def _record_arguments(self, img, *level_args, **kwargs):
        self._current.update(applied=True, args=level_args, kwargs=kwargs)
        return img

    def __call__(self, img):
        self._current = {"name": self.name, "applied": False, "magnitude": None, "args": ()}
        img.append(self._current)
        return self.op(img)


def record_rand_augment(count, seed, policy="rand-m9-mstd0.5-inc1", hparams=None):
    """timm's `rand_augment_transform(policy, hparams)` called on `count` images: for each
    image the list of its `num_ops` records `{"name", "applied", "magnitude", "args"}`."""
    auto_augment = load("auto_augment")
    transform = auto_augment.rand_augment_transform(policy, dict(hparams or {"img_mean": (128, 128, 128)}))
    transform.ops = [_RecordedOp(op) for op in transform.ops]
    with seeded(seed):
        return [transform([]) for _ in range(count)]


def record_erasing(count, seed, height, width, probability=0.25, chunk=1000):
    """timm's `RandomErasing(probability, mode="pixel", device="cpu")` run on `count` zero
    images `[3, height, width]`; the box is read back from the nonzero noise. Returns
    arrays `erase` (bool), `top`, `left`, `height`, `width`, `boxes` (number of separate
    rectangles: 1 where erased) and `values` (a sample of the noise)."""
    import torch

    erasing = load("random_erasing").RandomErasing(probability=probability, mode="pixel", device="cpu")
    masks, values = [], []
    with seeded(seed, with_torch=True):
        for start in range(0, count, chunk):
            out = erasing(torch.zeros((min(chunk, count - start), 3, height, width))).numpy()
            mask = out != 0
            masks.append(mask.any(axis=1))
            values.append(out[mask][:20000])
    mask = np.concatenate(masks)
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    h, w = rows.sum(axis=1), cols.sum(axis=1)
    erase = h > 0
    return {"erase": erase, "top": np.argmax(rows, axis=1), "left": np.argmax(cols, axis=1), "height": h, "width": w,
            "rectangle": mask.sum(axis=(1, 2)) == h * w, "values": np.concatenate(values)}


def record_mixup(count, seed, height, width, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5):
    """timm's `Mixup(mode="batch")._params_per_batch` and `cutmix_bbox_and_lam` run
    `count` times (as `_mix_batch` runs them): arrays `use_cutmix`, `lam` (drawn),
    `lam_corrected` (CutMix's, from the box; the drawn one for MixUp) and the box
    `top`, `bottom`, `left`, `right`."""
    mixup = load("mixup")
    mixer = mixup.Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, switch_prob=switch_prob, mode="batch",
                        label_smoothing=0.0, num_classes=2)
    rows = []
    with seeded(seed):
        for _ in range(count):
            lam, use_cutmix = mixer._params_per_batch()
            box, corrected = (0, 0, 0, 0), lam
            if use_cutmix:
                box, corrected = mixup.cutmix_bbox_and_lam((1, 3, height, width), lam, correct_lam=True)
            rows.append((use_cutmix, lam, corrected, *(int(v) for v in box)))
    columns = list(zip(*rows))
    names = ("use_cutmix", "lam", "lam_corrected", "top", "bottom", "left", "right")
    return {name: np.asarray(column) for name, column in zip(names, columns)}
