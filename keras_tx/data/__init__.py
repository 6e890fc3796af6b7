"""Data: tokenizers and tf.data pipelines (text and images). TensorFlow is allowed here, not in layers/models."""
# Each family adds its own import line below its marker.
# [text]
from keras_tx.data.text import language_model_dataset, load_text, split_text  # noqa: E402,F401
from keras_tx.data.tokenizers import CharTokenizer  # noqa: E402,F401
# [bert]
from keras_tx.data.wordpiece import (  # noqa: E402,F401
    classification_dataset,
    encode_texts,
    load_sst2,
    load_tokenizer,
    make_mlm_masker,
    make_wordpiece_tokenizer,
    mask_language_model_inputs,
    mlm_dataset,
    save_tokenizer,
    train_wordpiece_vocabulary,
)
# [vision]
from keras_tx.data.images import (  # noqa: E402,F401
    ImageData,
    image_dataset,
    load_digits_images,
    load_idx,
    load_image_data,
    load_image_file,
    load_image_folder,
    load_npz,
    load_tfds,
)
# [seq2seq]
from keras_tx.data.translation import (  # noqa: E402,F401
    Translator,
    load_parallel,
    load_translation_tokenizers,
    make_translation_tokenizer,
    save_translation_tokenizers,
    train_translation_tokenizers,
    translation_dataset,
)
