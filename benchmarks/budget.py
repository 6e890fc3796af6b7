"""Helpers for benchmark runs on a lent GPU machine: time-budgeted epochs on numpy arrays, weight shards.

A GPU machine here has JAX but not TensorFlow, and its time is counted in minutes, so the quality benchmarks
(translation, BERT, shakespeare) prepare token ids on the TensorFlow side (`... prepare`), train from numpy
arrays on any backend (`... train`), and bring back weights as .npz shards small enough for the transfer limit
(16 MB a file); the TensorFlow side rebuilds the model, loads the shards and scores it (`... score`).
"""

import json
import os
import time

import numpy as np


def fit_epochs(model, x, y, epochs, batch_size, validation=None, time_budget=None, seed=0, log=print):
    """`model.fit` one shuffled epoch at a time, each trimmed to whole batches (one compiled shape), stopping
    early when `time_budget` seconds would be exceeded. Keeps the weights of the epoch with the lowest
    validation loss (the last epoch's without `validation`).

    Args:
        x: an array or a dict of arrays with the same first dimension; y: an array.
        validation: (x_val, y_val) evaluated after each epoch.

    Returns:
        A dict: epochs run, seconds of training, per-epoch records, best epoch.
    """
    count = len(y)
    steps = count // batch_size
    rng = np.random.default_rng(seed)
    take = lambda value, index: {k: v[index] for k, v in value.items()} if isinstance(value, dict) else value[index]
    records, best, best_weights, spent, started = [], None, None, 0.0, time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(count)[: steps * batch_size]
        begin = time.perf_counter()
        history = model.fit(take(x, order), y[order], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        record = {"epoch": epoch + 1, **{k: float(v[-1]) for k, v in history.history.items()}}
        if validation is not None:
            scores = model.evaluate(*validation, batch_size=batch_size, verbose=0, return_dict=True)
            record.update({f"val_{k}": float(v) for k, v in scores.items()})
        seconds = time.perf_counter() - begin
        spent = time.perf_counter() - started
        record["seconds"] = round(seconds, 2)
        records.append(record)
        log(json.dumps(record))
        monitor = record.get("val_loss", record.get("loss"))
        if best is None or monitor < best:
            best, best_weights, best_epoch = monitor, model.get_weights(), epoch + 1
        if time_budget is not None and spent + seconds > time_budget:
            break
    model.set_weights(best_weights)
    return {"epochs_run": len(records), "training_seconds": round(spent, 1), "best_epoch": best_epoch,
            "records": records}


def save_shards(weights, prefix, max_bytes=15_000_000):
    """Write a list of arrays as PREFIX_0.npz, PREFIX_1.npz, ... each under `max_bytes`; returns the paths."""
    shards, current, size = [], {}, 0
    for index, array in enumerate(weights):
        if current and size + array.nbytes > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[f"w{index:04d}"] = np.asarray(array)
        size += array.nbytes
    shards.append(current)
    paths = []
    for number, shard in enumerate(shards):
        paths.append(f"{prefix}_{number}.npz")
        np.savez(paths[-1], **shard)
    return paths


def load_shards(prefix):
    """The list of arrays `save_shards` wrote under `prefix`."""
    arrays, number = {}, 0
    while os.path.exists(f"{prefix}_{number}.npz"):
        with np.load(f"{prefix}_{number}.npz") as shard:
            arrays.update({name: shard[name] for name in shard.files})
        number += 1
    if not arrays:
        raise FileNotFoundError(f"No weight shards {prefix}_0.npz ...")
    return [arrays[name] for name in sorted(arrays)]
