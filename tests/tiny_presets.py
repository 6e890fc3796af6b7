"""Tiny keras-hub presets made in the tests with keras-hub's own `save_to_preset`: GPT-2, BERT and ViT with random
weights, a small vocabulary and merges learned here. Nothing is downloaded; `keras-tx import DIR` reads them as it
reads a Kaggle or Hugging Face handle.
"""

import os

import keras
import keras_hub

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 1234 miles, isn't it?",
    "Café naïve résumé — déjà vu; 東京 and مرحبا, numbers 3.14 and 1,000.",
    "We've got   three spaces,\ttabs\nand newlines.  Hello world! Hello again, world.",
    "ROMEO: But soft, what light through yonder window breaks? It is the east.",
] * 4
GPT2_CONFIG = dict(num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=64)
BERT_WORDS = ["the", "a", "movie", "was", "good", "bad", "great", "film", "is", "not", "very", "fun", ".", ",", "!",
              "i", "it", "play", "##ing", "##ed", "##s", "cafe", "and", "love", "hate", "story"]
VIT_CLASSES = 3


def bpe_vocabulary(corpus=CORPUS, vocabulary_size=300):
    """(vocabulary {token: id}, merges ["a b", ...]) of a byte-level BPE learned on `corpus` with Hugging Face
    `tokenizers` (GPT-2's pre-tokenization), "<|endoftext|>" included."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocabulary_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    # GPT-2's <|endoftext|> is its last id (50256); keras-hub pads with id 0, which must not be the stop token.
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    tokens.remove("<|endoftext|>")
    return {token: i for i, token in enumerate(tokens + ["<|endoftext|>"])}, merges


def _save(directory, task, make_task, *parts):
    """Save the keras-hub task `make_task()` as a preset in `directory` (`task`), else only its `parts` (the
    backbone and its tokenizer or image converter)."""
    if task:
        make_task().save_to_preset(directory)
    else:
        for part in parts:
            part.save_to_preset(directory)
    return directory


def gpt2_preset(directory, seed=1, task=True):
    """A GPT2CausalLM preset (or only a backbone and tokenizer, `task=False`) in `directory`."""
    keras.utils.set_random_seed(seed)
    vocabulary, merges = bpe_vocabulary()
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=len(vocabulary), **GPT2_CONFIG)
    return _save(directory, task, lambda: keras_hub.models.GPT2CausalLM(
        backbone=backbone, preprocessor=keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=64)),
                 backbone, tokenizer)


def bert_vocabulary():
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + BERT_WORDS


def bert_preset(directory, seed=2, task=True):
    """A BertMaskedLM preset (head included), or a backbone and tokenizer only (`task=False`)."""
    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=bert_vocabulary(), lowercase=True)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(bert_vocabulary()), num_layers=2, num_heads=2,
                                             hidden_dim=32, intermediate_dim=64, max_sequence_length=32)
    return _save(directory, task, lambda: keras_hub.models.BertMaskedLM(
        backbone=backbone, preprocessor=keras_hub.models.BertMaskedLMPreprocessor(tokenizer, sequence_length=32)),
                 backbone, tokenizer)


def vit_preset(directory, seed=3, task=True):
    """A ViTImageClassifier preset (3 classes; 16x16 RGB images rescaled to [-1, 1] as ViT-B/16's converter does),
    or a backbone and image converter only (`task=False`)."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2,
                                            hidden_dim=16, mlp_dim=32)
    converter = keras_hub.layers.ViTImageConverter(image_size=(16, 16), scale=1 / 127.5, offset=-1.0)
    return _save(directory, task, lambda: keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=VIT_CLASSES,
        preprocessor=keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)), backbone, converter)


def make_all(root):
    """{"gpt2": dir, "bert": dir, "vit": dir} of the three task presets under `root`."""
    return {name: make(os.path.join(root, name)) for name, make in
            (("gpt2", gpt2_preset), ("bert", bert_preset), ("vit", vit_preset))}
