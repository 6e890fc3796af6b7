"""The standard battery every keras-tx layer passes: one call per layer test gives it all.

`run_layer_battery(cls, init_kwargs, inputs)` checks, in order:
  1. config round trip: `from_config(get_config())` gives the same config;
  2. eager call (and the expected output shape);
  3. symbolic call: a functional model of the layer gives the eager outputs with the same weights;
  4. `.keras` save and reload with `safe_mode=True`: same outputs;
  5. `jit_compile=True` prediction: same outputs;
  6. one `fit` step under XLA: the loss is finite and every trainable weight changes;
  7. mixed precision (`mixed_float16`, `mixed_bfloat16`): float32 variables, outputs in the compute dtype,
     finite, close to the float32 outputs with the same weights.
"""

import os
import tempfile

import keras
import numpy as np


def _first(outputs):
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def _as_inputs(inputs):
    return inputs if isinstance(inputs, dict) else {None: inputs}


def _call(layer, inputs, call_kwargs):
    if None in inputs:
        return layer(inputs[None], **call_kwargs)
    return layer(**inputs, **call_kwargs)


def _functional(layer, inputs, call_kwargs):
    symbolic = {
        name: keras.Input(shape=value.shape[1:], batch_size=None, dtype=str(value.dtype), name=name or "inputs")
        for name, value in inputs.items()
    }
    outputs = _first(_call(layer, symbolic, call_kwargs))
    model_inputs = list(symbolic.values())
    return keras.Model(model_inputs if len(model_inputs) > 1 else model_inputs[0], outputs)


def _model_inputs(inputs):
    values = list(inputs.values())
    return values if len(values) > 1 else values[0]


def _float_inputs(inputs, dtype):
    return {k: (v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v) for k, v in inputs.items()}


def run_layer_battery(
    layer_cls,
    init_kwargs,
    inputs,
    call_kwargs=None,
    expected_output_shape=None,
    run_mixed_precision=True,
    mixed_precision_atol=0.15,
    zero_gradient_weights=("key/bias",),
):
    """Run the standard checks on `layer_cls(**init_kwargs)` called on `inputs`.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        inputs: a numpy array (passed positionally) or a dict of named numpy arrays (passed by keyword).
        call_kwargs: extra non-tensor call arguments.
        expected_output_shape: shape of the (first) output, if checked.
        run_mixed_precision: also run under mixed_float16 and mixed_bfloat16.
        mixed_precision_atol: how far half-precision outputs may be from float32 ones.
        zero_gradient_weights: suffixes of weight paths whose gradient is zero by construction. The key bias of
            attention is one: it adds q.b to every score of a query alike, and softmax ignores such shifts.
    """
    call_kwargs = dict(call_kwargs or {})
    inputs = _as_inputs(inputs)

    # 1. Config round trip.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    assert layer_cls.from_config(config).get_config() == config

    # 2. Eager call.
    eager = _first(_call(layer, inputs, call_kwargs))
    eager = keras.ops.convert_to_numpy(eager)
    if expected_output_shape is not None:
        assert tuple(eager.shape) == tuple(expected_output_shape), (eager.shape, expected_output_shape)
    assert np.all(np.isfinite(eager))

    # 3. Symbolic call with the same weights.
    model = _functional(layer_cls(**init_kwargs), inputs, call_kwargs)
    model.set_weights(layer.get_weights())
    x = _model_inputs(inputs)
    np.testing.assert_allclose(model.predict(x, verbose=0), eager, atol=1e-5, rtol=1e-5)

    # 4. Save and reload (no custom_objects: the layer is registered).
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), eager, atol=1e-5, rtol=1e-5)

    # 5. XLA.
    model.compile(jit_compile=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), eager, atol=1e-4, rtol=1e-4)

    # 6. One fit step moves every trainable weight.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=True)  # training under XLA
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert before, f"{layer_cls.__name__} has no trainable weights"
    target = np.random.default_rng(0).normal(size=eager.shape).astype("float32")
    history = model.fit(x, target, epochs=1, batch_size=len(target), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for weight, old in zip(model.trainable_weights, before):
        if weight.path.endswith(tuple(zero_gradient_weights)):
            continue
        assert not np.allclose(keras.ops.convert_to_numpy(weight), old), f"{weight.path} did not train"

    # 7. Mixed precision: same weights, half-precision compute, float32 variables.
    if run_mixed_precision:
        weights = layer.get_weights()
        for policy, compute_dtype in (("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")):
            mp_layer = layer_cls(**init_kwargs, dtype=policy)
            _call(mp_layer, inputs, call_kwargs)
            mp_layer.set_weights(weights)
            assert all(w.dtype == "float32" for w in mp_layer.weights), policy
            out = _first(_call(mp_layer, _float_inputs(inputs, compute_dtype), call_kwargs))
            assert keras.backend.standardize_dtype(out.dtype) == compute_dtype, (policy, out.dtype)
            out = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
            assert np.all(np.isfinite(out)), policy
            np.testing.assert_allclose(out, eager, atol=mixed_precision_atol, rtol=0.1, err_msg=policy)
    return layer, eager
