"""Data: tokenizers and input pipelines (text and images). TensorFlow is allowed here, not in layers/models.

Names load on first use (PEP 562), so that `keras_tx.data.text`, `.tokenizers`, `.masking` and `.images`, which
need only numpy, import on a machine without TensorFlow (a JAX-only GPU host); `wordpiece` and `translation`
import it.
"""
import importlib

_EXPORTS = {
    # [text]
    "text": ("language_model_dataset", "load_text", "split_text"),
    "tokenizers": ("CharTokenizer", "load_tokenizer", "save_tokenizer"),
    "bpe": ("BytePairTokenizer",),
    # [bert]
    "masking": ("mask_token_ids",),
    "wordpiece": (
        "classification_dataset",
        "encode_texts",
        "load_sst2",
        "make_mlm_masker",
        "make_wordpiece_tokenizer",
        "mask_language_model_inputs",
        "mlm_dataset",
        "special_token_ids",
        "train_wordpiece_vocabulary",
    ),
    # [vision]
    "images": (
        "ImageData",
        "image_dataset",
        "load_digits_images",
        "load_idx",
        "load_image_data",
        "load_image_file",
        "load_image_folder",
        "load_npz",
        "load_tfds",
    ),
    # [seq2seq]
    "translation": (
        "load_parallel",
        "load_translation_tokenizers",
        "make_translation_tokenizer",
        "save_translation_tokenizers",
        "train_translation_tokenizers",
        "translation_dataset",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"keras_tx.data.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module 'keras_tx.data' has no attribute {name!r}")


def __dir__():
    return __all__
