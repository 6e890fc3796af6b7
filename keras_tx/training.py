"""The fit recipe every `keras-tx train` verb uses: strategy, precision, optimizer, schedule, callbacks.

One `model.fit` call carries a run from a laptop to several GPUs, several workers or a TPU; only the strategy
changes. The recipe is nanoGPT's: AdamW (weight decay on matrices only), linear warm-up then cosine decay to a
floor, clipping of the *global* gradient norm. Runs are resumable: an atomic backup is written at the end of
every epoch (an "epoch" here is one evaluation interval), and a rerun of the same command resumes from it, with
the data stream continuing where it stopped, so that an interrupted run ends with the same weights as an
uninterrupted one.

TensorFlow is imported here (tf.distribute, tf.data); layers/ and models/ never import it.
"""

import json
import os
import shutil
import tempfile
import time

import keras

STRATEGIES = ("auto", "default", "mirrored", "multi-worker", "tpu")


def configure(seed=None, deterministic=False, mixed_precision=None):
    """Seed everything, optionally make TF ops deterministic, and set the global dtype policy.

    Args:
        seed: integer seed for Python, NumPy and the backend; None leaves them unseeded.
        deterministic: make TensorFlow ops deterministic (slower; for comparing runs bit for bit).
        mixed_precision: None/"float32", "float16" (float16 compute with loss scaling, for GPUs), "bfloat16"
            (CPUs, TPUs, recent GPUs), or "auto" (float16 on a GPU, bfloat16 elsewhere).

    Returns:
        The dtype policy name now in force.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    policy = precision_policy(mixed_precision)
    keras.config.set_dtype_policy(policy)
    return policy


def precision_policy(mixed_precision):
    """The Keras dtype policy name for a `--mixed-precision` value."""
    if mixed_precision in (None, "none", "float32", False):
        return "float32"
    if mixed_precision == "auto":
        import tensorflow as tf

        mixed_precision = "float16" if tf.config.list_physical_devices("GPU") else "bfloat16"
    if mixed_precision not in ("float16", "bfloat16"):
        raise ValueError(
            f"Unknown mixed precision {mixed_precision!r}: expected one of float32, float16, bfloat16, auto."
        )
    return f"mixed_{mixed_precision}"


def make_strategy(name="auto", cpu_replicas=None, tpu=None):
    """A `tf.distribute` strategy by name.

    Args:
        name: "auto" (MirroredStrategy when several GPUs are visible, else the default strategy), "default",
            "mirrored" (all local GPUs; on a machine without GPUs, `cpu_replicas` logical CPU devices),
            "multi-worker" (MultiWorkerMirroredStrategy; the cluster comes from the TF_CONFIG environment
            variable), or "tpu" (TPUStrategy through TPUClusterResolver).
        cpu_replicas: with "mirrored" and no GPU, split the CPU into this many logical devices, so the
            multi-replica code path runs anywhere. Must be called before TensorFlow initializes its devices.
        tpu: TPU name or address for TPUClusterResolver ("" or None: the local/Colab/Cloud TPU VM default).

    Example:
    >>> strategy = make_strategy("default")
    >>> strategy.num_replicas_in_sync
    1
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}: expected one of {', '.join(STRATEGIES)}.")
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if gpus or not cpu_replicas or cpu_replicas < 2:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy(_logical_cpus(cpu_replicas))
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multi-worker needs the TF_CONFIG environment variable (see README).")
        from keras_tx import distribute_fix

        distribute_fix.apply()  # keras-team/keras#20585: model.fit fails under this strategy without it
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _logical_cpus(count):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:  # devices already initialized: use what exists if it is enough
        if len(tf.config.list_logical_devices("CPU")) < count:
            raise ValueError(
                f"Cannot split the CPU into {count} replicas after TensorFlow has started; "
                "make the strategy before running any TensorFlow op."
            ) from error
    return [device.name for device in tf.config.list_logical_devices("CPU")[:count]]


def make_optimizer(
    total_steps,
    learning_rate=1e-3,
    min_learning_rate=1e-4,
    warmup_steps=100,
    weight_decay=0.1,
    beta_1=0.9,
    beta_2=0.99,
    clip_norm=1.0,
):
    """AdamW with linear warm-up and cosine decay to `min_learning_rate`, clipping the global gradient norm.

    Clipping the norm of all gradients together (`global_clipnorm`, as nanoGPT and PyTorch's
    clip_grad_norm_) rather than each tensor's own norm (`clipnorm`) keeps the update's direction. Call
    `exclude_non_matrices(optimizer, model)` once the model is built, so that only matrices are decayed.
    """
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=min_learning_rate / learning_rate,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    return keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        beta_1=beta_1,
        beta_2=beta_2,
        global_clipnorm=clip_norm,
    )


def exclude_non_matrices(optimizer, model):
    """Exclude biases, norms' scales and other vectors from weight decay (nanoGPT: decay only 2-D weights)."""
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) < 2])


class AtomicBackup(keras.callbacks.Callback):
    """Keras' BackupAndRestore, made crash-safe: each backup is written whole to a new folder, then published
    by atomically replacing a `latest` symlink, so a kill at any instant leaves the previous backup intact.

    `fit` below uses it: `initial_epoch = backup.restore(model)` before `fit(..., initial_epoch=initial_epoch)`: it loads the
    weights and optimizer state of the last complete backup and returns the epoch to resume from.
    """

    def __init__(self, backup_dir, delete_on_end=False):
        super().__init__()
        self.backup_dir = backup_dir
        self.delete_on_end = delete_on_end
        self.latest = os.path.join(backup_dir, "latest")

    def restore(self, model):
        if not os.path.exists(self.latest):
            return 0
        with open(os.path.join(self.latest, "state.json")) as f:
            state = json.load(f)
        model.load_weights(os.path.join(self.latest, "backup.weights.h5"))
        return state["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        folder = tempfile.mkdtemp(prefix=f"epoch-{epoch + 1}-", dir=self.backup_dir)
        self.model.save_weights(os.path.join(folder, "backup.weights.h5"))
        _write_json(os.path.join(folder, "state.json"), {"epoch": epoch + 1, "time": time.time()})
        link = os.path.join(self.backup_dir, f".latest-{os.getpid()}")
        os.symlink(os.path.basename(folder), link)
        previous = os.path.realpath(self.latest) if os.path.exists(self.latest) else None
        os.replace(link, self.latest)  # the atomic step
        if previous and os.path.realpath(previous) != os.path.realpath(folder):
            shutil.rmtree(previous, ignore_errors=True)

    def on_train_end(self, logs=None):
        if self.delete_on_end:
            shutil.rmtree(self.backup_dir, ignore_errors=True)


class HistoryJSON(keras.callbacks.Callback):
    """Writes history.json (one record per epoch, with the global step) atomically after every epoch.

    An existing file is extended, not overwritten, so a resumed run keeps the history of the interrupted one.
    """

    def __init__(self, path, steps_per_epoch, total_steps=None):
        super().__init__()
        self.path = path
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_steps  # the last epoch may be shorter: it ends at total_steps
        self.records = []
        if os.path.exists(path):
            with open(path) as f:
                self.records = json.load(f)

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_epoch
        record = {"epoch": epoch + 1, "step": step if self.total_steps is None else min(step, self.total_steps)}
        record.update({k: float(v) for k, v in (logs or {}).items()})
        self.records = [r for r in self.records if r["epoch"] < epoch + 1] + [record]
        _write_json(self.path, self.records)


class BestWeights(keras.callbacks.Callback):
    """Keeps `best.weights.h5`: the weights of the epoch with the lowest `monitor`, written atomically."""

    def __init__(self, path, monitor="val_loss"):
        super().__init__()
        self.path, self.monitor, self.best = path, monitor, float("inf")

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not value < self.best:
            return
        self.best = float(value)
        tmp = self.path.replace(".weights.h5", f".tmp-{os.getpid()}.weights.h5")
        self.model.save_weights(tmp)
        os.replace(tmp, self.path)


def fit(
    model,
    make_train_dataset,
    total_steps,
    steps_per_epoch,
    out_dir,
    validation_data=None,
    validation_steps=None,
    tensorboard=True,
    verbose="auto",
):
    """`model.fit` for `total_steps` steps in epochs of `steps_per_epoch`, resumable from `out_dir/backup`.

    Args:
        model: a compiled model (created and compiled under the strategy's scope).
        make_train_dataset: `start_step -> tf.data.Dataset` of training batches from global step `start_step` on.
            Resuming asks for the stream from the step the backup was taken at, so a resumed run sees exactly
            the batches an uninterrupted one would have.
        total_steps: optimizer steps in all. When `steps_per_epoch` does not divide it, the last epoch is shorter,
            so that the run still evaluates and backs up at its end.
        steps_per_epoch: steps between evaluations, backups and history records.
        out_dir: where backup/, history.json, best.weights.h5 and logs/ go.
        validation_data, validation_steps: as for `model.fit`.
        tensorboard: also write TensorBoard logs.
        verbose: as for `model.fit` ("auto": a progress bar).

    Returns:
        The list of history records (history.json's content).
    """
    os.makedirs(out_dir, exist_ok=True)
    validation_data = _counted(validation_data) if validation_steps is None else validation_data
    backup = AtomicBackup(os.path.join(out_dir, "backup"))
    history = HistoryJSON(os.path.join(out_dir, "history.json"), steps_per_epoch, total_steps)
    monitor = "val_loss" if validation_data is not None else "loss"
    callback_list = [backup, history, keras.callbacks.TerminateOnNaN(), BestWeights(os.path.join(out_dir, "best.weights.h5"), monitor)]
    if tensorboard:
        callback_list.append(keras.callbacks.TensorBoard(os.path.join(out_dir, "logs"), write_graph=False))
    if not model.optimizer.built:
        with model.distribute_strategy.scope():  # under tf.distribute its slots must be distributed like the weights
            model.optimizer.build(model.trainable_variables)
    initial_epoch = backup.restore(model)
    epochs = -(-total_steps // steps_per_epoch)
    last_epoch_steps = total_steps - (epochs - 1) * steps_per_epoch
    if initial_epoch > epochs:
        raise ValueError(f"The backup in {out_dir} is of a longer run (epoch {initial_epoch} of {epochs}).")
    if initial_epoch:
        print(f"Resuming from the backup at step {min(initial_epoch * steps_per_epoch, total_steps)} of {total_steps}.")
    # Whole epochs in one `fit`; a shorter last epoch, if any, in a second one (Keras' epochs are all alike).
    full_epochs = epochs if last_epoch_steps == steps_per_epoch else epochs - 1
    parts = [(full_epochs, steps_per_epoch)] + ([(epochs, last_epoch_steps)] if full_epochs < epochs else [])
    for end_epoch, steps in parts:
        if initial_epoch >= end_epoch:
            continue
        model.fit(
            make_train_dataset(initial_epoch * steps_per_epoch),
            epochs=end_epoch,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            validation_data=validation_data,
            validation_steps=validation_steps,
            callbacks=callback_list,
            shuffle=False,  # the dataset is already in its (seeded, resumable) order
            verbose=verbose,
        )
        initial_epoch = end_epoch
    return history.records


def _counted(dataset):
    """A tf.data validation set whose number of batches Keras cannot know (after `unbatch`, `filter`, a generator)
    with that number asserted, counted in one pass: Keras otherwise warns, at every evaluation, that the "input ran
    out of data; interrupting training" when it reaches the end. Anything else is returned as it is."""
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset) or int(dataset.cardinality()) != int(tf.data.UNKNOWN_CARDINALITY):
        return dataset
    count = int(dataset.reduce(0, lambda count, *_: count + 1))
    return dataset.apply(tf.data.experimental.assert_cardinality(count))


def _write_json(path, value):
    """Write JSON to a temporary name, then rename: readers never see half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


write_json = _write_json
