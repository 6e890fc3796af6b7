"""Text classification: sentiment (SST-2) with a BERT classifier (`BERTClassifier`) and its WordPiece tokenizer.

    keras-tx train sentiment --data-dir sst2 --init-from saved_models/bert_mlm --out runs/sst2
    keras-tx classify runs/sst2 "a gorgeous, witty film" "a dull mess"
    keras-tx evaluate runs/sst2

`--init-from DIR` fine-tunes the backbone of a masked-LM directory (`keras-tx train bert`) and keeps its tokenizer;
without it a WordPiece vocabulary is trained on the training texts and a fresh BERT of the config's sizes learns
from scratch. The data: an SST-2 folder (train.tsv / dev.tsv, `--data-dir`), glue/sst2 from TensorFlow Datasets
(`--dataset glue/sst2`), or any TSV `sentence<TAB>label` with a header (`--text-file`, labels 0 .. K-1 naming
`--class-names`; a fixed shuffle, then 90% train / 10% validation).

The model directory holds model.keras (the tokenizer rides in it), vocab.txt and tokenizer.json
(`keras_tx.data.tokenizers.save_tokenizer`) and metadata.json ("class_names", "sequence_length", "init_from", and
"data", the data flags `keras-tx evaluate` reads by default). A text is read as in training: [CLS] its WordPiece
tokens [SEP], cut to `sequence_length` tokens (a longer text is truncated, not refused).

Serving signatures (`keras-tx export`):

    serving_default  token_ids, segment_ids, padding_mask (B, T) int32    -> logits (B, K) float32
    classify_text    text (B,) string                                      -> labels (B, K) string, class_ids (B, K)
                                                                              int32, probabilities (B, K) float32,
                                                                              all classes, best first
"""

import dataclasses
import os
import types

import numpy as np

from keras_tx import validation
from keras_tx.config import POSITIVE, TrainingConfig, default, flag, integer
from keras_tx.tasks.masked_lm import BERTTask, BERTTrainingDefaults

TSV_HEADER = ["sentence", "label"]


@dataclasses.dataclass
class SentimentConfig(BERTTrainingDefaults, TrainingConfig):
    """`keras-tx train sentiment`: a BERT sentence classifier (SST-2), fine-tuned from a masked LM or from scratch."""

    model: str = "sentiment"
    init_from: str = flag(None, "a masked-LM model directory (keras-tx train bert, e.g. saved_models/bert_mlm): "
                                "fine-tune its backbone with its tokenizer; without it, a new vocabulary and BERT")
    class_names: list = flag(["negative", "positive"], "the names of labels 0, 1, ...", nargs="+")
    num_layers: int = flag(2, "without --init-from", POSITIVE)
    num_heads: int = flag(2, "without --init-from", POSITIVE)
    hidden_dim: int = flag(128, "without --init-from", POSITIVE)
    intermediate_dim: int = flag(None, "without --init-from; default 4 * hidden-dim", POSITIVE)
    vocabulary_size: int = flag(8000, "without --init-from", integer(16))
    sequence_length: int = flag(64, "tokens per text with [CLS] and [SEP] (longer texts are cut)", integer(4))
    batch_size: int = default("batch_size", 32)
    eval_interval: int = default("eval_interval", 500)
    learning_rate: float = default("learning_rate", 1e-4)
    min_learning_rate: float = default("min_learning_rate", 1e-5)


def read_tsv(path):
    """(texts, labels) of a `sentence<TAB>label` file with that header (labels: integers)."""
    with open(path, encoding="utf-8") as file:
        header = file.readline().rstrip("\n").split("\t")
        if header != TSV_HEADER:
            raise ValueError(f"{path} is not a sentence/label file: expected the header 'sentence<TAB>label', "
                             f"got {header}.")
        rows = [(number, line.rstrip("\n").rsplit("\t", 1)) for number, line in enumerate(file, 2) if line.strip()]
    texts, labels = [], []
    for number, row in rows:
        if len(row) != 2 or not row[1].strip().lstrip("-").isdigit():
            raise ValueError(f"{path} line {number}: expected 'sentence<TAB>integer label'.")
        texts.append(row[0].strip())
        labels.append(int(row[1]))
    return texts, np.array(labels, "int32")


def labelled_texts(data_dir=None, dataset=None, text_file=None, download=False):
    """(train texts, train labels, validation texts, validation labels, description) of the data flags."""
    from keras_tx.data.wordpiece import SST2_FILES, load_sst2

    if text_file:
        texts, labels = read_tsv(text_file)
        if len(texts) < 10:
            raise ValueError(f"{text_file} has {len(texts)} labelled texts: too few for a 90/10 split.")
        order = np.random.default_rng(0).permutation(len(texts))  # fixed: evaluate sees the same split
        cut = int(0.9 * len(texts))
        pick = lambda rows: ([texts[i] for i in rows], labels[rows])  # noqa: E731
        return (*pick(order[:cut]), *pick(order[cut:]), f"{text_file} (shuffled, 90% train / 10% validation)")
    if data_dir and not dataset:
        if not os.path.isfile(os.path.join(data_dir, SST2_FILES["train"])):
            raise ValueError(f"{data_dir} has no {SST2_FILES['train']}: give an SST-2 folder (train.tsv, dev.tsv), "
                             "--dataset glue/sst2 or --text-file.")
        return (*load_sst2(data_dir, "train"), *load_sst2(data_dir, "validation"), f"{data_dir} (SST-2 train / dev)")
    if dataset == "glue/sst2":
        return (*load_sst2(data_dir, "train", download=download), *load_sst2(data_dir, "validation",
                                                                             download=download), "glue/sst2")
    if dataset:
        raise ValueError(f"Unknown dataset {dataset!r} for a text classifier: use glue/sst2, --data-dir (an SST-2 "
                         "folder) or --text-file (sentence<TAB>label).")
    raise ValueError("A text classifier needs labelled texts: --data-dir (an SST-2 folder), --dataset glue/sst2 or "
                     "--text-file (sentence<TAB>label).")


def check_labels(labels, class_names, where):
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"{where} has labels outside 0 .. {len(class_names) - 1} ({len(class_names)} class names: "
                         f"{', '.join(class_names)}).")


class TextClassification(BERTTask):
    """A text classifier: texts in, class names with probabilities out."""

    kind = "text_classifier"
    description = "a text classifier"
    configs = {"sentiment": SentimentConfig}
    history_metrics = {"val_accuracy": "val_accuracy", "val_loss": "val_loss", "train_accuracy": "accuracy",
                       "train_loss": "loss"}
    required_fields = ("class_names", "sequence_length")
    signatures = ("classify_text",)

    @property
    def class_names(self):
        return [str(name) for name in self.metadata["class_names"]]

    @property
    def sequence_length(self):
        return int(self.metadata["sequence_length"])

    # -------------------------------------------------------------------------------------------------- use

    def encode(self, texts):
        """BERT's input dict (numpy) of texts: [CLS] tokens [SEP], cut or padded to `sequence_length`."""
        from keras_tx.data.wordpiece import encode_texts

        return encode_texts(texts, self.tokenizer, self.sequence_length)

    def probabilities(self, texts, batch_size=64):
        """(N, K) float32 class probabilities of already checked texts."""
        import keras

        parts = []
        for start in range(0, len(texts), batch_size):
            logits = self.model.predict_on_batch(self.encode(texts[start:start + batch_size]))
            parts.append(keras.ops.convert_to_numpy(keras.ops.softmax(keras.ops.cast(logits, "float32"), axis=-1)))
        return np.concatenate(parts) if parts else np.zeros((0, len(self.class_names)), "float32")

    def classify(self, texts, top_k=2):
        """[(text, [(label, probability), ...])] for a text or a list of at most 64, `top_k` classes best first.

        Each text is checked as every surface checks it (`keras_tx.validation`: UTF-8, not empty, at most 10,000
        characters); top_k >= 1, more than there are classes gives all of them.

        Example:
        >>> TextClassification.load("saved_models/sentiment_sst2").classify(["a gorgeous film"])
        [('a gorgeous film', [('positive', 0.97), ('negative', 0.03)])]
        """
        texts = [texts] if isinstance(texts, (str, bytes)) else validation.batch(texts, "texts")
        top_k = validation.integer("top_k", top_k, 1)
        texts = [validation.text(text) for text in texts]
        if not texts:
            return []
        names = self.class_names
        results = []
        for text, p in zip(texts, self.probabilities(texts)):
            best = np.argsort(-p, kind="stable")[:top_k]
            results.append((text, [(names[i], float(p[i])) for i in best]))
        return results

    def evaluate(self, dataset=None, text_file=None, data_dir=None, batches=200, batch_size=12):
        """Accuracy and mean loss on the validation texts (SST-2's dev set) of its data, or of the data given."""
        if not (dataset or text_file or data_dir):
            recorded = self.metadata.get("data") or {}
            dataset, text_file, data_dir = recorded.get("dataset"), recorded.get("text_file"), recorded.get("data_dir")
        _, _, texts, labels, source = labelled_texts(data_dir=data_dir, dataset=dataset, text_file=text_file)
        check_labels(labels, self.class_names, source)
        p = self.probabilities(texts).astype("float64")
        labels = np.asarray(labels, "int64")
        picked = p[np.arange(len(labels)), labels]
        return {"model_dir": self.model_dir, "dataset": source, "validation_texts": len(texts),
                "validation_accuracy": round(float(np.mean(p.argmax(-1) == labels)), 4),
                "validation_loss": round(float(-np.mean(np.log(np.maximum(picked, 1e-30)))), 4)}

    def serving_endpoints(self):
        return text_classifier_endpoints(self)

    # ------------------------------------------------------------------------------------------- training

    @classmethod
    def training_data(cls, config):
        from keras_tx.data.wordpiece import make_wordpiece_tokenizer, train_wordpiece_vocabulary
        from keras_tx.tasks import load

        train_texts, train_labels, val_texts, val_labels, source = labelled_texts(
            config.data_dir, config.dataset, config.text_file, config.download)
        check_labels(train_labels, config.class_names, source)
        check_labels(val_labels, config.class_names, source)
        if config.init_from:
            masked_lm = load(config.init_from, kind="masked_lm")
            backbone = masked_lm.model.backbone
            if config.sequence_length > backbone.max_length:
                raise ValueError(f"--sequence-length {config.sequence_length} is longer than the max_length "
                                 f"{backbone.max_length} of {config.init_from}'s BERT.")
            tokenizer, backbone_config = masked_lm.tokenizer, backbone.get_config()
            weights = backbone.get_weights()
            origin = f"{config.init_from}'s BERT and tokenizer"
        else:
            tokenizer = make_wordpiece_tokenizer(train_wordpiece_vocabulary(train_texts, config.vocabulary_size))
            backbone_config, weights, origin = None, None, "a new BERT and WordPiece vocabulary"
        print(f"{source}: {len(train_texts):,} training / {len(val_texts):,} validation texts; {origin} "
              f"(vocabulary {tokenizer.vocabulary_size():,}).")
        return types.SimpleNamespace(train_texts=train_texts, train_labels=train_labels, val_texts=val_texts,
                                     val_labels=val_labels, source=source, tokenizer=tokenizer,
                                     backbone_config=backbone_config, backbone_weights=weights)

    @classmethod
    def build(cls, config, data):
        from keras_tx.models import BERT, BERTClassifier

        if data.backbone_config is not None:
            backbone = BERT.from_config({**data.backbone_config, "dropout": config.dropout})
            backbone.set_weights(data.backbone_weights)
        else:
            backbone = BERT(
                vocabulary_size=data.tokenizer.vocabulary_size(), num_layers=config.num_layers,
                num_heads=config.num_heads, hidden_dim=config.hidden_dim,
                intermediate_dim=config.intermediate_dim or 4 * config.hidden_dim, max_length=config.sequence_length,
                dropout=config.dropout,
            )
        return BERTClassifier(backbone, num_classes=len(config.class_names), dropout=config.dropout,
                              tokenizer=data.tokenizer)

    @classmethod
    def compile_arguments(cls, config):
        return {"metrics": ["accuracy"]}

    @classmethod
    def validation_data(cls, config, data, model, seed):
        from keras_tx.data.wordpiece import classification_dataset

        return classification_dataset(data.val_texts, data.val_labels, data.tokenizer, config.sequence_length,
                                      config.batch_size, shuffle=False).take(config.eval_batches).cache()

    @classmethod
    def batches(cls, config, data, model, seed):
        from keras_tx.data.wordpiece import classification_dataset

        def batches(start_step):
            # A resumed run reshuffles from the step it stopped at.
            return classification_dataset(data.train_texts, data.train_labels, data.tokenizer,
                                          config.sequence_length, config.batch_size, shuffle=True,
                                          seed=seed + start_step).repeat()

        return batches

    @classmethod
    def save_preprocessing(cls, out, data):
        from keras_tx.data.tokenizers import save_tokenizer

        save_tokenizer(data.tokenizer, out)

    @classmethod
    def finish(cls, config, data, model, history, metrics):
        fields = {
            "architecture": "bert_classifier", "config": model.backbone.get_config(), "tokenizer": "vocab.txt",
            "dataset": data.source,
            "data": {"data_dir": config.data_dir, "dataset": config.dataset, "text_file": config.text_file},
            "sequence_length": config.sequence_length, "class_names": list(config.class_names),
            "init_from": config.init_from,
        }
        summary = f"validation accuracy {metrics['val_accuracy']:.4f}, val loss {metrics['val_loss']:.4f}"
        return fields, summary


# --------------------------------------------------------------------------------------- serving signatures


def text_classifier_endpoints(task):
    """The signatures of a text-classification task: its model, the graph WordPiece, [(name, fn, signature)]."""
    import tensorflow as tf

    from keras_tx import graph_checks as guard
    from keras_tx.data.graph_text import WordPiece
    from keras_tx.data.wordpiece import CLS, PAD, SEP
    from keras_tx.models.bert import INPUT_NAMES

    model, tokenizer = task.model, task.tokenizer
    wordpiece = WordPiece(tokenizer)
    cls_id, sep_id, pad_id = (tokenizer.token_to_id(t) for t in (CLS, SEP, PAD))
    length, vocabulary_size = task.sequence_length, model.backbone.vocabulary_size
    class_names = tf.constant(task.class_names)
    num_classes = len(task.class_names)

    def serving_default(token_ids, segment_ids, padding_mask):
        token_ids = guard.checked(token_ids, guard.token_id_check(token_ids, vocabulary_size))
        inputs = dict(token_ids=token_ids, segment_ids=segment_ids, padding_mask=padding_mask)
        return {"logits": tf.cast(model(inputs, training=False), tf.float32)}

    def classify_text(text):
        # TextClassification.classify's decisions (keras_tx.validation): at most 64 texts, each UTF-8, not empty,
        # at most 10,000 characters; an empty batch gets an empty answer. Tokens past the length are cut, as the
        # Python side's StartEndPacker cuts them.
        with tf.control_dependencies(guard.text_checks(text) + [guard.batch_check(text)]):
            pieces = wordpiece.tokenize(text)[:, : length - 2]
        rows = tf.shape(text)[0]
        ends = [tf.RaggedTensor.from_tensor(tf.fill([rows, 1], token)) for token in (cls_id, sep_id)]
        ids = tf.concat([ends[0], tf.cast(pieces, tf.int32), ends[1]], axis=1)
        token_ids = ids.to_tensor(pad_id, shape=[None, length])
        padding_mask = tf.sequence_mask(ids.row_lengths(), length, dtype=tf.int32)
        inputs = {"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids), "padding_mask": padding_mask}
        probabilities = tf.nn.softmax(tf.cast(model(inputs, training=False), tf.float32), axis=-1)
        probabilities, class_ids = tf.math.top_k(probabilities, num_classes)  # every class, best first
        return {"labels": tf.gather(class_names, class_ids), "class_ids": class_ids, "probabilities": probabilities}

    endpoints = [
        ("serving_default", serving_default, [tf.TensorSpec([None, None], tf.int32, name=n) for n in INPUT_NAMES]),
        ("classify_text", classify_text, [tf.TensorSpec([None], tf.string, name="text")]),
    ]
    return model, [wordpiece], endpoints
