"""The bad-input battery (tests/bad_inputs.py) on the command line and the Python API, and the cases only the command
line has: model directories that are damaged, and `train --out` over something a user made (file hashes before
and after). The exported signatures run the battery in tests/test_export.py, the demo in tests/apps/test_demo.py."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from keras_tx import artifacts, cli, tasks
from keras_tx.data.tokenizers import CharTokenizer
from keras_tx.data.translation import make_translation_tokenizer
from keras_tx.tasks.translation import Translator
from keras_tx.data.wordpiece import make_wordpiece_tokenizer, save_tokenizer
from keras_tx.models import BERT, GPT, BERTMaskedLM, ResNet, Seq2SeqTransformer
from tests.bad_inputs import BY_SURFACE, IMAGES, ids
from tests.test_export import BERT_VOCABULARY, SOURCE_VOCABULARY, TARGET_VOCABULARY, TEXT

CORPUS = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40
TINY_GPT = ["--num-layers", "1", "--num-heads", "2", "--hidden-dim", "16", "--context", "16", "--batch-size", "4",
            "--eval-batches", "2", "--no-tensorboard", "--verbose", "0", "--warmup-steps", "2"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny untrained model directories of each kind (the placeholders of tests/bad_inputs.py) and their loaders."""
    root = tmp_path_factory.mktemp("bad_input")
    dirs = {name: root / name for name in ("gpt", "bert", "resnet", "translation", "files")}
    for directory in dirs.values():
        directory.mkdir()
    tokenizer = CharTokenizer.from_text(TEXT)
    gpt = GPT(tokenizer.vocabulary_size, 1, 2, 16, 32, max_length=16)
    gpt(np.zeros((1, 4), "int32"))
    tokenizer.save(str(dirs["gpt"] / "tokenizer.json"))
    artifacts.save_model(str(dirs["gpt"]), gpt, {"kind": "language_model", "architecture": "gpt",
                                                 "tokenizer": "tokenizer.json", "context": 16})
    wordpiece = make_wordpiece_tokenizer(BERT_VOCABULARY)
    masked_lm = BERTMaskedLM(BERT(len(BERT_VOCABULARY), 1, 2, 16, 32, max_length=24), tokenizer=wordpiece)
    masked_lm({"token_ids": np.ones((1, 5), "int32"), "segment_ids": np.zeros((1, 5), "int32"),
               "padding_mask": np.ones((1, 5), "int32"), "mask_positions": np.zeros((1, 1), "int32")})
    save_tokenizer(wordpiece, str(dirs["bert"]))
    artifacts.save_model(str(dirs["bert"]), masked_lm, {"kind": "masked_lm", "architecture": "bert",
                                                        "tokenizer": "vocab.txt"})
    resnet = ResNet((16, 16, 1), num_classes=3, width=4, blocks_per_stage=(1,))
    resnet(np.zeros((1, 16, 16, 1), "float32"))
    artifacts.save_model(str(dirs["resnet"]), resnet, {"kind": "image_classifier", "architecture": "resnet",
                                                       "image_shape": [16, 16, 1],
                                                       "class_names": ["cat", "dog", "owl"]})
    seq2seq = Seq2SeqTransformer(len(SOURCE_VOCABULARY), len(TARGET_VOCABULARY), num_layers=1, num_heads=2,
                                 hidden_dim=16, intermediate_dim=32, max_source_length=8, max_target_length=8)
    Translator(seq2seq, make_translation_tokenizer(SOURCE_VOCABULARY),
               make_translation_tokenizer(TARGET_VOCABULARY)).save(str(dirs["translation"]))
    artifacts.write_json(str(dirs["translation"] / "metadata.json"), {"kind": "translation"})
    for name, make in IMAGES.items():
        (dirs["files"] / f"{name}.img").write_bytes(make())
    resnet = tasks.load(str(dirs["resnet"]))
    loaded = {
        "gpt": tasks.load(str(dirs["gpt"])),
        "bert": tasks.load(str(dirs["bert"])),
        "translator": tasks.load(str(dirs["translation"])),
        "classify": lambda paths, top_k=3: resnet.classify_files([fill(p) for p in paths], top_k),
    }

    def fill(text):
        for name, directory in dirs.items():
            text = text.replace(f"{{{name}}}", str(directory))
        for name in IMAGES:
            text = text.replace(f"{{image:{name}}}", str(dirs["files"] / f"{name}.img"))
        return text.replace("{dir}", str(dirs["files"]))

    return {"dirs": dirs, "fill": fill, "loaded": loaded}


def one_line_error(capsys, argv):
    assert cli.main(argv) == 2, argv[:4]
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err[-2000:]
    return lines[0]


@pytest.mark.parametrize("case", BY_SURFACE["cli"], ids=ids(BY_SURFACE["cli"]))
def test_the_command_line(models, capsys, case):
    argv = [models["fill"](arg) for arg in case.cli]
    if case.expect is None:
        assert cli.main(argv) == 0, capsys.readouterr().err[-2000:]
        assert capsys.readouterr().out
    else:
        assert case.expect in one_line_error(capsys, argv)


@pytest.mark.parametrize("case", BY_SURFACE["api"], ids=ids(BY_SURFACE["api"]))
def test_the_python_api(models, case):
    if case.expect is None:
        result = case.api(models["loaded"])
        assert result is not None
        return
    with pytest.raises(ValueError) as error:
        case.api(models["loaded"])
    assert case.expect in str(error.value)


def test_empty_batches_get_empty_answers(models):
    loaded = models["loaded"]
    assert loaded["classify"]([]) == [] and loaded["translator"].translate([]) == []


def test_lowercase_mask_is_read_as_mask_by_the_api(models):
    bert = models["loaded"]["bert"]
    assert bert.fill_mask("the [mask] sat", top_k=3) == bert.fill_mask("the [MASK] sat", top_k=3)
    assert len(bert.fill_mask("the [MASK] sat", top_k=10**6)[0]) == len(BERT_VOCABULARY)  # all of it, no error


# --- model directories that are damaged ------------------------------------------------------------------------


def test_metadata_without_a_field_it_needs(models, tmp_path, capsys):
    broken = tmp_path / "resnet"
    shutil.copytree(models["dirs"]["resnet"], broken)
    metadata = json.loads((broken / "metadata.json").read_text())
    del metadata["image_shape"]
    (broken / "metadata.json").write_text(json.dumps(metadata))
    image = models["fill"]("{image:grey}")
    for argv in (["classify", str(broken), image], ["export", str(broken), str(tmp_path / "out")]):
        assert "no 'image_shape' field" in one_line_error(capsys, argv)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"garbage " * 100])
def test_a_damaged_model_file_is_named_as_damaged(models, tmp_path, capsys, content):
    broken = tmp_path / "gpt"
    shutil.copytree(models["dirs"]["gpt"], broken)
    (broken / "model.keras").write_bytes(content)
    message = one_line_error(capsys, ["generate", str(broken), "--prompt", "Be"])
    assert "damaged" in message and "not found" not in message.lower()


def test_text_files_that_are_not_files(models, tmp_path, capsys):
    for path, expected in ((tmp_path, "is a directory"), ("/dev/zero", "not a regular file"),
                           (tmp_path / "missing.txt", "does not exist")):
        argv = ["train", "gpt", "--text-file", str(path), "--out", str(tmp_path / "run"), "--steps", "2", *TINY_GPT]
        assert expected in one_line_error(capsys, argv)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag, value, expected", [
    ("--learning-rate", "-1", "argument --learning-rate"), ("--num-layers", "0", "argument --num-layers"),
    ("--steps", "0", "argument --steps"), ("--dropout", "1.5", "argument --dropout"),
    ("--seed", "-5", "argument --seed"), ("--batch-size", "x", "argument --batch-size"),
])
def test_training_flags_out_of_range(tmp_path, capsys, flag, value, expected):
    argv = ["train", "gpt", "--out", str(tmp_path / "run"), flag, value]
    assert expected in one_line_error(capsys, argv)
    assert not (tmp_path / "run").exists()


# --- train --out: nothing a user made is overwritten ------------------------------------------------------------


def hashes(folder):
    """{relative path: sha256} of every file below `folder`."""
    found = {}
    for directory, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, folder)] = hashlib.sha256(file.read()).hexdigest()
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "input.txt"
    path.write_text(CORPUS)
    return path


def train_gpt(corpus, out, *extra):
    return ["train", "gpt", "--text-file", str(corpus), "--out", str(out), *TINY_GPT, *extra]


@pytest.mark.parametrize("victim", ["gpt", "bert", "resnet", "translation"])
def test_train_refuses_a_finished_model(models, corpus, tmp_path, capsys, victim):
    target = tmp_path / victim
    shutil.copytree(models["dirs"][victim], target)
    before = hashes(target)
    message = one_line_error(capsys, train_gpt(corpus, target, "--steps", "2"))
    assert "--force" in message and str(target) in message
    assert hashes(target) == before


def test_train_refuses_a_folder_it_did_not_make(corpus, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my notes")
    (tmp_path / "a_file").write_text("also mine")
    assert "holds no run" in one_line_error(capsys, train_gpt(corpus, tmp_path / "mine", "--steps", "2"))
    assert "is a file" in one_line_error(capsys, train_gpt(corpus, tmp_path / "a_file", "--steps", "2"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "my notes"
    assert (tmp_path / "a_file").read_text() == "also mine"


@pytest.fixture
def interrupted_run(corpus, tmp_path, monkeypatch):
    """A run of `keras-tx train gpt --steps 4 --eval-interval 2` that stopped after training, before its model was
    saved (as a kill would leave it): run.json, tokenizer.json, backup/."""
    out = tmp_path / "run"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(artifacts, "save_model", killed)
        assert cli.main(train_gpt(corpus, out, "--steps", "4", "--eval-interval", "2")) == 130
    assert (out / "backup" / "latest").exists() and not (out / "model.keras").exists()
    return out


def test_train_resumes_only_the_same_command(interrupted_run, corpus, tmp_path, capsys):
    out = interrupted_run
    other_text = tmp_path / "other.txt"
    other_text.write_text(CORPUS + "Zzyzx! Quux? 0123456789\n")
    before = hashes(out)
    for extra, flag in ((["--steps", "2", "--eval-interval", "2"], "--steps"),
                        (["--steps", "4", "--eval-interval", "2", "--hidden-dim", "32"], "--hidden-dim")):
        message = one_line_error(capsys, train_gpt(corpus, out, *extra))
        assert "unfinished run of another command" in message and flag in message
    argv = ["train", "gpt", "--text-file", str(other_text), "--out", str(out), *TINY_GPT, "--steps", "4",
            "--eval-interval", "2"]
    assert "--text-file" in one_line_error(capsys, argv)
    assert hashes(out) == before  # the tokenizer too: every check runs before the first byte is written
    # The same command resumes and finishes it.
    assert cli.main(train_gpt(corpus, out, "--steps", "4", "--eval-interval", "2")) == 0
    assert "Resuming from the backup at step" in capsys.readouterr().out
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["metrics"]["steps"] == 4 and not (out / "backup").exists() and not (out / "run.json").exists()


def test_train_force_replaces_and_any_step_count_works(models, corpus, tmp_path, capsys):
    target = tmp_path / "bert"
    shutil.copytree(models["dirs"]["bert"], target)
    (target / "notes.txt").write_text("kept")
    # --steps 3 with the default --eval-interval 250: one short evaluation interval, evaluated at the end.
    assert cli.main(train_gpt(corpus, target, "--steps", "3", "--force")) == 0
    metadata = json.loads((target / "metadata.json").read_text())
    assert metadata["kind"] == "language_model" and metadata["metrics"]["steps"] == 3
    history = json.loads((target / "history.json").read_text())
    assert [record["step"] for record in history] == [3]
    assert not (target / "vocab.txt").exists()  # the old model's files are gone, the user's stay
    assert (target / "notes.txt").read_text() == "kept"


def test_steps_not_a_multiple_of_the_interval(corpus, tmp_path):
    out = tmp_path / "run"
    assert cli.main(train_gpt(corpus, out, "--steps", "5", "--eval-interval", "2")) == 0
    assert [record["step"] for record in json.loads((out / "history.json").read_text())] == [2, 4, 5]


def test_interrupting_another_verb_does_not_speak_of_resuming(models, tmp_path, capsys, monkeypatch):
    from keras_tx import export

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "export", interrupted)
    assert cli.main(["export", str(models["dirs"]["gpt"]), str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "resume" not in err and "backup" not in err
