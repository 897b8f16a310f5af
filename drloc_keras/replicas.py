"""Which data-parallel replica is running this code, for per-replica randomness and loss scaling.

On JAX (`keras.distribution.DataParallel`) and PyTorch a training step sees the whole
global batch: there is one "replica" and nothing to do. TensorFlow's `tf.distribute`
strategies (`MirroredStrategy`, `MultiWorkerMirroredStrategy`) instead run the step once
per replica on that replica's slice of the global batch. Two things then need the
replica's place in the group:

- pair sampling: every replica holds the same seed-generator state, so each must take
  its own slice of one draw for the global batch (otherwise all replicas sample the same
  positions for their first image, their second image, ...);
- the loss: Keras divides the compiled loss by the number of replicas under
  `tf.distribute` (the gradients are then summed), so extra loss terms must be divided
  the same way.

No `keras.ops` function exposes the replica context, so this module asks `tf.distribute`
directly, and only when the TensorFlow backend is active. It computes nothing.
"""

import keras


def replica_context():
    """`(replica index, number of replicas in sync)` of the running replica.

    `(0, 1)` outside a multi-replica `tf.distribute` replica context, and always on the
    JAX and PyTorch backends. On TensorFlow the index may be a scalar tensor.
    """
    if keras.backend.backend() != "tensorflow":
        return 0, 1
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return 0, 1
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0, 1
    return context.replica_id_in_sync_group, int(context.num_replicas_in_sync)
