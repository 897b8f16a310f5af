"""drloc_keras is importable, versioned, and runs on the backend the test run asks for."""

import os

import keras

import drloc_keras


def test_version_is_a_release_string():
    parts = drloc_keras.__version__.split(".")
    assert len(parts) == 3 and all(part.isdigit() for part in parts)


def test_the_requested_backend_is_active():
    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", "tensorflow")
