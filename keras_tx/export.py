"""SavedModel export: a trained model directory -> a TensorFlow SavedModel whose signatures do the whole job.

The last step of the pipeline `data/ -> models/ -> training.py -> saved_models/<name>/ -> export.py`. An export
can be served by a stock TF Serving binary and loaded with `tf.saved_model.load` in a process that has neither
keras-tx nor keras nor keras-hub: tokenization, the cached decoding loops, image decoding and resizing are all
TensorFlow ops inside the graph, and only core ops (no TF-Text custom ops), so nothing but TensorFlow is needed.

    keras-tx export runs/gpt serving/gpt/1          # or keras_tx.export.export("runs/gpt", "serving/gpt/1")

Signatures by kind of model directory (every tensor is int32, float32 or string; shapes, B = batch):

    language_model (GPT, LSTM, RNN; char tokenizer)
      serving_default  token_ids (B, T)                        -> logits (B, T, V)
      generate         prompt (), max_new_tokens (), temperature (), seed () int64
                                                               -> text (), completion (), token_ids (N,)
    masked_lm (BERT; WordPiece)
      serving_default  token_ids, segment_ids, padding_mask (B, T), mask_positions (B, P) -> logits (B, P, V)
      fill_mask        text () with [MASK]s, top_k ()          -> tokens (M, k) string, token_ids (M, k),
                                                                  scores (M, k) (probabilities, best first)
    image_classifier (ViT, ResNet)
      serving_default  images (B, H, W, C) floats in [0, 1]    -> logits (B, K), probabilities (B, K)
      classify         image_bytes (B,) PNG/JPEG/GIF/BMP files -> labels (B, K) string, class_ids (B, K),
                                                                  probabilities (B, K), all classes, best first
    translation (Seq2SeqTransformer written by keras_tx.tasks.translation.Translator.save)
      serving_default  encoder_token_ids (B, S), decoder_token_ids (B, T) -> logits (B, T, V)
      translate        text (B,)                               -> translation (B,), token_ids (B, max_target_length)
    text_classifier (BERTClassifier; WordPiece)
      serving_default  token_ids, segment_ids, padding_mask (B, T) -> logits (B, K)
      classify_text    text (B,)                               -> labels (B, K) string, class_ids (B, K),
                                                                  probabilities (B, K), all classes, best first

Bad input gets the decision, and the sentence, of the CLI and the Python API (`keras_tx.validation`), as an
InvalidArgument error: invalid UTF-8, empty or over-long text, more than 64 texts or images, token ids outside the
vocabulary, prompt characters the model does not know, max_new_tokens outside [1, 2000], a temperature that is
negative or not finite, a negative seed, a text without [MASK] (any case) or with more than the model takes, top_k
< 1, a text to translate longer than the model reads or with no word it knows, an image file over 20 MiB, not a
PNG/JPEG/GIF/BMP, or over 25 megapixels by its header (checked before it is decoded). An empty batch of images or
texts gets an empty answer.

- `generate`: temperature 0 is greedy decoding (the same tokens as `keras-tx generate --sampler greedy`); above 0
  each token is drawn from softmax(logits / temperature) by keras_tx.generation's own loop, whose random numbers
  are a hash of (seed, step): the same seed gives the same text, and the text of `keras-tx generate --sampler
  random` with that seed and temperature. A GPT continues past its context in chunks, re-reading the last
  half-context, as `keras-tx generate` does.
- `fill_mask`: top_k above the vocabulary size gives the whole vocabulary; a text longer than the model's
  max_length is an InvalidArgument error that says so.
- `classify`: transparency is flattened onto black, grey, RGB and CMYK are converted like PIL does, the image is
  resized (antialiased bilinear) into the model's size keeping its aspect ratio and padded with black, as
  `keras-tx classify` does with PIL; EXIF rotation is not applied. Images already at the model's size give the
  CLI's probabilities exactly.

Each task defines its own signatures (`serving_endpoints` in keras_tx/tasks/); this module checks the
directories, traces the functions and saves them. Tokenization and image decoding in core ops live in
`keras_tx.data.graph_text` and `keras_tx.data.graph_images`.
"""

import os
import shutil

import tensorflow as tf

# The graph tokenizers, also reachable here (their tests, older imports).
from keras_tx.data.graph_text import CharVocabulary, WordPiece, target_texts  # noqa: F401

# ------------------------------------------------------------------------------------------------ export

def model_kind(model_dir):
    """The kind of a model directory that can be exported: one whose task has serving signatures.

    A directory that `Translator.save` wrote (source_vocab.txt, target_vocab.txt) is "translation"; any other
    gets its kind from metadata.json. Raises ValueError for a directory that is not a model or of another kind.

    Example:
    >>> model_kind("saved_models/gpt_shakespeare")
    'language_model'
    """
    from keras_tx import artifacts, tasks

    artifacts.check_model_dir(model_dir)
    if all(os.path.isfile(os.path.join(model_dir, f)) for f in ("source_vocab.txt", "target_vocab.txt")):
        return "translation"
    kind = artifacts.read_metadata(model_dir).get("kind")
    exportable = [k for k, task in tasks.TASKS.items() if task.signatures]
    if kind not in exportable:
        raise ValueError(f"{model_dir} holds a model of kind {kind!r}; export knows {', '.join(exportable)}.")
    return kind


def check_out_dir(out_dir):
    """Raise ValueError unless `out_dir` is absent or an empty directory: an export never overwrites files."""
    if os.path.isdir(out_dir):
        if os.listdir(out_dir):
            raise ValueError(f"{out_dir} exists and is not empty: give a new directory (nothing is overwritten).")
    elif os.path.lexists(out_dir):
        raise ValueError(f"{out_dir} exists and is not a directory: give a new directory.")


def export(model_dir, out_dir):
    """Write the SavedModel of the model directory `model_dir` to `out_dir` (new, or an empty directory).

    Args:
        model_dir: a directory written by `keras-tx train` (a language model, BERT, ViT or ResNet) or by
            `keras_tx.tasks.translation.Translator.save`.
        out_dir: where to write the SavedModel; for TF Serving, a version folder such as serving/gpt/1.

    Returns:
        {"kind": ..., "signatures": {name: {"inputs": {name: "dtype shape"}, "outputs": {...}}}}.

    Example:
    >>> export("runs/gpt", "serving/gpt/1")["signatures"]["generate"]["inputs"]
    {'max_new_tokens': 'int32 ()', 'prompt': 'string ()', 'seed': 'int64 ()', 'temperature': 'float32 ()'}
    """
    from keras_tx import tasks

    kind = model_kind(model_dir)
    check_out_dir(out_dir)
    _, modules, endpoints = tasks.task_for_kind(kind).load(model_dir).serving_endpoints()
    root = tf.Module()
    root.text_ops = modules  # their lookup tables are saved with the model
    functions = {
        name: tf.function(fn, input_signature=signature, autograph=False).get_concrete_function()
        for name, fn, signature in endpoints
    }
    # The variables the graphs read (the model's weights), tracked so that they are saved.
    root.model_variables = list({id(v): v for f in functions.values() for v in f.variables}.values())
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    # Written next to out_dir, then renamed: a failed or killed export leaves no half SavedModel behind.
    staging = os.path.join(parent, f".{os.path.basename(os.path.abspath(out_dir))}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        tf.saved_model.save(root, staging, signatures=functions)
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"kind": kind, "signatures": {name: _describe(function) for name, function in functions.items()}}


def _describe(function):
    """{"inputs": {name: "dtype shape"}, "outputs": {...}} of a concrete function."""

    def spec(value):
        shape = "(" + ", ".join("None" if d is None else str(d) for d in value.shape) + ")"
        return f"{value.dtype.name} {shape}"

    inputs = {value.name: value for value in function.structured_input_signature[0]}
    outputs = function.structured_outputs
    return {
        "inputs": {key: spec(value) for key, value in sorted(inputs.items())},
        "outputs": {key: spec(value) for key, value in sorted(outputs.items())},
    }
