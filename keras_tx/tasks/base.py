"""The shape every task has, and the one training skeleton all `keras-tx train` verbs run.

A task is a model plus everything around it that a job needs: its tokenizer or image preprocessing, how its model
directory is read, the checks and limits of its inputs, predict / generate, evaluate, its serving signatures and
how it is trained. keras-hub's `Task(backbone, preprocessor)` is the model; ours keeps the steps in view.

    task = keras_tx.tasks.load("saved_models/gpt_shakespeare")     # the registry picks the class by "kind"
    task.generate("ROMEO:", max_new_tokens=100)

Training is one function, `train(config)`, with hooks per task (class methods):

    training_data(config)                       -> data (anything the other hooks read)
    schedule(config, data)                      -> (total steps, steps per evaluation interval)
    build(config, data)                         -> the model (called inside the strategy's scope)
    compile_arguments(config)                   -> loss, metrics for `model.compile`
    batches(config, data, model, seed)          -> start_step -> tf.data of training batches (resumable)
    validation_data(config, data, model, seed)  -> tf.data the interval evaluations run on
    save_preprocessing(out, data)               -> writes the tokenizer files next to the model
    finish(config, data, model, history, metrics) -> (metadata.json fields besides kind, architecture (the
                                                   verb) and config (the model's), summary line); `metrics` holds
                                                   the last evaluation's `history_metrics` and may be added to
"""

import os
import time

import numpy as np

from keras_tx import config as configs


class Task:
    """A model directory's job. Subclasses set the class attributes and implement the hooks they need."""

    kind = None  # metadata.json's "kind"
    description = None  # "a language model": how error messages name it
    configs = {}  # `keras-tx train` verb -> its config dataclass
    required_fields = ()  # metadata.json fields the task reads: a directory without one is refused
    signatures = ()  # the exported signatures besides serving_default, by name
    history_metrics = {}  # metadata.json metric -> the key of the last evaluation's record that holds it

    def __init__(self, model, metadata=None, model_dir=None):
        self.model = model
        self.metadata = dict(metadata or {})
        self.model_dir = model_dir

    # ------------------------------------------------------------------------------------------- directories

    @classmethod
    def load(cls, model_dir):
        """The task of a model directory of this kind; anything else gives a one-line ValueError."""
        from keras_tx import artifacts

        model, metadata = artifacts.load_model(model_dir, kind=cls.kind, description=cls.description,
                                               required_fields=cls.required_fields)
        return cls.from_directory(model, metadata, model_dir)

    @classmethod
    def from_directory(cls, model, metadata, model_dir):
        """The task around a loaded model: subclasses read their tokenizer files here."""
        return cls(model, metadata, model_dir)

    # -------------------------------------------------------------------------------------------------- use

    def evaluate(self, dataset=None, text_file=None, data_dir=None, batches=200, batch_size=12):
        """The model's metrics on its data (by default the data in metadata.json) as a JSON-ready dict."""
        raise NotImplementedError

    def serving_endpoints(self):
        """(text-op modules to save, [(name, function, input signature)]) for `keras_tx.export`."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------- training hooks

    @classmethod
    def schedule(cls, config, data):
        """By default a run counts steps (`--steps`) and evaluates every `--eval-interval` steps."""
        return config.steps, config.eval_interval

    @classmethod
    def compile_arguments(cls, config):
        return {}

    @classmethod
    def save_preprocessing(cls, out, data):
        pass


def train(config):
    """Train the model a config describes and write its directory (`config.out`). Returns the metadata written.

    The directory is checked before anything is read (`artifacts.check_out_dir`: nothing a user made is
    overwritten) and the run is recorded just before the first write, so a rerun of the same command resumes.
    """
    from keras_tx import artifacts, training
    from keras_tx.tasks import task_for_verb

    if not config.out:
        raise ValueError("A training run needs `out`, the model directory to write.")
    if config.min_learning_rate > config.learning_rate:  # the cosine schedule would rise instead of decaying
        raise ValueError(f"--min-learning-rate {config.min_learning_rate:g} is above --learning-rate "
                         f"{config.learning_rate:g}: the schedule decays from the learning rate down to the minimum; give a "
                         "smaller --min-learning-rate.")
    task = task_for_verb(config.model)
    signature = configs.run_signature(config)
    state = artifacts.check_out_dir(config.out, signature, force=config.force)
    strategy = training.make_strategy(config.strategy, cpu_replicas=config.cpu_replicas, tpu=config.tpu)
    policy = training.configure(seed=config.seed, deterministic=config.deterministic,
                                mixed_precision=config.mixed_precision)
    seed = config.seed if config.seed is not None else 0
    data = task.training_data(config)
    total_steps, steps_per_interval = task.schedule(config, data)
    with strategy.scope():
        model = task.build(config, data)
        compile_model(model, config, total_steps, **task.compile_arguments(config))
    print(f"{config.model}: {model.count_params():,} parameters; {strategy.num_replicas_in_sync} replica(s), "
          f"{policy}.")
    validation = task.validation_data(config, data, model, seed)
    artifacts.begin_run(config.out, signature, state, config.command)
    task.save_preprocessing(config.out, data)
    start = time.perf_counter()
    history = training.fit(
        model, task.batches(config, data, model, seed), total_steps=total_steps,
        steps_per_epoch=steps_per_interval, out_dir=config.out, validation_data=validation,
        validation_steps=getattr(data, "validation_steps", None), tensorboard=not config.no_tensorboard,
        verbose=config.verbose,
    )
    seconds = time.perf_counter() - start
    last = history[-1] if history else {}
    metrics = {name: last.get(key) for name, key in task.history_metrics.items()}
    metrics.update({"steps": config.steps} if config.steps else {"epochs": config.epochs})
    fields, summary = task.finish(config, data, model, history, metrics)
    metrics["training_seconds_this_run"] = round(seconds, 1)
    fields = {"kind": task.kind, "architecture": config.model, "config": model.get_config(), **fields}
    metadata = artifacts.save_model(config.out, model, {**fields, "metrics": metrics}, command=config.command)
    artifacts.finish_run(config.out)
    print(f"{summary}; wrote {config.out}/")
    return metadata


def compile_model(model, config, total_steps, loss=None, **compile_kwargs):
    """Compile `model` with the project's recipe (AdamW, warm-up + cosine, global-norm clip) and the config's
    settings. The loss defaults to cross-entropy on logits."""
    import keras

    from keras_tx import training

    optimizer = training.make_optimizer(
        total_steps=total_steps, learning_rate=config.learning_rate, min_learning_rate=config.min_learning_rate,
        warmup_steps=config.warmup_steps, weight_decay=config.weight_decay, beta_2=config.beta2,
        clip_norm=config.clip_norm,
    )
    training.exclude_non_matrices(optimizer, model)
    model.compile(
        optimizer=optimizer,
        loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile={"auto": "auto", "on": True, "off": False}.get(config.jit_compile, config.jit_compile),
        steps_per_execution=config.steps_per_execution,
        **compile_kwargs,
    )


def chain_epochs(make_epoch, steps_per_epoch, total_epochs):
    """`start_step -> dataset`: the epochs from the one holding `start_step` to the last, one after the other.

    `make_epoch(e)` is epoch e's dataset (shuffled with a seed of its own, so a resumed run sees the same batches an
    uninterrupted one would); each is cut to `steps_per_epoch` batches.
    """

    def make(start_step):
        stream = None
        for epoch in range(start_step // steps_per_epoch, total_epochs):
            batches = make_epoch(epoch).take(steps_per_epoch)
            stream = batches if stream is None else stream.concatenate(batches)
        return stream

    return make


def epochs_schedule(config, examples, what):
    """(total steps, steps per epoch) of an epoch-counted run over `examples` training examples."""
    steps_per_epoch = examples // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{examples} training {what} are fewer than one batch of {config.batch_size}.")
    return steps_per_epoch * config.epochs, steps_per_epoch


def log_softmax_pick(logits, labels):
    """log p(label) under float64 softmax(logits): (..., V) logits and (...) labels -> (...)."""
    logits = np.asarray(logits, "float64")
    logits = logits - logits.max(-1, keepdims=True)
    log_normalizer = np.log(np.exp(logits).sum(-1))
    return np.take_along_axis(logits, np.asarray(labels)[..., None].astype("int64"), -1)[..., 0] - log_normalizer


def data_source(config, default):
    """--data-dir, else --dataset, else `default`, and the loader's download argument."""
    source = config.data_dir or config.dataset or default
    download = config.download and not os.path.exists(source) and source != default
    return source, ({"download": True} if download else {})
