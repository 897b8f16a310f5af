"""`DRLocModel`: a classifier whose training loss is `CE + lambda * DRLoc` (spec section 7).

The backbone protocol
---------------------
A backbone is any Keras model (or layer) that maps images to logits and one or more
feature maps. Its output is either

- a dict `{"logits": [B, num_classes], "feature_maps": [F_1, ..., F_k]}` (a single
  tensor is accepted for `"feature_maps"`), or
- a list or tuple `[logits, F_1, ..., F_k]`,

where each feature map `F_i` is channels last, `[B, H_i, W_i, C_i]`, with static
`H_i, W_i >= 2`. Logits are pre-softmax. A functional model with such outputs is a
backbone; so is every model in `drloc_keras.backbones`.

Where the loss is computed
--------------------------
`call(x, training=True)` runs the backbone and, for every selected feature map, its own
`DRLocHead` (pair sampling, MLP, loss); it returns `{"logits", "drloc_loss"}`.
`compute_loss` (which `train_step` calls on every backend) adds `lambda * drloc_loss` to
the compiled loss and advances the schedule's step counter. Outside training, `call`
returns the logits alone and no pair is sampled, so `predict` and `evaluate` cost what
the backbone costs.

Data parallel
-------------
Under `keras.distribution.DataParallel` (JAX) a step sees the global batch and nothing
changes. Under a `tf.distribute` strategy each replica sees its share: the heads then
sample every image's pairs from one draw for the global batch (`drloc_keras.replicas`),
and the DRLoc term is divided by the number of replicas as Keras divides the compiled
loss, so the loss, the gradients and the logs equal those of one device on the global
batch.
"""

import keras
import numpy as np
from keras import ops

from drloc_keras import streams
from drloc_keras.head import DRLocHead, check_hidden, check_initializer
from drloc_keras.losses import check_mode, drloc_loss
from drloc_keras.replicas import replica_context
from drloc_keras.schedules import check_schedule, lambda_at_epoch
from drloc_ref import HIDDEN, MODE, SAMPLE_SIZE, TOTAL_EPOCHS, WARMUP_EPOCHS


def split_backbone_output(output):
    """`(logits, [feature maps])` from a backbone's output (see the module docstring)."""
    if isinstance(output, dict):
        if "logits" not in output:
            raise ValueError(
                f"A backbone that returns a dict must have a 'logits' entry. "
                f"Found keys {sorted(output)}"
            )
        maps = output.get("feature_maps", [])
        maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
        return output["logits"], maps
    if isinstance(output, (list, tuple)):
        if not output:
            raise ValueError("The backbone returned an empty list; expected [logits, F_1, ...]")
        return output[0], list(output[1:])
    return output, []


class _LastValue(keras.metrics.Metric):
    """A metric whose result is the last value given (for lambda, which is not a mean)."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, **kwargs)
        # "mean": under tf.distribute each replica holds the same value, and the default
        # "sum" would report lambda times the number of replicas.
        self.value = self.add_variable(shape=(), initializer="zeros", name="value", aggregation="mean")

    def update_state(self, value, sample_weight=None):
        self.value.assign(ops.cast(value, self.dtype))

    def result(self):
        # A new tensor, not a view of the variable: `evaluate` resets the variable after
        # `fit` has read the epoch's logs, and a view would change the logged value.
        return ops.copy(ops.convert_to_tensor(self.value))

    def reset_state(self):
        self.value.assign(0.0)


class _StepsPerEpoch(keras.callbacks.Callback):
    """Tells the model how many steps `fit` runs per epoch, for the lambda schedule."""

    def on_train_begin(self, logs=None):
        steps = self.params.get("steps")
        if not steps:
            raise ValueError(
                "lam_schedule='warmup-decay' counts epochs in steps, but `fit` does not know "
                "the number of steps per epoch (a dataset of unknown length?). Pass "
                "`steps_per_epoch` to DRLocModel(...) or to fit(...)."
            )
        self.model.steps_per_epoch_variable.assign(int(steps))


@keras.saving.register_keras_serializable(package="drloc")
class DRLocModel(keras.Model):
    """A classifier trained with cross-entropy plus the DRLoc loss.

    Args:
        backbone: a model following the backbone protocol (module docstring).
        lam: weight `lambda` of the DRLoc loss (>= 0). With `lam=0` and the constant
            schedule DRLoc is off: no pair is sampled and the model trains as the plain
            backbone would.
        lam_schedule: `"constant"` (default) or `"warmup-decay"` (the authors': linear
            warm-up over `warmup_epochs`, then linear decay to 0 at `total_epochs`).
        warmup_epochs, total_epochs: the schedule's epochs (defaults 20 and 300).
        steps_per_epoch: training steps per epoch for the schedule; by default `fit`
            supplies the number of steps of its epochs.
        mode: `"l1"` (default), `"ce"` or `"cbr"`: the DRLoc loss.
        sample_size: pairs sampled per image and feature map (default 64).
        use_abs, normalize: the target (spec section 4); defaults `True`, `False`.
        hidden: width of each head's MLP (default 512, the authors'), or `"auto"`:
            twice the channels of the head's feature map, at most 512.
        head_initializer: `"glorot"` (default) or `"trunc_normal"` (the authors' Swin
            and T2T-ViT: std 0.02) for the heads' Dense kernels.
        feature_maps: which of the backbone's feature maps get a head: `"last"`
            (default), `"all"` (multi-scale: the losses of the heads are summed), or a
            list of indices into the backbone's feature maps.
        seed: int or None; seeds the model's pair sampler. Every head draws its pairs
            from that one `streams.Stream`, one head after the other. A training run
            re-seeds it, with every other generator of the model, before each epoch
            (`streams.reseed`).
        augmentation: None (default) or a Keras layer applied to the inputs in
            training only, inside the compiled training step, such as
            `drloc_keras.augmentation.Augmentation` (flip, RandAugment, erasing, MixUp /
            CutMix). It receives what `fit` gives the model as `x`: images, or a dict
            `{"images": ..., "labels": one-hot}`, and returns the same structure; labels
            it returns (mixed ones) are the targets of the loss and the training metrics.

    Inputs: images `[B, H, W, C]` (integer images, such as uint8, are cast to float32;
    the backbone normalises), or in training a dict `{"images", "labels"}` (see
    `augmentation`).

    Metrics added to `fit`'s logs: `ce_loss` (the compiled loss), `drloc_loss` (the
    sum over heads, before lambda) and `lambda` (its value at the last step).

    Example:

    >>> backbone = drloc_keras.backbones.get("cvt", image_size=32, num_classes=10)
    >>> model = DRLocModel(backbone, lam=0.1)
    >>> model.compile(optimizer="adamw", metrics=["accuracy"])
    >>> model.fit(x, y, epochs=10)
    """

    def __init__(
        self,
        backbone,
        lam=0.1,
        lam_schedule="constant",
        warmup_epochs=WARMUP_EPOCHS,
        total_epochs=TOTAL_EPOCHS,
        steps_per_epoch=None,
        mode=MODE,
        sample_size=SAMPLE_SIZE,
        use_abs=True,
        normalize=False,
        hidden=HIDDEN,
        feature_maps="last",
        head_initializer="glorot",
        seed=None,
        augmentation=None,
        **kwargs,
    ):
        if augmentation is not None and not isinstance(augmentation, keras.layers.Layer):
            raise ValueError(
                f"`augmentation` must be None or a Keras layer (such as "
                f"drloc_keras.augmentation.Augmentation). Found augmentation={augmentation!r}"
            )
        check_schedule(lam_schedule, lam, warmup_epochs, total_epochs)
        check_mode(mode)
        check_hidden(hidden)
        check_initializer(head_initializer, "head_initializer")
        if steps_per_epoch is not None and (
            isinstance(steps_per_epoch, bool)
            or not isinstance(steps_per_epoch, int)
            or steps_per_epoch < 1
        ):
            raise ValueError(
                f"`steps_per_epoch` must be None or an integer >= 1. "
                f"Found steps_per_epoch={steps_per_epoch!r}"
            )
        if not (feature_maps in ("last", "all") or isinstance(feature_maps, (list, tuple))):
            raise ValueError(
                f"`feature_maps` must be 'last', 'all' or a list of indices. "
                f"Found feature_maps={feature_maps!r}"
            )
        super().__init__(**kwargs)
        self._evaluating = False  # True inside `evaluate` (see `get_metrics_result`)
        self.backbone = backbone
        self.lam = float(lam)
        self.lam_schedule = lam_schedule
        self.warmup_epochs = warmup_epochs
        self.total_epochs = total_epochs
        self.steps_per_epoch = steps_per_epoch
        self.mode = mode
        self.sample_size = sample_size
        self.use_abs = bool(use_abs)
        self.normalize = bool(normalize)
        self.hidden = hidden
        self.head_initializer = head_initializer
        self.feature_maps = list(feature_maps) if isinstance(feature_maps, tuple) else feature_maps
        self.seed = seed
        self.augmentation = augmentation
        self.drloc_enabled = not (self.lam == 0.0 and lam_schedule == "constant")

        # One generator for the pairs of every head (see `seed` above).
        self.pair_sampler = streams.Stream(seed, name="drloc_pair_sampler")
        self.step_variable = self.add_weight(
            name="drloc_step", shape=(), dtype="int32", initializer="zeros", trainable=False
        )
        self.steps_per_epoch_variable = self.add_weight(
            name="drloc_steps_per_epoch",
            shape=(),
            dtype="int32",
            initializer=keras.initializers.Constant(steps_per_epoch or 0),
            trainable=False,
        )
        self.ce_loss_tracker = keras.metrics.Mean(name="ce_loss")
        self.drloc_loss_tracker = keras.metrics.Mean(name="drloc_loss")
        self.lambda_tracker = _LastValue(name="lambda")

        self.heads = None
        self.map_indices = None
        self.num_classes = None
        output_spec = self._backbone_output_spec()
        if output_spec is not None:
            self._plan_heads(output_spec)
            if getattr(backbone, "built", False) and getattr(backbone, "inputs", None):
                self.build(tuple(backbone.inputs[0].shape))

    # --- Construction -----------------------------------------------------------------

    def _backbone_output_spec(self, input_shape=None):
        if input_shape is None:
            try:
                return self.backbone.output
            except (AttributeError, ValueError):
                return None
        spec = keras.KerasTensor(tuple(input_shape), dtype=self.backbone.compute_dtype)
        return self.backbone.compute_output_spec(spec)

    def _plan_heads(self, output_spec):
        logits, maps = split_backbone_output(output_spec)
        if not maps:
            raise ValueError(
                "The backbone must return at least one feature map [B, H, W, C] for DRLoc: "
                "a dict {'logits': ..., 'feature_maps': [...]} or a list [logits, F_1, ...]. "
                "Found logits only"
            )
        if len(logits.shape) != 2:
            raise ValueError(f"Backbone logits must be [B, num_classes]. Found {logits.shape}")
        self.num_classes = logits.shape[-1]
        if self.feature_maps == "last":
            indices = [len(maps) - 1]
        elif self.feature_maps == "all":
            indices = list(range(len(maps)))
        else:
            indices = list(self.feature_maps)
            bad = [i for i in indices if not isinstance(i, int) or not -len(maps) <= i < len(maps)]
            if not indices or bad:
                raise ValueError(
                    f"`feature_maps` indices must be integers in [0, {len(maps) - 1}] "
                    f"(the backbone returns {len(maps)} feature maps). Found {self.feature_maps}"
                )
            indices = [i % len(maps) for i in indices]
        for i in indices:
            shape = tuple(maps[i].shape)
            if len(shape) != 4:
                raise ValueError(
                    f"Feature map {i} of the backbone must be [B, H, W, C]. Found shape {shape}"
                )
            for name, value in (("height", shape[1]), ("width", shape[2])):
                if value is None or value < 2:
                    raise ValueError(
                        f"Feature map {i} of the backbone must have a static {name} >= 2 for "
                        f"DRLoc (a 1-wide axis has no relative position). Found shape {shape}"
                    )
        self.map_indices = indices
        self.heads = [
            DRLocHead(
                mode=self.mode,
                sample_size=self.sample_size,
                hidden=self.hidden,
                use_abs=self.use_abs,
                normalize=self.normalize,
                initializer=self.head_initializer,
                seed=None if self.seed is None else self.seed + k,
                dtype=self.dtype_policy,
                name=f"drloc_head_{k}",
            )
            for k in range(len(indices))
        ]

        self._map_shapes = [tuple(maps[i].shape) for i in indices]

    def build(self, input_shape):
        if isinstance(input_shape, dict):  # {"images": ..., "labels": ...} (see `call`)
            input_shape = input_shape["images"]
        if not getattr(self.backbone, "built", False):
            self.backbone.build(input_shape)
        if self.heads is None:
            self._plan_heads(self._backbone_output_spec(input_shape))
        for head, shape in zip(self.heads, self._map_shapes):
            if not head.built:
                head.build(shape)
            if not self.drloc_enabled:  # lam=0: the heads exist (same weights) but never run
                head.trainable = False
        self.built = True

    # --- Forward pass and loss --------------------------------------------------------

    def call(self, inputs, training=None):
        if training and self.augmentation is not None:
            inputs = self.augmentation(inputs, training=True)
        images, labels = (inputs["images"], inputs.get("labels")) if isinstance(inputs, dict) else (inputs, None)
        if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(images.dtype)):
            images = ops.cast(images, "float32")  # uint8 images, as the input pipelines give them
        logits, maps = split_backbone_output(self.backbone(images, training=training))
        # Float32 logits under a mixed-precision policy, as Keras advises for model outputs:
        # losses and metrics (top-k among them) then see one dtype.
        logits = ops.cast(logits, "float32")
        extra = {"labels": labels} if training and labels is not None else {}
        if not training or not self.drloc_enabled:
            return {"logits": logits, **extra} if extra else logits
        total = None
        for head, index, positions in zip(self.heads, self.map_indices, self.sample_positions(maps)):
            pred, target = head(maps[index], positions=positions)
            loss = drloc_loss(pred, target, self.mode)
            total = loss if total is None else total + loss
        return {"logits": logits, "drloc_loss": total, **extra}

    def sample_positions(self, maps):
        """`[(p, q)]`, one per head: the pairs of one training step for the feature maps
        `maps` (all of the backbone's), drawn head after head from `pair_sampler`."""
        return [
            head.sample(ops.shape(maps[index])[0], self.pair_sampler)
            for head, index in zip(self.heads, self.map_indices)
        ]

    def current_lambda(self):
        """Lambda at the current training step (a float32 tensor)."""
        if self.lam_schedule == "constant":
            return ops.convert_to_tensor(self.lam, dtype="float32")
        steps = ops.maximum(ops.convert_to_tensor(self.steps_per_epoch_variable), 1)
        epoch = ops.floor_divide(ops.convert_to_tensor(self.step_variable), steps)
        return lambda_at_epoch(
            epoch, self.lam, self.lam_schedule, self.warmup_epochs, self.total_epochs
        )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, dict):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        # The labels the model mixed with the images (MixUp, CutMix), where it did.
        y = y_pred.get("labels", y)
        if "drloc_loss" not in y_pred:
            return super().compute_loss(x, y, y_pred["logits"], sample_weight, training=training)
        ce = super().compute_loss(x, y, y_pred["logits"], sample_weight, training=training)
        ce = ops.cast(ce, "float32")
        drloc = ops.cast(y_pred["drloc_loss"], "float32")
        lam = self.current_lambda()
        if training:
            self.step_variable.assign_add(1)
        # Under a multi-replica tf.distribute strategy Keras returns the compiled loss
        # divided by the number of replicas (the replicas' gradients are summed): the DRLoc
        # term is divided the same way, and the trackers get the undivided values.
        _, replicas = replica_context()
        self.ce_loss_tracker.update_state(ce * replicas)
        self.drloc_loss_tracker.update_state(drloc)
        self.lambda_tracker.update_state(lam)
        return ce + lam * drloc / replicas

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        training = isinstance(y_pred, dict) and "drloc_loss" in y_pred
        logits = y_pred
        if isinstance(y_pred, dict):
            logits, y = y_pred["logits"], y_pred.get("labels", y)
        logs = super().compute_metrics(x, y, logits, sample_weight)
        if not training:
            for tracker in self._drloc_trackers():
                logs.pop(tracker.name, None)
        return logs

    def get_metrics_result(self):
        results = super().get_metrics_result()
        # During `evaluate` the DRLoc trackers are idle and not logged. Leaving them out
        # here too keeps the names equal to the test step's logs, so that Keras reports
        # the metrics' accumulated state: exact over a distributed evaluation, where the
        # last step's logs would be an average over the replicas' partial results.
        if self._evaluating:
            for tracker in self._drloc_trackers():
                results.pop(tracker.name, None)
        return results

    def _drloc_trackers(self):
        return self.ce_loss_tracker, self.drloc_loss_tracker, self.lambda_tracker

    # --- fit / evaluate ---------------------------------------------------------------

    def _check_labels(self, y):
        if self.num_classes is None or not isinstance(y, np.ndarray) or y.size == 0:
            return
        if np.issubdtype(y.dtype, np.integer) and (y.ndim == 1 or y.shape[-1] == 1):
            if y.min() < 0 or y.max() >= self.num_classes:
                raise ValueError(
                    f"`y` holds class labels outside [0, {self.num_classes}) for a backbone "
                    f"with {self.num_classes} classes. Found labels in [{y.min()}, {y.max()}]"
                )
        elif y.ndim == 2 and y.shape[-1] not in (1, self.num_classes):
            raise ValueError(
                f"`y` has {y.shape[-1]} columns, but the backbone has {self.num_classes} "
                f"classes: give integer labels [B] or one-hot labels [B, {self.num_classes}]"
            )

    def fit(self, x=None, y=None, *args, callbacks=None, validation_data=None, **kwargs):
        self._check_labels(y)
        if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
            self._check_labels(validation_data[1])
        callbacks = list(callbacks or [])
        if self.drloc_enabled and self.lam_schedule != "constant" and self.steps_per_epoch is None:
            callbacks.append(_StepsPerEpoch())
        self._build_before_tracing(x, y)
        return super().fit(x, y, *args, callbacks=callbacks, validation_data=validation_data, **kwargs)

    def _build_before_tracing(self, x, y):
        # Without a distribution strategy, Keras' TensorFlow trainer builds the optimizer,
        # the compiled metrics and the compiled loss inside the first trace of the train
        # step, and a tf.function that creates variables is traced a second time: every
        # fit would pay for two traces. Build them beforehand from the shapes of a batch,
        # as the trainer itself does under a strategy.
        if keras.backend.backend() != "tensorflow" or not hasattr(self, "_symbolic_build"):
            return
        import tensorflow as tf

        if isinstance(x, tf.data.Dataset):
            batch = x.element_spec
        elif x is not None and y is not None and hasattr(x, "shape") and hasattr(y, "shape"):
            batch = (x, y)
        else:  # generators, PyDatasets: left to the trainer
            return
        try:
            with self.distribute_strategy.scope():
                self._symbolic_build(data_batch=batch)
        except (ValueError, TypeError, RuntimeError, NotImplementedError):
            # Shapes the model cannot be built from symbolically (for example a dataset of
            # unknown image sizes): the trainer builds what is left inside the trace, as
            # it always did; this only saves the second trace.
            pass

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_labels(y)
        before, self._evaluating = self._evaluating, True
        try:
            return super().evaluate(x, y, *args, **kwargs)
        finally:
            self._evaluating = before

    def compile(self, optimizer="adamw", loss=None, metrics=None, **kwargs):
        """Like `keras.Model.compile`; the default loss is sparse categorical
        cross-entropy on logits, and the default metric accuracy."""
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics is None:
            metrics = ["accuracy"]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # `compile` is overridden only to set defaults, so a saved compile config is
        # replayed as is (optimizer state then loads into the rebuilt optimizer).
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # --- Serialization ----------------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "lam": self.lam,
            "lam_schedule": self.lam_schedule,
            "warmup_epochs": self.warmup_epochs,
            "total_epochs": self.total_epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "mode": self.mode,
            "sample_size": self.sample_size,
            "use_abs": self.use_abs,
            "normalize": self.normalize,
            "hidden": self.hidden,
            "feature_maps": self.feature_maps,
            "head_initializer": self.head_initializer,
            "seed": self.seed,
            "augmentation": (None if self.augmentation is None
                             else keras.saving.serialize_keras_object(self.augmentation)),
        }

    @classmethod
    def from_config(cls, config):
        from drloc_keras.run_folder import register_keras_objects

        register_keras_objects()  # the backbone's and the augmentation's classes, whatever was imported
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if isinstance(config.get("augmentation"), dict):
            config["augmentation"] = keras.saving.deserialize_keras_object(config["augmentation"])
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(config["dtype"])
        return cls(**config)
