"""Translation: the encoder-decoder Transformer (`Seq2SeqTransformer`) and its two WordPiece tokenizers.

    keras-tx train transformer --data-dir multi30k --out runs/de_en    # Translation.configs["transformer"]
    keras-tx translate runs/de_en "Ein Mann fährt Fahrrad."
    keras-tx evaluate runs/de_en                                        # test BLEU, greedy and beam 4

The model directory holds model.keras, the two tokenizers (source_tokenizer.json with source_vocab.txt,
target_tokenizer.json with target_vocab.txt: `keras_tx.data.tokenizers`' one format) and metadata.json; a
directory of the earlier format (translator.json beside the vocabularies) still reads. Training ends with the test
BLEU of greedy translations of the first `--bleu-sentences` test pairs.
"""

import dataclasses
import os
import types

import numpy as np

from keras_tx import validation
from keras_tx.config import POSITIVE, TrainingConfig, default, flag, integer, number
from keras_tx.tasks.base import Task, chain_epochs, epochs_schedule


@dataclasses.dataclass
class TransformerConfig(TrainingConfig):
    """`keras-tx train transformer`: a seq2seq Transformer translator (default data: German->English number words)."""

    model: str = "transformer"
    source: str = flag("de", "source language: file suffix or tfds feature")
    target: str = flag("en", "target language")
    num_layers: int = flag(3, "encoder blocks, and as many decoder blocks", POSITIVE)
    num_heads: int = flag(8, None, POSITIVE)
    hidden_dim: int = flag(256, None, POSITIVE)
    intermediate_dim: int = flag(None, "default 2 * hidden-dim", POSITIVE)
    max_length: int = flag(40, "source and target pieces kept", integer(2))
    vocabulary_size: int = flag(8000, "upper bound per language", integer(16))
    label_smoothing: float = flag(0.1, None, number(0, 0.99))
    epochs: int = flag(15, None, POSITIVE)
    max_pairs: int = flag(None, "use only the first N training pairs", POSITIVE)
    bleu_sentences: int = flag(1000, "test pairs translated (greedy) for BLEU at the end; 0: none", integer(0))
    batch_size: int = default("batch_size", 128)
    steps: int = default("steps", None)
    eval_interval: int = default("eval_interval", None)
    learning_rate: float = default("learning_rate", 5e-4)
    min_learning_rate: float = default("min_learning_rate", 1e-5)
    warmup_steps: int = default("warmup_steps", 450)
    weight_decay: float = default("weight_decay", 0.01)
    beta2: float = default("beta2", 0.98)
    dropout: float = default("dropout", 0.1)


def translation_pairs(config, split):
    """(pairs, description) of one split: line-aligned files or a TSV (--data-dir / --text-file), a tfds
    dataset (--dataset), or the generated German->English number words (no data given)."""
    from keras_tx.data.translation import load_parallel, numeral_pairs

    if config.dataset:
        pairs = load_parallel(config.data_dir, config.source, config.target, split, tfds_name=config.dataset,
                              download=config.download)
        return pairs, f"tfds {config.dataset} ({config.source}->{config.target})"
    path = config.text_file or config.data_dir
    if path is None:
        count = config.max_pairs if split == "train" else None
        return numeral_pairs(split, count), "German->English number words (keras_tx.data.translation.numeral_pairs)"
    if os.path.isfile(path):  # one TSV: 90% / 5% / 5%, in file order
        pairs = load_parallel(path)
        cut1, cut2 = int(0.9 * len(pairs)), int(0.95 * len(pairs))
        return {"train": pairs[:cut1], "validation": pairs[cut1:cut2], "test": pairs[cut2:]}[split], path
    return load_parallel(path, config.source, config.target, split), f"{path} ({config.source}->{config.target})"


class Translation(Task):
    """A trained `Seq2SeqTransformer` with its source and target tokenizers: text in, text out.

    Also named `Translator`. `Translator(model, source_tokenizer, target_tokenizer).save(DIR)` writes a model
    directory of its own (DIR/model.keras and the tokenizers' files) that
    `Translator.load(DIR)` reads back; `keras-tx train transformer` adds metadata.json.

    Example:
    >>> translator = Translator.load("saved_models/translation_de_en")
    >>> translator.translate("Ein Mann fährt Fahrrad.")
    'a man is riding a bicycle.'
    """

    kind = "translation"
    description = "a translation model"
    configs = {"transformer": TransformerConfig}
    history_metrics = {"val_loss": "val_loss", "val_token_accuracy": "val_masked_accuracy", "train_loss": "loss"}
    signatures = ("translate",)

    def __init__(self, model, source_tokenizer, target_tokenizer, metadata=None, model_dir=None):
        from keras_tx.data.translation import END, START

        super().__init__(model, metadata or {"kind": self.kind}, model_dir)
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.start_id = target_tokenizer.token_to_id(START)
        self.end_id = target_tokenizer.token_to_id(END)

    @classmethod
    def load(cls, model_dir):
        """The task of a translation directory, also one that `save` wrote alone (no metadata.json)."""
        from keras_tx import artifacts

        if (not os.path.isfile(os.path.join(model_dir, artifacts.METADATA_FILE))
                and os.path.isfile(os.path.join(model_dir, "source_vocab.txt"))):
            import keras

            import keras_tx.models  # noqa: F401  registers Seq2SeqTransformer for deserialization

            artifacts.check_model_dir(model_dir)
            model = keras.saving.load_model(os.path.join(model_dir, artifacts.MODEL_FILE), safe_mode=True)
            return cls.from_directory(model, None, model_dir)
        return super().load(model_dir)

    @classmethod
    def from_directory(cls, model, metadata, model_dir):
        from keras_tx.data.translation import load_translation_tokenizers

        return cls(model, *load_translation_tokenizers(model_dir), metadata, model_dir)

    def save(self, directory):
        """Write DIR/model.keras and the tokenizers (source_/target_ tokenizer.json and vocab.txt)."""
        from keras_tx.data.translation import MODEL_FILE, save_translation_tokenizers

        os.makedirs(directory, exist_ok=True)
        self.model.save(os.path.join(directory, MODEL_FILE))
        save_translation_tokenizers(directory, self.source_tokenizer, self.target_tokenizer)

    # -------------------------------------------------------------------------------------------------- use

    def encode_sources(self, texts, truncate=False):
        """Source ids (len(texts), max_source_length), padded with 0 (a fixed shape: one compiled program).

        Raises ValueError for an empty text and, unless `truncate`, for one longer than max_source_length pieces.
        """
        limit = self.model.max_source_length
        ids = np.zeros((len(texts), limit), "int32")
        for row, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"Cannot translate an empty text (got {text!r}); give at least one word.")
            pieces = np.asarray(self.source_tokenizer(text), "int32")
            if len(pieces) == 0:
                raise ValueError(f"{text!r} has no word the source tokenizer can read.")
            if len(pieces) > limit:
                if not truncate:
                    raise ValueError(
                        f"The text has {len(pieces)} tokens, more than the model's max_source_length={limit}: "
                        f"shorten it (or pass truncate=True to translate only its first {limit} tokens)."
                    )
                pieces = pieces[:limit]
            ids[row, : len(pieces)] = pieces
        return ids

    def decode_targets(self, token_ids):
        """Text of each row of target ids, up to its first [END] or padding."""
        from keras_tx.data.translation import decode_target_ids

        return decode_target_ids(self.target_tokenizer, token_ids, self.end_id)

    def translate(
        self, texts, sampler="greedy", num_beams=4, max_length=None, length_penalty=1.0, batch_size=64, truncate=False
    ):
        """Translate one text (returns a string) or a list of texts (returns a list of strings).

        Args:
            texts: a string or a list of at most 64 strings in the source language.
            sampler: "greedy" or "beam" (see `Seq2SeqTransformer.translate_ids`).
            num_beams: beams of beam search (1 to 16).
            max_length: the most target tokens; default the model's max_target_length.
            length_penalty: of beam search.
            batch_size: texts translated at once. Every batch is padded to this size (and every source to
                max_source_length), so one compiled program serves them all.
            truncate: translate only the first max_source_length tokens of a longer text (otherwise ValueError).

        Returns:
            The translation(s). Lowercase if the target tokenizer lowercases.
        """
        from keras_tx.data.translation import UNK

        single = isinstance(texts, str)
        # The checks every surface makes (keras_tx.validation): at most 64 texts, each UTF-8, not empty, not too
        # long, with at least one word the model knows. An empty list gets an empty answer.
        texts = validation.batch([texts] if single else texts, "texts")
        texts = [validation.text(text) for text in texts]
        validation.integer("num_beams", num_beams, 1, validation.MAX_NUM_BEAMS)
        if not texts:
            return []
        source_ids = self.encode_sources(texts, truncate=truncate)
        unknown = self.source_tokenizer.token_to_id(UNK)
        for text, row in zip(texts, source_ids):
            if np.all((row == unknown) | (row == 0)):
                raise ValueError(f"{validation.NO_KNOWN_WORD}: {text[:60]!r}.")
        outputs = self._translate_ids(source_ids, sampler, num_beams, max_length, length_penalty, batch_size)
        return outputs[0] if single else outputs

    def _translate_ids(self, source_ids, sampler="greedy", num_beams=4, max_length=None, length_penalty=1.0,
                       batch_size=64):
        """Texts of the translations of encoded sources, `batch_size` at a time (no bound: evaluation uses it)."""
        size = min(batch_size, len(source_ids))
        outputs = []
        for begin in range(0, len(source_ids), size):
            batch = source_ids[begin : begin + size]
            count = len(batch)
            if count < size:  # the last batch: pad with copies of its first row, keep the compiled shape
                batch = np.concatenate([batch, np.repeat(batch[:1], size - count, axis=0)])
            ids = self.model.translate_ids(
                batch, max_length, sampler, num_beams, self.start_id, self.end_id, length_penalty
            )
            outputs += self.decode_targets(ids[:count])
        return outputs

    def evaluate_bleu(self, pairs, sampler="greedy", num_beams=4, batch_size=64, lowercase=None):
        """Corpus BLEU (percent) of the translations of the sources of `pairs` against their targets.

        Sources longer than max_source_length are truncated. `lowercase` defaults to whether the target tokenizer
        lowercases (a lowercasing model is scored case-insensitively).
        """
        from keras_tx.bleu import corpus_bleu
        from keras_tx.data.translation import split_pairs

        sources, references = split_pairs(pairs)
        hypotheses = self._translate_ids(self.encode_sources(sources, truncate=True), sampler, num_beams,
                                         batch_size=batch_size)
        if lowercase is None:
            lowercase = bool(self.target_tokenizer.lowercase)
        return corpus_bleu(hypotheses, references, lowercase=lowercase)

    def evaluate(self, dataset=None, text_file=None, data_dir=None, batches=200, batch_size=12):
        """Test BLEU of greedy and 4-beam translations."""
        source, target = self.metadata.get("languages", ("de", "en"))
        config = TransformerConfig(dataset=dataset, text_file=text_file, data_dir=data_dir, source=source,
                                   target=target)
        pairs, description = translation_pairs(config, "test")
        scores = {sampler: self.evaluate_bleu(pairs, sampler=sampler) for sampler in ("greedy", "beam")}
        return {"model_dir": self.model_dir, "dataset": description, "test_pairs": len(pairs),
                "bleu_greedy": round(float(scores["greedy"]), 2), "bleu_beam4": round(float(scores["beam"]), 2)}

    def serving_endpoints(self):
        """serving_default (ids -> logits) and translate (texts -> greedy translations), WordPiece in the graph."""
        import tensorflow as tf

        from keras_tx import graph_checks as guard
        from keras_tx import validation
        from keras_tx.data.graph_text import WordPiece, target_texts

        model = self.model
        source, target = WordPiece(self.source_tokenizer), WordPiece(self.target_tokenizer)
        start_id, end_id = self.start_id, self.end_id
        max_source_length, steps = model.max_source_length, model.max_target_length

        def serving_default(encoder_token_ids, decoder_token_ids):
            inputs = {"encoder_token_ids": encoder_token_ids, "decoder_token_ids": decoder_token_ids}
            return {"logits": tf.cast(model(inputs, training=False), tf.float32)}

        def translate(text):
            # Translator.translate's decisions (keras_tx.validation): at most 64 texts, each UTF-8, not empty, not
            # longer than the model reads, with a word the model knows; an empty batch gets an empty answer.
            with tf.control_dependencies(guard.text_checks(text) + [guard.batch_check(text)]):
                pieces = source.tokenize(text)
            lengths = pieces.row_lengths()
            known = tf.reduce_any(tf.not_equal(pieces, source.unknown_id), axis=1)
            pieces = guard.checked(pieces.to_tensor(0, shape=[None, max_source_length]), guard.require(
                tf.reduce_all(lengths <= max_source_length),
                f"The text has more pieces than the model's max_source_length={max_source_length}: shorten it."),
                guard.require(tf.reduce_all(known), validation.NO_KNOWN_WORD + "."))
            tokens, _ = model.decoding_loop(pieces, steps, "greedy", 1, start_id, end_id)
            return {"translation": target_texts(target, tokens, end_id), "token_ids": tokens}

        endpoints = [
            ("serving_default", serving_default, [
                tf.TensorSpec([None, None], tf.int32, name="encoder_token_ids"),
                tf.TensorSpec([None, None], tf.int32, name="decoder_token_ids"),
            ]),
            ("translate", translate, [tf.TensorSpec([None], tf.string, name="text")]),
        ]
        return model, [source, target], endpoints

    # ------------------------------------------------------------------------------------------- training

    @classmethod
    def training_data(cls, config):
        from keras_tx.data.translation import train_translation_tokenizers

        train_pairs, source = translation_pairs(config, "train")
        train_pairs = train_pairs[: config.max_pairs] if config.max_pairs else train_pairs
        val_pairs, _ = translation_pairs(config, "validation")
        test_pairs, _ = translation_pairs(config, "test")
        source_tokenizer, target_tokenizer = train_translation_tokenizers(
            train_pairs, config.vocabulary_size, config.vocabulary_size)
        print(f"{source}: {len(train_pairs):,} train / {len(val_pairs):,} validation / {len(test_pairs):,} test "
              f"pairs; vocabularies {source_tokenizer.vocabulary_size():,} / "
              f"{target_tokenizer.vocabulary_size():,} pieces.")
        return types.SimpleNamespace(train=train_pairs, validation=val_pairs, test=test_pairs, source=source,
                                     tokenizers=(source_tokenizer, target_tokenizer))

    @classmethod
    def schedule(cls, config, data):
        return epochs_schedule(config, len(data.train), "pairs")

    @classmethod
    def build(cls, config, data):
        from keras_tx.models import Seq2SeqTransformer

        source_tokenizer, target_tokenizer = data.tokenizers
        return Seq2SeqTransformer(
            source_tokenizer.vocabulary_size(), target_tokenizer.vocabulary_size(), num_layers=config.num_layers,
            num_heads=config.num_heads, hidden_dim=config.hidden_dim,
            intermediate_dim=config.intermediate_dim or 2 * config.hidden_dim, max_source_length=config.max_length,
            max_target_length=config.max_length, dropout=config.dropout,
        )

    @classmethod
    def compile_arguments(cls, config):
        from keras_tx.models import MaskedCrossentropy, masked_accuracy

        return {"loss": MaskedCrossentropy(label_smoothing=config.label_smoothing), "metrics": [masked_accuracy]}

    @classmethod
    def validation_data(cls, config, data, model, seed):
        from keras_tx.data.translation import translation_dataset

        return translation_dataset(data.validation, *data.tokenizers, config.max_length, config.max_length,
                                   config.batch_size, shuffle=False)

    @classmethod
    def batches(cls, config, data, model, seed):
        from keras_tx.data.translation import translation_dataset

        _, steps_per_epoch = cls.schedule(config, data)
        return chain_epochs(
            lambda e: translation_dataset(data.train, *data.tokenizers, config.max_length, config.max_length,
                                          config.batch_size, seed=seed + e, drop_remainder=True),
            steps_per_epoch, config.epochs,
        )

    @classmethod
    def save_preprocessing(cls, out, data):
        from keras_tx.data.translation import save_translation_tokenizers

        save_translation_tokenizers(out, *data.tokenizers)

    @classmethod
    def finish(cls, config, data, model, history, metrics):
        if config.bleu_sentences:
            scored = data.test[: config.bleu_sentences]
            bleu = cls(model, *data.tokenizers).evaluate_bleu(scored)
            metrics.update(test_bleu_greedy=round(float(bleu), 2), test_bleu_sentences=len(scored))
        fields = {
            "architecture": "seq2seq_transformer", "tokenizer": "source_tokenizer.json, target_tokenizer.json",
            "dataset": data.source,
            "split": "the corpus's train / validation / test splits", "languages": [config.source, config.target],
            "label_smoothing": config.label_smoothing,
        }
        bleu_text = f", test BLEU {metrics['test_bleu_greedy']:.2f} (greedy)" if "test_bleu_greedy" in metrics else ""
        return fields, f"val loss {metrics['val_loss']:.4f}{bleu_text}"


Translator = Translation  # its name before tasks: `Translator(model, source_tokenizer, target_tokenizer)`
