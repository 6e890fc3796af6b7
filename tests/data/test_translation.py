"""Parallel text: loaders (aligned files, TSV, TFDS, the real Multi30k), tokenizers, teacher-forced batches, and a
Translator trained end to end on a toy language pair."""

import gzip
import os

import keras
import numpy as np
import pytest

from keras_tx.data import (
    load_parallel,
    load_translation_tokenizers,
    make_translation_tokenizer,
    save_translation_tokenizers,
    train_translation_tokenizers,
    translation_dataset,
)
from keras_tx.data.translation import RESERVED_TOKENS
from keras_tx.tasks.translation import Translator
from keras_tx.models import MaskedCrossentropy, Seq2SeqTransformer, masked_accuracy

MULTI30K = "/work/shared/datasets/multi30k"

# A toy language pair: "ein [adjective] noun verb." -> "a [adjective] noun verb.", word for word, 60 sentences.
WORDS = {
    "ein": "a", "mann": "man", "frau": "woman", "hund": "dog", "katze": "cat", "rot": "red", "blau": "blue",
    "groß": "big", "klein": "small", "läuft": "runs", "schläft": "sleeps", "springt": "jumps",
}  # fmt: skip
TOY = [
    (f"ein {adjective}{noun} {verb}.", " ".join(WORDS[w] for w in f"ein {adjective}{noun} {verb}".split()) + ".")
    for noun in ("mann", "frau", "hund", "katze")
    for adjective in ("", "rot ", "blau ", "groß ", "klein ")
    for verb in ("läuft", "schläft", "springt")
]


def _write(path, lines, compress=False):
    opener = gzip.open if compress else open
    with opener(path, "wt", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


# --- loading ---------------------------------------------------------------------------------------------


def test_load_aligned_files_plain_and_gzipped_with_split_names(tmp_path):
    _write(tmp_path / "train.de.gz", ["Ein Hund.", "Zwei Katzen."], compress=True)
    _write(tmp_path / "train.en.gz", ["A dog.", "Two cats."], compress=True)
    _write(tmp_path / "val.de", ["Ein Mann."])
    _write(tmp_path / "val.en", ["A man."])
    _write(tmp_path / "test_2016_flickr.de.gz", ["Eine Frau.", "  ", "Ein Kind."], compress=True)
    _write(tmp_path / "test_2016_flickr.en.gz", ["A woman.", "An empty line there.", "A child."], compress=True)
    assert load_parallel(str(tmp_path)) == [("Ein Hund.", "A dog."), ("Zwei Katzen.", "Two cats.")]
    assert load_parallel(str(tmp_path), split="validation") == [("Ein Mann.", "A man.")]
    # Multi30k's test file name is found for "test"; a pair with an empty side is dropped.
    assert load_parallel(str(tmp_path), split="test") == [("Eine Frau.", "A woman."), ("Ein Kind.", "A child.")]
    assert load_parallel(str(tmp_path), split="test_2016_flickr", max_pairs=1) == [("Eine Frau.", "A woman.")]
    # The other direction is just the other suffixes.
    assert load_parallel(str(tmp_path), source="en", target="de")[0] == ("A dog.", "Ein Hund.")


def test_load_tsv_file_and_folder(tmp_path):
    _write(tmp_path / "train.tsv", ["Ein Hund.\tA dog.", "", "Zwei Katzen.\tTwo cats."])
    expected = [("Ein Hund.", "A dog."), ("Zwei Katzen.", "Two cats.")]
    assert load_parallel(str(tmp_path / "train.tsv")) == expected
    assert load_parallel(str(tmp_path), split="train") == expected
    _write(tmp_path / "bad.tsv.gz", ["Ein Hund.\tA dog.", "no tab here"], compress=True)
    with pytest.raises(ValueError, match="line 2: expected 'source<TAB>target'"):
        load_parallel(str(tmp_path / "bad.tsv.gz"))


def test_loading_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="No parallel data given.*multi30k.*TSV.*tfds_name"):
        load_parallel(None)
    with pytest.raises(ValueError, match="neither a folder nor a file"):
        load_parallel(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"No 'test' split in .*test_2016_flickr"):
        load_parallel(str(tmp_path), split="test")
    _write(tmp_path / "train.de", ["eins", "zwei"])
    _write(tmp_path / "train.en", ["one"])
    with pytest.raises(ValueError, match="has 2 lines .* has 1: line-aligned"):
        load_parallel(str(tmp_path))


def test_load_from_tfds_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        pairs = load_parallel(tfds_name="wmt14_translate/de-en", source="de", target="en", split="train")
        assert len(pairs) <= 5 and all(isinstance(s, str) and isinstance(t, str) for s, t in pairs)
        with pytest.raises(ValueError, match=r"features \['de', 'en'\], not 'fr'"):
            load_parallel(tfds_name="wmt14_translate/de-en", source="fr", target="en")


@pytest.mark.skipif(not os.path.isdir(MULTI30K), reason=f"Multi30k not found at {MULTI30K} (shared datasets absent)")
def test_load_real_multi30k():
    validation = load_parallel(MULTI30K, source="de", target="en", split="validation")
    assert len(validation) == 1014
    assert validation[0] == ("Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen",
                             "A group of men are loading cotton onto a truck")  # fmt: skip
    assert len(load_parallel(MULTI30K, split="test")) == 1000


# --- tokenizers and batches ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizers():
    return train_translation_tokenizers(TOY, source_vocabulary_size=100, target_vocabulary_size=100)


def test_tokenizers_reserve_pad_unk_start_end(tokenizers, tmp_path):
    for tokenizer in tokenizers:
        assert tokenizer.get_vocabulary()[:4] == list(RESERVED_TOKENS)
        assert [tokenizer.token_to_id(t) for t in RESERVED_TOKENS] == [0, 1, 2, 3]
    source_tokenizer, target_tokenizer = tokenizers
    assert target_tokenizer("a red dog runs.").tolist() == [target_tokenizer.token_to_id(w) for w in
                                                            ("a", "red", "dog", "runs", ".")]  # fmt: skip
    save_translation_tokenizers(str(tmp_path), *tokenizers)
    assert sorted(os.listdir(tmp_path)) == ["source_tokenizer.json", "source_vocab.txt", "target_tokenizer.json",
                                            "target_vocab.txt"]
    for before, after in zip(tokenizers, load_translation_tokenizers(str(tmp_path))):
        assert after.get_vocabulary() == before.get_vocabulary()
        assert after("Ein Hund läuft.").tolist() == before("Ein Hund läuft.").tolist()
    with pytest.raises(ValueError, match="no source_vocab.txt"):
        load_translation_tokenizers(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="must start with"):
        make_translation_tokenizer(["[UNK]", "[PAD]", "[START]", "[END]", "a"])


def test_translation_dataset_is_teacher_forced_and_padded(tokenizers):
    source_tokenizer, target_tokenizer = tokenizers
    pairs = TOY[:5] + [("ein hund " * 10 + "läuft.", "a dog " * 10 + "runs.")]  # the last one is too long
    dataset = translation_dataset(pairs, *tokenizers, max_source_length=8, max_target_length=7, batch_size=6,
                                  shuffle=False)  # fmt: skip
    features, labels = next(iter(dataset))
    source, decoder, labels = (np.asarray(t) for t in (features["encoder_token_ids"], features["decoder_token_ids"],
                                                       labels))  # fmt: skip
    assert source.shape == (6, 8) and decoder.shape == labels.shape == (6, 7)
    assert all(t.dtype == np.int32 for t in (source, decoder, labels))
    first = target_tokenizer(TOY[0][1]).tolist()  # "a man runs." -> 4 pieces
    np.testing.assert_array_equal(labels[0], first + [3] + [0] * (7 - len(first) - 1))  # pieces [END] padding
    np.testing.assert_array_equal(source[0, : len(source_tokenizer(TOY[0][0]))], source_tokenizer(TOY[0][0]))
    # Teacher forcing: the decoder reads [START], then the labels shifted right by one. (The [END] it reads
    # predicts padding, which the loss ignores.)
    np.testing.assert_array_equal(decoder[:, 0], 2)
    np.testing.assert_array_equal(decoder[:, 1:], labels[:, :-1])
    # Too long: the source is cut, the target is cut and still ends with [END].
    assert np.all(source[-1] != 0) and labels[-1, -1] == 3 and np.all(decoder[-1] != 0)
    # Shuffling keeps every pair.
    shuffled = translation_dataset(pairs, *tokenizers, 8, 7, batch_size=6, seed=1)
    assert sorted(map(tuple, np.asarray(next(iter(shuffled))[1]))) == sorted(map(tuple, labels))
    assert int(shuffled.cardinality()) == 1  # known: fit() shows progress from the first epoch
    assert int(translation_dataset(pairs, *tokenizers, 8, 7, batch_size=4, drop_remainder=True).cardinality()) == 1
    with pytest.raises(ValueError, match="at least one"):
        translation_dataset([], *tokenizers, 8, 7, batch_size=2)


# --- end to end: train, translate, save, load ------------------------------------------------------------


@pytest.fixture(scope="module")
def translator(tokenizers):
    """A small Transformer trained (about 15 s) on the toy pair, with its tokenizers."""
    keras.utils.set_random_seed(0)
    source_tokenizer, target_tokenizer = tokenizers
    model = Seq2SeqTransformer(
        source_tokenizer.vocabulary_size(), target_tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
        hidden_dim=32, intermediate_dim=64, max_source_length=8, max_target_length=8, dropout=0.0,
    )  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(5e-3), loss=MaskedCrossentropy(), metrics=[masked_accuracy])
    train = translation_dataset(TOY, *tokenizers, 8, 8, batch_size=16, seed=0)
    history = model.fit(train, epochs=30, verbose=0).history
    return Translator(model, *tokenizers), history


SAMPLE = TOY[::15]  # 4 pairs: every translation call below has batch 4 (one compiled program per sampler)


def test_training_reduces_the_loss_and_translations_read_as_text(translator):
    translator, history = translator
    assert history["loss"][-1] < 0.3 * history["loss"][0], history["loss"]
    sources, expected = [s for s, _ in SAMPLE], [t for _, t in SAMPLE]
    greedy = translator.translate(sources)
    assert sum(g == e for g, e in zip(greedy, expected)) >= 3, (greedy, expected)
    beams = translator.translate(sources, sampler="beam", num_beams=3)
    assert sum(b == e for b, e in zip(beams, expected)) >= 3, (beams, expected)
    assert translator.evaluate_bleu(SAMPLE) > 50


def test_translator_saves_and_loads(translator, tmp_path):
    translator, _ = translator
    translator.save(str(tmp_path))
    assert {"model.keras", "source_vocab.txt", "target_vocab.txt"} <= set(os.listdir(tmp_path))
    reloaded = Translator.load(str(tmp_path))
    sources = [s for s, _ in SAMPLE]
    assert reloaded.translate(sources) == translator.translate(sources)
    with pytest.raises(ValueError, match="is not a directory"):
        Translator.load(str(tmp_path / "nothing"))


def test_translator_one_text_and_errors(translator):
    translator, _ = translator
    with pytest.raises(ValueError, match="is empty"):
        translator.translate("   ")
    assert translator.translate([]) == []  # an empty batch gets an empty answer, as from the export
    with pytest.raises(ValueError, match=r"10 tokens, more than the model's max_source_length=8.*truncate=True"):
        translator.translate("ein hund " * 5)
    # One text in, one string out; a long one may be cut to max_source_length instead.
    assert translator.translate(SAMPLE[0][0]) == translator.translate([SAMPLE[0][0]])[0]
    assert isinstance(translator.translate("ein hund " * 5, truncate=True), str)
    # The last batch is padded to the batch size (one compiled shape) and the padding dropped again.
    assert translator.translate([SAMPLE[0][0]] * 3, batch_size=2) == [translator.translate(SAMPLE[0][0])] * 3
