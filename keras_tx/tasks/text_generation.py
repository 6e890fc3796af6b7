"""Text generation: a language model (GPT, LSTM or RNN) and its tokenizer (characters, or GPT-2's byte-level BPE).

    keras-tx train gpt --text-file input.txt --out runs/gpt       # TextGeneration.configs["gpt"]: GPTConfig
    keras-tx generate runs/gpt --prompt "ROMEO:" --max-new-tokens 200
    keras-tx evaluate runs/gpt
    keras-tx import hf://openai-community/gpt2 --out models/gpt2   # TextGeneration.from_keras_hub
    keras-tx train gpt --init-from models/gpt2 --text-file input.txt --out runs/gpt2_finetuned

The model directory holds model.keras, metadata.json and tokenizer.json, which names the tokenizer: a
`CharTokenizer` (the characters are in it), or a `BytePairTokenizer` (with vocab.json and merges.txt beside it).
metadata.json's "start_token" and "stop_token", when present, are put before every prompt and end a generation:
GPT-2's `<|endoftext|>`, as keras-hub's GPT2CausalLMPreprocessor does. Training follows nanoGPT's train.py:
random windows of the first 90% of the tokens, evaluation on a fixed set of random windows of the last 10% every
`eval_interval` steps; `--init-from` fine-tunes a model directory's weights with its tokenizer.
"""

import dataclasses
import os
import types

import numpy as np

from keras_tx import validation
from keras_tx.config import POSITIVE, StackConfig, TrainingConfig, flag, integer
from keras_tx.tasks.base import Task


@dataclasses.dataclass
class GPTConfig(StackConfig, TrainingConfig):
    """`keras-tx train gpt`: nanoGPT's CPU "baby GPT" (README, shakespeare_char on a laptop) by default."""

    model: str = "gpt"
    intermediate_dim: int = flag(None, "default 4 * hidden-dim", POSITIVE)
    context: int = flag(64, "tokens per training window = max length", integer(2))
    init_from: str = flag(None, "a GPT model directory (keras-tx import or train gpt): fine-tune its weights with its "
                                "tokenizer; the architecture flags are then ignored and --context is at most its "
                                "max length")


@dataclasses.dataclass
class LSTMConfig(TrainingConfig):
    """`keras-tx train lstm`: a character-level LSTM language model."""

    model: str = "lstm"
    num_layers: int = flag(1, None, POSITIVE)
    embedding_dim: int = flag(128, None, POSITIVE)
    units: int = flag(512, None, POSITIVE)
    context: int = flag(64, "tokens per training window (backpropagation span)", integer(2))


@dataclasses.dataclass
class RNNConfig(LSTMConfig):
    """`keras-tx train rnn`: a character-level SimpleRNN language model (the LSTM's flags, Elman's cell)."""

    model: str = "rnn"


def random_window_batches(ids, sequence_length, batch_size, seed, start_step=0, total_steps=None):
    """tf.data of (x, y) batches of random windows, batch i drawn from a stateless RNG keyed by (seed, i).

    nanoGPT's `get_batch`: every batch picks `batch_size` random offsets. Keying the draw by the global step
    makes the stream a pure function of the step, so a resumed run continues with exactly the batches an
    uninterrupted run would have seen.
    """
    import tensorflow as tf

    ids = np.asarray(ids, "int32")
    if len(ids) <= sequence_length + 1:
        raise ValueError(f"The text has {len(ids)} tokens, too few for windows of {sequence_length} (+1).")
    tokens = tf.constant(ids)
    high = len(ids) - sequence_length - 1

    def batch(step):
        starts = tf.random.stateless_uniform(
            (batch_size,), seed=tf.stack([tf.cast(seed, tf.int64), step]), maxval=high + 1, dtype=tf.int64
        )
        windows = tf.map_fn(
            lambda s: tf.slice(tokens, [s], [sequence_length + 1]), tf.cast(starts, tf.int32),
            fn_output_signature=tf.TensorSpec([sequence_length + 1], tf.int32),
        )
        return windows[:, :-1], windows[:, 1:]  # (B, T) inputs and next-token targets

    steps = tf.data.Dataset.range(start_step, total_steps) if total_steps else tf.data.Dataset.range(start_step, 2**62)
    return steps.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def graph_generate_ids(model, prompt_ids, new_tokens, temperature, seed, stop_token_id=-1):
    """prompt ids (P,) -> prompt + up to `new_tokens` ids, as `keras_tx.generation.generate_long` makes them with
    the sampler "random" (temperature 0: greedy) and this seed: the same chunks past a GPT's context
    (`generation.next_chunk`), the same loop (`generation.sample_loop`, traced here as graph ops) and so the same
    random numbers. A recurrent model has no context and runs in one chunk. The stop token (-1: none) ends the
    generation: the ids end with it.
    """
    import tensorflow as tf

    from keras_tx import generation, sampling

    context = getattr(model, "max_length", None)
    settings, seed = sampling.settings("random", temperature), sampling.seed_words(seed)

    def body(tokens, done, stopped):
        chunk, start = generation.next_chunk(context, tf.size(tokens), new_tokens - done)
        window = tokens[start:][None]  # (1, W)
        cache = model.initial_cache(1, tf.size(window) + chunk)
        out, ran = generation.sample_loop(model.call_with_cache, window, cache, chunk, seed, settings, done,
                                          stop_token_id)
        return tf.concat([tokens, out[0, tf.size(window):tf.size(window) + ran]], 0), done + chunk, ran < chunk

    tokens, _, _ = tf.while_loop(
        lambda tokens, done, stopped: (done < new_tokens) & tf.logical_not(stopped), body,
        (prompt_ids, tf.constant(0), tf.constant(False)),
        shape_invariants=(tf.TensorShape([None]), tf.TensorShape([]), tf.TensorShape([])),
    )
    return tokens


def graph_tokenizer(tokenizer):
    """A language model's tokenizer as graph ops (`CharVocabulary` or `GraphBytePair`), for the exported signatures."""
    from keras_tx.data.bpe import BytePairTokenizer

    if isinstance(tokenizer, BytePairTokenizer):
        from keras_tx.data.graph_bpe import GraphBytePair

        return GraphBytePair(tokenizer)
    from keras_tx.data.graph_text import CharVocabulary

    return CharVocabulary(tokenizer.vocabulary)


class TextGeneration(Task):
    """A language model and its tokenizer: prompt in, continuation out."""

    kind = "language_model"
    description = "a language model"
    configs = {"gpt": GPTConfig, "lstm": LSTMConfig, "rnn": RNNConfig}
    history_metrics = {"val_loss": "val_loss", "train_loss": "loss"}
    signatures = ("generate",)

    def __init__(self, model, tokenizer, metadata=None, model_dir=None):
        super().__init__(model, metadata, model_dir)
        self.tokenizer = tokenizer
        start, stop = self.metadata.get("start_token"), self.metadata.get("stop_token")
        self.start_ids = [] if start is None else [self._special_id(start)]  # put before every prompt
        self.stop_id = None if stop is None else self._special_id(stop)  # ends a generation

    def _special_id(self, token):
        token_id = getattr(self.tokenizer, "token_to_id", lambda t: None)(token)
        if token_id is None:
            raise ValueError(f"The special token {token!r} of metadata.json is not in the tokenizer's vocabulary.")
        return int(token_id)

    @classmethod
    def from_directory(cls, model, metadata, model_dir):
        from keras_tx.data.tokenizers import load_tokenizer

        path = os.path.join(model_dir, metadata.get("tokenizer", "tokenizer.json"))
        if not os.path.isfile(path):
            raise ValueError(f"{model_dir} has no tokenizer ({os.path.basename(path)} is missing).")
        return cls(model, load_tokenizer(path), metadata, model_dir)

    @property
    def context(self):
        """The most tokens the model reads at once (None: a recurrent model, no limit)."""
        return getattr(self.model, "max_length", None)

    # -------------------------------------------------------------------------------------------------- use

    def prompt_ids(self, prompt, max_new_tokens):
        """Token ids of `prompt` ready for generation (the start token first, if the model has one), and a note if
        it had to be trimmed to fit the context.

        Raises ValueError for an empty, over-long or non-UTF-8 prompt (`keras_tx.validation`) or characters
        outside the vocabulary (the tokenizer names them).
        """
        prompt = validation.text(prompt, "The prompt", blank_ok=True)
        validation.integer("max_new_tokens", max_new_tokens, 1, validation.MAX_NEW_TOKENS)
        ids = np.asarray(self.tokenizer.encode(prompt), "int32")
        note, context = None, self.context
        if context is not None:
            room = max(context - min(max_new_tokens, context // 2) - len(self.start_ids), 1)
            if len(ids) > room:
                note = f"The prompt has {len(ids)} tokens; only its last {room} fit the model's context of {context}."
                ids = ids[-room:]
        return np.concatenate([np.asarray(self.start_ids, "int32"), ids]), note

    def decode(self, ids):
        """The text of token ids without the start token before them, up to the stop token (left out)."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if self.start_ids and ids[: len(self.start_ids)] == self.start_ids:
            ids = ids[len(self.start_ids):]
        if self.stop_id is not None and self.stop_id in ids:
            ids = ids[: ids.index(self.stop_id)]
        return self.tokenizer.decode(np.asarray(ids, "int32"))

    def generate_ids(self, prompt_ids, max_new_tokens, **sampling):
        """`prompt_ids` and up to `max_new_tokens` more tokens, past the model's context if need be (`sampling`:
        `keras_tx.generation.generate`'s sampler, temperature, top_k, top_p, num_beams, seed). The model's stop
        token, if it has one, ends the generation early."""
        from keras_tx import generation

        sampling.setdefault("stop_token_id", self.stop_id)
        return generation.generate_long(self.model, prompt_ids, max_new_tokens, **sampling)

    def stream(self, prompt_ids, max_new_tokens, **sampling):
        """Yield (text, number of tokens) as the tokens come (beam search: all at once, at the end); together they
        are `generate_ids`' new tokens. A token that ends inside a character (byte-level BPE) waits for the rest."""
        from keras_tx import generation

        sampling.setdefault("stop_token_id", self.stop_id)
        tokens, shown, waiting = [], "", 0
        for new in generation.stream_long(self.model, prompt_ids, max_new_tokens, **sampling):
            tokens += [int(t) for t in new]
            text, waiting = self.decode(tokens), waiting + len(new)
            if text.endswith("\ufffd") and len(tokens) < max_new_tokens:
                continue
            yield text[len(shown):], waiting
            shown, waiting = text, 0
        if waiting:
            yield self.decode(tokens)[len(shown):], waiting

    def generate(self, prompt, max_new_tokens=200, **sampling):
        """The prompt (its part that fits) and its continuation, as text."""
        ids, _ = self.prompt_ids(prompt, max_new_tokens)
        return self.decode(self.generate_ids(ids, max_new_tokens, **sampling))

    def training_text(self):
        """The text the model was trained on, from metadata.json's "dataset" (a file, a tfds name, or the built-in
        text), for `evaluate` without data arguments."""
        from keras_tx.data.text import load_text

        source = self.metadata.get("dataset")
        if source in (None, "pydoc_topics"):
            return load_text()
        if os.path.isfile(source):
            return load_text(text_file=source)
        if os.path.sep in source or source.endswith(".txt"):
            raise ValueError(f"The model was trained on {source}, which is not here: give --text-file, --data-dir "
                             "or --dataset.")
        return load_text(dataset=source)

    def evaluate(self, dataset=None, text_file=None, data_dir=None, batches=200, batch_size=12):
        """Mean next-token loss on `batches` random windows of the last 10% of the text (seed 1)."""
        import keras

        from keras_tx.data.text import load_text, split_text

        if dataset or text_file or data_dir:
            text = load_text(dataset=dataset, text_file=text_file, data_dir=data_dir)
        else:  # the data the model was trained on
            text = self.training_text()
        _, val_text = split_text(text, 0.1)
        context = self.metadata.get("context") or self.context or 64
        val = random_window_batches(self.tokenizer.encode(val_text), context, batch_size, seed=1, total_steps=batches)
        self.model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        loss = self.model.evaluate(val, verbose=0, return_dict=True)["loss"]
        return {"model_dir": self.model_dir, "val_loss": round(float(loss), 4), "batches": batches}

    def serving_endpoints(self):
        """serving_default (token ids -> logits) and generate (prompt -> text), tokenizer and loop in the graph."""
        import tensorflow as tf

        from keras_tx import graph_checks as guard
        from keras_tx.data.graph_text import CharVocabulary

        model, tokenizer = self.model, self.tokenizer
        vocabulary = graph_tokenizer(tokenizer)
        start_ids = tf.constant(self.start_ids, tf.int32)
        stop_id = -1 if self.stop_id is None else self.stop_id

        def serving_default(token_ids):
            token_ids = guard.checked(token_ids, guard.token_id_check(token_ids, tokenizer.vocabulary_size))
            return {"logits": tf.cast(model(token_ids, training=False), tf.float32)}

        def generate(prompt, max_new_tokens, temperature, seed):
            # The decisions of TextGeneration.prompt_ids and generation.generate (keras_tx.validation), as graph ops.
            checks = guard.text_checks(prompt[None], "The prompt", blank_ok=True) + [
                guard.require((max_new_tokens >= 1) & (max_new_tokens <= validation.MAX_NEW_TOKENS),
                         f"max_new_tokens {validation.integer_range(1, validation.MAX_NEW_TOKENS)}."),
                guard.require(tf.math.is_finite(temperature) & (temperature >= 0), validation.TEMPERATURE + "."),
                guard.require(seed >= 0, f"seed {validation.integer_range(0, 2**63 - 1)}."),
            ]
            with tf.control_dependencies(checks):
                if isinstance(vocabulary, CharVocabulary):
                    ids, unknown = vocabulary.encode(prompt)
                    ids = guard.checked(ids, guard.require(tf.equal(unknown, 0),
                                                           validation.UNKNOWN_CHARACTERS + "."))
                else:  # byte-level BPE: every text has its tokens
                    ids = vocabulary.encode(prompt)
            ids = tf.concat([start_ids, ids], 0)
            tokens = graph_generate_ids(model, ids, max_new_tokens, temperature, seed, stop_id)
            new = tokens[tf.size(ids):]
            before_stop = tf.equal(tf.cumsum(tf.cast(tf.equal(new, stop_id), tf.int32)), 0)
            completion = vocabulary.decode(tf.boolean_mask(new, before_stop))
            return {"text": tf.strings.join([prompt, completion]), "completion": completion, "token_ids": tokens}

        endpoints = [
            ("serving_default", serving_default, [tf.TensorSpec([None, None], tf.int32, name="token_ids")]),
            ("generate", generate, [
                tf.TensorSpec([], tf.string, name="prompt"),
                tf.TensorSpec([], tf.int32, name="max_new_tokens"),
                tf.TensorSpec([], tf.float32, name="temperature"),
                tf.TensorSpec([], tf.int64, name="seed"),
            ]),
        ]
        return model, [vocabulary], endpoints

    # ------------------------------------------------------------------------------------------- keras-hub

    @classmethod
    def from_keras_hub(cls, handle, backbone):
        """The task of a GPT-2 preset (`keras-tx import`): our GPT with the backbone's weights and the preset's
        byte-level BPE tokenizer; `<|endoftext|>` starts every prompt and ends a generation, as keras-hub's
        GPT2CausalLMPreprocessor and `GPT2CausalLM.generate` do."""
        import keras_hub

        from keras_tx.data.bpe import BytePairTokenizer
        from keras_tx.models import GPT

        model = GPT.from_keras_hub(backbone)
        tokenizer = BytePairTokenizer.from_keras_hub(keras_hub.tokenizers.Tokenizer.from_preset(handle))
        end = "<|endoftext|>"
        metadata = {"kind": cls.kind, "architecture": "gpt", "config": model.get_config(), "tokenizer": "tokenizer.json",
                    "start_token": end, "stop_token": end, "context": model.max_length}
        return cls(model, tokenizer, metadata)

    def save(self, out_dir, command=None):
        """Write the model directory (model.keras, metadata.json, the tokenizer's files) to a checked `out_dir`."""
        from keras_tx import artifacts

        self.tokenizer.save(out_dir)
        return artifacts.save_model(out_dir, self.model, self.metadata, command=command)

    # ------------------------------------------------------------------------------------------- training

    @classmethod
    def training_data(cls, config):
        from keras_tx.data.text import load_text, split_text
        from keras_tx.data.tokenizers import CharTokenizer

        text = load_text(dataset=config.dataset, text_file=config.text_file, data_dir=config.data_dir,
                         download=config.download)
        train_text, val_text = split_text(text, 0.1)
        start = getattr(config, "init_from", None) and load_task(config.init_from)
        if start is not None:
            tokenizer, context = start.tokenizer, min(config.context, start.context or config.context)
            origin = f"{config.init_from}'s weights and tokenizer"
        else:
            tokenizer, context, origin = CharTokenizer.from_text(text), config.context, "a new model"
        train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
        print(f"{len(text):,} characters, vocabulary {tokenizer.vocabulary_size}; "
              f"train {len(train_ids):,} / validation {len(val_ids):,} tokens (first 90% / last 10%); {origin}.")
        return types.SimpleNamespace(tokenizer=tokenizer, train_ids=train_ids, val_ids=val_ids, context=context,
                                     start=start, validation_steps=config.eval_batches)

    @classmethod
    def build(cls, config, data):
        from keras_tx.models import GPT, RNNLanguageModel

        vocabulary_size = data.tokenizer.vocabulary_size
        if data.start is not None:  # fine-tuning: the same architecture, this run's dropout, its weights
            start = data.start.model
            model = type(start).from_config({**start.get_config(), "dropout": config.dropout})
            model(np.zeros((1, data.context), "int32"))
            model.set_weights(start.get_weights())
            return model
        if config.model == "gpt":
            model = GPT(vocabulary_size=vocabulary_size, num_layers=config.num_layers, num_heads=config.num_heads,
                        hidden_dim=config.hidden_dim, intermediate_dim=config.intermediate_dim or 4 * config.hidden_dim,
                        max_length=config.context, dropout=config.dropout)
        else:
            model = RNNLanguageModel(vocabulary_size=vocabulary_size, cell=config.model,
                                     embedding_dim=config.embedding_dim, units=config.units,
                                     num_layers=config.num_layers, dropout=config.dropout)
        model(np.zeros((1, config.context), "int32"))
        return model

    @classmethod
    def validation_data(cls, config, data, model, seed):
        return random_window_batches(data.val_ids, data.context, config.batch_size, seed + 1,
                                     total_steps=config.eval_batches)

    @classmethod
    def batches(cls, config, data, model, seed):
        return lambda start_step: random_window_batches(data.train_ids, data.context, config.batch_size, seed,
                                                        start_step, config.steps)

    @classmethod
    def save_preprocessing(cls, out, data):
        data.tokenizer.save(out)

    @classmethod
    def finish(cls, config, data, model, history, metrics):
        metrics["best_val_loss"] = min((r["val_loss"] for r in history if "val_loss" in r), default=None)
        dataset = (config.text_file or config.dataset or (config.data_dir and f"{config.data_dir}/input.txt")
                   or "pydoc_topics")
        fields = {
            "tokenizer": "tokenizer.json", "dataset": dataset,
            "split": "first 90% of characters train, last 10% validation",
            "context": data.context, "batch_size": config.batch_size,
        }
        if data.start is not None:  # what the model was fine-tuned from, and its prompt conventions
            inherited = {key: data.start.metadata[key] for key in ("start_token", "stop_token", "preset")
                         if key in data.start.metadata}
            fields.update(init_from=config.init_from, **inherited)
        summary = (f"val loss {metrics['val_loss']:.4f} (train {metrics['train_loss']:.4f}) after {config.steps} "
                   "steps")
        return fields, summary


def load_task(model_dir):
    """The language model task of a directory (`--init-from`)."""
    from keras_tx.tasks import load

    return load(model_dir, kind=TextGeneration.kind)
