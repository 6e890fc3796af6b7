import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_tx.data.wordpiece import (
    classification_dataset,
    load_tokenizer,
    make_wordpiece_tokenizer,
    mlm_dataset,
    save_tokenizer,
    train_wordpiece_vocabulary,
)
from keras_tx.models.bert import BERT, INPUT_NAMES, BERTClassifier, BERTMaskedLM, MaskedLMHead
from tests.battery import run_layer_battery

CONFIG = {"vocabulary_size": 50, "num_layers": 2, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32}
RNG = np.random.default_rng(0)
PADDING = np.array([[1] * 10, [1] * 7 + [0] * 3], "int32")
INPUTS = {
    "token_ids": RNG.integers(5, 50, size=(2, 10)).astype("int32"),
    "segment_ids": np.array([[0] * 5 + [1] * 5, [0] * 4 + [1] * 3 + [0] * 3], "int32"),
    "padding_mask": PADDING,
}
CORPUS = [
    f"the {animal} {verb} on the {place} ."
    for animal in ("cat", "dog", "bird", "fox")
    for verb in ("sat", "slept", "stood")
    for place in ("mat", "rug", "log", "bed")
]
REVIEWS = [f"a {word} {thing} ." for word in ("good", "great", "fine") for thing in ("film", "movie", "plot")] + [
    f"a {word} {thing} ." for word in ("bad", "awful", "dull") for thing in ("film", "movie", "plot")
]
REVIEW_LABELS = [1] * 9 + [0] * 9


def _np(outputs):
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


def _bert(**overrides):
    return BERT(**{**CONFIG, "max_length": 32, "dropout": 0.0, **overrides})


@pytest.fixture(scope="module")
def tokenizer():
    return make_wordpiece_tokenizer(train_wordpiece_vocabulary(CORPUS + REVIEWS, 80))


def _fit_losses(model, dataset, epochs, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model.fit(dataset, epochs=epochs, verbose=0).history["loss"]


def test_from_keras_hub_gives_the_same_outputs():
    theirs = keras_hub.models.BertBackbone(**CONFIG, max_sequence_length=32)
    ours = BERT.from_keras_hub(theirs)
    expected, got = _np(theirs(INPUTS)), _np(ours(INPUTS))
    for name in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(got[name], expected[name], atol=1e-4, err_msg=name)
    assert ours.count_params() == theirs.count_params()


def test_masked_lm_from_keras_hub_gives_the_same_logits():
    theirs = keras_hub.models.BertMaskedLM(keras_hub.models.BertBackbone(**CONFIG, max_sequence_length=32))
    ours = BERTMaskedLM.from_keras_hub(theirs)
    inputs = {**INPUTS, "mask_positions": np.array([[1, 4, 8], [2, 5, 0]], "int32")}
    expected = keras.ops.convert_to_numpy(theirs(inputs))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(inputs)), expected, atol=1e-4)


def test_config_round_trip():
    bert = _bert(layer_norm_epsilon=1e-6)
    config = bert.get_config()
    assert BERT.from_config(config).get_config() == config
    for task in (BERTMaskedLM(bert, max_predictions=7), BERTClassifier(bert, num_classes=3, dropout=0.2)):
        config = task.get_config()
        assert type(task).from_config(config).get_config() == config


def test_save_and_load_give_the_same_outputs(tmp_path, tokenizer):
    bert = _bert(vocabulary_size=tokenizer.vocabulary_size())
    inputs = {**INPUTS, "token_ids": INPUTS["token_ids"] % tokenizer.vocabulary_size()}
    models = {
        "backbone": (bert, inputs),
        "mlm": (BERTMaskedLM(bert, tokenizer=tokenizer), {**inputs, "mask_positions": np.array([[1, 2], [3, 0]])}),
        "classifier": (BERTClassifier(bert, num_classes=2), inputs),
    }
    for name, (model, x) in models.items():
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path, safe_mode=True)
        assert type(reloaded) is type(model)
        expected, got = model(x), reloaded(x)
        expected, got = (_np(expected), _np(got)) if isinstance(expected, dict) else ({0: expected}, {0: got})
        for key in expected:
            np.testing.assert_allclose(keras.ops.convert_to_numpy(got[key]), expected[key], atol=1e-6)
        if name == "mlm":
            # The tokenizer came back from the file's assets, and the output layer is still the embedding.
            assert reloaded.tokenizer.get_vocabulary() == tokenizer.get_vocabulary()
            assert reloaded.head.token_embedding is reloaded.backbone.token_embedding
            assert reloaded.fill_mask("the [MASK] sat .") == model.fill_mask("the [MASK] sat .")


def test_model_directory_with_vocab_file(tmp_path, tokenizer):
    """The lead's layout: DIR/model.keras without a tokenizer inside, DIR/vocab.txt beside it."""
    model = BERTMaskedLM(_bert(vocabulary_size=tokenizer.vocabulary_size()))
    model.save(str(tmp_path / "model.keras"))
    save_tokenizer(tokenizer, str(tmp_path))
    reloaded = keras.saving.load_model(str(tmp_path / "model.keras"), safe_mode=True)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        reloaded.fill_mask("the [MASK] sat .")
    reloaded.tokenizer = load_tokenizer(str(tmp_path))
    model.tokenizer = tokenizer
    assert reloaded.fill_mask("the [MASK] sat .") == model.fill_mask("the [MASK] sat .")
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "tokenizer.json", "vocab.txt"]


def test_attention_sees_both_directions():
    """Changing the last token changes every earlier output: no causal mask (GPT's outputs would not move)."""
    bert = _bert()
    changed = {**INPUTS, "token_ids": INPUTS["token_ids"].copy()}
    changed["token_ids"][0, -1] = (changed["token_ids"][0, -1] + 1) % 50
    before, after = _np(bert(INPUTS))["sequence_output"][0], _np(bert(changed))["sequence_output"][0]
    assert np.all(np.abs(after[:-1] - before[:-1]).max(axis=-1) > 1e-6)


def test_padded_tokens_change_nothing():
    bert = _bert()
    changed = {name: value.copy() for name, value in INPUTS.items()}
    changed["token_ids"][1, 7:] = [1, 2, 3]
    changed["segment_ids"][1, 7:] = 1
    before, after = _np(bert(INPUTS)), _np(bert(changed))
    real = PADDING.astype(bool)
    np.testing.assert_allclose(after["sequence_output"][real], before["sequence_output"][real], atol=1e-6)
    np.testing.assert_allclose(after["pooled_output"], before["pooled_output"], atol=1e-6)


def test_attention_scores_of_every_layer_and_head():
    scores = _bert().attention_scores(INPUTS)
    assert len(scores) == CONFIG["num_layers"]
    for layer_scores in scores:
        assert layer_scores.shape == (2, CONFIG["num_heads"], 10, 10)
        np.testing.assert_allclose(layer_scores.sum(-1), 1.0, atol=1e-5)
        assert np.all(layer_scores[1, :, :, 7:] == 0)  # no query attends to padding


def test_mixed_precision():
    bert = _bert(dtype="mixed_float16")
    outputs = bert(INPUTS)
    assert all(w.dtype == "float32" for w in bert.weights)
    assert keras.backend.standardize_dtype(outputs["sequence_output"].dtype) == "float16"
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(outputs["pooled_output"])))


def test_masked_lm_head_battery():
    run_layer_battery(
        MaskedLMHead,
        {"vocabulary_size": 20},
        {"inputs": RNG.normal(size=(2, 6, 8)).astype("float32"), "mask_positions": np.array([[1, 4], [0, 5]])},
        expected_output_shape=(2, 2, 20),
    )


def test_masked_lm_head_is_tied_and_predicts_every_position_without_mask_positions():
    bert = _bert()
    mlm = BERTMaskedLM(bert)
    sequence = bert(INPUTS)["sequence_output"]
    logits = keras.ops.convert_to_numpy(mlm.head(sequence))
    hidden = keras.ops.convert_to_numpy(mlm.head.norm(mlm.head.dense(sequence)))
    table = keras.ops.convert_to_numpy(bert.token_embedding.embeddings)
    bias = keras.ops.convert_to_numpy(mlm.head.output_bias)
    np.testing.assert_allclose(logits, hidden @ table.T + bias, atol=1e-5)
    assert len(mlm.trainable_weights) == len(bert.trainable_weights) + 5  # dense (2), norm (2), bias: no kernel


def test_pretrain_then_fine_tune_losses_decrease(tokenizer):
    """The recipe: pretrain the masked LM, then fine-tune a classifier on the same backbone."""
    bert = BERT(tokenizer.vocabulary_size(), 1, 2, 16, 32, max_length=16, dropout=0.0)
    mlm = BERTMaskedLM(bert, tokenizer=tokenizer)
    losses = _fit_losses(mlm, mlm_dataset(CORPUS * 2, tokenizer, 16, 16, seed=1), epochs=3, learning_rate=3e-3)
    assert losses[-1] < losses[0] * 0.85, losses
    # With BERT's small initial weights every sentence starts with nearly the same [CLS] state, so the
    # classifier needs a few dozen steps to leave chance level: full batches, many cheap epochs.
    classifier = BERTClassifier(bert, num_classes=2, dropout=0.0)
    train = classification_dataset(REVIEWS, REVIEW_LABELS, tokenizer, 16, len(REVIEWS), seed=1)
    losses = _fit_losses(classifier, train, epochs=60, learning_rate=1e-3)
    assert losses[-1] < losses[0] * 0.5, losses


def test_fill_mask_returns_sorted_top_k_per_mask(tokenizer):
    mlm = BERTMaskedLM(_bert(vocabulary_size=tokenizer.vocabulary_size()), tokenizer=tokenizer)
    results = mlm.fill_mask("The [MASK] sat on the [MASK].", top_k=4)
    assert len(results) == 2
    vocabulary = set(tokenizer.get_vocabulary())
    for candidates in results:
        assert len(candidates) == 4
        probabilities = [p for _, p in candidates]
        assert all(token in vocabulary for token, _ in candidates)
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(0 < p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-6
    # All of the vocabulary: the probabilities of one mask add up to 1.
    everything = mlm.fill_mask("[MASK]", top_k=tokenizer.vocabulary_size())[0]
    assert abs(sum(p for _, p in everything) - 1) < 1e-4


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("the cat sat .", {}, "no \\[MASK\\]"),
        ("", {}, "is empty"),
        ("   ", {}, "is empty"),
        (" ".join(["cat"] * 40) + " [MASK]", {}, "max_length=32"),
        ("[MASK] " * 3, {}, "At most 2"),
        ("the [MASK] sat", {"top_k": 0}, "top_k"),
    ],
)
def test_fill_mask_errors(tokenizer, text, kwargs, message):
    mlm = BERTMaskedLM(_bert(vocabulary_size=tokenizer.vocabulary_size()), tokenizer=tokenizer, max_predictions=2)
    with pytest.raises(ValueError, match=message):
        mlm.fill_mask(text, **kwargs)
