"""The training set on the accelerator only when it fits the device's free memory, and a batch
that does not fit the device ends in one error that names --batch-size."""


import numpy as np
import pytest

from drloc_keras import DRLocModel, options, pipeline, run
from tests.examples.test_run import tiny_argv



def test_arrays_go_on_the_device_only_within_its_share_of_free_memory():
    assert pipeline.fits_on_device(10**9, free=None)  # a CPU: host memory is the device's
    assert pipeline.fits_on_device(500, free=1000)
    assert not pipeline.fits_on_device(501, free=1000)


def test_a_training_set_too_large_for_the_device_is_gathered_on_the_host(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 8, 3)).astype("uint8")
    y = rng.integers(0, 4, 40)

    def batches(free):
        monkeypatch.setattr(pipeline, "device_free_bytes", lambda: free)
        data = pipeline.ArrayBatches(x, y, 4, 8, training=True, seed=3)
        found = [data[i] for i in range(len(data))]
        return data, found

    small, on_host = batches(x.nbytes)  # the images alone take all of it: over the share
    large, on_device = batches(100 * x.nbytes)
    assert small.on_device is False and large.on_device is True
    assert isinstance(on_host[0][0]["images"], np.ndarray)
    assert not isinstance(on_device[0][0]["images"], np.ndarray)
    for (a, la), (b, lb) in zip(on_host, on_device):  # the same batches either way
        np.testing.assert_array_equal(np.asarray(a["images"]), np.asarray(b["images"]))
        np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))


class OutOfMemoryError(RuntimeError):
    """Named as PyTorch's allocator error."""


@pytest.mark.parametrize("error", [
    OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8589934592 bytes."),
])
def test_a_batch_the_device_cannot_hold_ends_in_one_error_naming_the_batch_size(tmp_path, monkeypatch, error):
    def fit(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(DRLocModel, "fit", fit)
    with pytest.raises(options.UsageError) as caught:
        run.train(*options.parse(tiny_argv(tmp_path / "run", backbone="vit")), log=lambda *a: None)
    message = str(caught.value)
    assert "--batch-size" in message and "16 images" in message and "\n" not in message


def test_other_errors_are_not_taken_for_memory(tmp_path, monkeypatch):
    def fit(self, *args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(DRLocModel, "fit", fit)
    with pytest.raises(ValueError, match="a bug"):
        run.train(*options.parse(tiny_argv(tmp_path / "run", backbone="vit")), log=lambda *a: None)
