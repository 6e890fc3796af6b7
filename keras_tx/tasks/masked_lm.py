"""Masked prediction: BERT (`BERTMaskedLM`) and its WordPiece tokenizer.

    keras-tx train bert --data-dir sst2 --out runs/bert     # MaskedLM.configs["bert"]: BERTConfig
    keras-tx train bert --data-dir sst2 --pack --out runs/bert  # several phrases per sequence, as saved_models/bert_mlm
    keras-tx fill-mask runs/bert "the movie was [MASK] ."
    keras-tx evaluate runs/bert --data-dir sst2

The model directory holds model.keras (the tokenizer's vocabulary rides in it as an asset), vocab.txt and
tokenizer.json (`keras_tx.data.tokenizers.save_tokenizer`) and metadata.json. Pretraining masks 15% of the
tokens, of those 80% become [MASK], 10% a random token and 10% stay as they are.
"""

import dataclasses
import os
import types

import numpy as np

from keras_tx.config import POSITIVE, StackConfig, TrainingConfig, default, flag, integer
from keras_tx.tasks.base import Task, log_softmax_pick


@dataclasses.dataclass
class BERTTrainingDefaults:
    """The optimizer settings BERT trains with (BERT's paper: weight decay 0.01, Adam's beta2 0.999, dropout 0.1),
    for every verb that trains or fine-tunes a BERT (mixed in first: `class BERTConfig(BERTTrainingDefaults, ...)`)."""

    weight_decay: float = default("weight_decay", 0.01)
    beta2: float = default("beta2", 0.999)
    dropout: float = default("dropout", 0.1)


@dataclasses.dataclass
class BERTConfig(BERTTrainingDefaults, StackConfig, TrainingConfig):
    """`keras-tx train bert`: BERT masked-LM pretraining with a WordPiece vocabulary trained on the data."""

    model: str = "bert"
    init_from: str = flag(None, "a masked-LM model directory (keras-tx import or train bert): continue pretraining "
                                "its weights with its tokenizer; the architecture flags and --vocabulary-size are then "
                                "ignored")
    intermediate_dim: int = flag(None, "default 4 * hidden-dim", POSITIVE)
    sequence_length: int = flag(64, None, integer(4))
    vocabulary_size: int = flag(8000, None, integer(16))
    pack: bool = flag(False, "pack several training texts into each sequence ([CLS] a [SEP] b [SEP] ..., "
                             "RoBERTa's full sentences), only those not part of another (SST-2's phrases are parts of "
                             "its sentences), packed afresh every pass; validation stays one text per sequence",
                      group="data")
    batch_size: int = default("batch_size", 64)
    eval_batches: int = default("eval_batches", 20)
    learning_rate: float = default("learning_rate", 5e-4)
    min_learning_rate: float = default("min_learning_rate", 5e-5)


def masked_lm_texts(config):
    """(training texts, validation texts, description) for masked-LM pretraining or evaluation: an SST-2 folder
    (sentences; labels unused), glue/sst2 from tfds, or the lines of any text (first 90% / last 10%)."""
    from keras_tx.data.text import load_text
    from keras_tx.data.wordpiece import load_sst2

    if config.data_dir and os.path.isfile(os.path.join(config.data_dir, "train.tsv")):
        train, _ = load_sst2(config.data_dir, "train")
        validation, _ = load_sst2(config.data_dir, "validation")
        return train, validation, f"{config.data_dir} (SST-2 sentences, labels unused)"
    if config.dataset == "glue/sst2":
        train, _ = load_sst2(None, "train", download=config.download)
        validation, _ = load_sst2(None, "validation", download=config.download)
        return train, validation, "glue/sst2 (sentences, labels unused)"
    text = load_text(dataset=config.dataset, text_file=config.text_file, data_dir=config.data_dir,
                     download=config.download)
    lines = [line.strip() for line in text.splitlines() if len(line.split()) >= 3]
    if len(lines) < 20:
        raise ValueError(f"Only {len(lines)} lines of three or more words: too little text for masked-LM training.")
    train, validation = lines[: int(0.9 * len(lines))], lines[int(0.9 * len(lines)):]
    return train, validation, config.text_file or config.dataset or "pydoc_topics (lines)"


class BERTTask(Task):
    """A BERT task (`BERTMaskedLM`, `BERTClassifier`): its WordPiece tokenizer rides with the model (a `.keras`
    asset), or is read from the directory's vocab.txt."""

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @classmethod
    def from_directory(cls, model, metadata, model_dir):
        from keras_tx.data.tokenizers import load_tokenizer

        if getattr(model, "tokenizer", None) is None:
            if not os.path.isfile(os.path.join(model_dir, "vocab.txt")):
                raise ValueError(f"{model_dir} has no tokenizer (vocab.txt is missing).")
            model.tokenizer = load_tokenizer(model_dir)
        return cls(model, metadata, model_dir)


class MaskedLM(BERTTask):
    """BERT with its tokenizer: a text with [MASK]s in, the likely tokens for each out."""

    kind = "masked_lm"
    description = "a masked language model"
    configs = {"bert": BERTConfig}
    history_metrics = {"val_loss": "val_loss", "val_masked_accuracy": "val_sparse_categorical_accuracy",
                       "train_loss": "loss"}
    signatures = ("fill_mask",)

    def fill_mask(self, text, top_k=5):
        """One list per [MASK] of `text` of `top_k` (token, probability) pairs, most likely first."""
        return self.model.fill_mask(text, top_k=top_k)

    def tokens(self, text):
        """The tokens the model reads for `text`, [CLS] ... [SEP] (what `fill_mask` encodes)."""
        ids, _ = self.model.encode_masked(text)
        return ids, [self.tokenizer.id_to_token(i) for i in ids]

    def scores(self, texts, batch_size=64, seed=1):
        """Masked-token accuracy and mean loss (nats) per masked token on `texts`, one text per sequence.

        The masks are BERT's (15% of ordinary tokens, 80/10/10) drawn from `seed` in NumPy, so a second run, or a
        second model with the same tokenizer, is scored on the same positions. Padding slots of the mask positions
        count for nothing (Keras' weighted loss would average them in as zeros).
        """
        from keras_tx.data.masking import mask_token_ids
        from keras_tx.data.wordpiece import encode_texts, special_token_ids

        tokenizer = self.tokenizer
        ids = encode_texts(texts, tokenizer, self.metadata.get("sequence_length") or self.model.backbone.max_length)
        ids = ids["token_ids"]
        special = special_token_ids(tokenizer)
        masked, positions, labels, weights = mask_token_ids(ids, special, tokenizer.vocabulary_size(),
                                                            np.random.default_rng(seed))
        correct = total = nats = 0.0
        for start in range(0, len(ids), batch_size):
            part = slice(start, start + batch_size)
            features = {"token_ids": masked[part], "segment_ids": np.zeros_like(masked[part]),
                        "padding_mask": (ids[part] != special["[PAD]"]).astype("int32"),
                        "mask_positions": positions[part]}
            logits = np.asarray(self.model.predict_on_batch(features), "float64")  # (B, P, V)
            correct += float(((logits.argmax(-1) == labels[part]) * weights[part]).sum())
            nats -= float((log_softmax_pick(logits, labels[part]) * weights[part]).sum())
            total += float(weights[part].sum())
        if not total:
            raise ValueError("No tokens to mask: the texts are empty.")
        return {"masked_accuracy": correct / total, "masked_loss": nats / total, "masked_tokens": int(total)}

    def evaluate(self, dataset=None, text_file=None, data_dir=None, batches=200, batch_size=12):
        if not (dataset or text_file or data_dir):  # the data it was trained on, as train bert recorded it
            if "data" not in self.metadata:
                raise ValueError("evaluate on a masked LM needs the text: --data-dir (e.g. an SST-2 folder), "
                                 "--dataset or --text-file.")
            recorded = self.metadata["data"]
            dataset, text_file, data_dir = recorded.get("dataset"), recorded.get("text_file"), recorded.get("data_dir")
        _, validation, source = masked_lm_texts(BERTConfig(dataset=dataset, text_file=text_file, data_dir=data_dir))
        scores = self.scores(validation)
        return {"model_dir": self.model_dir, "dataset": source, "validation_texts": len(validation),
                **{k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}}

    def serving_endpoints(self):
        """serving_default (features -> logits) and fill_mask (text -> top-k tokens), WordPiece in the graph."""
        import tensorflow as tf

        from keras_tx import graph_checks as guard
        from keras_tx import validation
        from keras_tx.data.graph_text import WordPiece

        from keras_tx.data.wordpiece import CLS, MASK, SEP
        from keras_tx.models.bert import INPUT_NAMES

        model = self.model
        tokenizer = model.tokenizer
        # "[MASK]" stays whole whatever the tokenizer's settings: fill_mask splits the text on it, as
        # BERTMaskedLM.fill_mask does.
        wordpiece = WordPiece(tokenizer, extra_special_tokens=(MASK,))
        cls_id, sep_id, mask_id = (tokenizer.token_to_id(t) for t in (CLS, SEP, MASK))
        max_length = model.backbone.max_length
        vocabulary_size = model.backbone.vocabulary_size

        def serving_default(token_ids, segment_ids, padding_mask, mask_positions):
            token_ids = guard.checked(token_ids, guard.token_id_check(token_ids, vocabulary_size))
            inputs = dict(token_ids=token_ids, segment_ids=segment_ids, padding_mask=padding_mask,
                          mask_positions=mask_positions)
            return {"logits": tf.cast(model(inputs, training=False), tf.float32)}

        def fill_mask(text, top_k):
            # BERTMaskedLM.fill_mask's decisions (keras_tx.validation): "[mask]" in any case, at least one, at most
            # max_predictions, top_k >= 1 (more than the vocabulary: all of it).
            checks = guard.text_checks(text[None])
            checks.append(guard.require(top_k >= 1, f"top_k {validation.integer_range(1)}."))
            with tf.control_dependencies(checks):
                text = tf.strings.regex_replace(text, r"(?i)\[mask\]", MASK)
            masks = tf.size(tf.strings.split(text, sep=MASK)) - 1
            too_many = validation.too_many_masks(model.max_predictions)
            text = guard.checked(text, guard.require(masks > 0, validation.NO_MASK),
                                 guard.require(masks <= model.max_predictions, too_many))
            pieces = wordpiece.tokenize(text[None])[0]
            ids = tf.concat([[cls_id], pieces, [sep_id]], 0)
            # Checked before the model reads the ids (whose position embedding would fail on its own first).
            ids = guard.checked(ids, tf.debugging.Assert(tf.size(ids) <= max_length, [
                "The text is too long: with [CLS] and [SEP] it has more tokens than the model's "
                f"max_length={max_length}:", tf.size(ids)]))
            positions = tf.cast(tf.where(tf.equal(ids, mask_id))[:, 0], tf.int32)  # (M,)
            ones = tf.ones_like(ids)[None]
            inputs = {"token_ids": ids[None], "segment_ids": 0 * ones, "padding_mask": ones,
                      "mask_positions": positions[None]}
            logits = tf.cast(model(inputs, training=False), tf.float32)[0]  # (M, V)
            probabilities = tf.nn.softmax(logits, axis=-1)
            scores, token_ids = tf.math.top_k(probabilities, tf.clip_by_value(top_k, 1, vocabulary_size))
            return {
                "tokens": tf.gather(tf.constant(wordpiece.vocabulary), token_ids),
                "token_ids": token_ids,
                "scores": scores,
            }

        endpoints = [
            ("serving_default", serving_default,
             [tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES]
             + [tf.TensorSpec([None, None], tf.int32, name="mask_positions")]),
            ("fill_mask", fill_mask,
             [tf.TensorSpec([], tf.string, name="text"), tf.TensorSpec([], tf.int32, name="top_k")]),
        ]
        return model, [wordpiece], endpoints

    # ------------------------------------------------------------------------------------------- training

    @classmethod
    def training_data(cls, config):
        from keras_tx.data.wordpiece import make_wordpiece_tokenizer, train_wordpiece_vocabulary
        from keras_tx.tasks import load

        train_texts, val_texts, source = masked_lm_texts(config)
        start = load(config.init_from, kind=cls.kind) if config.init_from else None
        if start is not None:
            if config.sequence_length > start.model.backbone.max_length:
                raise ValueError(f"--sequence-length {config.sequence_length} is longer than the max_length "
                                 f"{start.model.backbone.max_length} of {config.init_from}'s BERT.")
            tokenizer, origin = start.tokenizer, f"{config.init_from}'s BERT and tokenizer"
        else:
            tokenizer = make_wordpiece_tokenizer(train_wordpiece_vocabulary(train_texts, config.vocabulary_size))
            origin = "a new WordPiece vocabulary"
        print(f"{source}: {len(train_texts):,} training / {len(val_texts):,} validation texts; {origin} "
              f"({tokenizer.vocabulary_size():,} tokens).")
        return types.SimpleNamespace(train_texts=train_texts, val_texts=val_texts, source=source, start=start,
                                     vocabulary=tokenizer.get_vocabulary(), tokenizer=tokenizer)

    @classmethod
    def build(cls, config, data):
        from keras_tx.models import BERT, BERTMaskedLM

        if data.start is not None:  # the same architecture with this run's dropout, and its weights
            start = data.start.model
            backbone = BERT.from_config({**start.backbone.get_config(), "dropout": config.dropout})
            model = BERTMaskedLM(backbone, tokenizer=data.tokenizer, max_predictions=start.max_predictions)
            length = config.sequence_length
            model({"token_ids": np.zeros((1, length), "int32"), "segment_ids": np.zeros((1, length), "int32"),
                   "padding_mask": np.ones((1, length), "int32"),
                   "mask_positions": np.zeros((1, start.max_predictions), "int32")})
            model.set_weights(start.get_weights())
            return model
        backbone = BERT(
            vocabulary_size=len(data.vocabulary), num_layers=config.num_layers, num_heads=config.num_heads,
            hidden_dim=config.hidden_dim, intermediate_dim=config.intermediate_dim or 4 * config.hidden_dim,
            max_length=config.sequence_length, dropout=config.dropout,
        )
        return BERTMaskedLM(backbone, tokenizer=data.tokenizer)

    @classmethod
    def compile_arguments(cls, config):
        return {"weighted_metrics": ["sparse_categorical_accuracy"]}

    @classmethod
    def validation_data(cls, config, data, model, seed):
        from keras_tx.data.wordpiece import mlm_dataset

        validation = mlm_dataset(data.val_texts, data.tokenizer, config.sequence_length, config.batch_size,
                                 shuffle=False, seed=seed)
        return validation.take(config.eval_batches).cache()

    @classmethod
    def batches(cls, config, data, model, seed):
        from keras_tx.data.wordpiece import mlm_dataset, packed_mlm_dataset

        if config.pack:
            return lambda start_step: packed_mlm_dataset(data.train_texts, data.tokenizer, config.sequence_length,
                                                         config.batch_size, seed=seed, start_step=start_step)

        def batches(start_step):
            # Masks are drawn afresh every pass; a resumed run continues with new masks from the step it stopped at.
            return mlm_dataset(data.train_texts, data.tokenizer, config.sequence_length, config.batch_size,
                               shuffle=True, seed=seed + start_step).repeat()

        return batches

    @classmethod
    def finish(cls, config, data, model, history, metrics):
        from keras_tx.data.tokenizers import save_tokenizer

        save_tokenizer(data.tokenizer, config.out)
        sst2 = "SST-2" in data.source or "sst2" in data.source
        fields = {
            "config": model.backbone.get_config(), "tokenizer": "vocab.txt", "dataset": data.source,
            "data": {"data_dir": config.data_dir, "dataset": config.dataset, "text_file": config.text_file},
            "split": "the dataset's train / validation split" if sst2 else "first 90% of lines train, last 10% "
                     "validation",
            "sequence_length": config.sequence_length,
            "masking": "15% of tokens selected; of those 80% [MASK], 10% random token, 10% unchanged",
            "packing": ("training texts not part of another, several to a sequence ([CLS] a [SEP] b [SEP] ...), "
                        "packed afresh every pass; validation one text per sequence") if config.pack
                       else "one text per sequence",
        }
        # The validation figures `keras-tx evaluate` prints (one text per sequence, seeded masks, the mean over the
        # masked tokens): Keras' weighted val_loss also averages in the empty mask slots as zeros.
        scores = cls(model, {"sequence_length": config.sequence_length}).scores(data.val_texts)
        metrics.update(val_masked_accuracy=scores["masked_accuracy"], val_loss=scores["masked_loss"])
        fields["val_measure"] = ("the validation texts, one per sequence, seeded masks, mean over the masked tokens "
                                 "(keras-tx evaluate)")
        if data.start is not None:
            fields.update(init_from=config.init_from,
                          **{key: data.start.metadata[key] for key in ("preset",) if key in data.start.metadata})
        summary = (f"masked-token accuracy {metrics['val_masked_accuracy']:.4f}, val loss {metrics['val_loss']:.4f}")
        return fields, summary

    # ------------------------------------------------------------------------------------------- keras-hub

    @classmethod
    def from_keras_hub(cls, handle, backbone):
        """The task of a BERT preset (`keras-tx import`): our BERTMaskedLM with keras-hub's BertMaskedLM weights
        (the preset's masked-LM head if it has one, else keras-hub's new head) and the preset's WordPiece vocabulary
        and casing."""
        import keras_hub
        from keras_hub.src.utils.preset_utils import TASK_WEIGHTS_FILE, check_file_exists

        from keras_tx.data.wordpiece import make_wordpiece_tokenizer
        from keras_tx.models import BERTMaskedLM

        theirs = keras_hub.models.BertMaskedLM.from_preset(handle, dtype="float32")
        hub_tokenizer = theirs.preprocessor.tokenizer
        tokenizer = make_wordpiece_tokenizer(hub_tokenizer.get_vocabulary(), lowercase=hub_tokenizer.lowercase,
                                             strip_accents=hub_tokenizer.strip_accents)
        model = BERTMaskedLM.from_keras_hub(theirs, tokenizer=tokenizer)
        has_head = check_file_exists(handle, TASK_WEIGHTS_FILE)
        if not has_head:
            print(f"{handle} has no masked-LM head: keras-hub's BertMaskedLM starts it from random weights, and so "
                  "does this directory; train it with `keras-tx train bert --init-from`.")
        metadata = {"kind": cls.kind, "architecture": "bert", "config": model.backbone.get_config(),
                    "tokenizer": "vocab.txt", "sequence_length": model.backbone.max_length,
                    "masked_lm_head": "the preset's" if has_head else "new (random): the preset has none"}
        return cls(model, metadata)

    def save(self, out_dir, command=None):
        """Write the model directory (model.keras, metadata.json, vocab.txt and tokenizer.json) to `out_dir`."""
        from keras_tx import artifacts
        from keras_tx.data.tokenizers import save_tokenizer

        save_tokenizer(self.tokenizer, out_dir)
        return artifacts.save_model(out_dir, self.model, self.metadata, command=command)
