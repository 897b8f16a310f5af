"""Random streams: one independent stream per random generator of a model and per epoch.

A model draws from several `keras.random.SeedGenerator`s (the DRLoc pairs, dropout, drop
path, the augmentation), and a run re-seeds them before every epoch so that epoch `e` of
seed `s` is a function of `(s, e)` alone (what exact resume needs). A generator's state is
two words `(a, b)`, and each draw uses the state and then adds 1 to `b`. On JAX and
TensorFlow the state is the key of a counter-based generator (threefry, philox): two
states with distinct `a` give unrelated draws. On PyTorch Keras seeds each draw with
`torch.Generator.manual_seed(a + b)`, so the generators at `(a, b)` and `(a + 1, b)` draw
one stream, one draw apart, and a rule that puts the epoch in `a` repeats epoch `e` in
epoch `e + 1`, shifted by one draw. And a rule that sets generator `k` apart by its counter
(`b = 7919 k`) makes generator `k` draw what generator `k + 1` drew once it has made 7919
draws. So this module gives each (seed, generator, epoch) its own `a` through a bijective
mix (`stream_state`), keeps `b` a plain counter, and `Stream` hands PyTorch a hash of both
words instead of their sum. `generators` is the one walker over a model's generators: the
per-epoch re-seeding and the checkpoint both go through it. It draws nothing itself.
"""

import random

import keras
import numpy as np

# The bits of (seed, generator index, epoch) in a state's first word: 30 in all, so that the
# word is a non-negative int32 and below TensorFlow's modulus (see `stream_state`).
SEED_BITS, INDEX_BITS, EPOCH_BITS = 10, 8, 12
_MASK30, _MASK32 = 2**30 - 1, 2**32 - 1


def _mix30(x):
    """A bijection of [0, 2**30): each step (xor, xor with a right shift, product with an odd
    number modulo 2**30) can be undone, so distinct inputs give distinct words."""
    x ^= 0x1B873593
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & _MASK30
    x ^= x >> 12
    x = (x * 0x297A2D39) & _MASK30
    return x ^ (x >> 15)


def _fmix32(x):
    """MurmurHash3's finaliser: a bijection of [0, 2**32) that spreads every input bit."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _MASK32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _MASK32
    return x ^ (x >> 16)


def torch_seed(a, b):
    """The 32-bit seed `Stream` hands PyTorch for the state `(a, b)`: a hash of both words,
    one-to-one in `b` for a fixed `a` (a stream repeats no seed in 2**32 draws)."""
    return _fmix32((a & _MASK32) ^ _fmix32(((b & _MASK32) + 0x9E3779B9) & _MASK32))


@keras.saving.register_keras_serializable(package="drloc")
class Stream(keras.random.SeedGenerator):
    """A `keras.random.SeedGenerator` whose draws are independent across generators and
    epochs on every backend, once `reseed` has given each its own state.

    The state advances by `[0, 1]` per draw, as Keras' own. On JAX and TensorFlow a draw
    uses the state as it is; on PyTorch `next()` returns `[torch_seed(a, b), 0]` (Keras'
    PyTorch functions seed with the sum of the two words), so each draw is seeded with a
    hash of both words. A `Stream` made without a seed takes a random one at once, so that
    it is always the stream that is drawn from (Keras' PyTorch dropout ignores an unseeded
    generator and uses the global torch generator).

    Args:
        seed: int or None, the initial state `[seed, 0]`.
        name: optional name of the generator.
    """

    def __init__(self, seed=None, name=None, **kwargs):
        if seed is None:
            seed = random.randint(1, 10**9)  # Keras' rule for an unseeded generator
        super().__init__(seed=int(seed), name=name, **kwargs)

    def next(self, ordered=True):
        seed = super().next(ordered=ordered)
        if keras.backend.backend() != "torch":
            return seed
        a, b = (int(word) for word in keras.ops.convert_to_numpy(seed))
        h = torch_seed(a, b)
        # the int32 word that holds h's 32 bits (torch's seed dtype is int32)
        word = (h ^ 0x80000000) - 0x80000000
        return keras.ops.convert_to_tensor([word, 0], dtype=keras.backend.standardize_dtype(seed.dtype))


def generators(obj):
    """Every `keras.random.SeedGenerator` of `obj`, each once, in a fixed order.

    `obj` is a layer or model, a generator, or a list of them (None entries are skipped).
    The order: for each object in turn, its layers as `_flatten_layers` lists them (the
    object first, then its sublayers depth first, in the order they were assigned); within
    a layer the generators Keras tracks (in the order they were made), then any other
    generator held as an attribute (in the order assigned). A model that is built the same
    way, or loaded from its `.keras` file, lists its generators in the same order. This is
    the walker that `reseed` and the run's checkpoint (`run_folder.generator_states`) use.
    """
    found, seen = [], set()

    def add(generator):
        if isinstance(generator, keras.random.SeedGenerator) and id(generator) not in seen:
            seen.add(id(generator))
            found.append(generator)

    for top in obj if isinstance(obj, (list, tuple)) else [obj]:
        if top is None or isinstance(top, keras.random.SeedGenerator):
            add(top)
            continue
        for layer in top._flatten_layers(include_self=True, recursive=True):
            for generator in getattr(layer, "_seed_generators", []):
                add(generator)
            for value in vars(layer).values():
                add(value)
    return found


def stream_state(seed, index, epoch=0):
    """The state (`int64 [2]`) of generator `index` of a model seeded `seed`, in epoch `epoch`.

    The first word is a bijective mix of `(seed, index, epoch)` packed into 30 bits: distinct
    for `0 <= seed < 2**10`, `0 <= index < 2**8` and `0 <= epoch < 2**12`. Other seeds and
    epochs are taken modulo those bounds (seeds 3 and 1027 draw alike); an index outside
    them is an error. The word is below 2**30, so every backend uses it as it is: JAX's
    uint32 state, PyTorch's int32 state, and TensorFlow's int64 state, which its random
    functions take modulo 2**31 - 2. The second word, the draw counter, starts at 0.
    """
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < 2**INDEX_BITS:
        raise ValueError(f"`index` must be an int in [0, {2**INDEX_BITS}) (a model of at most "
                         f"{2**INDEX_BITS} random generators). Found index={index!r}")
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"`epoch` must be an int >= 0. Found epoch={epoch!r}")
    seed, index, epoch = int(seed) % 2**SEED_BITS, int(index), int(epoch) % 2**EPOCH_BITS
    packed = (seed << (INDEX_BITS + EPOCH_BITS)) | (index << EPOCH_BITS) | epoch
    return np.array([_mix30(packed), 0], "int64")


def reseed(obj, seed, epoch=0):
    """Gives generator `k` of `generators(obj)` the state `stream_state(seed, k, epoch)`."""
    for k, generator in enumerate(generators(obj)):
        state = stream_state(seed, k, epoch)
        generator.state.assign(state.astype(keras.backend.standardize_dtype(generator.state.dtype)))
