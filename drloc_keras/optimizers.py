"""AdamW that leaves out of weight decay what the authors' recipe leaves out.

The authors train with timm's AdamW parameter groups: no weight decay on 1-D parameters
(biases, normalisation scales and offsets) nor on the parameters a model lists as
`no_weight_decay` (position embeddings, class tokens, Swin's relative position bias
tables). `keras.optimizers.AdamW` decays every variable, so a bias whose gradient is 0
shrinks at every step. `AdamW` here is Keras' own, with that choice made when it is
built and kept in its config, so that a model saved with it and loaded again (a resumed
run) decays the same variables.

Its gradient clipping (`global_clipnorm`, the authors' `clip_grad_norm_`) is of the
gradients summed over the replicas of a `tf.distribute` strategy, as PyTorch's DDP clips the
averaged gradients: Keras' own optimizers clip each replica's share before the sum.
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
    decayed. `decay_vectors=True, no_decay_patterns=()` decays every variable, as
    `keras.optimizers.AdamW` does.

    Clipping (`global_clipnorm`, `clipnorm`, `clipvalue`) applies to the gradient of the
    whole batch on every backend and under data parallelism: JAX's `DataParallel`
    differentiates the global batch's loss, and under `tf.distribute` the clipping is moved
    after the all-reduce of the replicas' gradients.
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

    def _clip_gradients(self, grads):
        # Keras' TensorFlow optimizer clips here, in each replica, and sums the replicas'
        # gradients afterwards (`_backend_update_step`): a global norm would be of one
        # replica's share (the loss is divided by the replicas), and the clipped shares
        # would not add up to the clipped sum. TensorFlow clips in `_all_reduce_sum_gradients`.
        if keras.backend.backend() == "tensorflow":
            return grads
        return super()._clip_gradients(grads)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Called by TensorFlow's optimizer only, in every replica, on every update step.
        reduced = super()._all_reduce_sum_gradients(grads_and_vars)
        clipped = super()._clip_gradients([g for g, _ in reduced])
        return [(g, v) for g, (_, v) in zip(clipped, reduced)]

    def decayed_paths(self):
        """The paths of the variables this optimizer decays (after it is built)."""
        if self._decayed_paths is None:
            raise ValueError("The optimizer is not built yet: call `build(variables)` or train first")
        return list(self._decayed_paths)

    def get_config(self):
        config = super().get_config()
        config.update(decay_vectors=self.decay_vectors, no_decay_patterns=list(self.no_decay_patterns))
        return config
