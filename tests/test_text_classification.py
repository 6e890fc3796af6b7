"""The text classifier (`keras_tx.tasks.TextClassification`, `keras-tx train sentiment`) end to end on tiny data:
train (from a tiny masked LM and from scratch), classify (CLI and API), bad input, evaluate, export, save/load."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.test_cli import ROOT, one_line_error

GOOD, BAD = "good great fine funny warm sharp".split(), "bad boring slow dull cold awful".split()
FILLER = "the a film movie story acting was is".split()
TINY = ["--sequence-length", "16", "--batch-size", "8", "--eval-batches", "2", "--no-tensorboard", "--verbose", "0",
        "--warmup-steps", "2"]
TINY_BERT = ["--num-layers", "1", "--num-heads", "2", "--hidden-dim", "16", "--vocabulary-size", "200", *TINY]


def _rows(count, seed):
    """(sentence, label) rows: label 1 when the sentence holds a word of GOOD, 0 when one of BAD."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        words = list(rng.choice(FILLER, size=rng.integers(3, 7)))
        words.insert(int(rng.integers(0, len(words))), str(rng.choice(GOOD if index % 2 else BAD)))
        rows.append((" ".join(words), index % 2))
    return rows


def _write_tsv(path, rows):
    path.parent.mkdir(exist_ok=True)
    path.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    return path


def _cli(capsys, *argv):
    """`keras-tx ARGV` in this process (TensorFlow is loaded already): (exit status, stdout, stderr)."""
    from keras_tx import cli

    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request):
    """A tiny SST-2 folder, a masked LM (`keras-tx train bert`) and a classifier (`keras-tx train sentiment
    --init-from` it), made once per test run: pytest-xdist's workers share them (a file lock, the xdist recipe)."""
    from filelock import FileLock

    if not hasattr(request.config, "workerinput"):  # no xdist
        return _make_runs(tmp_path_factory.mktemp("text_classification"))
    root = tmp_path_factory.getbasetemp().parent  # this run's folder, shared by its workers
    with FileLock(str(root / "text_classification.lock")):
        return _make_runs(root / "text_classification")


def _make_runs(folder):
    if (folder / "done").exists():
        return folder
    folder.mkdir(exist_ok=True)
    _write_tsv(folder / "sst2" / "train.tsv", _rows(160, 0))
    _write_tsv(folder / "sst2" / "dev.tsv", _rows(32, 1))
    from keras_tx import cli

    # `keras-tx train ...` in this process (a subprocess would start TensorFlow again for each command).
    assert cli.main(["train", "bert", "--data-dir", str(folder / "sst2"), "--steps", "2", "--eval-interval", "2",
                     "--out", str(folder / "bert"), "--force", *TINY_BERT]) == 0
    assert cli.main(["train", "sentiment", "--data-dir", str(folder / "sst2"), "--init-from", str(folder / "bert"),
                     "--steps", "6", "--eval-interval", "3", "--out", str(folder / "sentiment"), "--force", *TINY]) == 0
    (folder / "done").write_text("")
    return folder


@pytest.fixture(scope="module")
def sst2_folder(runs):
    return runs / "sst2"


@pytest.fixture(scope="module")
def classifier_dir(runs):
    return runs / "sentiment"


@pytest.fixture(scope="module")
def task(classifier_dir):
    from keras_tx import tasks

    return tasks.load(str(classifier_dir))


def test_the_registry_knows_the_text_classifier():
    from keras_tx import tasks

    assert tasks.TASKS["text_classifier"] is tasks.TextClassification
    assert tasks.TRAIN_VERBS["sentiment"] == (tasks.TextClassification, tasks.SentimentConfig)
    assert "classify_text" in tasks.TextClassification.signatures


def test_train_from_a_masked_lm_writes_a_classifier_directory(classifier_dir, task):
    metadata = json.loads((classifier_dir / "metadata.json").read_text())
    assert metadata["kind"] == "text_classifier" and metadata["class_names"] == ["negative", "positive"]
    assert metadata["init_from"].endswith("bert") and metadata["sequence_length"] == 16
    assert metadata["command"].startswith("keras-tx train sentiment")
    assert 0 <= metadata["metrics"]["val_accuracy"] <= 1 and metadata["metrics"]["val_loss"] > 0
    assert (classifier_dir / "vocab.txt").is_file() and (classifier_dir / "tokenizer.json").is_file()
    bert = json.loads((classifier_dir.parent / "bert" / "metadata.json").read_text())
    assert task.model.backbone.get_config()["vocabulary_size"] == bert["config"]["vocabulary_size"]
    assert (classifier_dir / "vocab.txt").read_text() == (classifier_dir.parent / "bert" / "vocab.txt").read_text()


def test_train_from_scratch_on_a_tsv_file(tmp_path):
    from keras_tx import tasks

    text_file = _write_tsv(tmp_path / "labelled.tsv", _rows(80, 2))
    config = tasks.SentimentConfig(text_file=str(text_file), out=str(tmp_path / "scratch"), steps=2, eval_interval=2,
                                   num_layers=1, hidden_dim=16, num_heads=2, vocabulary_size=120, sequence_length=12,
                                   batch_size=8, eval_batches=2, no_tensorboard=True, verbose=0, warmup_steps=1)
    metadata = tasks.train(config)
    assert metadata["kind"] == "text_classifier" and metadata["init_from"] is None
    assert metadata["config"]["num_layers"] == 1 and metadata["config"]["max_length"] == 12
    loaded = tasks.load(str(tmp_path / "scratch"))
    result = loaded.evaluate()  # the data recorded in metadata.json: the same 10% split
    assert result["validation_texts"] == 8 and 0 <= result["validation_accuracy"] <= 1


def test_classify_with_the_cli_and_the_api(classifier_dir, task, capsys):
    texts = ["a good film", "The acting was BORING , slow ..."]
    status, out, _ = _cli(capsys, "classify", classifier_dir, *texts, "--top-k", 2)
    lines = out.strip().splitlines()
    assert status == 0
    assert len(lines) == 2
    results = task.classify(texts, top_k=2)
    for line, (text, pairs) in zip(lines, results):
        assert line == f"{text}: " + ", ".join(f"{label} {p:.3f}" for label, p in pairs)
        assert sorted(label for label, _ in pairs) == ["negative", "positive"]
        assert abs(sum(p for _, p in pairs) - 1) < 1e-5 and pairs[0][1] >= pairs[1][1]
    assert [len(pairs) for _, pairs in task.classify("one text", top_k=1)] == [1]
    assert len(task.classify("one text", top_k=9)[0][1]) == 2  # more than there are classes: all of them
    assert task.classify([]) == []


def test_text_that_is_not_utf8_is_a_one_line_error(classifier_dir):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "keras_tx.cli", "classify", str(classifier_dir), b"caf\xe9"],
                            capture_output=True, env=env, timeout=300)
    result.stderr = result.stderr.decode("utf-8", "replace")
    assert "UTF-8" in one_line_error(result)


@pytest.mark.parametrize("texts, expected", [(["a film", "   "], "is empty"), (["fine"] * 65, "At most 64"),
                                             (["caf\udce9"], "UTF-8"), (["a film", "--top-k", "0"], "integer >= 1")])
def test_bad_texts_are_one_line_errors(classifier_dir, capsys, texts, expected):
    status, out, err = _cli(capsys, "classify", classifier_dir, *texts)
    lines = err.strip().splitlines()
    assert status == 2 and not out and len(lines) == 1 and expected in lines[0], (status, err)


def test_bad_texts_are_value_errors(task):
    for texts, expected in ((["a film", ""], "is empty"), (["fine"] * 65, "At most 64"), ([b"caf\xe9"], "UTF-8"),
                            (["x" * 10_001], "longer than"), ([3], "must be a string")):
        with pytest.raises(ValueError, match=expected):
            task.classify(texts)
    with pytest.raises(ValueError, match=">= 1"):
        task.classify(["a film"], top_k=0)


def test_classify_on_another_kind_says_which_kinds_it_reads(classifier_dir, capsys):
    status, _, message = _cli(capsys, "classify", classifier_dir.parent / "bert", "a film")
    assert status == 2 and "masked_lm" in message and "text_classifier" in message and "image_classifier" in message


def test_evaluate_prints_validation_accuracy(classifier_dir, task, sst2_folder, capsys):
    status, out, _ = _cli(capsys, "evaluate", classifier_dir)
    assert status == 0 and len(out.strip().splitlines()) == 1
    result = json.loads(out)
    assert result["validation_texts"] == 32 and str(sst2_folder) in result["dataset"]
    texts, labels = zip(*_rows(32, 1))
    predicted = task.probabilities(list(texts)).argmax(-1)
    assert result["validation_accuracy"] == round(float(np.mean(predicted == np.array(labels))), 4)


def test_the_exported_signature_gives_the_python_probabilities(classifier_dir, task, tmp_path):
    import tensorflow as tf

    from keras_tx import export

    result = export.export(str(classifier_dir), str(tmp_path / "export"))
    assert result["kind"] == "text_classifier" and set(result["signatures"]) == {"serving_default", "classify_text"}
    served = tf.saved_model.load(str(tmp_path / "export"))
    texts = ["a good film", "The Acting was BORING, slow... isn't it?", "Café crème, très bien! " * 12,
             "[MASK] [unk] ##ing zzzqqq 電影"]  # long: cut to the sequence length as in Python
    out = served.signatures["classify_text"](text=tf.constant(texts))
    expected = task.probabilities(texts)
    ids, probabilities = out["class_ids"].numpy(), out["probabilities"].numpy()
    got = np.take_along_axis(probabilities, np.argsort(ids, axis=1), axis=1)  # back to class order
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [[label.decode() for label in row] for row in out["labels"].numpy()] == [
        [task.class_names[i] for i in row] for row in ids]
    encoded = task.encode(texts)
    logits = served.signatures["serving_default"](**{k: tf.constant(v) for k, v in encoded.items()})["logits"]
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), expected, atol=1e-5)
    assert served.signatures["classify_text"](text=tf.constant([], tf.string))["labels"].shape == (0, 2)
    for bad, expected_message in ((["a", " "], "is empty"), (["fine"] * 65, "At most 64"), ([b"caf\xe9"], "UTF-8")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=expected_message):
            served.signatures["classify_text"](text=tf.constant(bad))


def test_the_directory_round_trips(classifier_dir, task, tmp_path):
    """Saved again as `train` saves it (artifacts.save_model, save_tokenizer) and loaded: the same classifier."""
    from keras_tx import artifacts, tasks
    from keras_tx.data.wordpiece import save_tokenizer

    artifacts.save_model(str(tmp_path / "copy"), task.model, task.metadata, command="test")
    save_tokenizer(task.tokenizer, str(tmp_path / "copy"))
    again = tasks.load(str(tmp_path / "copy"))
    assert isinstance(again, tasks.TextClassification) and again.class_names == task.class_names
    assert again.tokenizer.get_vocabulary() == task.tokenizer.get_vocabulary()
    texts = ["a good film", "a dull story"]
    np.testing.assert_array_equal(again.probabilities(texts), task.probabilities(texts))
    with pytest.raises(ValueError, match="not a text classifier"):
        tasks.TextClassification.load(str(classifier_dir.parent / "bert"))


def test_the_shipped_sentiment_model():
    from keras_tx import tasks

    shipped = os.path.join(ROOT, "saved_models", "sentiment_sst2")
    if not os.path.isdir(shipped):
        pytest.skip("saved_models/sentiment_sst2 is not there")
    task = tasks.load(shipped)
    [(_, pairs)] = task.classify(["a gorgeous , witty , moving film"])
    assert pairs[0][0] == "positive"
    assert task.metadata["metrics"]["val_accuracy"] > 0.7


def test_the_demo_has_a_sentiment_page(classifier_dir, task, tmp_path, monkeypatch):
    import pyarrow
    from streamlit.testing.v1 import AppTest

    os.symlink(classifier_dir, tmp_path / "sentiment")
    monkeypatch.syspath_prepend(os.path.join(ROOT, "apps"))
    monkeypatch.setenv("KERAS_TX_MODELS", str(tmp_path))
    at = AppTest.from_file(os.path.join(ROOT, "apps", "demo.py"), default_timeout=180)
    at.run()
    assert "Sentiment" in at.sidebar.radio(key="page").options
    at.sidebar.radio(key="page").set_value("Sentiment").run()
    at.text_area(key="sentiment_text").set_value("a good film").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    (chart,) = at.get("vega_lite_chart")
    (dataset,) = chart.proto.datasets
    rows = pyarrow.ipc.open_stream(dataset.data.data).read_all().to_pylist()
    [(_, pairs)] = task.classify(["a good film"])
    assert [(r["label"], round(r["probability"], 6)) for r in rows] == [(label, round(p, 6)) for label, p in pairs]
    at.text_area(key="sentiment_text").set_value("   ").run()
    assert not at.exception and [e.value for e in at.error] == ["The text is empty: give at least one word."]
