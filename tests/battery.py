"""The standard batteries: every keras-tx layer and every keras-tx model passes one, one call per test.

`run_layer_battery(cls, init_kwargs, inputs)` checks, in order:
  1. config round trip: `from_config(get_config())` gives the same config;
  2. eager call (and the expected output shape);
  3. symbolic call: a functional model of the layer gives the eager outputs with the same weights;
  4. `.keras` save and reload with `safe_mode=True`: same outputs;
  5. `jit_compile=True` prediction: same outputs;
  6. one `fit` step under XLA: the loss is finite and every trainable weight changes;
  7. mixed precision (`mixed_float16`, `mixed_bfloat16`): float32 variables, outputs in the compute dtype,
     finite, close to the float32 outputs with the same weights.

`run_model_battery(model_factory, inputs, targets, loss)` runs the same checks on a whole model (as keras-hub's
`run_backbone_test` / `run_task_test` do): steps 4 to 7 are shared with the layer battery, and
  1. config round trip: the same config, and the same outputs with the same weights;
  2. eager call (and the expected output shape); `predict` gives the same outputs;
  (3., the symbolic call, is moot: the models are functional), then 4. to 7. as above on the model itself (its
  fit step with Lion, not under XLA), 7 building it again with `model_factory(dtype=policy)`; and in 7 the
  policy survives the config round trip (`assert_policy_round_trip`).
"""

import os
import tempfile

import keras
import numpy as np

MIXED_POLICIES = (("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16"))


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


# --------------------------------------------------------------------------- checks both batteries share


def _numpy(outputs):
    """Every output (a tensor, or a list or dict of them) as a numpy array, in `keras.tree.flatten` order."""
    return [keras.ops.convert_to_numpy(output) for output in keras.tree.flatten(outputs)]


def _float_outputs(outputs):
    return [o for o in keras.tree.flatten(outputs) if keras.backend.is_float_dtype(o.dtype)]


def _assert_close(actual, expected, atol, rtol=None, err_msg=""):
    actual, expected = _numpy(actual), _numpy(expected)
    assert len(actual) == len(expected), (len(actual), len(expected), err_msg)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, atol=atol, rtol=atol if rtol is None else rtol, err_msg=err_msg)


def _check_reload(model, x, expected):
    """4. `.keras` save and reload with `safe_mode=True` (no custom_objects: keras-tx registers its classes)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path, safe_mode=True)
    assert type(reloaded) is type(model), (type(reloaded), type(model))
    _assert_close(reloaded.predict(x, verbose=0), expected, atol=1e-5, err_msg="reloaded")
    return reloaded


def _check_jit(model, x, expected):
    """5. An XLA-compiled prediction."""
    model.compile(jit_compile=True)
    _assert_close(model.predict(x, verbose=0), expected, atol=1e-4, err_msg="jit_compile=True")


def _check_fit_step(model, x, y, loss, zero_gradient_weights, name, optimizer=None, jit_compile=True):
    """6. One `fit` step (under XLA by default): a finite loss, and every trainable weight moves (bar
    `zero_gradient_weights`, suffixes of weight paths whose gradient is zero by construction)."""
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.1), loss=loss, jit_compile=jit_compile)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert before, f"{name} has no trainable weights"
    batch_size = len(keras.tree.flatten(x)[0])
    history = model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)
    assert np.isfinite(history.history["loss"][0]), history.history
    for weight, old in zip(model.trainable_weights, before):
        if weight.path.endswith(tuple(zero_gradient_weights)):
            continue
        assert not np.allclose(keras.ops.convert_to_numpy(weight), old), f"{weight.path} did not train"


def _check_mixed_precision(build, call, expected, policies, atol, output_dtype=None):
    """7. For each (policy, compute dtype): `build(policy)` with float32 weights, `call(it, compute dtype)` gives
    finite outputs in the compute dtype (or in `output_dtype`), close to the float32 `expected`."""
    for policy, compute_dtype in policies:
        built = build(policy)
        assert all(w.dtype == "float32" for w in built.weights), policy
        outputs = call(built, compute_dtype)
        for out in _float_outputs(outputs):
            dtype = keras.backend.standardize_dtype(out.dtype)
            assert dtype == (output_dtype or compute_dtype), (policy, dtype)
        outputs = keras.tree.map_structure(lambda t: keras.ops.cast(t, "float32"), outputs)
        assert all(np.all(np.isfinite(o)) for o in _numpy(outputs)), policy
        _assert_close(outputs, expected, atol=atol, rtol=0.1, err_msg=policy)


# --------------------------------------------------------------------------- the layer battery


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
    _assert_close(model.predict(x, verbose=0), eager, atol=1e-5, err_msg="functional")

    # 4. Save and reload; 5. XLA; 6. one fit step moves every trainable weight.
    _check_reload(model, x, eager)
    _check_jit(model, x, eager)
    target = np.random.default_rng(0).normal(size=eager.shape).astype("float32")
    _check_fit_step(model, x, target, "mse", zero_gradient_weights, layer_cls.__name__)

    # 7. Mixed precision: same weights, half-precision compute, float32 variables.
    if run_mixed_precision:
        weights = layer.get_weights()

        def build(policy):
            mp_layer = layer_cls(**init_kwargs, dtype=policy)
            _call(mp_layer, inputs, call_kwargs)
            mp_layer.set_weights(weights)
            return mp_layer

        def call(mp_layer, compute_dtype):
            return _first(_call(mp_layer, _float_inputs(inputs, compute_dtype), call_kwargs))

        _check_mixed_precision(build, call, eager, MIXED_POLICIES, mixed_precision_atol)
    return layer, eager


# --------------------------------------------------------------------------- the model battery


def _layer_dtypes(model):
    """(compute dtype, variable dtype) of each layer inside `model`, in order; nested models are skipped (their
    own policy is not what they compute in: a functional model keeps the global policy, its layers their own)."""
    return [
        (layer.compute_dtype, layer.variable_dtype)
        for layer in model._flatten_layers(include_self=False)
        if not isinstance(layer, (keras.Model, keras.layers.InputLayer))
    ]


def assert_policy_round_trip(model, policy=None):
    """`from_config(get_config())` of `model` (built with a dtype policy) computes in the same dtypes, layer by
    layer: the policy is in the config. A `.keras` reload goes through `from_config` too."""
    clone = type(model).from_config(model.get_config())
    expected, actual = _layer_dtypes(model), _layer_dtypes(clone)
    assert actual == expected, (
        f"{type(model).__name__} built with {policy or model.dtype_policy.name}: after from_config its layers "
        f"compute in {sorted({c for c, _ in actual})}, not {sorted({c for c, _ in expected})}"
    )


def run_model_battery(
    model_factory,
    inputs,
    targets,
    loss,
    expected_output_shape=None,
    zero_gradient_weights=("key/bias",),
    mixed_precision_policies=MIXED_POLICIES,
    mixed_precision_atol=0.15,
    mixed_precision_output_dtype=None,
    optimizer=None,
    fit_jit_compile=False,
):
    """Run the standard checks on the model `model_factory()` called on `inputs`.

    Args:
        model_factory: `model_factory(dtype=None)` builds a fresh model (of fresh random weights) with that dtype
            policy, e.g. `lambda dtype=None: GPTClassifier(GPT(..., dtype=dtype), 3)`.
        inputs: what the model takes: a numpy array or a dict of them.
        targets: what `fit` is given with `inputs` (matching the outputs' structure).
        loss: the `compile` loss of the fit step.
        expected_output_shape: shape of the output (a single-output model), if checked.
        zero_gradient_weights: suffixes of weight paths whose gradient is zero by construction (see
            `run_layer_battery`), e.g. a pooler the task head does not read.
        mixed_precision_policies: (policy, compute dtype) pairs to build the model with; () skips the check.
        mixed_precision_atol: how far half-precision outputs may be from float32 ones.
        mixed_precision_output_dtype: the outputs' dtype under mixed precision, if not the compute dtype (a
            head kept in float32).
        optimizer: of the fit step; Lion(1e-3) by default. Its first step moves every weight by the learning
            rate times the sign of its gradient, whatever the gradient's size (SGD leaves the tiny gradients of
            a freshly initialized attention within `np.allclose` of the old values): only a zero gradient
            stays put.
        fit_jit_compile: run the fit step under XLA. Off by default: step 5 has compiled the forward pass with
            XLA already, and compiling a training step costs seconds per model.

    Returns:
        (the model, its eager outputs as numpy) before the fit step.
    """
    model = model_factory()
    cls = type(model)
    name = cls.__name__

    # 1. Config round trip: same config, and with the same weights the same outputs.
    config = model.get_config()
    clone = cls.from_config(config)
    assert type(clone) is cls
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())

    # 2. Eager call; `predict` (a traced function) and the clone agree.
    eager = model(inputs, training=False)
    eager_np = keras.tree.map_structure(keras.ops.convert_to_numpy, eager)
    if expected_output_shape is not None:
        assert tuple(eager.shape) == tuple(expected_output_shape), (eager.shape, expected_output_shape)
    assert all(np.all(np.isfinite(o)) for o in _numpy(eager_np)), name
    _assert_close(clone(inputs, training=False), eager_np, atol=1e-5, err_msg="from_config")
    _assert_close(model.predict(inputs, verbose=0), eager_np, atol=1e-5, err_msg="predict")
    weights = model.get_weights()

    # 4. Save and reload; 5. XLA; 6. one fit step moves every trainable weight.
    _check_reload(model, inputs, eager_np)
    _check_jit(model, inputs, eager_np)
    optimizer = optimizer or keras.optimizers.Lion(1e-3)
    _check_fit_step(model, inputs, targets, loss, zero_gradient_weights, name, optimizer, fit_jit_compile)

    # 7. Mixed precision: the same weights, half-precision compute, float32 variables.
    def build(policy):
        mp_model = model_factory(dtype=policy)
        mp_model.set_weights(weights)
        assert_policy_round_trip(mp_model, policy)  # a mixed model comes back from its config still mixed
        return mp_model

    def call(mp_model, compute_dtype):
        return mp_model(inputs, training=False)

    _check_mixed_precision(
        build, call, eager_np, mixed_precision_policies, mixed_precision_atol, mixed_precision_output_dtype
    )
    return model, eager_np


def run_task_battery(task_class, model_dir, python_answer, serve=None, compare=None, other_kind_dir=None):
    """The task battery (keras-hub's `run_task_test`, for a whole job): one call per kind of task.

    1. `keras_tx.tasks.load(model_dir)` gives an instance of `task_class`, and `task_class.load` the same;
    2. directory round trip: the directory copied elsewhere loads to the same answers (`python_answer(task)`);
    3. refusals: a directory of another kind (`other_kind_dir`) and a damaged model.keras give one-line ValueErrors
       that say so, and nothing in the directory changes;
    4. serving: `keras_tx.export.export` writes the task's signatures (`task_class.signatures` plus serving_default),
       and `serve(signatures)` (a call of the exported signature on the same input) equals the Python answer by
       `compare(served, answer)` (default: equal).
    """
    import hashlib
    import shutil

    from keras_tx import export, tasks

    task = tasks.load(model_dir)
    assert type(task) is task_class and isinstance(task_class.load(model_dir), task_class)
    answer = python_answer(task)
    with tempfile.TemporaryDirectory() as folder:
        copy = os.path.join(folder, "copy")
        shutil.copytree(model_dir, copy)
        assert python_answer(tasks.load(copy)) == answer, "a copied directory answers differently"

        if other_kind_dir is not None:
            try:
                task_class.load(other_kind_dir)
            except ValueError as error:
                assert task_class.description in str(error) and "\n" not in str(error), str(error)
            else:
                raise AssertionError(f"{task_class.__name__}.load accepted {other_kind_dir}")
        damaged = os.path.join(folder, "damaged")
        shutil.copytree(model_dir, damaged)
        with open(os.path.join(damaged, "model.keras"), "r+b") as file:
            file.truncate(1000)
        before = {name: hashlib.sha256(open(os.path.join(damaged, name), "rb").read()).hexdigest()
                  for name in sorted(os.listdir(damaged)) if os.path.isfile(os.path.join(damaged, name))}
        try:
            tasks.load(damaged)
        except ValueError as error:
            assert "could not be loaded" in str(error) and "\n" not in str(error), str(error)
        else:
            raise AssertionError("a damaged model.keras loaded")
        after = {name: hashlib.sha256(open(os.path.join(damaged, name), "rb").read()).hexdigest()
                 for name in sorted(os.listdir(damaged)) if os.path.isfile(os.path.join(damaged, name))}
        assert before == after

        if serve is None:
            assert not task_class.signatures, f"{task_class.__name__} has signatures the battery does not serve"
            return
        import tensorflow as tf

        out = os.path.join(folder, "saved")
        described = export.export(model_dir, out)["signatures"]
        assert set(described) == {"serving_default", *task_class.signatures}, sorted(described)
        served = serve(tf.saved_model.load(out).signatures)
        if compare is None:
            assert served == answer, (served, answer)
        else:
            compare(served, answer)
