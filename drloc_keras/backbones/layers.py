"""Blocks shared by several backbones."""

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="drloc")
class DropPath(layers.Layer):
    """Stochastic depth: drops the whole residual branch of a sample with probability `rate`.

    Args:
        rate: float in [0, 1), the probability of dropping a sample's branch.
        seed: optional int for the layer's `SeedGenerator`.

    Input and output: `[B, ...]`. In training the kept samples are scaled by `1 / (1 - rate)`;
    at inference the layer is the identity.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        if rate > 0:
            self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0:
            return x
        noise_shape = (None,) + (1,) * (len(x.shape) - 1)
        return keras.random.dropout(x, self.rate, noise_shape=noise_shape, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
