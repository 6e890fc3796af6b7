import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_tx import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny regression run through training.fit; KILL_AT_EPOCH makes it SIGKILL itself right after that epoch's
# backup, the way `kill -9` would at an unlucky moment.
SCRIPT = r"""
import os, signal, sys
import numpy as np, keras, tensorflow as tf
from keras_tx import training
out = sys.argv[1]
training.configure(seed=7, deterministic=True)
w_true = np.arange(8, dtype="float32").reshape(8, 1) / 8

def batches(start):
    steps = tf.data.Dataset.range(start, 12)
    def make(step):
        x = tf.random.stateless_normal((4, 8), seed=tf.stack([tf.constant(7, tf.int64), step]))
        return x, tf.matmul(x, w_true)
    return steps.map(make)

model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
optimizer = training.make_optimizer(total_steps=12, learning_rate=0.05, min_learning_rate=0.005, warmup_steps=2)
training.exclude_non_matrices(optimizer, model)
model.compile(optimizer=optimizer, loss="mse")

class Kill(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == int(os.environ.get("KILL_AT_EPOCH", "0")):
            os.kill(os.getpid(), signal.SIGKILL)

original_fit = model.fit
def fit_with_kill(*args, **kwargs):
    kwargs["callbacks"] = kwargs["callbacks"] + [Kill()]
    return original_fit(*args, **kwargs)
model.fit = fit_with_kill
training.fit(model, batches, total_steps=12, steps_per_epoch=3, out_dir=out, tensorboard=False, verbose=0)
np.save(os.path.join(out, "final.npy"), np.concatenate([w.numpy().ravel() for w in model.weights]))
"""


def _run(out, kill_at=None):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    if kill_at:
        env["KILL_AT_EPOCH"] = str(kill_at)
    return subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True, timeout=300)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    straight = _run(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = _run(tmp_path / "killed", kill_at=2)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "killed" / "final.npy").exists()
    resumed = _run(tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming from the backup at step 6 of 12" in resumed.stdout
    np.testing.assert_allclose(
        np.load(tmp_path / "killed" / "final.npy"), np.load(tmp_path / "straight" / "final.npy"), rtol=1e-6, atol=1e-7
    )
    history = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert [r["step"] for r in history] == [3, 6, 9, 12]
    assert (tmp_path / "killed" / "best.weights.h5").exists()


def test_half_written_backup_is_ignored(tmp_path):
    """A backup folder that never got published (killed while writing) is not what `restore` loads."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    backup = training.AtomicBackup(str(tmp_path))
    assert backup.restore(model) == 0
    (tmp_path / "epoch-3-abc").mkdir()
    (tmp_path / "epoch-3-abc" / "backup.weights.h5").write_bytes(b"truncated")
    assert backup.restore(model) == 0


def test_schedule_warms_up_then_decays_to_the_floor():
    optimizer = training.make_optimizer(total_steps=100, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=10)
    schedule = optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    rates = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    np.testing.assert_allclose(rates, [0.0, 5e-4, 1e-3, 5.5e-4, 1e-4], rtol=1e-3, atol=1e-7)
    assert optimizer.global_clipnorm == 1.0


def test_weight_decay_only_on_matrices():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.LayerNormalization()])
    optimizer = training.make_optimizer(total_steps=10)
    training.exclude_non_matrices(optimizer, model)
    decayed = [v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)]
    assert decayed == [model.layers[0].kernel.path]


@pytest.mark.parametrize("value,policy", [(None, "float32"), ("bfloat16", "mixed_bfloat16"), ("float16", "mixed_float16")])
def test_precision_policy(value, policy):
    assert training.precision_policy(value) == policy


def test_bad_strategy_and_precision_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown strategy 'gpu'"):
        training.make_strategy("gpu")
    with pytest.raises(ValueError, match="Unknown mixed precision 'half'"):
        training.precision_policy("half")


def test_a_minimum_learning_rate_above_the_learning_rate_is_refused_before_anything_is_written(tmp_path):
    """Fine-tuning asks for small learning rates: one below the default floor would make the cosine rise."""
    from keras_tx import tasks

    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"^--min-learning-rate 0\.0001 is above --learning-rate 3e-05: .*\.$"):
        tasks.train(tasks.GPTConfig(learning_rate=3e-5, steps=2, out=str(out)))
    assert not out.exists()


def test_a_validation_set_of_unknown_length_is_counted_once():
    import tensorflow as tf

    unknown = tf.data.Dataset.range(10).filter(lambda x: x % 3 == 0).batch(2)  # 4 elements, 2 batches
    assert int(unknown.cardinality()) == int(tf.data.UNKNOWN_CARDINALITY)
    counted = training._counted(unknown)
    assert int(counted.cardinality()) == 2
    assert [b.numpy().tolist() for b in counted] == [[0, 3], [6, 9]]
    known = tf.data.Dataset.range(4).batch(3)
    assert training._counted(known) is known and training._counted(None) is None
