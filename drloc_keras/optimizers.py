"""AdamW that leaves out of weight decay what the authors' recipe leaves out.

The authors train with timm's AdamW parameter groups: no weight decay on 1-D parameters
(biases, normalisation scales and offsets) nor on the parameters a model lists as
`no_weight_decay` (position embeddings, class tokens, Swin's relative position bias
tables). `keras.optimizers.AdamW` decays every variable, so a bias whose gradient is 0
shrinks at every step. `AdamW` here is Keras' own, with that choice made when it is
built and kept in its config, so that a model saved with it and loaded again (a resumed
run) decays the same variables.
"""

import re

import keras

# Path fragments of the variables that are never decayed, whatever their rank: the
# position embeddings, class tokens and relative position bias tables of the backbones of
# `drloc_keras.backbones` (and of keras-hub's, which use the same words).
NO_DECAY_PATTERNS = (
    r"position_embedding",
    r"positional_embedding",
    r"pos_embed",
    r"relative_position_bias_table",
    r"class_token",
    r"cls_token",
)


def decays(variable, decay_vectors=False, no_decay_patterns=NO_DECAY_PATTERNS):
    """Whether `variable` gets weight decay: rank 2 or more (kernels, embeddings of
    tokens) and a path that matches none of `no_decay_patterns`."""
    if not decay_vectors and len(variable.shape) <= 1:
        return False
    return not any(re.search(pattern, variable.path) for pattern in no_decay_patterns)


@keras.saving.register_keras_serializable(package="drloc")
class AdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` without weight decay on vectors and named tables.

    Args:
        decay_vectors: also decay variables of rank 0 and 1 (biases, normalisation
            parameters). Default False, as in the authors' recipe.
        no_decay_patterns: regular expressions; a variable whose path matches one is not
            decayed (default `NO_DECAY_PATTERNS`: position embeddings, class tokens,
            relative position bias tables).
        **kwargs: those of `keras.optimizers.AdamW`.

    The exclusions are computed from the variables the optimizer is built with
    (`exclude_from_weight_decay`, before the build) and `decayed_paths()` lists what is
    decayed.
    """

    def __init__(self, *args, decay_vectors=False, no_decay_patterns=NO_DECAY_PATTERNS, **kwargs):
        super().__init__(*args, **kwargs)
        for pattern in no_decay_patterns:
            if not isinstance(pattern, str):
                raise ValueError(
                    f"`no_decay_patterns` must be strings (regular expressions). Found {pattern!r}"
                )
            re.compile(pattern)
        self.decay_vectors = bool(decay_vectors)
        self.no_decay_patterns = tuple(no_decay_patterns)
        self._decayed_paths = None

    def build(self, variables):
        if not self.built:
            decayed = [decays(v, self.decay_vectors, self.no_decay_patterns) for v in variables]
            self.exclude_from_weight_decay(var_list=[v for v, d in zip(variables, decayed) if not d])
            self._decayed_paths = [v.path for v, d in zip(variables, decayed) if d]
        super().build(variables)

    def decayed_paths(self):
        """The paths of the variables this optimizer decays (after it is built)."""
        if self._decayed_paths is None:
            raise ValueError("The optimizer is not built yet: call `build(variables)` or train first")
        return list(self._decayed_paths)

    def get_config(self):
        config = super().get_config()
        config.update(decay_vectors=self.decay_vectors, no_decay_patterns=list(self.no_decay_patterns))
        return config
