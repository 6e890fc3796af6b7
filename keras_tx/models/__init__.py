"""Architectures, one file each, in the order the ideas arrived: RNN LM, seq2seq Transformer, GPT, BERT, ViT,
image GPT (and a ResNet baseline). Each file holds a backbone and its task heads."""
# Each family adds its own import line below its marker.
# [rnn]
from keras_tx.models.rnn import RNNLanguageModel  # noqa: E402,F401
# [gpt]
from keras_tx.models.gpt import GPT, GPTClassifier  # noqa: E402,F401
# [bert]
from keras_tx.models.bert import BERT, BERTClassifier, BERTMaskedLM, MaskedLMHead  # noqa: E402,F401
# [vision]
from keras_tx.models.igpt import ImageGPT, Palette  # noqa: E402,F401
from keras_tx.models.resnet import ResNet  # noqa: E402,F401
from keras_tx.models.vit import ViT  # noqa: E402,F401
# [seq2seq]
from keras_tx.models.seq2seq import MaskedCrossentropy, Seq2SeqTransformer, masked_accuracy  # noqa: E402,F401
