"""`keras-tx train transformer`, `translate` and `evaluate` end to end on tiny data, bad input included."""

import json
from pathlib import Path

import pytest

from keras_tx.data.translation import english_number, german_number, numeral_pairs
from tests.test_cli import keras_tx, keras_tx_here, one_line_error

ROOT_MODELS = Path(__file__).resolve().parent.parent / "saved_models"
TINY = ["--num-layers", "1", "--num-heads", "2", "--hidden-dim", "16", "--max-length", "12", "--batch-size", "16",
        "--epochs", "2", "--warmup-steps", "2", "--no-tensorboard", "--verbose", "0", "--bleu-sentences", "8"]


@pytest.mark.parametrize(
    "number, german, english",
    [
        (0, "null", "zero"),
        (1, "eins", "one"),
        (17, "siebzehn", "seventeen"),
        (21, "einundzwanzig", "twenty-one"),
        (101, "einhunderteins", "one hundred one"),
        (1000, "eintausend", "one thousand"),
        (24305, "vierundzwanzigtausenddreihundertfünf", "twenty-four thousand three hundred five"),
        (999999, "neunhundertneunundneunzigtausendneunhundertneunundneunzig",
         "nine hundred ninety-nine thousand nine hundred ninety-nine"),
    ],
)
def test_number_words(number, german, english):
    assert german_number(number) == german and english_number(number) == english


def test_numeral_splits_are_disjoint():
    train = {e for _, e in numeral_pairs("train", 5000)}
    test = {e for _, e in numeral_pairs("test")}
    assert len(test) == 2000 and not train & test
    with pytest.raises(ValueError, match="Unknown split"):
        numeral_pairs("dev")


@pytest.fixture(scope="module")
def tsv(tmp_path_factory):
    pairs = numeral_pairs("train", 400)
    path = tmp_path_factory.mktemp("text") / "pairs.tsv"
    path.write_text("".join(f"{de}\t{en}\n" for de, en in pairs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def translation_dir(tmp_path_factory, tsv):
    out = tmp_path_factory.mktemp("runs") / "transformer"
    keras_tx("train", "transformer", "--text-file", tsv, "--out", out, *TINY)
    return out


def test_train_transformer_writes_a_model_directory(translation_dir):
    metadata = json.loads((translation_dir / "metadata.json").read_text())
    assert metadata["kind"] == "translation" and metadata["languages"] == ["de", "en"]
    assert metadata["command"].startswith("keras-tx train transformer")
    assert metadata["metrics"]["test_bleu_sentences"] == 8 and metadata["metrics"]["val_loss"] > 0
    history = json.loads((translation_dir / "history.json").read_text())
    assert len(history) == 2 and history[-1]["loss"] < history[0]["loss"]
    for name in ("model.keras", "source_tokenizer.json", "source_vocab.txt", "target_tokenizer.json",
                 "target_vocab.txt"):
        assert (translation_dir / name).exists(), name
    assert not (translation_dir / "backup").exists()


def test_translate_and_evaluate(translation_dir, tsv):
    result = keras_tx("translate", translation_dir, "einundzwanzig", "zweihundert", "--sampler", "greedy")
    assert len(result.stdout.splitlines()) == 2
    metrics = json.loads(keras_tx("evaluate", translation_dir, "--text-file", tsv).stdout)
    assert metrics["test_pairs"] == 20 and 0 <= metrics["bleu_greedy"] <= 100 and "bleu_beam4" in metrics


def test_translate_bad_input(translation_dir, tmp_path):
    assert "empty" in one_line_error(keras_tx_here("translate", translation_dir, "  "))
    too_long = " ".join(["einundzwanzig"] * 40)
    assert "max_source_length" in one_line_error(keras_tx_here("translate", translation_dir, too_long))
    assert "not a translation model" in one_line_error(
        keras_tx_here("translate", ROOT_MODELS / "gpt_shakespeare", "hallo")
    )
    assert "not a directory" in one_line_error(keras_tx_here("translate", tmp_path / "missing", "hallo"))


def test_train_transformer_bad_data(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("only one field\n")
    assert "2 fields" in one_line_error(
        keras_tx("train", "transformer", "--text-file", bad, "--out", tmp_path / "out", *TINY, check=False)
    )

