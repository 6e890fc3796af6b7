"""`keras-tx import`: keras-hub presets (GPT-2, BERT, ViT) become ordinary model directories that every verb reads,
that give keras-hub's answers, that fine-tune, and that serve from a SavedModel with only TensorFlow.

The presets are made here with keras-hub's own `save_to_preset` (tests/tiny_presets.py: random weights, a byte-level
BPE learned on a few sentences): nothing is downloaded.
"""

import hashlib
import os
import pickle
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
from PIL import Image

from keras_tx import cli, export, tasks
from tests import tiny_presets
from tests.test_export import SERVE, _subprocess_env

PROMPTS = ["The quick brown", "Hello world", "ROMEO: But soft", "Café 1234"]
NEW_TOKENS = 12


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _digest(directory):
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(directory) for f in names)
    return {path: hashlib.sha256(open(path, "rb").read()).hexdigest() for path in files}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The three presets, the directories `keras-tx import` wrote from them, and keras-hub's own tasks."""
    root = tmp_path_factory.mktemp("presets")
    presets = tiny_presets.make_all(str(root / "presets"))
    dirs = {}
    for name, preset in presets.items():
        dirs[name] = str(root / name)
        assert cli.main(["import", preset, "--out", dirs[name]]) == 0
    theirs = {
        "gpt2": keras_hub.models.GPT2CausalLM.from_preset(presets["gpt2"]),
        "bert": keras_hub.models.BertMaskedLM.from_preset(presets["bert"]),
        "vit": keras_hub.models.ViTImageClassifier.from_preset(presets["vit"]),
    }
    theirs["gpt2"].compile(sampler="greedy")
    gpt2 = tasks.load(dirs["gpt2"])
    generated = {prompt: _keras_hub_text(theirs["gpt2"], gpt2, prompt, NEW_TOKENS) for prompt in PROMPTS}
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "image.png")
    text = "\n".join(tiny_presets.CORPUS * 8)
    (root / "corpus.txt").write_text(text, encoding="utf-8")
    for label in range(3):  # an image dataset of class folders, for evaluate and fine-tuning
        folder = root / "images" / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return {"root": root, "presets": presets, "dirs": dirs, "theirs": theirs, "generated": generated, "image": image,
            "image_path": str(root / "image.png"), "corpus": str(root / "corpus.txt"), "images": str(root / "images")}


def _keras_hub_text(lm, task, prompt, new_tokens):
    ids, _ = task.prompt_ids(prompt, new_tokens)  # <|endoftext|> then the prompt, as keras-hub's preprocessor
    return lm.generate(prompt, max_length=len(ids) + new_tokens)


def test_import_writes_an_ordinary_model_directory(imported):
    dirs, presets = imported["dirs"], imported["presets"]
    expected = {"gpt2": ("language_model", {"tokenizer.json", "vocab.json", "merges.txt"}),
                "bert": ("masked_lm", {"vocab.txt", "tokenizer.json"}),
                "vit": ("image_classifier", set())}
    for name, (kind, files) in expected.items():
        metadata = tasks.load(dirs[name]).metadata
        assert metadata["kind"] == kind and metadata["preset"] == presets[name]
        assert metadata["command"] == f"keras-tx import {presets[name]} --out {dirs[name]}"
        assert {"model.keras", "metadata.json"} | files == set(os.listdir(dirs[name]))
    gpt2 = tasks.load(dirs["gpt2"])
    assert gpt2.metadata["start_token"] == gpt2.metadata["stop_token"] == "<|endoftext|>"
    vit = tasks.load(dirs["vit"]).metadata
    assert vit["class_names"] == ["0", "1", "2"] and vit["image_shape"] == [16, 16, 3]
    np.testing.assert_allclose(vit["input_scale"], [2.0] * 3) and np.testing.assert_allclose(vit["input_offset"], -1)


def test_generate_greedy_prints_what_gpt2_causal_lm_generates(imported, capsys):
    task = tasks.load(imported["dirs"]["gpt2"])
    for prompt, theirs in imported["generated"].items():
        assert task.generate(prompt, max_new_tokens=NEW_TOKENS, sampler="greedy") == theirs
    prompt = PROMPTS[-1]  # non-ASCII and digits
    code, out, _ = _run(capsys, "generate", imported["dirs"]["gpt2"], "--prompt", prompt, "--sampler", "greedy",
                        "--max-new-tokens", NEW_TOKENS)
    assert code == 0 and out == imported["generated"][prompt] + "\n"


def test_generation_stops_at_the_stop_token(imported):
    task = tasks.load(imported["dirs"]["gpt2"])
    ids, _ = task.prompt_ids("Hello", 5)
    # A model that always prefers <|endoftext|>: the generation ends there, and the text leaves it out.
    task.model.token_embedding.embeddings.assign(np.zeros_like(keras.ops.convert_to_numpy(
        task.model.token_embedding.embeddings)))
    bias = np.zeros(task.tokenizer.vocabulary_size, "float32")
    bias[task.stop_id] = 1.0
    original = task.model.call_with_cache

    def prefer_stop(tokens, cache, index):
        logits, hidden, cache = original(tokens, cache, index)
        return logits + bias, hidden, cache

    task.model.call_with_cache = prefer_stop
    tokens = task.generate_ids(ids, 5, sampler="greedy")
    assert tokens.tolist()[len(ids):][0] == task.stop_id and task.decode(tokens[len(ids):]) == ""


def test_fill_mask_gives_bert_masked_lm_top_k(imported, capsys):
    task, theirs = tasks.load(imported["dirs"]["bert"]), imported["theirs"]["bert"]
    tokenizer = theirs.preprocessor.tokenizer
    text = "the movie was [MASK] , very [MASK] !"
    ids, _ = task.model.encode_masked(text)
    expected_ids = [tokenizer.token_to_id("[CLS]")] + list(tokenizer("the movie was")) + [4] + list(
        tokenizer(", very")) + [4] + list(tokenizer("!")) + [tokenizer.token_to_id("[SEP]")]
    assert list(ids) == expected_ids
    positions = [i for i, t in enumerate(expected_ids) if t == tokenizer.token_to_id("[MASK]")]
    inputs = {"token_ids": np.array([expected_ids]), "segment_ids": np.zeros((1, len(ids)), "int32"),
              "padding_mask": np.ones((1, len(ids)), "int32"), "mask_positions": np.array([positions])}
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(theirs(inputs), axis=-1))[0]
    ours = task.fill_mask(text, top_k=5)
    for candidates, p in zip(ours, probabilities):
        best = np.argsort(-p, kind="stable")[:5]
        assert [token for token, _ in candidates] == [tokenizer.id_to_token(int(i)) for i in best]
        np.testing.assert_allclose([q for _, q in candidates], p[best], atol=1e-5)
    code, out, _ = _run(capsys, "fill-mask", imported["dirs"]["bert"], text, "--top-k", 2)
    assert code == 0 and out.startswith(f"[MASK] 1: {ours[0][0][0]} ")


def test_classify_gives_vit_image_classifier_probabilities(imported, capsys):
    task, theirs = tasks.load(imported["dirs"]["vit"]), imported["theirs"]["vit"]
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(
        theirs.predict(imported["image"][None].astype("float32"), verbose=0), axis=-1))[0]
    (_, ours), = task.classify([imported["image_path"]], top_k=3)
    best = np.argsort(-expected)
    assert [label for label, _ in ours] == [str(i) for i in best]
    np.testing.assert_allclose([p for _, p in ours], expected[best], atol=1e-5)
    code, out, _ = _run(capsys, "classify", imported["dirs"]["vit"], imported["image_path"], "--top-k", 1)
    assert code == 0 and out.strip().endswith(f": {best[0]} {expected[best[0]]:.3f}")


def test_evaluate_runs_on_every_imported_directory(imported, capsys):
    import json

    dirs = imported["dirs"]
    for name, data in (("gpt2", ["--text-file", imported["corpus"]]), ("bert", ["--text-file", imported["corpus"]]),
                       ("vit", ["--data-dir", imported["images"]])):
        code, out, err = _run(capsys, "evaluate", dirs[name], *data, "--batches", 2, "--batch-size", 2)
        assert code == 0, err
        result = json.loads(out)
        assert all(np.isfinite(v) for v in result.values() if isinstance(v, float)), result
    code, _, err = _run(capsys, "evaluate", dirs["vit"])
    assert code == 2 and "give --data-dir or --dataset" in err


@pytest.mark.parametrize("verb", ["gpt", "bert", "vit"])
def test_train_init_from_fine_tunes_into_a_new_directory(imported, tmp_path, capsys, verb):
    source = imported["dirs"][{"gpt": "gpt2", "bert": "bert", "vit": "vit"}[verb]]
    before = _digest(source)
    out = str(tmp_path / f"{verb}_tuned")
    data = {"gpt": ["--text-file", imported["corpus"], "--context", 16, "--steps", 2, "--eval-interval", 2,
                    "--eval-batches", 1],
            "bert": ["--text-file", imported["corpus"], "--sequence-length", 16, "--steps", 2, "--eval-interval", 2,
                     "--eval-batches", 1],
            "vit": ["--data-dir", imported["images"], "--epochs", 1, "--no-augment"]}[verb]
    code, _, err = _run(capsys, "train", verb, "--init-from", source, *data, "--batch-size", 2, "--no-tensorboard",
                        "--verbose", 0, "--out", out)
    assert code == 0, err
    assert _digest(source) == before  # the imported directory is read, never written
    tuned, start = tasks.load(out), tasks.load(source)
    assert tuned.metadata["init_from"] == source and tuned.metadata["preset"] == start.metadata["preset"]
    if verb == "gpt":
        assert tuned.tokenizer.vocabulary_size == start.tokenizer.vocabulary_size
        assert (tuned.start_ids, tuned.stop_id) == (start.start_ids, start.stop_id)
        assert np.isfinite(tuned.metadata["metrics"]["val_loss"])
        assert tuned.generate("Hello", max_new_tokens=3, sampler="greedy").startswith("Hello")
    elif verb == "bert":
        assert tuned.tokenizer.get_vocabulary() == start.tokenizer.get_vocabulary()
        assert len(tuned.fill_mask("the [MASK] .", top_k=2)[0]) == 2
    else:
        assert tuned.metadata["image_shape"] == [16, 16, 3] and tuned.metadata["input_scale"] == \
            start.metadata["input_scale"]
        assert tuned.metadata["class_names"] == ["class0", "class1", "class2"]
        assert len(tuned.classify([imported["image_path"]], top_k=3)[0][1]) == 3


def test_exports_serve_keras_hub_answers_with_tensorflow_only(imported, tmp_path):
    dirs = imported["dirs"]
    saved = {name: str(tmp_path / f"{name}_saved") for name in dirs}
    for name in dirs:
        export.export(dirs[name], saved[name])
    gpt2 = tasks.load(dirs["gpt2"])
    calls = {f"generate_{i}": (saved["gpt2"], "generate", {"prompt": prompt, "max_new_tokens": np.int32(NEW_TOKENS),
                                                            "temperature": np.float32(0), "seed": np.int64(0)})
             for i, prompt in enumerate(PROMPTS)}
    calls["fill_mask"] = (saved["bert"], "fill_mask", {"text": "the movie was [MASK] .", "top_k": np.int32(3)})
    with open(imported["image_path"], "rb") as file:
        calls["classify"] = (saved["vit"], "classify", {"image_bytes": np.array([file.read()])})
    with open(tmp_path / "calls.pkl", "wb") as file:
        pickle.dump(calls, file)
    process = subprocess.run([sys.executable, "-c", SERVE, str(tmp_path / "calls.pkl"), str(tmp_path / "out.pkl")],
                             env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    with open(tmp_path / "out.pkl", "rb") as file:
        served = pickle.load(file)
    assert served["imported"] == []  # keras, keras-hub, keras-tx and TF-Text were never imported
    for i, prompt in enumerate(PROMPTS):
        out = served[f"generate_{i}"]
        assert out["text"].decode() == imported["generated"][prompt]
        ids, _ = gpt2.prompt_ids(prompt, NEW_TOKENS)
        np.testing.assert_array_equal(out["token_ids"], gpt2.generate_ids(ids, NEW_TOKENS, sampler="greedy"))
    python = tasks.load(dirs["bert"]).fill_mask("the movie was [MASK] .", top_k=3)[0]
    assert [t.decode() for t in served["fill_mask"]["tokens"][0]] == [token for token, _ in python]
    (_, classes), = tasks.load(dirs["vit"]).classify([imported["image_path"]], top_k=3)
    assert [t.decode() for t in served["classify"]["labels"][0]] == [label for label, _ in classes]
    np.testing.assert_allclose(served["classify"]["probabilities"][0], [p for _, p in classes], atol=1e-5)


def test_bad_imports_are_one_line_and_change_nothing(imported, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # tests never reach the network
    presets = imported["presets"]
    keras_hub.models.DistilBertBackbone(vocabulary_size=20, num_layers=1, num_heads=2, hidden_dim=8,
                                        intermediate_dim=16, max_sequence_length=8).save_to_preset(
        str(tmp_path / "distilbert"))
    tiny_presets.vit_preset(str(tmp_path / "vit_backbone"), task=False)
    (tmp_path / "empty_preset").mkdir()
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "mine.txt").write_text("keep me")
    out = str(tmp_path / "new")
    cases = [
        (["import", str(tmp_path / "missing"), "--out", out], "is neither a preset directory"),
        (["import", "not_a_keras_hub_preset", "--out", out], "is neither a preset directory"),
        (["import", str(tmp_path / "empty_preset"), "--out", out], "Could not load the keras-hub preset"),
        (["import", "hf://keras-tx/offline", "--out", out], "needs the network"),
        (["import", str(tmp_path / "distilbert"), "--out", out], "is a DistilBertBackbone; keras-tx imports"),
        (["import", presets["gpt2"], "--out", str(occupied)], "exists and is not empty"),
        (["import", presets["gpt2"], "--out", out, "--labels", str(tmp_path / "labels.txt")],
         "--labels names the classes of an image classifier"),
        (["import", str(tmp_path / "vit_backbone"), "--out", out], "without a classifier head: give --labels"),
        (["import", presets["vit"], "--out", out, "--labels", str(tmp_path / "labels.txt")],
         "--labels has 2 names"),
        (["import", presets["vit"], "--out", out, "--labels", str(tmp_path / "no_labels.txt")], "--labels"),
    ]
    for argv, message in cases:
        code, out_text, err = _run(capsys, *argv)
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)
        assert not os.path.exists(out) and out_text == ""
    assert os.listdir(occupied) == ["mine.txt"] and (occupied / "mine.txt").read_text() == "keep me"
    assert not [name for name in os.listdir(tmp_path) if ".import-" in name]  # no partial directory left behind
    # A backbone-only ViT with --labels: a new head of that many classes.
    code, _, err = _run(capsys, "import", str(tmp_path / "vit_backbone"), "--out", out, "--labels",
                        str(tmp_path / "labels.txt"))
    assert code == 0 and tasks.load(out).metadata["class_names"] == ["cat", "dog"]


def test_backbone_only_presets_import_too(tmp_path, capsys):
    """A GPT2Backbone or BertBackbone preset (with its tokenizer, no task): the same directory; BERT's masked-LM
    head is then keras-hub's new one, and the import says so."""
    for name, make in (("gpt2", tiny_presets.gpt2_preset), ("bert", tiny_presets.bert_preset)):
        preset = make(str(tmp_path / f"{name}_backbone"), task=False)
        code, out, err = _run(capsys, "import", preset, "--out", tmp_path / name)
        assert code == 0, err
        task = tasks.load(str(tmp_path / name))
        if name == "gpt2":
            assert task.generate("Hello", max_new_tokens=3, sampler="greedy").startswith("Hello")
        else:
            assert "has no masked-LM head" in out and task.metadata["masked_lm_head"].startswith("new")
            assert len(task.fill_mask("the [MASK] .", top_k=2)[0]) == 2
