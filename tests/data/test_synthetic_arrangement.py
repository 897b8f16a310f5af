"""The synthetic dataset of the small-data study: its class is the relative arrangement of
its two shapes. The tests read the shapes back from the pixels of `load_dataset`'s images
and recompute the class from them; they check that the classes are balanced, that where
either shape lies alone tells the class much worse than their arrangement does, and that a
mirror image changes the class (so the training program must not flip these images)."""

import numpy as np
import pytest

from drloc_keras import data
from drloc_keras.data import load_dataset


def regions(mask):
    """Connected regions (4-neighbours) of a boolean image: a list of `(rows, cols)` arrays."""
    seen = np.zeros_like(mask, bool)
    found = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        stack, members = [start], []
        while stack:
            r, c = stack.pop()
            members.append((r, c))
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < mask.shape[0] and 0 <= nc < mask.shape[1] and mask[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    stack.append((nr, nc))
        found.append(tuple(np.array(axis) for axis in zip(*members)))
    return found


def shapes_from_pixels(image):
    """`(square centre, disc centre)` (row, col) read from the pixels: the two regions that
    stand out from the background, told apart by how much of their bounding box they fill."""
    pixels = image.astype(np.float64)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    found = regions(np.abs(pixels - background).mean(axis=-1) > 40)
    assert len(found) == 2, f"expected two shapes, found {len(found)} regions"
    described = []
    for rows, cols in found:
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        described.append((len(rows) / box, np.array([rows.mean(), cols.mean()])))
    (fill_a, centre_a), (fill_b, centre_b) = described
    assert abs(fill_a - fill_b) > 0.05, "a square and a disc fill their boxes differently"
    return (centre_a, centre_b) if fill_a > fill_b else (centre_b, centre_a)


def class_from_pixels(image, num_classes=4):
    square, disc = shapes_from_pixels(image)
    angle = np.arctan2(disc[0] - square[0], disc[1] - square[1])
    return int(np.round(angle / (2 * np.pi / num_classes))) % num_classes


@pytest.fixture(scope="module")
def scenes():
    (x, y), _, names = load_dataset("synthetic", train_size=240, test_size=0, seed=3)
    return x, y, names


def test_the_class_is_the_direction_of_the_disc_from_the_square_in_the_pixels(scenes):
    x, y, names = scenes
    assert names == ("0deg", "90deg", "180deg", "270deg")
    recomputed = np.array([class_from_pixels(image) for image in x])
    np.testing.assert_array_equal(recomputed, y)


def nearest_neighbour_accuracy(features, y):
    """1-nearest-neighbour: fitted on the first half, tested on the second."""
    half = len(y) // 2
    train, test = features[:half], features[half:]
    distances = ((test[:, None, :] - train[None, :, :]) ** 2).sum(axis=-1)
    return np.mean(y[:half][distances.argmin(axis=1)] == y[half:])


def test_where_either_shape_lies_tells_the_class_much_worse_than_their_arrangement(scenes):
    x, y, _ = scenes
    centres = np.array([shapes_from_pixels(image) for image in x])  # [N, shape, (row, col)]
    square_alone = nearest_neighbour_accuracy(centres[:, 0], y)
    disc_alone = nearest_neighbour_accuracy(centres[:, 1], y)
    arrangement = nearest_neighbour_accuracy(centres[:, 1] - centres[:, 0], y)
    assert arrangement >= 0.9
    assert square_alone < 0.65 and disc_alone < 0.65
    assert arrangement - max(square_alone, disc_alone) > 0.3


def test_classes_are_balanced_in_both_splits_and_in_every_fraction_of_the_study():
    (x, y), (_, y_test), _ = load_dataset("synthetic", train_size=402, test_size=101, seed=1)
    assert np.bincount(y, minlength=4).tolist() == [101, 101, 100, 100]
    assert np.bincount(y_test, minlength=4).tolist() == [26, 25, 25, 25]
    for fraction, per_class in ((0.05, 5), (0.2, 20)):
        _, y_small = data.class_balanced_subset(x, y, fraction, seed=0)
        assert np.bincount(y_small, minlength=4).tolist() == [per_class] * 4


def test_a_mirror_image_changes_the_class(scenes):
    x, y, _ = scenes
    mirrored = np.array([class_from_pixels(image[:, ::-1]) for image in x])
    # Right and left swap (0 <-> 2); down and up stay.
    np.testing.assert_array_equal(mirrored, (2 - y) % 4)
    assert (mirrored != y).mean() > 0.4
    assert "synthetic" in data.FLIP_CHANGES_CLASS
