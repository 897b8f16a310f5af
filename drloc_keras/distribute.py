"""Data-parallel training: one device, several devices of one process, several processes.

`setup(args)` reads `--distribute`, `--batch-size`, `--seed` and the environment
(`KERAS_DISTRIBUTION_*` for JAX, `TF_CONFIG` for TensorFlow) and returns a `Distribution`:
the scope to build the model in, the number of replicas, this process's share of the data,
and whether this process writes the run folder. `Distribution.close()` (or a `with` block)
restores what the set-up changed in the process.
"""

import contextlib
import json
import os

import keras

from drloc_keras.options import UsageError

# The environment variables that ask JAX for a run over several processes.
JAX_PROCESS_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                         "KERAS_DISTRIBUTION_PROCESS_ID")


class Distribution:
    """How a run is spread over devices and processes.

    `scope` (a new context manager each time) is entered to build or load a model. `replicas` counts the devices of all processes:
    each takes `--batch-size / replicas` images of a step. `devices` are this process's.
    The chief (process 0) is the one process that writes the run folder.
    """

    def __init__(self, kind="one device", scope=None, replicas=1, devices=(), processes=1,
                 process_index=0, batch_size=None, on_close=None):
        self.kind = kind
        self._scope = scope if scope is not None else contextlib.nullcontext
        self.replicas = replicas
        self.devices = list(devices)
        self.processes = processes
        self.process_index = process_index
        self.chief = process_index == 0
        self.batch_size = batch_size
        self._on_close = [on_close] if on_close is not None else []

    @property
    def scope(self):
        """A new context manager of the strategy's scope (build and load models in it)."""
        return self._scope()

    def prepare_dataset(self, ds, batches):
        """This process's part of a dataset of `batches` global batches (a `tf.data`
        dataset, or a `drloc_keras.pipeline.ArrayBatches`)."""
        from drloc_keras.pipeline import ArrayBatches

        if isinstance(ds, ArrayBatches):  # no TensorFlow (or images streamed from disk)
            if self.kind == MULTI_WORKER:
                raise UsageError("images streamed from disk (--stream-images) are not split over the workers "
                                 "of TensorFlow's MultiWorkerMirroredStrategy: use --stream-images off, or "
                                 "the JAX backend (each process then reads its part of every batch)")
            if self.kind == JAX_DATA_PARALLEL and self.processes > 1:
                ds.shard = (self.process_index, self.processes)
            return ds
        import tensorflow as tf

        if self.kind == MULTI_WORKER:
            # Every worker builds the same pipeline and keeps its replicas' shares of each
            # global batch (tf.distribute splits the batches; DATA says so explicitly).
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            ds = ds.with_options(options)
        elif self.kind == JAX_DATA_PARALLEL and self.processes > 1:
            # Process p takes the p-th slice of every global batch; JAX assembles the global
            # batch from the processes' slices in process order. (Keras would shard the same
            # way, but its sharded dataset has an unknown length: fit would warn that the data
            # "ran out" at the end of the first epoch.)
            ds = ds.rebatch(self.batch_size // self.processes).shard(self.processes, self.process_index)
            ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
        return ds

    def prepare_model(self, model):
        """Installs the Keras work-around that a multi-worker run needs (see
        `_work_around_keras_multi_worker_bugs`), until `close`."""
        if self.kind == MULTI_WORKER:
            self._on_close.append(_work_around_keras_multi_worker_bugs(model))
        return model

    def close(self):
        """Undo what the set-up changed in the process (the distribution, the work-around)."""
        while self._on_close:
            self._on_close.pop()()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


JAX_DATA_PARALLEL = "JAX DataParallel"
MIRRORED = "TensorFlow MirroredStrategy"
MULTI_WORKER = "TensorFlow MultiWorkerMirroredStrategy"


def _int_variable(name, minimum, maximum=None):
    value = os.environ[name]
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise UsageError(f"{name} must be an integer >= {minimum}{upper}; found {value!r}")
    return number


def _tf_config_tasks():
    """The number of tasks (chief and workers) that TF_CONFIG describes, 0 if it is unset."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return 0
    try:
        cluster = json.loads(text).get("cluster", {})
        return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    except (ValueError, AttributeError, TypeError) as e:
        raise UsageError(f"TF_CONFIG is not the JSON of a cluster ({e}); found {text[:200]!r}. See docs/scaling.md")


def setup(args):
    """The `Distribution` that `--distribute` and the environment ask for; prints the devices."""
    backend = keras.backend.backend()
    jax_variables = [name for name in JAX_PROCESS_VARIABLES if os.environ.get(name)]
    tf_tasks = _tf_config_tasks()
    if not args.distribute:
        if jax_variables or tf_tasks > 1:
            asked = ", ".join(jax_variables) if jax_variables else f"TF_CONFIG ({tf_tasks} tasks)"
            raise UsageError(f"{asked} asks for a run over several processes, but --distribute is not given: "
                 f"every process would train alone and write the same --output. Add --distribute, "
                 f"or unset the variable.")
        return Distribution()
    if backend == "jax":
        if tf_tasks > 1 and not jax_variables:
            raise UsageError("TF_CONFIG describes a cluster, but the JAX backend reads KERAS_DISTRIBUTION_JOB_ADDRESSES, "
                 "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID (see docs/scaling.md)")
        dist = _setup_jax(args, jax_variables)
    elif backend == "tensorflow":
        if jax_variables and tf_tasks <= 1:
            raise UsageError(f"{', '.join(jax_variables)} describe a JAX cluster; the TensorFlow backend reads TF_CONFIG "
                 f"(MultiWorkerMirroredStrategy, see docs/scaling.md)")
        dist = _setup_tensorflow(args, tf_tasks)
    else:
        raise UsageError(f"--distribute needs KERAS_BACKEND=jax or tensorflow; found KERAS_BACKEND={backend}, "
             f"which trains on one device (drop --distribute)")
    role = "the chief: writes --output" if dist.chief else "writes a temporary folder it deletes at exit"
    print(f"--distribute: {dist.kind}, {dist.replicas} devices in {dist.processes} process(es); "
          f"process {dist.process_index} ({role}) drives {', '.join(dist.devices)}; "
          f"global batch {args.batch_size}, {args.batch_size // dist.replicas} images per device")
    return dist


def _check_batch_size(batch_size, replicas):
    if batch_size % replicas:
        larger = -(-batch_size // replicas) * replicas
        raise UsageError(f"--batch-size {batch_size} is not a multiple of the number of devices ({replicas}): with "
             f"--distribute each device takes an equal share of the global batch. Use --batch-size "
             f"{larger}, for instance")


def _setup_jax(args, jax_variables):
    import jax

    if jax_variables:
        if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
            count = _int_variable("KERAS_DISTRIBUTION_NUM_PROCESSES", 1)
            if os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID"):
                _int_variable("KERAS_DISTRIBUTION_PROCESS_ID", 0, count - 1)
        # A seed set before `initialize` spares it agreeing on one across the processes.
        keras.utils.set_random_seed(args.seed)
        try:
            keras.distribution.initialize()  # reads the KERAS_DISTRIBUTION_* variables
        except Exception as e:  # the coordinator unreachable, a wrong address, ...
            raise UsageError(f"keras.distribution.initialize() failed: {type(e).__name__}: {e}\n"
                 f"Check KERAS_DISTRIBUTION_JOB_ADDRESSES (the coordinator's host:port, the same in every "
                 f"process), KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID (0 .. N-1).")
    devices = keras.distribution.list_devices()  # the devices of every process
    _check_batch_size(args.batch_size, len(devices))
    previous = keras.distribution.distribution()
    # Several processes: `prepare_dataset` gives each process its slice of the global batch.
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    )
    return Distribution(
        JAX_DATA_PARALLEL, replicas=len(devices), processes=jax.process_count(),
        devices=[f"{d.platform}:{d.id}" for d in jax.local_devices()], process_index=jax.process_index(),
        batch_size=args.batch_size,
        # The distribution is process-wide state: restore it for a caller that goes on.
        on_close=lambda: keras.distribution.set_distribution(previous),
    )


def _setup_tensorflow(args, tf_tasks):
    import tensorflow as tf

    if tf_tasks > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        if resolver.task_type not in ("chief", "worker"):
            raise UsageError(f"TF_CONFIG's task type must be 'chief' or 'worker' for MultiWorkerMirroredStrategy; "
                 f"found {resolver.task_type!r}")
        has_chief = "chief" in resolver.cluster_spec().as_dict()
        index = 0 if resolver.task_type == "chief" else resolver.task_id + int(has_chief)
        kind, processes = MULTI_WORKER, tf_tasks
    else:
        strategy = tf.distribute.MirroredStrategy()
        kind, processes, index = MIRRORED, 1, 0
    _check_batch_size(args.batch_size, strategy.num_replicas_in_sync)
    return Distribution(
        kind, scope=strategy.scope, replicas=strategy.num_replicas_in_sync, processes=processes,
        devices=list(strategy.extended.worker_devices), process_index=index, batch_size=args.batch_size,
    )


def _work_around_keras_multi_worker_bugs(model):
    """Two fixes that Keras 3's TensorFlow trainer needs under MultiWorkerMirroredStrategy.

    Keras 3 (up to 3.15 at least; keras-team/keras#20585) fails in `fit` under
    MultiWorkerMirroredStrategy in two places, both in `keras/src/backend/tensorflow/trainer.py`:

    1. `_maybe_symbolic_build` reduces the whole first data batch, a tuple of `PerReplica`,
       with one `strategy.reduce` call, which MultiWorkerMirroredStrategy cannot do:
       "ValueError: Attempt to convert a value (PerReplica:{...}) with an unsupported type
       (<class '...PerReplica'>) to a Tensor." It only needs the shapes of a replica's
       batch, so the replacement takes this worker's first replica's batch.
    2. `reduce_per_replica` reduces each step's (scalar) logs with
       `strategy.reduce("MEAN", v, axis=0)`: "ValueError: Invalid reduction dimension 0 for
       input with 0 dimensions". The replacement averages over the replicas (`axis=None`),
       as Keras does for MirroredStrategy.

    Both replacements are installed only in a MultiWorkerMirroredStrategy run, for that
    run: the returned function restores Keras' own (`Distribution.close` calls it).
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    missing = [name for name in ("reduce_per_replica", "_collective_all_reduce_multi_worker")
               if not hasattr(tf_trainer, name)]
    if missing or not hasattr(model, "_maybe_symbolic_build") or not hasattr(model, "_symbolic_build"):
        raise UsageError(f"this Keras ({keras.__version__}) changed the internals that the MultiWorkerMirroredStrategy "
             f"work-around replaces ({', '.join(missing) or '_maybe_symbolic_build'}); see docs/scaling.md")
    import tensorflow as tf

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica

    def maybe_symbolic_build(iterator=None, data_batch=None):
        strategy = model.distribute_strategy
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(batches)
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build

    def undo():
        tf_trainer.reduce_per_replica = original
        del model._maybe_symbolic_build

    return undo
