import numpy as np
import pytest
import tensorflow as tf

from keras_tx.data.wordpiece import (
    RESERVED_TOKENS,
    classification_dataset,
    encode_texts,
    load_sst2,
    load_tokenizer,
    make_wordpiece_tokenizer,
    mask_language_model_inputs,
    mlm_dataset,
    packed_mlm_dataset,
    save_tokenizer,
    train_wordpiece_vocabulary,
)

CORPUS = [
    "The cat sat on the mat.",
    "The dog slept on the rug!",
    "A cat and a dog are playing together.",
    "Cats like playing, dogs like sleeping.",
] * 10
SST2_TRAIN = 'sentence\tlabel\nhide new secretions from the parental units \t0\nit \'s a "charming" journey . \t1\n'
SST2_DEV = "sentence\tlabel\nunflinchingly bleak and desperate \t0\n"


@pytest.fixture(scope="module")
def vocabulary():
    return train_wordpiece_vocabulary(CORPUS, 60)


@pytest.fixture(scope="module")
def tokenizer(vocabulary):
    return make_wordpiece_tokenizer(vocabulary)


def _big_tokenizer():
    """1000 tokens, so that a "random" replacement rarely equals the original token (1 in 1000)."""
    return make_wordpiece_tokenizer(list(RESERVED_TOKENS) + [f"w{i}" for i in range(995)])


def test_vocabulary_has_reserved_tokens_first(vocabulary):
    assert vocabulary[: len(RESERVED_TOKENS)] == list(RESERVED_TOKENS)
    assert vocabulary[0] == "[PAD]"
    assert len(vocabulary) <= 60 and len(set(vocabulary)) == len(vocabulary)
    assert {"the", "cat", "dog", "on"} <= set(vocabulary)
    assert "The" not in vocabulary  # lowercased


def test_vocabulary_from_a_dataset_and_bad_arguments():
    vocabulary = train_wordpiece_vocabulary(tf.data.Dataset.from_tensor_slices(CORPUS), 200, lowercase=False)
    assert "The" in vocabulary
    for texts, size in (("one string", 60), ([], 60), (CORPUS, 5)):
        with pytest.raises(ValueError):
            train_wordpiece_vocabulary(texts, size)
    with pytest.raises(ValueError, match="missing"):
        make_wordpiece_tokenizer(["[PAD]", "[UNK]", "a"])


def test_tokenizer_round_trip(tokenizer, tmp_path):
    ids = tokenizer("The cat sat on the mat.")
    assert isinstance(ids, np.ndarray) and ids.dtype == np.int32
    assert tokenizer.detokenize(ids) == "the cat sat on the mat ."
    masked = tokenizer("the [MASK] sat [SEP]")
    assert [tokenizer.id_to_token(int(i)) for i in masked] == ["the", "[MASK]", "sat", "[SEP]"]
    assert tokenizer.id_to_token(int(tokenizer("zebra")[0])) in ("[UNK]", "z")
    save_tokenizer(tokenizer, str(tmp_path))
    reloaded = load_tokenizer(str(tmp_path))
    assert reloaded.get_vocabulary() == tokenizer.get_vocabulary()
    np.testing.assert_array_equal(reloaded("The [MASK] sat."), tokenizer("The [MASK] sat."))
    (tmp_path / "tokenizer.json").unlink()  # a bare vocab.txt (e.g. BERT's own) gives a lowercasing tokenizer
    np.testing.assert_array_equal(load_tokenizer(str(tmp_path))("The [MASK] sat."), tokenizer("The [MASK] sat."))
    with pytest.raises(ValueError, match="no vocab.txt"):
        load_tokenizer(str(tmp_path / "missing"))


def test_encode_texts(tokenizer):
    x = encode_texts(["the cat sat", "a dog " * 20], tokenizer, 8)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    assert x["token_ids"].shape == (2, 8)
    assert x["token_ids"][0, 0] == cls and x["token_ids"][0, 4] == sep and np.all(x["token_ids"][0, 5:] == 0)
    assert x["token_ids"][1, 7] == sep  # truncated, [SEP] kept
    np.testing.assert_array_equal(x["padding_mask"], x["token_ids"] != 0)
    assert not x["segment_ids"].any()


def test_mask_rates_80_10_10():
    tokenizer = _big_tokenizer()
    cls, sep, mask = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[MASK]"))
    rng = np.random.default_rng(0)
    # 5300 x 126 = 667,800 selectable tokens, ~100,700 of them selected.
    original = rng.integers(5, 1000, size=(5300, 128)).astype("int32")
    original[:, 0], original[:, -1] = cls, sep
    x, labels, weights = mask_language_model_inputs(original, tokenizer, max_predictions=19)
    tokens, positions = x["token_ids"], x["mask_positions"]
    selected = weights > 0
    rows = np.broadcast_to(np.arange(len(tokens))[:, None], positions.shape)[selected]
    positions = positions[selected]
    np.testing.assert_array_equal(labels[selected], original[rows, positions])
    assert np.all((positions > 0) & (positions < 127))  # [CLS] and [SEP] never selected
    assert abs(selected.sum() / (5300 * 126) - 0.15) < 0.01
    new = tokens[rows, positions]
    assert selected.sum() >= 100_000
    rates = {
        "mask": np.mean(new == mask),
        "random": np.mean((new != mask) & (new != labels[selected])),
        "unchanged": np.mean(new == labels[selected]),
    }
    for name, expected in (("mask", 0.8), ("random", 0.1), ("unchanged", 0.1)):
        assert abs(rates[name] - expected) < 0.01, rates
    untouched = np.ones_like(tokens, bool)
    untouched[rows, positions] = False
    np.testing.assert_array_equal(tokens[untouched], original[untouched])


def test_special_tokens_and_padding_never_selected(tokenizer):
    x = encode_texts(CORPUS[:4] * 50, tokenizer, 16)
    masked, labels, weights = mask_language_model_inputs(x, tokenizer, max_predictions=4)
    special = np.isin(x["token_ids"], [tokenizer.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]")])
    rows, columns = np.nonzero(weights)
    assert len(rows) > 100
    assert not special[rows, masked["mask_positions"][rows, columns]].any()
    np.testing.assert_array_equal(masked["token_ids"][special], x["token_ids"][special])
    np.testing.assert_array_equal(masked["padding_mask"], x["padding_mask"])
    assert np.all(labels[weights == 0] == 0)


def test_mlm_dataset(tokenizer):
    dataset = mlm_dataset(CORPUS, tokenizer, sequence_length=12, batch_size=8, seed=0)
    features, labels, weights = next(iter(dataset))
    assert set(features) == {"token_ids", "segment_ids", "padding_mask", "mask_positions"}
    assert features["token_ids"].shape == (8, 12)
    assert features["mask_positions"].shape == labels.shape == weights.shape == (8, 2)  # ceil(0.15 * 10)
    assert features["mask_positions"].dtype == tf.int32
    assert np.all(weights.numpy().sum(axis=1) >= 1)
    assert sum(1 for _ in dataset) == 5


def test_packed_mlm_dataset(tokenizer):
    # CORPUS is 4 distinct sentences ten times over: a pass packs the 4 once, about one batch.
    dataset = packed_mlm_dataset(CORPUS, tokenizer, sequence_length=24, batch_size=2, seed=0)
    batches = list(dataset.take(6))  # endless: several passes
    assert len(batches) == 6
    features, labels, weights = batches[0]
    assert set(features) == {"token_ids", "segment_ids", "padding_mask", "mask_positions"}
    assert features["token_ids"].shape == (2, 24) and labels.shape == weights.shape == (2, 4)  # ceil(0.15 * 22)
    longest = max(len(tokenizer(text)) for text in set(CORPUS)) + 2  # one sentence with [CLS] and [SEP]
    for features, _, weights in batches:
        mask = features["padding_mask"].numpy()
        assert (mask[:, :-1] >= mask[:, 1:]).all()  # the tokens, then padding
        assert (mask.sum(1) > longest).all()  # two sentences or more in every sequence
        assert (features["token_ids"].numpy()[:, 0] == tokenizer.token_to_id("[CLS]")).all()
        assert (weights.numpy().sum(1) >= 1).all()
    # A resumed run: start_step skips batches; the packing (padding masks) is that of an uninterrupted stream.
    resumed = list(packed_mlm_dataset(CORPUS, tokenizer, 24, 2, seed=0, start_step=3).take(3))
    for later, earlier in zip(resumed, batches[3:]):
        np.testing.assert_array_equal(later[0]["padding_mask"], earlier[0]["padding_mask"])
    with pytest.raises(ValueError, match="at least one text"):
        packed_mlm_dataset([], tokenizer, 24, 2)


def test_classification_dataset(tokenizer):
    labels = [i % 2 for i in range(len(CORPUS))]
    dataset = classification_dataset(CORPUS, labels, tokenizer, sequence_length=12, batch_size=16, shuffle=False)
    features, batch_labels = next(iter(dataset))
    assert features["token_ids"].shape == (16, 12)
    np.testing.assert_array_equal(batch_labels.numpy(), labels[:16])
    with pytest.raises(ValueError, match="as many labels"):
        classification_dataset(CORPUS, labels[:3], tokenizer, 12, 16)


def test_load_sst2_from_tsv(tmp_path):
    (tmp_path / "train.tsv").write_text(SST2_TRAIN)
    (tmp_path / "dev.tsv").write_text(SST2_DEV)
    texts, labels = load_sst2(str(tmp_path), "train")
    assert texts == ["hide new secretions from the parental units", 'it \'s a "charming" journey .']
    np.testing.assert_array_equal(labels, [0, 1])
    assert labels.dtype == np.int32
    assert load_sst2(str(tmp_path), "dev")[0] == load_sst2(str(tmp_path), "validation")[0] == [
        "unflinchingly bleak and desperate"
    ]
    with pytest.raises(ValueError, match="split"):
        load_sst2(str(tmp_path), "test")
    (tmp_path / "train.tsv").write_text("index\tsentence\n0\tfoo\n")
    with pytest.raises(ValueError, match="header"):
        load_sst2(str(tmp_path), "train")


def test_load_sst2_from_tfds_without_network(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        texts, labels = load_sst2(split="validation")
    assert len(texts) == 6 and all(isinstance(t, str) for t in texts)
    assert set(labels.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="not prepared"):
        load_sst2(str(tmp_path), "train")  # no TSV there and no TFDS data: fails at once, no download


@pytest.mark.skipif(not __import__("os").path.isdir("/work/shared/datasets/sst2"), reason="no local SST-2 copy")
def test_load_shared_sst2():
    texts, labels = load_sst2("/work/shared/datasets/sst2", "validation")
    assert len(texts) == len(labels) == 872 and set(labels.tolist()) == {0, 1}
