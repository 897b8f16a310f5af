"""The datasets of the DRLoc experiments, as NumPy arrays, and a registry of their names.

Every loader returns a `Dataset`: `(x_train, y_train), (x_test, y_test), class_names`, with
images `uint8 [N, H, W, C]` (channels last, whatever the Keras image data format) and labels
`int64 [N]`.

    >>> from drloc_keras.data import DATASETS, load_dataset, class_balanced_subset
    >>> list(DATASETS)
    >>> (x_train, y_train), (x_test, y_test), class_names = load_dataset("cifar10")
    >>> data = load_dataset("svhn", data_dir="~/data/svhn", image_size=64)  # resized, RGB
    >>> x_small, y_small = class_balanced_subset(x_train, y_train, fraction=0.1, seed=0)

- `cifar10`, `cifar100`, `fashion_mnist`: through `keras.datasets` (downloaded once into
  `~/.keras/datasets`), or from a local copy of the same files with `data_dir`.
- `svhn`: the official `train_32x32.mat` and `test_32x32.mat` in `data_dir` (needs scipy).
- `folder`: `data_dir/train/<class>/*.png|jpg...` and `data_dir/val/<class>/...`, the
  layout of Flowers102, DomainNet and ImageNet-100 (needs Pillow and `image_size`). A
  folder too large for memory is streamed: its splits are `ImageFiles`, which decode the
  images a batch asks for, in threads (`stream=`).
- `synthetic`: generated from a seed, no files: the class is where a disc lies relative to a
  square, the textures, colours, sizes and positions are random.
  Mirroring an image changes its class (left and right swap), so the training program does
  not flip it (`FLIP_CHANGES_CLASS`).

Missing files raise `DatasetUnavailableError` (a `FileNotFoundError`) saying what to put
where; unreadable files raise `DatasetFormatError` (a `ValueError`) naming the file. No
loader falls back to other data.
"""

import concurrent.futures
import gzip
import os
import pickle
import sys
import time
import zlib
from typing import NamedTuple

import keras
import numpy as np

from drloc_keras.catalog import DATASET_NAMES, FLIP_CHANGES_CLASS  # noqa: F401

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard",
    "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
    "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray",
    "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
    "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
SVHN_CLASSES = tuple(str(digit) for digit in range(10))

CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR100_FILES = ("train", "test")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")

# FLIP_CHANGES_CLASS: datasets whose class a horizontal mirror image changes (no flips).

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")

# IDX magic numbers: 0x0000 then the element type (0x08: unsigned byte) then the number of
# dimensions, so 2049 is a vector of labels and 2051 a stack of 2-D images.
IDX_LABELS_MAGIC = 0x00000801
IDX_IMAGES_MAGIC = 0x00000803


class DatasetUnavailableError(FileNotFoundError):
    """The data is neither downloadable nor where the loader looked; the message says where
    to put which files."""


class DatasetFormatError(ValueError):
    """A dataset file exists but cannot be read as what it should be; the message names it."""


class Dataset(NamedTuple):
    """`(x_train, y_train), (x_test, y_test), class_names`; unpacks like a tuple."""

    train: tuple
    test: tuple
    class_names: tuple

    @property
    def num_classes(self):
        return len(self.class_names)


# === Keras datasets: CIFAR-10, CIFAR-100, Fashion-MNIST ===


def load_cifar10(data_dir=None, image_size=None):
    """CIFAR-10: 50000 + 10000 RGB images of 32x32 in 10 classes.

    `data_dir` holds `cifar-10-batches-py/` (the extracted `cifar-10-python.tar.gz`) or is
    that folder; without it, `keras.datasets.cifar10` downloads the same archive.
    """
    if data_dir is None:
        train, test = _keras_load_data("cifar10", data_dir_help=_CIFAR10_HELP)
    else:
        folder = _find_folder(data_dir, CIFAR10_FILES, ("cifar-10-batches-py",), _CIFAR10_HELP)
        batches = [_read_cifar_batch(os.path.join(folder, f), "labels") for f in CIFAR10_FILES]
        x_train = np.concatenate([x for x, _ in batches[:-1]])
        y_train = np.concatenate([y for _, y in batches[:-1]])
        train, test = (x_train, y_train), batches[-1]
    return _finish(train, test, CIFAR10_CLASSES, image_size)


def load_cifar100(data_dir=None, image_size=None):
    """CIFAR-100 with its 100 fine labels: 50000 + 10000 RGB images of 32x32.

    `data_dir` holds `cifar-100-python/` (the extracted `cifar-100-python.tar.gz`) or is
    that folder; without it, `keras.datasets.cifar100` downloads the same archive.
    """
    if data_dir is None:
        train, test = _keras_load_data("cifar100", data_dir_help=_CIFAR100_HELP)
    else:
        folder = _find_folder(data_dir, CIFAR100_FILES, ("cifar-100-python",), _CIFAR100_HELP)
        train = _read_cifar_batch(os.path.join(folder, "train"), "fine_labels")
        test = _read_cifar_batch(os.path.join(folder, "test"), "fine_labels")
    return _finish(train, test, CIFAR100_CLASSES, image_size)


def load_fashion_mnist(data_dir=None, image_size=None):
    """Fashion-MNIST: 60000 + 10000 grayscale images `[N, 28, 28, 1]` in 10 classes.

    `data_dir` holds the four IDX gz files, or a `fashion-mnist/` folder of them (the
    Debian package `dataset-fashion-mnist` installs them in `/usr/share/datasets/fashion-mnist`);
    without it, `keras.datasets.fashion_mnist` downloads the same files. With `image_size`
    the images come back RGB at that size.
    """
    if data_dir is None:
        train, test = _keras_load_data("fashion_mnist", data_dir_help=_FASHION_MNIST_HELP)
    else:
        folder = _find_folder(
            data_dir, FASHION_MNIST_FILES, ("fashion-mnist", "fashion_mnist"), _FASHION_MNIST_HELP
        )
        train_images, train_labels, test_images, test_labels = (
            os.path.join(folder, f) for f in FASHION_MNIST_FILES
        )
        train = _read_idx_pair(train_images, train_labels)
        test = _read_idx_pair(test_images, test_labels)
    return _finish(train, test, FASHION_MNIST_CLASSES, image_size)


_CIFAR10_HELP = (
    "Download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, extract it into a "
    "folder DIR so that DIR/cifar-10-batches-py/ holds data_batch_1, data_batch_2, "
    "data_batch_3, data_batch_4, data_batch_5 and test_batch, then pass --data-dir DIR "
    "(load_dataset('cifar10', data_dir=DIR))."
)
_CIFAR100_HELP = (
    "Download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz, extract it into a "
    "folder DIR so that DIR/cifar-100-python/ holds train and test, then pass --data-dir DIR "
    "(load_dataset('cifar100', data_dir=DIR))."
)
_FASHION_MNIST_HELP = (
    "Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
    "and t10k-labels-idx1-ubyte.gz (from https://github.com/zalandoresearch/fashion-mnist, "
    "or `apt-get install dataset-fashion-mnist`, which installs them in "
    "/usr/share/datasets/fashion-mnist) in a folder DIR, then pass --data-dir DIR "
    "(load_dataset('fashion_mnist', data_dir=DIR))."
)


def _keras_load_data(name, data_dir_help):
    module = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as err:  # get_file raises a bare Exception when the download fails
        raise DatasetUnavailableError(
            f"Could not load {name} with keras.datasets.{name}.load_data() (no internet, or a "
            f"broken copy in ~/.keras/datasets): {type(err).__name__}: {err}. {data_dir_help}"
        ) from err
    if x_train.ndim == 4 and keras.config.image_data_format() == "channels_first":
        x_train, x_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)
    if x_train.ndim == 3:  # Fashion-MNIST has no channel axis
        x_train, x_test = x_train[..., None], x_test[..., None]
    return (x_train, y_train), (x_test, y_test)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and plain containers, and nothing that could run code."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")


def _read_cifar_batch(path, label_key):
    """One CIFAR pickle: `{b"data": uint8 [N, 3072], label_key: [N]}` -> NHWC images, labels."""
    with open(path, "rb") as f:
        try:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        except Exception as err:
            raise DatasetFormatError(
                f"{path} is not a readable CIFAR pickle batch ({type(err).__name__}: {err}); "
                "download and extract the archive again."
            ) from err
    if not isinstance(batch, dict):
        raise DatasetFormatError(
            f"{path} should hold a dict, found {type(batch).__name__}."
        )
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = [key for key in ("data", label_key) if key not in batch]
    if missing:
        raise DatasetFormatError(
            f"{path} lacks the key(s) {missing}; found keys {sorted(map(str, batch))}."
        )
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetFormatError(
            f"{path}: 'data' should be uint8 [N, 3072], found {data.dtype} {list(data.shape)}."
        )
    if labels.shape != (data.shape[0],):
        raise DatasetFormatError(
            f"{path}: {data.shape[0]} images but {label_key!r} has shape {list(labels.shape)}."
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_idx(path, magic):
    """An IDX file of unsigned bytes (gzipped), checked against `magic` and its own dims."""
    try:
        with gzip.open(path, "rb") as f:
            content = f.read()
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetFormatError(
            f"{path} is not a complete gzip file ({type(err).__name__}: {err}); download it again."
        ) from err
    if len(content) < 4:
        raise DatasetFormatError(
            f"{path} is too short to hold an IDX header ({len(content)} bytes)."
        )
    found = int.from_bytes(content[:4], "big")
    if found != magic:
        raise DatasetFormatError(
            f"{path} has the IDX magic number {found:#010x}, expected {magic:#010x}."
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DatasetFormatError(f"{path} is too short to hold its IDX header of {header} bytes.")
    dims = [int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(content) != expected:
        raise DatasetFormatError(
            f"{path} holds {len(content)} bytes but its header {dims} needs {expected}."
        )
    return np.frombuffer(content, np.uint8, offset=header).reshape(dims)


def _read_idx_pair(images_path, labels_path):
    images = _read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = _read_idx(labels_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DatasetFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels."
        )
    return images[..., None], labels


# === SVHN ===


def load_svhn(data_dir=None, image_size=None):
    """SVHN (cropped digits): `train_32x32.mat` (73257) and `test_32x32.mat` (26032).

    Labels are the digits 0-9 (the files write digit 0 as 10). Not downloaded automatically:
    `data_dir` holds the two files, or a `svhn/` folder of them. Needs scipy.
    """
    if data_dir is None:
        raise DatasetUnavailableError(f"SVHN is not downloaded automatically. {_SVHN_HELP}")
    folder = _find_folder(data_dir, SVHN_FILES, ("svhn",), _SVHN_HELP)
    train, test = (_read_svhn_mat(os.path.join(folder, f)) for f in SVHN_FILES)
    return _finish(train, test, SVHN_CLASSES, image_size)


_SVHN_HELP = (
    "Download http://ufldl.stanford.edu/housenumbers/train_32x32.mat and "
    "http://ufldl.stanford.edu/housenumbers/test_32x32.mat into a folder DIR, then pass "
    "--data-dir DIR (load_dataset('svhn', data_dir=DIR))."
)


def _read_svhn_mat(path):
    try:
        import scipy.io
    except ImportError as err:
        raise ImportError("Loading SVHN needs scipy: `pip install scipy`.") from err
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:
        raise DatasetFormatError(
            f"{path} is not a readable .mat file ({type(err).__name__}: {err})."
        ) from err
    missing = [key for key in ("X", "y") if key not in mat]
    if missing:
        found = sorted(key for key in mat if not key.startswith("__"))
        raise DatasetFormatError(f"{path} lacks the variable(s) {missing}; found {found}.")
    images, labels = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if images.ndim != 4 or images.shape[2] != 3 or images.shape[3] != len(labels):
        raise DatasetFormatError(
            f"{path}: 'X' should be [32, 32, 3, N] with N = {len(labels)} labels, "
            f"found {list(images.shape)}."
        )
    if len(labels) and (labels.min() < 1 or labels.max() > 10):
        raise DatasetFormatError(
            f"{path}: labels should lie in 1..10, found {labels.min()}..{labels.max()}."
        )
    labels = np.where(labels == 10, 0, labels)
    return images.transpose(3, 0, 1, 2).astype(np.uint8), labels


# === Image folders: Flowers102, DomainNet, ImageNet-100 ===


def load_image_folder(data_dir=None, image_size=None, test_split="val", workers=None, progress=None,
                      stream="auto"):
    """Images in `data_dir/train/<class>/` and `data_dir/<test_split>/<class>/`.

    Classes are the sorted sub-folder names of `train`; the test split may lack classes but
    not add any. Every image is converted to RGB and resized to `image_size` (required).
    Needs Pillow.

    Files are decoded by `workers` threads (default: twice the CPU cores, at most 32; Pillow
    decodes outside Python's lock). `progress` is called with a line of text while the
    folders are indexed and the images decoded (at most every 2 seconds, and once at the end
    of a split that took longer); the default prints to standard error.

    `stream`: True keeps the images on disk: the splits are `ImageFiles`, which decode
    the images a batch asks for when it asks (in `workers` threads), so a folder larger
    than memory trains, and training starts once the files are indexed. False decodes
    every image into memory up front. "auto" (the default) streams when the decoded
    images (N x height x width x 3 bytes) would take more than `STREAM_ABOVE_MEMORY` of
    the machine's memory.
    """
    if stream not in (True, False, "auto"):
        raise ValueError(f"`stream` must be True, False or 'auto'. Found stream={stream!r}")
    if data_dir is None:
        raise ValueError("The `folder` dataset needs `data_dir` (--data-dir).")
    if image_size is None:
        raise ValueError(
            "The `folder` dataset needs `image_size`: its images differ in size. "
            "Found image_size=None"
        )
    if workers is None:
        workers = min(32, 2 * (os.cpu_count() or 1))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be an integer >= 1. Found workers={workers!r}")
    if progress is None:
        def progress(line):
            print(line, file=sys.stderr, flush=True)
    size = _size_pair(image_size)
    data_dir = os.path.expanduser(os.fspath(data_dir))
    train_dir, test_dir = os.path.join(data_dir, "train"), os.path.join(data_dir, test_split)
    for split_dir in (train_dir, test_dir):
        if not os.path.isdir(split_dir):
            raise DatasetUnavailableError(
                f"{split_dir} is not a folder. The `folder` dataset reads "
                f"DIR/train/<class>/<image> and DIR/{test_split}/<class>/<image>; "
                "pass that DIR as --data-dir."
            )
    class_names = tuple(_class_folders(train_dir))
    if not class_names:
        raise DatasetUnavailableError(f"{train_dir} holds no class folders.")
    extra = sorted(set(_class_folders(test_dir)) - set(class_names))
    if extra:
        raise DatasetFormatError(
            f"{test_dir} holds classes that {train_dir} lacks: {extra}."
        )
    splits = [_index_image_split(split_dir, class_names, size, require, progress)
              for split_dir, require in ((train_dir, True), (test_dir, False))]
    decoded = sum(len(paths) for paths, _ in splits) * size[0] * size[1] * 3
    if stream == "auto":
        stream = decoded > STREAM_ABOVE_MEMORY * _memory_bytes()
    if stream:
        progress(f"streaming the images from disk ({_gigabytes(decoded)} decoded, more than "
                 f"{STREAM_ABOVE_MEMORY:.0%} of memory, or streaming asked for): {workers} threads "
                 f"decode each batch")
        train, test = ((ImageFiles(paths, size, workers), labels) for paths, labels in splits)
    else:
        train, test = ((_decode_all(paths, size, workers, progress, split_dir), labels)
                       for (paths, labels), split_dir in zip(splits, (train_dir, test_dir)))
    return Dataset(train, test, class_names)


# Streaming is chosen by "auto" when the decoded images would exceed this fraction of memory.
STREAM_ABOVE_MEMORY = 0.25


def _memory_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume 8 GiB
        return 8 * 2**30


def _gigabytes(n):
    return f"{n / 2**30:.1f} GiB"


class ImageFiles:
    """Images on disk that act as a uint8 array `[N, height, width, 3]` decoded on demand.

    `len`, `shape`, `dtype` and `ndim` are those of the decoded array. Indexing with an
    int decodes one image; indexing with a slice, an index array or a boolean mask gives
    another `ImageFiles` over those files (nothing is decoded: subsets, splits and cycled
    epochs of a streamed folder stay on disk). `read(index)` decodes the images of `index`
    (default: all) into one array, in `workers` threads (Pillow decodes outside Python's
    lock); `np.asarray` reads them all. Every image is converted to RGB and resized to
    `size` as `load_image_folder` does, so a streamed image equals the in-memory one.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths, size, workers=1):
        self.paths = np.asarray(paths, dtype=object)
        if self.paths.ndim != 1:
            raise ValueError(f"`paths` must be a list of file paths. Found shape {self.paths.shape}")
        self.size = _size_pair(size)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"`workers` must be an integer >= 1. Found workers={workers!r}")
        self.workers = workers

    @property
    def shape(self):
        return (len(self.paths), *self.size, 3)

    def __len__(self):
        return len(self.paths)

    def __repr__(self):
        return f"ImageFiles({len(self)} images at {self.size[0]}x{self.size[1]}, {self.workers} threads)"

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return _read_image(self.paths[key], self.size)
        return ImageFiles(self.paths[key], self.size, self.workers)

    def read(self, index=None):
        paths = self.paths if index is None else self.paths[np.asarray(index)]
        return _decode(paths, self.size, self.workers)

    def __array__(self, dtype=None, copy=None):
        images = self.read()
        return images if dtype is None else images.astype(dtype)


def _class_folders(split_dir):
    return sorted(
        entry.name for entry in os.scandir(split_dir)
        if entry.is_dir() and not entry.name.startswith(".")
    )


# Seconds between two progress lines of the folder loader.
PROGRESS_SECONDS = 2.0


class _Progress:
    """Calls `report` with a line at most every `every` seconds, and at the end if the whole
    took longer than that."""

    def __init__(self, report, every=None):
        self.report, self.every = report, PROGRESS_SECONDS if every is None else every
        self.start = self.last = time.perf_counter()

    def tick(self, line_fn):
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self.report(line_fn(now - self.start))

    def done(self, line_fn):
        elapsed = time.perf_counter() - self.start
        if elapsed >= self.every:
            self.report(line_fn(elapsed))


def _index_image_split(split_dir, class_names, size, require_every_class, progress=None):
    """The image files of a split and their labels (classes in order, files sorted)."""
    paths, labels = [], []
    meter = _Progress(progress or (lambda line: None))
    for label, name in enumerate(class_names):
        class_dir = os.path.join(split_dir, name)
        files = []
        if os.path.isdir(class_dir):
            files = sorted(
                f for f in os.listdir(class_dir)
                if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
            )
        if not files and require_every_class:
            raise DatasetUnavailableError(
                f"{class_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})."
            )
        paths += [os.path.join(class_dir, f) for f in files]
        labels += [label] * len(files)
        meter.tick(lambda s: f"indexing {split_dir}: {len(paths)} images in {label + 1} of "
                             f"{len(class_names)} classes ({s:.0f} s)")
    meter.done(lambda s: f"indexed {split_dir}: {len(paths)} images in {len(class_names)} classes ({s:.0f} s)")
    return paths, np.asarray(labels, np.int64)


def _decode_all(paths, size, workers, progress, split_dir):
    """Every image of `paths` decoded into one array, with progress lines."""
    meter = _Progress(progress or (lambda line: None))

    def line(seconds, done):
        rate = done / seconds if seconds > 0 else 0.0
        return (f"decoding {split_dir}: {done}/{len(paths)} images ({seconds:.0f} s, {rate:.0f} images/s, "
                f"{workers} threads)")

    images = _decode(paths, size, workers, lambda done: meter.tick(lambda s: line(s, done)))
    meter.done(lambda s: line(s, len(paths)))
    return images


def _decode(paths, size, workers, on_image=None):
    """The images of `paths` as one uint8 array, decoded by `workers` threads; `on_image`
    is called with the count decoded so far after each image. The first unreadable file
    raises, naming the file, and the images not yet started are cancelled."""
    images = np.empty((len(paths), *size, 3), np.uint8)
    on_image = on_image or (lambda done: None)

    def decode(i):
        images[i] = _read_image(paths[i], size)

    if workers == 1 or len(paths) < 2:
        for i in range(len(paths)):
            decode(i)
            on_image(i + 1)
        return images
    with concurrent.futures.ThreadPoolExecutor(min(workers, len(paths))) as pool:
        futures = [pool.submit(decode, i) for i in range(len(paths))]
        try:
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                future.result()
                on_image(done)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return images


def _read_image(path, size):
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError("Loading image folders needs Pillow: `pip install pillow`.") from err
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except Exception as err:
        raise DatasetFormatError(
            f"{path} cannot be decoded as an image ({type(err).__name__}: {err})."
        ) from err
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, np.uint8)


# === Synthetic ===


def load_synthetic(
    data_dir=None, image_size=None, num_classes=4, train_size=2000, test_size=500, seed=0
):
    """Images of a dark textured square and a light textured disc on a mid-grey textured
    background; the class is the direction of the disc seen from the square, in
    `num_classes` equal sectors (class 0 to the right, then clockwise, since image rows grow
    downwards).

    Everything else is random: the colours within those three brightness bands, the stripe
    textures, the sizes, the gap between the shapes (at most an eighth of the image) and
    the positions. So only the relative arrangement of the two shapes tells the class, the
    kind of cue DRLoc trains a transformer to see. Deterministic
    for a `seed`; the test set does not change with `train_size`. `image_size` defaults to 32
    and must be at least 16.
    """
    if data_dir is not None:
        raise ValueError(f"The `synthetic` dataset reads no files. Found data_dir={data_dir!r}")
    size = _size_pair(32 if image_size is None else image_size)
    if min(size) < 16:
        raise ValueError(
            f"Synthetic images must be at least 16x16. Found image_size={image_size!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an integer >= 2. Found num_classes={num_classes!r}"
        )
    for name, value in (("train_size", train_size), ("test_size", test_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be an integer >= 0. Found {name}={value!r}")
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    # Drawn in chunks of about 4M values, so the float textures stay small.
    chunk = max(1, 2**22 // (size[0] * size[1] * 3))
    splits = []
    for n, rng in ((train_size, train_rng), (test_size, test_rng)):
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
        images = np.empty((n, *size, 3), np.uint8)
        for start in range(0, n, chunk):
            images[start: start + chunk], _ = _draw_scenes(
                labels[start: start + chunk], num_classes, size, rng
            )
        splits.append((images, labels))
    class_names = tuple(f"{round(360 * c / num_classes)}deg" for c in range(num_classes))
    return Dataset(splits[0], splits[1], class_names)


def _draw_scenes(labels, num_classes, size, rng):
    """Images for `labels`, and the centres `[N, 2, 2]` (square, disc; row, column)."""
    height, width = size
    n = len(labels)
    side = min(height, width)
    half_square = rng.uniform(side / 10, side / 6.4, n)  # half the side of the square
    radius = rng.uniform(side / 10, side / 6.4, n)  # of the disc
    # The disc's direction keeps 15% of the sector clear on either side, and the disc keeps
    # clear of the square's corners; both shapes stay whole inside the image. The gap between
    # them is at most an eighth of the image, so the pair can lie anywhere: where either shape
    # lies alone says little about the class (far-apart shapes would sit at opposite edges).
    sector = 2 * np.pi / num_classes
    angle = sector * (labels + rng.uniform(-0.35, 0.35, n))
    near = np.sqrt(2) * half_square + radius + 2
    far = np.minimum(side - 1 - half_square - radius, near + side / 8)
    distance = rng.uniform(near, far)
    offset = np.stack([distance * np.sin(angle), distance * np.cos(angle)], axis=1)
    extent = np.stack([half_square, radius], axis=1)[:, :, None]  # [N, shape, 1]
    limits = np.array([height - 1, width - 1], np.float64)
    low = np.maximum(extent[:, 0], extent[:, 1] - offset)
    high = np.minimum(limits - extent[:, 0], limits - extent[:, 1] - offset)
    square = low + rng.uniform(size=(n, 2)) * (high - low)
    centres = np.stack([square, square + offset], axis=1)

    rows = np.arange(height)[None, :, None]
    cols = np.arange(width)[None, None, :]
    (square_row, square_col), (disc_row, disc_col) = (
        (centres[:, s, 0, None, None], centres[:, s, 1, None, None]) for s in (0, 1)
    )
    half = half_square[:, None, None]
    in_square = (np.abs(rows - square_row) <= half) & (np.abs(cols - square_col) <= half)
    in_disc = (rows - disc_row) ** 2 + (cols - disc_col) ** 2 <= radius[:, None, None] ** 2

    # A mid-grey background, a dark square and a light disc: each shape is easy to tell from
    # the other in any patch of it, so what remains to learn is where one lies from the other.
    background = _texture(rng, n, size, np.full(n, 80))
    square_texture = _texture(rng, n, size, np.full(n, -20))
    disc_texture = _texture(rng, n, size, np.full(n, 195))
    images = np.where(in_square[..., None], square_texture, background)
    images = np.where(in_disc[..., None], disc_texture, images)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), centres


def _texture(rng, n, size, low):
    """Stripes of random colour, frequency, orientation and phase, plus a little noise, with
    values in about [low, low + 100]."""
    height, width = size
    colour = low[:, None] + rng.uniform(10, 70, (n, 3))
    frequency = rng.uniform(0.1, 0.6, n)
    orientation = rng.uniform(0, np.pi, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    rows = np.arange(height)[None, :, None]
    cols = np.arange(width)[None, None, :]
    along = rows * np.sin(orientation)[:, None, None] + cols * np.cos(orientation)[:, None, None]
    stripes = np.sin(frequency[:, None, None] * along + phase[:, None, None])
    amplitude = rng.uniform(0, 15, (n, 1, 1, 3))
    noise = rng.uniform(-5, 5, (n, height, width, 3))
    return colour[:, None, None, :] + amplitude * stripes[..., None] + noise


# === Shared helpers ===


def to_rgb_and_resize(x, image_size):
    """Images `uint8 [N, H, W, 1 or 3]` -> `uint8 [N, height, width, 3]`.

    Grayscale is repeated over three channels; the resize is bilinear with antialiasing
    (`keras.ops.image.resize`, any backend), skipped when the size already matches.
    `image_size` is an int (square) or `(height, width)`.
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(
            f"Expected images [N, H, W, 1 or 3]. Found shape {list(x.shape)}"
        )
    height, width = _size_pair(image_size)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[1:3] == (height, width):
        return x.astype(np.uint8)
    # Chunks of about 16M values keep the float copies small whatever the dataset size.
    chunk = max(1, 2**24 // (max(height * width, x.shape[1] * x.shape[2]) * 3))
    out = np.empty((len(x), height, width, 3), np.uint8)
    for start in range(0, len(x), chunk):
        batch = keras.ops.convert_to_tensor(x[start: start + chunk].astype("float32"))
        resized = keras.ops.image.resize(
            batch, (height, width), interpolation="bilinear", antialias=True,
            data_format="channels_last",
        )
        out[start: start + chunk] = np.clip(np.rint(keras.ops.convert_to_numpy(resized)), 0, 255)
    return out


def class_balanced_subset(x, y, fraction, seed=0):
    """A random `fraction` of every class of `(x, y)` (at least one image per class),
    in the original order; the same subset for the same `seed`."""
    index = _balanced_index(x, y, fraction, seed)
    return x[index], np.asarray(y)[index]


def class_balanced_split(x, y, fraction, seed=0):
    """`((x_held, y_held), (x_rest, y_rest))`: `class_balanced_subset(x, y, fraction, seed)`
    and every other example, both in the original order. Every class keeps at least one
    example in the rest (a class of one example is not held out)."""
    index = _balanced_index(x, y, fraction, seed, keep_one=True)
    held = np.zeros(len(x), bool)
    held[index] = True
    y = np.asarray(y)
    return (x[held], y[held]), (x[~held], y[~held])


def _balanced_index(x, y, fraction, seed, keep_one=False):
    is_number = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
    if not is_number or not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be a number in (0, 1]. Found fraction={fraction!r}")
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length. Found {len(x)} images and {len(y)} labels")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        count = max(1, int(round(fraction * len(members))))
        if keep_one:
            count = min(count, len(members) - 1)
        chosen.append(rng.choice(members, count, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def cycle_to_size(x, y, size, seed=0):
    """`(x, y)` repeated up to `size` examples: whole copies, then a seeded random choice
    (without repeats) for the remainder, so every example appears `size // len(x)` or one
    more times. `size` below `len(x)` is refused (this never drops examples)."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length. Found {len(x)} images and {len(y)} labels")
    if len(x) == 0:
        raise ValueError("cannot cycle an empty training set")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < len(x):
        raise ValueError(f"`size` must be an int >= len(x) ({len(x)}). Found size={size!r}")
    copies, rest = divmod(int(size), len(x))
    extra = np.sort(np.random.default_rng(seed).choice(len(x), rest, replace=False))
    index = np.concatenate([np.tile(np.arange(len(x)), copies), extra])
    return x[index], np.asarray(y)[index]


def _finish(train, test, class_names, image_size):
    """Common dtypes, a label range check and the optional RGB + resize."""
    splits = []
    for x, y in (train, test):
        x = np.asarray(x, np.uint8)
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if len(y) and (y.min() < 0 or y.max() >= len(class_names)):
            raise DatasetFormatError(
                f"Labels should lie in 0..{len(class_names) - 1}, found {y.min()}..{y.max()}."
            )
        if image_size is not None:
            x = to_rgb_and_resize(x, image_size)
        splits.append((x, y))
    return Dataset(splits[0], splits[1], tuple(class_names))


def _size_pair(image_size):
    if isinstance(image_size, (int, np.integer)):
        image_size = (image_size, image_size)
    try:
        pair = tuple(int(s) if isinstance(s, np.integer) else s for s in image_size)
    except TypeError:
        pair = ()
    if len(pair) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in pair):
        raise ValueError(
            "`image_size` must be a positive int or (height, width). "
            f"Found image_size={image_size!r}"
        )
    return pair


def _find_folder(data_dir, files, subfolders, help_text):
    """`data_dir` if it holds `files`, else the first of its `subfolders` that does."""
    data_dir = os.path.expanduser(os.fspath(data_dir))
    candidates = [data_dir] + [os.path.join(data_dir, sub) for sub in subfolders]
    for folder in candidates:
        if all(os.path.isfile(os.path.join(folder, f)) for f in files):
            return folder
    # Name the missing files of the candidate that has the most of them.
    best = max(candidates, key=lambda d: sum(os.path.isfile(os.path.join(d, f)) for f in files))
    missing = [f for f in files if not os.path.isfile(os.path.join(best, f))]
    raise DatasetUnavailableError(
        f"Missing {', '.join(os.path.join(best, f) for f in missing)} "
        f"(looked in {' and '.join(candidates)}). {help_text}"
    )


DATASETS = {
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "fashion_mnist": load_fashion_mnist,
    "svhn": load_svhn,
    "folder": load_image_folder,
    "synthetic": load_synthetic,
}


def load_dataset(name, data_dir=None, image_size=None, **options):
    """The dataset `name` (a key of `DATASETS`) as a `Dataset` of NumPy arrays.

    Args:
        name: one of `DATASETS`.
        data_dir: a local copy of the files (see each loader); `None` downloads the Keras
            datasets and is refused by `svhn` and `folder`.
        image_size: an int or `(height, width)`: the images come back RGB at that size.
            `None` keeps the native size (required by `folder`).
        **options: passed to the loader, e.g. `num_classes`, `train_size`, `test_size` and
            `seed` for `synthetic`, `test_split` for `folder`.

    Returns:
        `Dataset((x_train, y_train), (x_test, y_test), class_names)`: images
        `uint8 [N, H, W, C]`, labels `int64 [N]`.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}. Choose one of: {', '.join(DATASETS)}")
    return DATASETS[name](data_dir=data_dir, image_size=image_size, **options)
