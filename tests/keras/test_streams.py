"""drloc_keras.streams: every random generator of a model, in every epoch, draws its own
stream on every backend (no stream is another's, or an earlier epoch's, shifted)."""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drloc_keras import DRLocModel, run_folder, streams
from drloc_keras.backbones.vit import ViTBackbone
from tests.keras.helpers import to_numpy

DRAWS = 200


def _draws(generator, n=DRAWS):
    """`n` successive draws of `generator`, each a fingerprint: 4 uniforms as bytes (one
    float32 alone may repeat by chance among a few hundred)."""
    return [to_numpy(keras.random.uniform((4,), seed=generator)).tobytes() for _ in range(n)]


def _advance(generator, draws):
    """The generator as it is after `draws` more draws (each draw adds 1 to the counter)."""
    state = to_numpy(generator.state).astype("int64") + np.array([0, draws])
    generator.state.assign(state.astype(keras.backend.standardize_dtype(generator.state.dtype)))


def _reseeded(count, seed=7, epoch=3):
    generators = [streams.Stream(0) for _ in range(count)]
    streams.reseed(generators, seed, epoch)
    return generators


def _tiny_model(augmentation=None):
    backbone = ViTBackbone(16, patch_size=4, embed_dim=8, depth=2, num_heads=2, mlp_ratio=1.0,
                           dropout_rate=0.1, attention_dropout_rate=0.1, drop_path_rate=0.2,
                           num_classes=3)
    return DRLocModel(backbone, lam=0.5, sample_size=4, hidden=8, seed=1, augmentation=augmentation)


def test_independent_streams_of_two_generators_share_no_draw():
    first, second = _reseeded(2)
    # No draw in common at any lag below DRAWS: neither stream is the other shifted.
    assert not set(_draws(first)) & set(_draws(second))


def test_independent_streams_of_consecutive_epochs_share_no_draw():
    """On PyTorch the old rule (epoch in the first word, seed = sum of the words) made epoch
    e + 1 replay epoch e one draw late."""
    (generator,) = _reseeded(1, epoch=3)
    epoch_3 = _draws(generator)
    streams.reseed([generator], 7, 4)
    assert not set(epoch_3) & set(_draws(generator))


def test_independent_streams_do_not_run_into_each_other_after_many_draws():
    """Generator 0 after up to 10,000 draws never draws what generator 1 drew first, and
    the other way round (the old rule set generator k + 1 7,919 draws ahead of k)."""
    for late, early in (_reseeded(2), _reseeded(2)[::-1]):
        start = set(_draws(early))
        origin = to_numpy(late.state).astype("int64")
        for ahead in range(0, 10_001, DRAWS // 2):  # steps below DRAWS: every lag is covered
            late.state.assign(origin.astype(keras.backend.standardize_dtype(late.state.dtype)))
            _advance(late, ahead)
            assert _draws(late, 1)[0] not in start, ahead


def test_independent_streams_are_what_the_state_says():
    """A stream is a function of its state: the same state draws the same, on each backend."""
    first, second = _reseeded(2)
    np.testing.assert_array_equal(to_numpy(first.state), streams.stream_state(7, 0, 3))
    draws = _draws(first, 5)
    streams.reseed([first], 7, 3)
    assert _draws(first, 5) == draws
    assert to_numpy(first.state)[1] == 5  # the counter: one per draw


@given(st.tuples(st.integers(0, 2**10 - 1), st.integers(0, 2**8 - 1), st.integers(0, 2**12 - 1)),
       st.tuples(st.integers(0, 2**10 - 1), st.integers(0, 2**8 - 1), st.integers(0, 2**12 - 1)))
def test_independent_streams_have_distinct_states_in_the_documented_range(one, other):
    a, b = streams.stream_state(*one), streams.stream_state(*other)
    assert a.dtype == np.int64 and 0 <= a[0] < 2**30 and a[1] == 0  # fits int32, uint32 and TF's seeds
    assert (a[0] == b[0]) == (one == other)


def test_independent_streams_refuse_an_index_beyond_the_range():
    with pytest.raises(ValueError, match=r"`index` must be an int in \[0, 256\).*index=256"):
        streams.stream_state(0, 256)
    with pytest.raises(ValueError, match="epoch=-1"):
        streams.stream_state(0, 0, -1)


def test_independent_streams_seed_torch_with_a_hash_of_both_words():
    seeds = {streams.torch_seed(12345, b) for b in range(10_000)}
    assert len(seeds) == 10_000  # one-to-one in the counter
    assert streams.torch_seed(1, 0) != streams.torch_seed(0, 1)  # not the sum
    generator = streams.Stream(5)
    words = to_numpy(generator.next())
    if keras.backend.backend() == "torch":
        assert (int(words[0]) & 0xFFFFFFFF, int(words[1])) == (streams.torch_seed(5, 0), 0)
    else:
        np.testing.assert_array_equal(words, [5, 0])
    np.testing.assert_array_equal(to_numpy(generator.state), [5, 1])


def test_independent_streams_keep_the_seed_generator_config():
    generator = streams.Stream(11, name="pairs")
    again = streams.Stream.from_config(generator.get_config())
    assert isinstance(again, streams.Stream) and again.name == "pairs"
    np.testing.assert_array_equal(to_numpy(again.state), to_numpy(generator.state))
    unseeded = streams.Stream()  # seeded at once: always drawn from (see Stream)
    assert isinstance(unseeded.get_config()["seed"], int)


def test_independent_streams_cover_every_generator_of_a_model_once():
    flip = keras.layers.RandomFlip("horizontal", seed=0)
    model = _tiny_model(augmentation=flip)
    found = streams.generators(model)
    assert len({id(g) for g in found}) == len(found)
    assert found[0] is model.pair_sampler
    owned = [layer.seed_generator for layer in model._flatten_layers() if hasattr(layer, "seed_generator")]
    kinds = {type(layer).__name__ for layer in model._flatten_layers() if hasattr(layer, "seed_generator")}
    assert {"Dropout", "DropPath", "DRLocHead"} <= kinds
    assert {id(g) for g in found} == {id(g) for g in [model.pair_sampler, flip.generator, *owned]}
    assert all(isinstance(g, streams.Stream) for g in found if g is not flip.generator)
    assert streams.generators([model, None, model.pair_sampler]) == found


def test_independent_streams_reseed_every_generator_of_a_model():
    model = _tiny_model()
    streams.reseed(model, 2, 9)
    states = [to_numpy(g.state).astype("int64") for g in streams.generators(model)]
    expected = [streams.stream_state(2, k, 9) for k in range(len(states))]
    np.testing.assert_array_equal(states, expected)


def test_independent_streams_states_round_trip_through_a_saved_model(tmp_path):
    model = _tiny_model()
    streams.reseed(model, 4, 1)
    for generator in streams.generators(model)[::2]:
        _advance(generator, 17)  # states that differ from any fresh model's
    states = run_folder.generator_states(model)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    run_folder.restore_generator_states(loaded, states)
    assert run_folder.generator_states(loaded) == states
    for mine, theirs in zip(streams.generators(model), streams.generators(loaded)):
        assert type(mine) is type(theirs)
        assert _draws(mine, 2) == _draws(theirs, 2)
