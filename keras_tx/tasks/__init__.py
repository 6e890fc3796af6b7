"""The registry of tasks: metadata.json's "kind" -> the task class that is the single home of that job.

    from keras_tx import tasks

    task = tasks.load("saved_models/gpt_shakespeare")          # TextGeneration, by its directory's kind
    print(task.generate("ROMEO:", max_new_tokens=100, sampler="top_k", seed=1))
    tasks.train(tasks.GPTConfig(text_file="input.txt", steps=500, out="runs/gpt"))

The CLI, the demo, `keras-tx evaluate` and the exporter only read this registry: a new kind of job is a new task
file (its model, preprocessing, use, evaluation, serving signatures and training hooks) plus one line here.

    kind              task                   train verbs          model directory
    language_model    TextGeneration         gpt, lstm, rnn       model.keras, tokenizer.json (+ vocab.json,
                                                                  merges.txt for GPT-2's BPE)
    masked_lm         MaskedLM               bert                 model.keras, tokenizer.json, vocab.txt
    image_classifier  ImageClassification    vit, resnet          model.keras (metadata: image_shape, class_names)
    image_gpt         ImageCompletion        igpt                 model.keras (metadata: image_shape)
    translation       Translation            transformer          model.keras, source_ and target_ tokenizer.json
                                                                  and vocab.txt
    text_classifier   TextClassification     sentiment            model.keras, tokenizer.json, vocab.txt (metadata:
                                                                  class_names, sequence_length)

Every tokenizer is saved one way (`keras_tx.data.tokenizers.save_tokenizer`): a JSON file naming its class, and its
vocabulary files beside it. `keras-tx import` (presets.py) writes GPT-2, BERT and ViT presets as such directories.
"""

from keras_tx.config import TrainingConfig
from keras_tx.tasks.base import Task, train
from keras_tx.tasks.image_classification import ImageClassification, ResNetConfig, ViTConfig
from keras_tx.tasks.image_completion import ImageCompletion, ImageGPTConfig
from keras_tx.tasks.masked_lm import BERTConfig, MaskedLM
from keras_tx.tasks.text_classification import SentimentConfig, TextClassification
from keras_tx.tasks.text_generation import GPTConfig, LSTMConfig, RNNConfig, TextGeneration
from keras_tx.tasks.translation import TransformerConfig, Translation

TASKS = {task.kind: task for task in (TextGeneration, MaskedLM, ImageClassification, ImageCompletion, Translation,
                                      TextClassification)}
# `keras-tx train VERB` -> (task, config dataclass), in the order `keras-tx train --help` lists them.
TRAIN_VERBS = {verb: (task, config) for task in TASKS.values() for verb, config in task.configs.items()}

__all__ = ["TASKS", "TRAIN_VERBS", "Task", "TrainingConfig", "load", "read_kind", "task_for_kind", "task_for_verb",
           "train", "TextGeneration", "MaskedLM", "ImageClassification", "ImageCompletion", "Translation",
           "TextClassification", "GPTConfig", "LSTMConfig", "RNNConfig", "BERTConfig", "ViTConfig", "ResNetConfig",
           "ImageGPTConfig", "TransformerConfig", "SentimentConfig"]


def task_for_kind(kind, model_dir=None):
    """The task class of a kind; a kind no task knows is a one-line ValueError."""
    if kind not in TASKS:
        where = f"{model_dir} holds a model of kind {kind!r}" if model_dir else f"Unknown kind {kind!r}"
        raise ValueError(f"{where}; keras-tx knows {', '.join(TASKS)}.")
    return TASKS[kind]


def task_for_verb(verb):
    """The task class that `keras-tx train VERB` trains."""
    if verb not in TRAIN_VERBS:
        raise ValueError(f"Unknown model {verb!r}; `keras-tx train` knows {', '.join(TRAIN_VERBS)}.")
    return TRAIN_VERBS[verb][0]


def read_kind(model_dir):
    """The kind of a model directory (metadata.json's "kind"); a directory that is not a model: ValueError."""
    from keras_tx import artifacts

    return artifacts.read_metadata(model_dir).get("kind")


def load(model_dir, kind=None):
    """The task of a model directory, or of `kind`'s task when one is asked for (another kind: ValueError).

    Example:
    >>> load("saved_models/bert_mlm").fill_mask("the movie was [MASK] .", top_k=2)  # a small BERT: 21% right
    [[('is', 0.054...), ('of', 0.030...)]]
    """
    task = task_for_kind(kind) if kind is not None else task_for_kind(read_kind(model_dir), model_dir)
    return task.load(model_dir)
