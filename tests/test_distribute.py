"""tf.distribute with model.fit: multi-worker (two processes on 127.0.0.1) and mirrored on split CPUs."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r"""
import json, os, sys
import numpy as np
out, strategy_name, replicas, use_fix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "fix"
import keras, tensorflow as tf
from keras_tx import training, distribute_fix
if strategy_name == "multi-worker" and not use_fix:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # upstream Keras, unpatched
else:
    strategy = training.make_strategy(strategy_name, cpu_replicas=replicas)
training.configure(seed=3)
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 8)).astype("float32")
y = (x @ rng.normal(size=(8, 1))).astype("float32")
with strategy.scope():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
    model.set_weights([np.full(w.shape, 0.1, "float32") * (i + 1) for i, w in enumerate(model.get_weights())])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
# The global batch is 16 whatever the number of replicas; each replica gets 16 / replicas.
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
model.fit(ds.with_options(options), epochs=2, verbose=0)
np.save(out, np.concatenate([w.ravel() for w in model.get_weights()]))
print("replicas", strategy.num_replicas_in_sync)
"""


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _env(**extra):
    return dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def _run_workers(tmp_path, use_fix):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        out = str(tmp_path / f"worker{index}.npy")
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, out, "multi-worker", "1", "fix" if use_fix else "nofix"],
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    results = []
    for process in processes:
        try:
            stdout, stderr = process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        results.append((process.returncode, stdout, stderr))
    return results


def test_multi_worker_fit_two_processes(tmp_path):
    results = _run_workers(tmp_path, use_fix=True)
    for code, stdout, stderr in results:
        assert code == 0, stderr[-3000:]
        assert "replicas 2" in stdout
    np.testing.assert_array_equal(np.load(tmp_path / "worker0.npy"), np.load(tmp_path / "worker1.npy"))


def test_upstream_still_needs_the_multi_worker_fix(tmp_path):
    """When this fails, keras-team/keras#20585 is fixed upstream: delete keras_tx/distribute_fix.py and its use."""
    results = _run_workers(tmp_path, use_fix=False)
    assert any(code != 0 for code, _, _ in results), "upstream model.fit now works under MultiWorkerMirroredStrategy"
    stderr = "".join(err for _, _, err in results)
    assert "PerReplica" in stderr or "Invalid reduction dimension" in stderr, stderr[-3000:]


def test_mirrored_on_two_cpu_replicas_matches_one_replica(tmp_path):
    outs = {}
    for name, replicas in (("default", 1), ("mirrored", 2)):
        out = tmp_path / f"{name}.npy"
        result = subprocess.run(
            [sys.executable, "-c", WORKER, str(out), name, str(replicas), "fix"],
            env=_env(), capture_output=True, text=True, timeout=240,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"replicas {replicas}" in result.stdout
        outs[name] = np.load(out)
    np.testing.assert_allclose(outs["mirrored"], outs["default"], rtol=1e-5, atol=1e-6)


CORPUS = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40


def test_keras_tx_train_multi_worker_cli_two_processes(tmp_path):
    """The issue's acceptance check: `keras-tx train ... --strategy multi-worker` in two worker processes on
    127.0.0.1 runs to the end, and both workers finish with the same weights."""
    import keras

    import keras_tx.models  # noqa: F401  registers GPT for loading

    corpus = tmp_path / "input.txt"
    corpus.write_text(CORPUS)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    processes = []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            command = [sys.executable, "-m", "keras_tx.cli", "train", "gpt", "--text-file", str(corpus),
                       "--steps", "4", "--eval-interval", "2", "--num-layers", "1", "--num-heads", "2",
                       "--hidden-dim", "16", "--context", "16", "--batch-size", "4", "--eval-batches", "2",
                       "--warmup-steps", "2", "--no-tensorboard", "--verbose", "0", "--strategy", "multi-worker",
                       "--out", str(tmp_path / f"worker{index}")]
            processes.append(subprocess.Popen(command, env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
        results = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:  # a worker left waiting for its peer must not outlive the test
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (stdout, stderr) in zip(processes, results):
        assert process.returncode == 0, stderr[-3000:]
        assert "2 replica(s)" in stdout and "after 4 steps" in stdout, stdout
    weights = [keras.saving.load_model(tmp_path / f"worker{i}" / "model.keras").get_weights() for i in range(2)]
    assert len(weights[0]) == len(weights[1]) > 0
    for first, second in zip(*weights):
        np.testing.assert_array_equal(first, second)
