"""The dataset loaders read tiny files written here in the real formats, and fail loudly on
missing or broken ones."""

import gzip
import os
import pickle
import shutil
import struct
import subprocess
import sys

import keras
import numpy as np
import pytest

from drloc_keras import data
from drloc_keras.data import DatasetFormatError, DatasetUnavailableError, load_dataset

# === Writers of the real formats ===


def cifar_pixels(rng, n):
    return rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)


def write_pickle(path, obj, protocol=2):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def write_cifar10(root, n=3, seed=0):
    """`root/cifar-10-batches-py/` with five train batches and a test batch of `n` images."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    batches = {}
    for name in data.CIFAR10_FILES:
        rows, labels = cifar_pixels(rng, n), [int(v) for v in rng.integers(0, 10, n)]
        write_pickle(
            folder / name,
            {b"batch_label": name.encode(), b"labels": labels, b"data": rows,
             b"filenames": [b"x.png"] * n},
        )
        batches[name] = (rows, labels)
    return folder, batches


def write_cifar100(root, n=4, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    files = {}
    for name in data.CIFAR100_FILES:
        rows = cifar_pixels(rng, n)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [int(v) for v in rng.integers(0, 20, n)]
        write_pickle(
            folder / name,
            {b"filenames": [b"x.png"] * n, b"batch_label": b"b", b"fine_labels": fine,
             b"coarse_labels": coarse, b"data": rows},
        )
        files[name] = (rows, fine)
    return folder, files


def idx_bytes(magic, array):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(content)


def write_fashion_mnist(folder, n_train=5, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_gz(folder / f"{split}-images-idx3-ubyte.gz", idx_bytes(0x803, images))
        write_gz(folder / f"{split}-labels-idx1-ubyte.gz", idx_bytes(0x801, labels))
        arrays[split] = (images, labels)
    return arrays


def write_svhn(folder, y_train=(1, 10, 5, 10, 3), y_test=(10, 2)):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, labels in (("train_32x32.mat", y_train), ("test_32x32.mat", y_test)):
        x = rng.integers(0, 256, (32, 32, 3, len(labels)), dtype=np.uint8)
        y = np.asarray(labels, np.uint8)[:, None]
        scipy_io.savemat(folder / name, {"X": x, "y": y})
        arrays[name] = (x, y)
    return arrays


def write_png(path, mode, size, colour):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


# === CIFAR-10 / CIFAR-100 ===


@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_cifar10_reads_the_pickle_batches_exactly(tmp_path, point_at):
    folder, batches = write_cifar10(tmp_path, n=3)
    (x_train, y_train), (x_test, y_test), names = load_dataset(
        "cifar10", data_dir=tmp_path if point_at == "parent" else folder
    )
    assert x_train.shape == (15, 32, 32, 3) and x_test.shape == (3, 32, 32, 3)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64 and y_test.dtype == np.int64
    rows = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    np.testing.assert_array_equal(y_train, labels)
    np.testing.assert_array_equal(y_test, batches["test_batch"][1])
    # A CIFAR row is the red plane, then green, then blue, each 32 rows of 32 pixels.
    for image, row in ((x_train[7], rows[7]), (x_test[2], batches["test_batch"][0][2])):
        for channel, r, c in ((0, 0, 0), (1, 5, 17), (2, 31, 30)):
            assert image[r, c, channel] == row[channel * 1024 + r * 32 + c]
    np.testing.assert_array_equal(
        x_train, rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    )
    assert len(names) == 10 and names[0] == "airplane"


def test_cifar_batches_written_by_python3_pickle_also_read(tmp_path):
    folder, batches = write_cifar10(tmp_path, n=2)
    rows, labels = batches["test_batch"]
    write_pickle(folder / "test_batch", {b"data": rows, b"labels": labels}, protocol=5)
    (_, _), (x_test, y_test), _ = load_dataset("cifar10", data_dir=tmp_path)
    np.testing.assert_array_equal(y_test, labels)
    assert x_test[1, 3, 4, 2] == rows[1, 2 * 1024 + 3 * 32 + 4]


@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_cifar100_uses_the_fine_labels(tmp_path, point_at):
    folder, files = write_cifar100(tmp_path, n=4)
    dataset = load_dataset("cifar100", data_dir=tmp_path if point_at == "parent" else folder)
    (x_train, y_train), (x_test, y_test) = dataset.train, dataset.test
    assert x_train.shape == (4, 32, 32, 3) and x_test.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(y_train, files["train"][1])
    np.testing.assert_array_equal(y_test, files["test"][1])
    np.testing.assert_array_equal(
        x_test, files["test"][0].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    )
    assert dataset.num_classes == 100 and len(set(dataset.class_names)) == 100
    assert dataset.class_names[:3] == ("apple", "aquarium_fish", "baby")


# === Fashion-MNIST ===


@pytest.mark.parametrize("subfolder", ["", "fashion-mnist"])
def test_fashion_mnist_reads_the_idx_files_exactly(tmp_path, subfolder):
    arrays = write_fashion_mnist(tmp_path / subfolder if subfolder else tmp_path)
    (x_train, y_train), (x_test, y_test), names = load_dataset("fashion_mnist", data_dir=tmp_path)
    assert x_train.shape == (5, 28, 28, 1) and x_test.shape == (3, 28, 28, 1)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    np.testing.assert_array_equal(x_train[..., 0], arrays["train"][0])
    np.testing.assert_array_equal(y_train, arrays["train"][1])
    np.testing.assert_array_equal(x_test[..., 0], arrays["t10k"][0])
    np.testing.assert_array_equal(y_test, arrays["t10k"][1])
    assert names[0] == "T-shirt/top" and len(names) == 10


def test_fashion_mnist_with_an_image_size_is_rgb_at_that_size(tmp_path):
    arrays = write_fashion_mnist(tmp_path)
    (x_train, _), (x_test, _), _ = load_dataset("fashion_mnist", data_dir=tmp_path, image_size=32)
    assert x_train.shape == (5, 32, 32, 3) and x_test.shape == (3, 32, 32, 3)
    assert x_train.dtype == np.uint8
    np.testing.assert_array_equal(x_train[..., 0], x_train[..., 1])
    np.testing.assert_array_equal(x_train[..., 0], x_train[..., 2])
    # Bilinear upsampling stays within the range of the original image.
    assert x_train[0].max() <= arrays["train"][0][0].max()
    assert x_train[0].min() >= arrays["train"][0][0].min()


def fashion_mnist_package_folder():
    """Where the Debian package `dataset-fashion-mnist` put its files, or None."""
    if shutil.which("dpkg"):
        listing = subprocess.run(
            ["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True
        )
        for line in listing.stdout.splitlines():
            if line.endswith("train-images-idx3-ubyte.gz"):
                return os.path.dirname(line)
    known = "/usr/share/datasets/fashion-mnist"
    return known if os.path.isfile(os.path.join(known, "train-images-idx3-ubyte.gz")) else None


def test_the_real_fashion_mnist_files_load():
    folder = fashion_mnist_package_folder()
    if folder is None:
        pytest.skip("the package dataset-fashion-mnist is not installed")
    (x_train, y_train), (x_test, y_test), names = load_dataset("fashion_mnist", data_dir=folder)
    assert x_train.shape == (60000, 28, 28, 1) and x_test.shape == (10000, 28, 28, 1)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)
    assert len(names) == 10 and x_train.max() == 255 and x_train.min() == 0
    # The parent of the folder works too (`fashion-mnist/` is the folder's usual name).
    if os.path.basename(folder) == "fashion-mnist":
        parent = load_dataset("fashion_mnist", data_dir=os.path.dirname(folder))
        np.testing.assert_array_equal(parent.test[1], y_test)


# === Through keras.datasets ===


def offline(*args, **kwargs):
    # What keras.utils.get_file raises when there is no network.
    raise Exception(
        "URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: "
        "None -- [Errno -3] Temporary failure in name resolution"
    )


@pytest.mark.parametrize(
    "name,files",
    [
        ("cifar10", ["cifar-10-batches-py", "data_batch_1", "data_batch_5", "test_batch"]),
        ("cifar100", ["cifar-100-python", "train", "test"]),
        ("fashion_mnist", list(data.FASHION_MNIST_FILES)),
    ],
)
def test_an_offline_download_says_which_files_to_put_where(monkeypatch, name, files):
    monkeypatch.setattr(getattr(keras.datasets, name), "load_data", offline)
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name)
    message = str(info.value)
    assert "--data-dir" in message and "Temporary failure in name resolution" in message
    for f in files:
        assert f in message
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value.__cause__, Exception)


def test_keras_downloads_come_back_channels_last_with_flat_int64_labels(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    y = np.array([[3], [0], [9], [1]], np.uint8)  # Keras' CIFAR labels are [N, 1]
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((x, y), (x[:2], y[:2])))
    (x_train, y_train), (x_test, y_test), _ = load_dataset("cifar10")
    np.testing.assert_array_equal(x_train, x)
    assert y_train.dtype == np.int64 and y_train.tolist() == [3, 0, 9, 1]
    assert y_test.tolist() == [3, 0]

    gray = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    labels = np.array([1, 2, 3], np.uint8)
    monkeypatch.setattr(
        keras.datasets.fashion_mnist, "load_data", lambda: ((gray, labels), (gray, labels))
    )
    (x_train, y_train), _, _ = load_dataset("fashion_mnist")
    assert x_train.shape == (3, 28, 28, 1) and y_train.dtype == np.int64
    np.testing.assert_array_equal(x_train[..., 0], gray)


# === SVHN ===


@pytest.mark.parametrize("subfolder", ["", "svhn"])
def test_svhn_maps_label_10_to_digit_0(tmp_path, subfolder):
    arrays = write_svhn(tmp_path / subfolder if subfolder else tmp_path)
    (x_train, y_train), (x_test, y_test), names = load_dataset("svhn", data_dir=tmp_path)
    assert x_train.shape == (5, 32, 32, 3) and x_test.shape == (2, 32, 32, 3)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert y_train.tolist() == [1, 0, 5, 0, 3] and y_test.tolist() == [0, 2]
    np.testing.assert_array_equal(x_train, arrays["train_32x32.mat"][0].transpose(3, 0, 1, 2))
    assert x_test[1, 4, 9, 2] == arrays["test_32x32.mat"][0][4, 9, 2, 1]
    assert names == tuple("0123456789")


def test_svhn_resizes_when_asked(tmp_path):
    write_svhn(tmp_path)
    (x_train, _), _, _ = load_dataset("svhn", data_dir=tmp_path, image_size=(48, 40))
    assert x_train.shape == (5, 48, 40, 3) and x_train.dtype == np.uint8


def test_svhn_without_files_says_where_to_put_them(tmp_path):
    for data_dir in (None, tmp_path):
        with pytest.raises(DatasetUnavailableError, match="train_32x32.mat") as info:
            load_dataset("svhn", data_dir=data_dir)
        assert "test_32x32.mat" in str(info.value) and "--data-dir" in str(info.value)


def test_svhn_errors_name_the_broken_file(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    write_svhn(tmp_path)
    bad = tmp_path / "test_32x32.mat"
    scipy_io.savemat(bad, {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(DatasetFormatError, match=r"test_32x32\.mat.*'y'"):
        load_dataset("svhn", data_dir=tmp_path)
    scipy_io.savemat(bad, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]])})
    with pytest.raises(DatasetFormatError, match=r"test_32x32\.mat.*1\.\.10"):
        load_dataset("svhn", data_dir=tmp_path)
    bad.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DatasetFormatError, match=r"test_32x32\.mat"):
        load_dataset("svhn", data_dir=tmp_path)


# === Image folders ===


def write_image_folder(root):
    """Three classes of PNGs of mixed sizes and modes; `val` lacks the class `cat`."""
    write_png(root / "train" / "dog" / "b.png", "RGB", (40, 30), (200, 10, 30))
    write_png(root / "train" / "dog" / "a.png", "L", (20, 20), 90)
    write_png(root / "train" / "ant" / "x.PNG", "RGBA", (16, 48), (1, 2, 3, 128))
    write_png(root / "train" / "cat" / "c.jpg.png", "P", (12, 12), 7)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    write_png(root / "val" / "dog" / "v.png", "LA", (64, 64), (250, 255))
    write_png(root / "val" / "ant" / "w.png", "RGB", (8, 8), (0, 255, 128))


def test_an_image_folder_loads_as_rgb_at_the_image_size(tmp_path):
    write_image_folder(tmp_path)
    (x_train, y_train), (x_val, y_val), names = load_dataset(
        "folder", data_dir=tmp_path, image_size=(16, 24)
    )
    assert names == ("ant", "cat", "dog")  # sorted, from train
    assert x_train.shape == (4, 16, 24, 3) and x_val.shape == (2, 16, 24, 3)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    # Classes in order, files sorted within a class; notes.txt is not an image.
    assert y_train.tolist() == [0, 1, 2, 2] and y_val.tolist() == [0, 2]
    # Solid colours survive the conversion and the resize exactly.
    assert (x_train[0] == (1, 2, 3)).all()  # RGBA: alpha dropped
    assert (x_train[2] == 90).all()  # a.png, grayscale -> 3 equal channels
    assert (x_train[3] == (200, 10, 30)).all()
    assert (x_val[0] == (0, 255, 128)).all() and (x_val[1] == 250).all()
    palette = x_train[1]
    assert (palette == palette[0, 0]).all()  # a palette image becomes one RGB colour


def test_an_image_folder_rejects_what_it_cannot_use(tmp_path):
    write_image_folder(tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("folder", data_dir=tmp_path)
    with pytest.raises(DatasetUnavailableError, match="test"):
        load_dataset("folder", data_dir=tmp_path, image_size=8, test_split="test")
    write_png(tmp_path / "val" / "bee" / "z.png", "RGB", (8, 8), (0, 0, 0))
    with pytest.raises(DatasetFormatError, match="bee"):
        load_dataset("folder", data_dir=tmp_path, image_size=8)
    shutil.rmtree(tmp_path / "val" / "bee")
    broken = tmp_path / "train" / "cat" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(DatasetFormatError, match="broken.png"):
        load_dataset("folder", data_dir=tmp_path, image_size=8)


def _noise_folder(root, classes=3, per_class=12, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                size = (int(rng.integers(8, 40)), int(rng.integers(8, 40)))
                Image.fromarray(rng.integers(0, 256, size[::-1] + (3,)).astype("uint8")).save(folder / f"{i}.png")


def test_parallel_decoding_gives_the_images_of_one_thread_and_reports_progress(tmp_path, monkeypatch):
    _noise_folder(tmp_path)
    one = data.load_image_folder(tmp_path, image_size=16, workers=1, progress=lambda line: None)
    monkeypatch.setattr(data, "PROGRESS_SECONDS", 0.0)
    lines = []
    many = data.load_image_folder(tmp_path, image_size=16, workers=4, progress=lines.append)
    for a, b in ((one.train, many.train), (one.test, many.test)):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert any(line.startswith("indexing ") and "36 images in 3 of 3 classes" in line for line in lines)
    assert any(line.startswith("decoding ") and "36/36 images" in line and "4 threads" in line for line in lines)
    with pytest.raises(ValueError, match="workers"):
        data.load_image_folder(tmp_path, image_size=16, workers=0)


def test_a_streamed_folder_gives_the_in_memory_images_without_decoding_up_front(tmp_path, monkeypatch):
    """stream=True: the splits are ImageFiles (nothing decoded yet); their subsets, splits
    and cycled epochs stay ImageFiles, and every read gives the in-memory images."""
    _noise_folder(tmp_path)
    memory = data.load_image_folder(tmp_path, image_size=12, workers=2, progress=lambda line: None, stream=False)
    lines = []
    streamed = data.load_image_folder(tmp_path, image_size=12, workers=3, progress=lines.append, stream=True)
    assert any(line.startswith("streaming the images from disk") for line in lines)
    assert not any(line.startswith("decoding ") for line in lines)
    for (x, y), (files, labels) in ((memory.train, streamed.train), (memory.test, streamed.test)):
        assert isinstance(files, data.ImageFiles) and files.shape == x.shape and len(files) == len(x)
        np.testing.assert_array_equal(labels, y)
        np.testing.assert_array_equal(files.read(), x)
        np.testing.assert_array_equal(np.asarray(files), x)
    x, y = memory.train
    files, labels = streamed.train
    np.testing.assert_array_equal(files[5], x[5])
    index = np.array([7, 0, 7, 30])
    assert isinstance(files[index], data.ImageFiles)
    np.testing.assert_array_equal(files[index].read(), x[index])
    np.testing.assert_array_equal(files.read(index[::-1]), x[index[::-1]])
    np.testing.assert_array_equal(files[x[:, 0, 0, 0] > 128].read(), x[x[:, 0, 0, 0] > 128])
    # The loaders' subset, split and cycle give the same images and labels, still on disk.
    for transform in (lambda a, b: data.class_balanced_subset(a, b, 0.5, seed=1),
                      lambda a, b: data.class_balanced_split(a, b, 0.25, seed=2)[1],
                      lambda a, b: data.cycle_to_size(a, b, 50, seed=3)):
        (want_x, want_y), (got_x, got_y) = transform(x, y), transform(files, labels)
        assert isinstance(got_x, data.ImageFiles)
        np.testing.assert_array_equal(got_x.read(), want_x)
        np.testing.assert_array_equal(got_y, want_y)
    # "auto" streams when the decoded images would take more than the set share of memory.
    monkeypatch.setattr(data, "STREAM_ABOVE_MEMORY", 0.0)
    assert isinstance(data.load_image_folder(tmp_path, image_size=12, progress=lambda line: None).train[0],
                      data.ImageFiles)
    monkeypatch.setattr(data, "STREAM_ABOVE_MEMORY", 1.0)
    assert isinstance(data.load_image_folder(tmp_path, image_size=12, progress=lambda line: None).train[0],
                      np.ndarray)
    with pytest.raises(ValueError, match="stream"):
        data.load_image_folder(tmp_path, image_size=12, stream="yes")


def test_a_streamed_unreadable_file_is_named_when_its_batch_is_read(tmp_path):
    _noise_folder(tmp_path, per_class=4)
    (tmp_path / "train" / "class1" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    files, labels = data.load_image_folder(tmp_path, image_size=8, workers=2, progress=lambda line: None,
                                           stream=True).train
    bad = [i for i, path in enumerate(files.paths) if path.endswith("bad.png")]
    files.read([0, 1])  # other images decode
    with pytest.raises(DatasetFormatError, match="bad.png"):
        files.read([0, bad[0]])


def test_an_unreadable_file_is_named_when_decoding_in_parallel(tmp_path):
    _noise_folder(tmp_path, per_class=6)
    (tmp_path / "train" / "class1" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    with pytest.raises(DatasetFormatError, match="bad.png"):
        data.load_image_folder(tmp_path, image_size=8, workers=3, progress=lambda line: None)


# === to_rgb_and_resize ===


def test_to_rgb_and_resize():
    ramp = np.tile(np.arange(0, 256, 32, dtype=np.uint8)[None, None, :, None], (2, 8, 1, 1))
    assert ramp.shape == (2, 8, 8, 1)
    same = data.to_rgb_and_resize(ramp, 8)
    assert same.shape == (2, 8, 8, 3) and same.dtype == np.uint8
    np.testing.assert_array_equal(same, np.repeat(ramp, 3, axis=-1))  # no resize: exact
    up = data.to_rgb_and_resize(ramp, (12, 20))
    assert up.shape == (2, 12, 20, 3)
    assert (np.diff(up[0, 5, :, 0].astype(int)) >= 0).all()  # still a ramp, left to right
    assert up.min() >= 0 and up.max() <= 224 and up[0, :, 0, 0].max() <= 16
    constant = np.full((3, 10, 6, 3), (5, 100, 250), np.uint8)
    np.testing.assert_array_equal(
        data.to_rgb_and_resize(constant, 4), np.full((3, 4, 4, 3), (5, 100, 250), np.uint8)
    )
    with pytest.raises(ValueError, match=r"\[2, 8, 8, 2\]"):
        data.to_rgb_and_resize(np.zeros((2, 8, 8, 2), np.uint8), 4)
    with pytest.raises(ValueError, match="image_size"):
        data.to_rgb_and_resize(ramp, (0, 4))


# === class_balanced_subset ===


def test_class_balanced_subset_keeps_the_fraction_of_every_class():
    y = np.repeat([0, 1, 2, 3], [100, 40, 7, 1])
    x = np.arange(len(y)) * 10  # each image remembers its index
    xs, ys = data.class_balanced_subset(x, y, fraction=0.1, seed=3)
    assert np.bincount(ys).tolist() == [10, 4, 1, 1]  # at least one per class
    np.testing.assert_array_equal(y[xs // 10], ys)  # images stay with their labels
    assert (np.diff(xs) > 0).all()  # original order, no repeats
    again_x, again_y = data.class_balanced_subset(x, y, fraction=0.1, seed=3)
    np.testing.assert_array_equal(again_x, xs)
    other_x, _ = data.class_balanced_subset(x, y, fraction=0.1, seed=4)
    assert not np.array_equal(other_x, xs)
    full_x, _ = data.class_balanced_subset(x, y, fraction=1.0, seed=0)
    np.testing.assert_array_equal(full_x, x)
    for fraction in (0, 1.5, -0.1, "0.1"):
        with pytest.raises(ValueError, match="fraction"):
            data.class_balanced_subset(x, y, fraction=fraction, seed=0)


def test_cycle_to_size_repeats_every_image_evenly_and_keeps_labels():
    y = np.array([0, 1, 1, 2, 3])
    x = np.arange(5) * 10
    xs, ys = data.cycle_to_size(x, y, 13, seed=1)
    assert len(xs) == 13
    counts = np.bincount(xs // 10, minlength=5)
    assert sorted(counts.tolist()) == [2, 2, 3, 3, 3]  # 13 = 2 copies + 3 more, no image thrice+1
    np.testing.assert_array_equal(y[xs // 10], ys)
    np.testing.assert_array_equal(data.cycle_to_size(x, y, 13, seed=1)[0], xs)
    assert not np.array_equal(data.cycle_to_size(x, y, 13, seed=2)[0], xs)
    np.testing.assert_array_equal(data.cycle_to_size(x, y, 5)[0], x)
    for size in (4, 0, 7.5, True):
        with pytest.raises(ValueError, match="size"):
            data.cycle_to_size(x, y, size)
    with pytest.raises(ValueError, match="differ in length"):
        data.cycle_to_size(x, y[:3], 10)


# === Synthetic ===


def test_synthetic_is_deterministic_for_a_seed():
    kwargs = dict(num_classes=3, train_size=12, test_size=6)
    first = load_dataset("synthetic", seed=5, **kwargs)
    second = load_dataset("synthetic", seed=5, **kwargs)
    other = load_dataset("synthetic", seed=6, **kwargs)
    (x_train, y_train), (x_test, y_test), names = first
    assert x_train.shape == (12, 32, 32, 3) and x_test.shape == (6, 32, 32, 3)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert np.bincount(y_train).tolist() == [4, 4, 4] and names == ("0deg", "120deg", "240deg")
    for a, b in zip(first.train + first.test, second.train + second.test):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(other.train[0], x_train)
    # The test set does not depend on the size of the training set.
    bigger = load_dataset("synthetic", seed=5, num_classes=3, train_size=20, test_size=6)
    np.testing.assert_array_equal(bigger.test[0], x_test)
    sized = load_dataset("synthetic", train_size=2, test_size=1, image_size=(20, 28))
    assert sized.train[0].shape == (2, 20, 28, 3)


@pytest.mark.parametrize("num_classes,size", [(4, (32, 32)), (7, (16, 24))])
def test_the_synthetic_class_is_the_direction_of_the_disc_from_the_square(num_classes, size):
    labels = np.arange(70) % num_classes
    images, centres = data._draw_scenes(labels, num_classes, size, np.random.default_rng(0))
    assert images.shape == (70, *size, 3)
    square, disc = centres[:, 0], centres[:, 1]
    angle = np.arctan2(disc[:, 0] - square[:, 0], disc[:, 1] - square[:, 1])
    sector = np.round(angle / (2 * np.pi / num_classes)).astype(int) % num_classes
    np.testing.assert_array_equal(sector, labels)
    # Both shapes are inside the image and stand out from the background.
    assert (centres >= 0).all() and (centres[..., 0] <= size[0] - 1).all()
    assert (centres[..., 1] <= size[1] - 1).all()
    background = np.median(images.reshape(70, -1, 3), axis=1)
    for which in (0, 1):
        rows, cols = np.rint(centres[:, which]).astype(int).T
        shape_pixel = images[np.arange(70), rows, cols].astype(float)
        assert (np.abs(shape_pixel - background).mean(axis=1) > 30).all()


def test_synthetic_rejects_bad_settings():
    for kwargs in (dict(num_classes=1), dict(image_size=8), dict(train_size=-1),
                   dict(data_dir="somewhere")):
        with pytest.raises(ValueError):
            load_dataset("synthetic", **kwargs)


# === Missing and broken files ===


def test_a_missing_file_is_named(tmp_path):
    write_cifar10(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(DatasetUnavailableError, match=r"cifar-10-batches-py.test_batch") as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "data_batch_1" not in str(info.value).split("(looked in")[0]
    with pytest.raises(DatasetUnavailableError, match="train-labels-idx1-ubyte.gz"):
        load_dataset("fashion_mnist", data_dir=tmp_path / "empty")
    with pytest.raises(DatasetUnavailableError, match="cifar-100-python"):
        load_dataset("cifar100", data_dir=tmp_path)


def test_broken_cifar_pickles_are_named(tmp_path):
    folder, _ = write_cifar10(tmp_path)
    bad = folder / "data_batch_3"
    write_pickle(bad, {b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(DatasetFormatError, match=r"data_batch_3.*'labels'"):
        load_dataset("cifar10", data_dir=tmp_path)
    write_pickle(bad, {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DatasetFormatError, match=r"data_batch_3.*3072"):
        load_dataset("cifar10", data_dir=tmp_path)
    write_pickle(bad, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(DatasetFormatError, match=r"0\.\.9"):
        load_dataset("cifar10", data_dir=tmp_path)
    content = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)
    bad.write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetFormatError, match="data_batch_3"):
        load_dataset("cifar10", data_dir=tmp_path)
    # A pickle that would run code is refused, not executed.
    write_pickle(bad, {b"data": Evil(), b"labels": [0]})
    with pytest.raises(DatasetFormatError, match=r"data_batch_3.*(posix|os)\.system"):
        load_dataset("cifar10", data_dir=tmp_path)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


@pytest.mark.parametrize(
    "name,content,pattern",
    [
        ("train-images-idx3-ubyte.gz", "truncated", "not a complete gzip"),
        ("train-labels-idx1-ubyte.gz", "not gzip", "not a complete gzip"),
        ("train-images-idx3-ubyte.gz", "labels magic", "number 0x00000801, expected 0x00000803"),
        ("t10k-images-idx3-ubyte.gz", "short payload", r"header \[3, 28, 28\] needs"),
        ("t10k-labels-idx1-ubyte.gz", "one label too many", "3 images but .* 4 labels"),
        ("train-labels-idx1-ubyte.gz", "trailing bytes", r"header \[5\] needs 13"),
    ],
)
def test_broken_idx_files_are_named(tmp_path, name, content, pattern):
    arrays = write_fashion_mnist(tmp_path)
    path = tmp_path / name
    if content == "truncated":
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif content == "not gzip":
        path.write_bytes(b"\x00\x00\x08\x01 plain bytes")
    elif content == "labels magic":
        write_gz(path, idx_bytes(0x801, arrays["train"][0]))
    elif content == "trailing bytes":
        write_gz(path, idx_bytes(0x801, arrays["train"][1]) + b"\x00\x01")
    elif content == "short payload":
        write_gz(path, idx_bytes(0x803, arrays["t10k"][0])[:-5])
    else:
        write_gz(path, idx_bytes(0x801, np.zeros(4, np.uint8)))
    with pytest.raises(DatasetFormatError, match=pattern) as info:
        load_dataset("fashion_mnist", data_dir=tmp_path)
    assert name in str(info.value)


def test_an_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'") as info:
        load_dataset("imagenet")
    for name in ("cifar10", "cifar100", "fashion_mnist", "svhn", "folder", "synthetic"):
        assert name in str(info.value)
    assert set(data.DATASETS) == {
        "cifar10", "cifar100", "fashion_mnist", "svhn", "folder", "synthetic"
    }


def test_missing_optional_packages_say_what_to_install(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "images")
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `from PIL import Image` fail
    with pytest.raises(ImportError, match="pip install pillow"):
        load_dataset("folder", data_dir=tmp_path / "images", image_size=8)
    write_svhn(tmp_path / "svhn")
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match="pip install scipy"):
        load_dataset("svhn", data_dir=tmp_path / "svhn")
