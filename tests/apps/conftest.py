"""Tiny model directories for the demo's tests, made once per test session.

The language model goes through the real recipe (`keras-tx train gpt`, 4 steps). The others are built directly
and written with `artifacts.save_model` and the metadata their tasks write: the demo needs their format, not
their accuracy, and `keras-tx train vit/resnet` takes minutes even for one epoch of digits on a busy 2-core
machine. (Image GPT and translation have no `keras-tx train` recipe yet.)
"""

import os
import sys

import numpy as np
import pytest

APPS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "apps")
sys.path.insert(0, APPS)  # demo_lib and browser, as `streamlit run apps/demo.py` imports them

CORPUS = "to be or not to be, that is the question. whether tis nobler in the mind to suffer\n" * 20
BERT_VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "the", "a", "cat", "dog", "sat", "ran",
                   "on", "in", "mat", "park", "movie", "was", "good", "bad", "and", "actors", "were", "great"]


def _save_gpt(out, workdir):
    from keras_tx import cli

    corpus = os.path.join(workdir, "corpus.txt")
    with open(corpus, "w") as file:
        file.write(CORPUS)
    argv = ["train", "gpt", "--text-file", corpus, "--steps", "4", "--eval-interval", "2", "--eval-batches", "1",
            "--num-layers", "1", "--num-heads", "2", "--hidden-dim", "16", "--context", "16", "--batch-size", "4",
            "--no-tensorboard", "--verbose", "0", "--out", out]
    saved, sys.argv = sys.argv, ["keras-tx"] + argv  # metadata.json records sys.argv as the command
    try:
        assert cli.main(argv) == 0
    finally:
        sys.argv = saved


def _save_image_classifiers(folder):
    from keras_tx import artifacts
    from keras_tx.data.images import DIGIT_CLASSES
    from keras_tx.models import ResNet, ViT

    models = {
        "vit": ViT(image_size=16, patch_size=4, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32,
                   num_classes=10, num_channels=1),
        "resnet": ResNet(input_shape=(16, 16, 1), num_classes=10, width=4, blocks_per_stage=(1,)),
    }
    for architecture, model in models.items():
        model(np.zeros((1, 16, 16, 1), "float32"))
        artifacts.save_model(os.path.join(folder, f"{architecture}_fashion_mnist"), model, {
            "kind": "image_classifier", "architecture": architecture, "config": model.get_config(),
            "dataset": "digits", "split": "the dataset's own train/test split", "image_shape": [16, 16, 1],
            "class_names": DIGIT_CLASSES, "metrics": {"test_accuracy": 0.1, "test_loss": 2.3},
        })


def _save_bert(out):
    from keras_tx import artifacts
    from keras_tx.data import wordpiece
    from keras_tx.models import BERT, BERTMaskedLM

    model = BERTMaskedLM(BERT(len(BERT_VOCABULARY), num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
                              max_length=32), max_predictions=3)
    artifacts.save_model(out, model, {"kind": "masked_lm", "architecture": "bert", "config": model.get_config(),
                                      "metrics": {"val_loss": 3.2, "accuracy": 0.05}})
    wordpiece.save_tokenizer(wordpiece.make_wordpiece_tokenizer(BERT_VOCABULARY), out)


def _save_image_gpt(out):
    from keras_tx import artifacts
    from keras_tx.data.images import load_digits_images
    from keras_tx.models import ImageGPT, Palette

    palette = Palette.fit(load_digits_images().x_test[:50], num_colors=4)
    model = ImageGPT(palette, image_size=4, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32)
    model(np.zeros((1, 16), "int32"))
    artifacts.save_model(out, model, {"kind": "image_gpt", "architecture": "igpt", "config": model.get_config(),
                                      "dataset": "digits", "image_shape": [16, 16, 1], "metrics": {"val_loss": 1.3}})


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory):
    """A folder with gpt_shakespeare, bert_mlm, vit_fashion_mnist, resnet_fashion_mnist, igpt_digits and
    transformer_multi30k."""
    import keras

    folder = str(tmp_path_factory.mktemp("demo_models"))
    _save_gpt(os.path.join(folder, "gpt_shakespeare"), str(tmp_path_factory.mktemp("corpus")))
    keras.config.set_dtype_policy("float32")
    _save_image_classifiers(folder)
    _save_bert(os.path.join(folder, "bert_mlm"))
    _save_image_gpt(os.path.join(folder, "igpt_digits"))
    try:
        _save_translator(os.path.join(folder, "transformer_multi30k"))
    except ImportError:  # keras_tx.data.translation is optional to the demo
        pass
    return folder


def _save_translator(out):
    """A tiny German -> English Translator, as keras_tx.tasks.translation.Translator saves one, with a metadata.json."""
    from keras_tx.data.translation import RESERVED_TOKENS, make_translation_tokenizer
    from keras_tx.tasks.translation import Translator
    from keras_tx.models.seq2seq import Seq2SeqTransformer
    from keras_tx.training import write_json

    source = make_translation_tokenizer(list(RESERVED_TOKENS) + ["ein", "mann", "fahrt", "fahrrad", "."])
    target = make_translation_tokenizer(list(RESERVED_TOKENS) + ["a", "man", "rides", "bike", "."])
    model = Seq2SeqTransformer(9, 9, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
                               max_source_length=6, max_target_length=6)
    model({"encoder_token_ids": np.ones((1, 6), "int32"), "decoder_token_ids": np.ones((1, 6), "int32")})
    Translator(model, source, target).save(out)
    write_json(os.path.join(out, "metadata.json"), {"kind": "translation", "architecture": "transformer",
                                                    "dataset": "multi30k de-en", "metrics": {"bleu": 1.5}})
