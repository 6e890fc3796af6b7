"""`keras-tx train bert`, `fill-mask` and `evaluate` end to end on a tiny SST-2-shaped folder, bad input included."""

import json

import pytest

from tests.test_cli import keras_tx, keras_tx_here, one_line_error

WORDS = "the a film movie story acting was is good bad great boring funny slow fine dull sharp warm cold".split()
TINY_BERT = ["--num-layers", "1", "--num-heads", "2", "--hidden-dim", "16", "--sequence-length", "16",
             "--vocabulary-size", "200", "--batch-size", "8", "--eval-batches", "2", "--no-tensorboard",
             "--verbose", "0", "--warmup-steps", "2"]


def _sentences(count, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(4, 9))) for _ in range(count)]


@pytest.fixture(scope="module")
def sst2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sst2")
    for name, count, seed in (("train.tsv", 200, 0), ("dev.tsv", 40, 1)):
        rows = [f"{text} \t{index % 2}" for index, text in enumerate(_sentences(count, seed))]
        (folder / name).write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory, sst2_folder):
    out = tmp_path_factory.mktemp("runs") / "bert"
    # --pack, as saved_models/bert_mlm was trained (one text per sequence runs in test_text_classification)
    result = keras_tx("train", "bert", "--data-dir", sst2_folder, "--pack", "--steps", 6, "--eval-interval", 3,
                      "--out", out, *TINY_BERT)
    # Keras warned at every evaluation that the "input ran out of data" (a validation set of unknown length)
    assert "ran out of data" not in result.stderr, result.stderr[-2000:]
    return out


def test_train_bert_writes_a_model_directory(bert_dir):
    metadata = json.loads((bert_dir / "metadata.json").read_text())
    assert metadata["kind"] == "masked_lm" and metadata["sequence_length"] == 16
    assert (bert_dir / "model.keras").is_file() and (bert_dir / "vocab.txt").is_file()
    assert 0 <= metadata["metrics"]["val_masked_accuracy"] <= 1
    assert "keras-tx train bert" in metadata["command"] and "--pack" in metadata["command"]
    assert metadata["packing"].startswith("training texts not part of another, several to a sequence")


def test_fill_mask_prints_top_k_per_mask(bert_dir):
    result = keras_tx("fill-mask", bert_dir, "the film was [MASK] and [MASK] .", "--top-k", 3)
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["[MASK] 1", "[MASK] 2"]
    for line in lines:
        candidates = line.split(": ", 1)[1].split(", ")
        assert len(candidates) == 3
        probabilities = [float(candidate.rsplit(" ", 1)[1]) for candidate in candidates]
        assert probabilities == sorted(probabilities, reverse=True)


@pytest.mark.parametrize(
    "text, message",
    [("the film was good .", "[MASK]"), ("", "empty"), (" ".join(["film"] * 40) + " [MASK]", "max_length")],
)
def test_fill_mask_bad_text(bert_dir, text, message):
    assert message in one_line_error(keras_tx_here("fill-mask", bert_dir, text))


def test_evaluate_scores_masked_tokens_on_the_validation_split(bert_dir, sst2_folder):
    result = keras_tx("evaluate", bert_dir, "--data-dir", sst2_folder)
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["validation_texts"] == 40
    assert 0 <= scores["masked_accuracy"] <= 1 and scores["masked_loss"] > 0 and scores["masked_tokens"] >= 40
    again = keras_tx_here("evaluate", bert_dir, "--data-dir", sst2_folder).stdout.strip().splitlines()[-1]
    assert json.loads(again) == scores  # the masks come from a fixed seed, in this process as in another
    metrics = json.loads((bert_dir / "metadata.json").read_text())["metrics"]  # train bert's own final figures
    assert round(metrics["val_masked_accuracy"], 4) == scores["masked_accuracy"]
    assert round(metrics["val_loss"], 4) == scores["masked_loss"]


def test_evaluate_defaults_to_the_training_data_and_else_needs_the_text(bert_dir, tmp_path):
    import shutil

    result = keras_tx_here("evaluate", bert_dir)  # the data train bert recorded
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["validation_texts"] == 40
    older = tmp_path / "bert"  # a directory from before "data" was recorded
    shutil.copytree(bert_dir, older)
    metadata = json.loads((older / "metadata.json").read_text())
    del metadata["data"]
    (older / "metadata.json").write_text(json.dumps(metadata))
    assert "--data-dir" in one_line_error(keras_tx_here("evaluate", older))
