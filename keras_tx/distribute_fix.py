"""Make Keras 3 `model.fit` work under `tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585).

Upstream, `fit` fails under MultiWorkerMirroredStrategy in two places:
  1. `TensorFlowTrainer._maybe_symbolic_build` builds the model from the first batch by
     `strategy.reduce("MEAN", batch)`. Under the collective strategy that `reduce` cannot take the per-replica
     batch eagerly ("Attempt to convert a value (PerReplica...) to a Tensor"). Building only needs shapes and
     dtypes, so we take this worker's first local replica's batch instead: no communication at all.
  2. Every step's logs (scalar loss and metrics) go through `reduce_per_replica(..., reduction="auto")`, which
     under the collective strategy calls `strategy.reduce("MEAN", value, axis=0)`: a scalar has no axis 0
     ("Invalid reduction dimension 0 for input with 0 dimensions"). For rank-0 values we reduce across replicas
     only (`axis=None`), which is what the mean of a scalar log means.

`apply()` installs the fix once, only where it is needed (TensorFlow backend); `is_needed()` runs upstream's
code path and tells whether the fix is still necessary, so a test fails the day upstream fixes it — then delete
this file and its call in `training.py`.
"""

import functools

_APPLIED = False


def apply():
    """Patch Keras' TensorFlow trainer (idempotent). Returns True if the patch is (now) installed."""
    global _APPLIED
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    if _APPLIED:
        return True
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    @functools.wraps(original)
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None or iterator is None:
            return original(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            break
        # The first local replica's batch has the per-replica shapes the model will see: enough to build.
        batch = tf.nest.map_structure(
            lambda x: self.distribute_strategy.experimental_local_results(x)[0]
            if isinstance(x, tf.distribute.DistributedValues)
            else x,
            batch,
        )
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=batch)

    original_reduce = tf_trainer.reduce_per_replica

    @functools.wraps(original_reduce)
    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return original_reduce(values, strategy, reduction)

        def reduce_one(value):
            scalar = all(v.shape.rank == 0 for v in strategy.experimental_local_results(value))
            if scalar:
                return strategy.reduce("MEAN", value, axis=None)
            return original_reduce(value, strategy, reduction)

        return tf.nest.map_structure(reduce_one, values)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _APPLIED = True
    return True
