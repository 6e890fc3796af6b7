"""`keras-tx export`: every kind of model directory becomes a SavedModel whose signatures do the whole job.

Tiny untrained models of each kind are exported, then loaded in a fresh Python process in which keras, keras-hub,
keras-tx and TF-Text cannot even be imported; every signature is called there and its outputs are compared with
the Python API's (greedy decoding and translation: the same tokens and text; logits and probabilities: 1e-5).
"""

import contextlib
import io
import json
import os
import pickle
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_tx import artifacts, cli, export, generation, tasks
from keras_tx.data.tokenizers import CharTokenizer
from keras_tx.data.translation import RESERVED_TOKENS as TRANSLATION_TOKENS
from keras_tx.data.translation import make_translation_tokenizer
from keras_tx.tasks.translation import Translator
from keras_tx.data.wordpiece import RESERVED_TOKENS, make_wordpiece_tokenizer, save_tokenizer
from keras_tx.models import BERT, GPT, BERTMaskedLM, ResNet, RNNLanguageModel, Seq2SeqTransformer, ViT
from tests.bad_inputs import BY_SURFACE, ids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
LETTERS = list("abcdefghijklmnopqrstuvwxyzäöüé")
BERT_VOCABULARY = list(dict.fromkeys(list(RESERVED_TOKENS) + [".", ",", "!", "the", "cat", "dog", "sat", "on", "mat",
                                                               "like", "play", "##ing", "strasse", "uber"]
                                     + LETTERS + [f"##{c}" for c in LETTERS]))
SOURCE_VOCABULARY = list(TRANSLATION_TOKENS) + [".", "ein", "hund", "katze", "läuft", "groß", "##er"] + LETTERS
TARGET_VOCABULARY = list(dict.fromkeys(list(TRANSLATION_TOKENS) + [".", ",", "'", "-", "a", "dog", "cat", "runs", "big",
                                                                   "##s", "well", "known", "(", ")", "!"]
                                       + LETTERS + [f"##{c}" for c in LETTERS[:5]]))
SENTENCES = [
    "The [MASK] sat on the mat.", "Cats [MASK][MASK] playing, DOGS like sleeping!!", "GROSSE Straße über ÄÖÜ",
    "tab\there\nnewline  spaces", "x" * 100, "ab" * 51, "unknownword zzz qqq", "", "   ", "[mask] [CLS] [SEP]x[UNK]",
    "中文字符 mixed 中", "ﬁne Ｆｕｌｌwidth", "soft\u00adhyphen zero\u200bwidth", "naïve café résumé NAÏVE",
    "$100 & 50% off ^_^ `quote` ~tilde~", "emoji 😀 ok", "ΣΊΣΥΦΟΣ", "ctrl\x07chars\x1f", "don't it's dogs'",
]

# Runs in a fresh process: every import of keras, keras-hub, keras-tx or TF-Text fails there.
SERVE = r"""
import pickle, sys
for name in ("keras", "keras_hub", "keras_tx", "tensorflow_text", "tf_keras"):
    sys.modules[name] = None
import tensorflow as tf
with open(sys.argv[1], "rb") as file:
    calls = pickle.load(file)
loaded, results = {}, {}
for key, (directory, signature, inputs) in calls.items():
    if directory not in loaded:
        loaded[directory] = tf.saved_model.load(directory)
    function = loaded[directory].signatures[signature]
    try:
        outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
        results[key] = {name: value.numpy() for name, value in outputs.items()}
    except tf.errors.InvalidArgumentError as error:
        results[key] = {"error": str(error)}
blocked = [m for m in sys.modules if m.split(".")[0] in ("keras", "keras_hub", "keras_tx", "tensorflow_text")
           and sys.modules[m] is not None]
results["imported"] = blocked
with open(sys.argv[2], "wb") as file:
    pickle.dump(results, file)
"""


def _subprocess_env():
    return dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")


def _save_image(path, mode, size, rng, alpha=False):
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    if alpha:
        pixels[..., -1] = np.where(rng.random(size[::-1]) < 0.5, 255, rng.integers(0, 256, size[::-1]))
    Image.fromarray(pixels.squeeze(), mode).save(path)
    return str(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Model directories of every kind, their SavedModels, the calls to make and the Python API's answers."""
    # The Python API's decoding loops run as graphs without XLA here: the same loop and tokens
    # (tests/test_generation.py checks compiled against uncompiled decoding), minus an XLA compilation per shape.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generation, "_compile", lambda model, fn: tf.function(fn, autograph=False))
        return _export_all(tmp_path_factory)


def _export_all(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    calls, expected, dirs = {}, {}, {}

    # --- language models: GPT (context 16, so 30 new tokens take chunks) and an LSTM -----------------------
    tokenizer = CharTokenizer.from_text(TEXT)
    for name, model in (("gpt", GPT(tokenizer.vocabulary_size, 1, 2, 16, 32, max_length=16)),
                        ("lstm", RNNLanguageModel(tokenizer.vocabulary_size, "lstm", 8, 16))):
        model(np.zeros((1, 4), "int32"))
        directory = root / name
        directory.mkdir()
        tokenizer.save(str(directory / "tokenizer.json"))
        artifacts.save_model(str(directory), model, {"kind": "language_model", "architecture": name,
                                                     "tokenizer": "tokenizer.json", "context": 16})
        dirs[name] = directory
    # The GPT goes through the CLI verb; the others through the Python API.
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main(["export", str(dirs["gpt"]), str(root / "gpt_saved")]) == 0
    expected["cli_stdout"] = stdout.getvalue()
    export.export(str(dirs["lstm"]), str(root / "lstm_saved"))
    token_ids = rng.integers(0, tokenizer.vocabulary_size, (2, 9)).astype("int32")
    for name in ("gpt", "lstm"):
        saved = str(root / f"{name}_saved")
        task = tasks.load(str(dirs[name]))
        model = task.model
        calls[f"{name}_logits"] = (saved, "serving_default", {"token_ids": token_ids})
        expected[f"{name}_logits"] = np.asarray(model(token_ids))
        # The CLI's greedy path (chunks past the GPT's context of 16), for a prompt with and without unknown
        # characters; a prompt with no known character starts from "\n", so "" must answer as "\n" does.
        expected[f"{name}_greedy"] = task.generate_ids(tokenizer.encode("Be"), 30, sampler="greedy")
        for case, prompt in (("known", "Be"), ("newline", "\n")):
            calls[f"{name}_{case}"] = (saved, "generate", {"prompt": prompt, "max_new_tokens": np.int32(30),
                                                           "temperature": np.float32(0), "seed": np.int64(0)})
    for key, seed, temperature, new_tokens in (("a", 7, 1.0, 20), ("b", 7, 1.0, 20), ("c", 8, 1.0, 20)):
        calls[f"gpt_sample_{key}"] = (str(root / "gpt_saved"), "generate", {
            "prompt": "Be", "max_new_tokens": np.int32(new_tokens), "temperature": np.float32(temperature),
            "seed": np.int64(seed)})
    # Seeded sampling: the exported generate draws what `keras-tx generate --sampler random` draws for the same seed
    # and temperature, in one chunk (8 tokens) and past the context (30, in chunks: generation.generate_long's).
    for new_tokens in (8, 30):
        calls[f"gpt_random_{new_tokens}"] = (str(root / "gpt_saved"), "generate", {
            "prompt": "Be", "max_new_tokens": np.int32(new_tokens), "temperature": np.float32(0.8),
            "seed": np.int64(11)})
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert cli.main(["generate", str(dirs["gpt"]), "--prompt", "Be", "--max-new-tokens", str(new_tokens),
                             "--sampler", "random", "--temperature", "0.8", "--seed", "11"]) == 0
        expected[f"gpt_random_{new_tokens}_cli"] = stdout.getvalue()
    expected["gpt_random_30_ids"] = generation.generate_long(tasks.load(str(dirs["gpt"])).model, tokenizer.encode("Be"),
                                                             30, sampler="random", temperature=0.8, seed=11)
    expected["vocabulary"] = tokenizer.vocabulary

    # --- BERT ------------------------------------------------------------------------------------------------
    wordpiece = make_wordpiece_tokenizer(BERT_VOCABULARY)
    masked_lm = BERTMaskedLM(BERT(len(BERT_VOCABULARY), 1, 2, 16, 32, max_length=24), tokenizer=wordpiece)
    features = {"token_ids": rng.integers(1, len(BERT_VOCABULARY), (2, 7)).astype("int32"),
                "segment_ids": np.zeros((2, 7), "int32"), "padding_mask": np.ones((2, 7), "int32"),
                "mask_positions": np.array([[1, 3], [2, 0]], "int32")}
    masked_lm(features)
    dirs["bert"] = root / "bert"
    save_tokenizer(wordpiece, str(dirs["bert"]))
    artifacts.save_model(str(dirs["bert"]), masked_lm, {"kind": "masked_lm", "architecture": "bert",
                                                        "tokenizer": "vocab.txt"})
    export.export(str(dirs["bert"]), str(root / "bert_saved"))
    masked_lm = tasks.load(str(dirs["bert"])).model
    saved = str(root / "bert_saved")
    calls["bert_logits"] = (saved, "serving_default", features)
    expected["bert_logits"] = np.asarray(masked_lm(features))
    for key, text, top_k in (("one", "The [MASK] sat on the mat.", 3), ("two", "[MASK] Cats über [MASK] Straße!", 4),
                             ("lowercase", "The [mask] sat on the mat.", 3), ("all", "the [MASK].", 10**6)):
        calls[f"fill_{key}"] = (saved, "fill_mask", {"text": text, "top_k": np.int32(top_k)})
        expected[f"fill_{key}"] = masked_lm.fill_mask(text, top_k=top_k)
    calls["fill_too_long"] = (saved, "fill_mask", {"text": "the cat " * 20 + "[MASK]", "top_k": np.int32(2)})

    # --- image classifiers: a grey ResNet and an RGB ViT --------------------------------------------------------
    image_dir = root / "images"
    image_dir.mkdir()
    images = [
        _save_image(image_dir / "grey.png", "L", (16, 16), rng),
        _save_image(image_dir / "rgb.png", "RGB", (16, 16), rng),
        _save_image(image_dir / "rgba.png", "RGBA", (16, 16), rng, alpha=True),
        _save_image(image_dir / "photo.jpg", "RGB", (16, 16), rng),
    ]
    resized = [_save_image(image_dir / "wide.png", "RGB", (40, 23), rng),
               _save_image(image_dir / "big.jpg", "RGB", (70, 50), rng)]
    (image_dir / "notes.png").write_text("not a picture")
    image_models = (("resnet", ResNet((16, 16, 1), num_classes=3, width=4, blocks_per_stage=(1,)), (16, 16, 1)),
                    ("vit", ViT(16, 4, 1, 2, 16, 32, num_classes=3, num_channels=3), (16, 16, 3)))
    for name, model, shape in image_models:
        model(np.zeros((1, *shape), "float32"))
        dirs[name] = root / name
        artifacts.save_model(str(dirs[name]), model, {"kind": "image_classifier", "architecture": name,
                                                      "image_shape": list(shape), "class_names": ["cat", "dog", "owl"]})
        (root / f"{name}_saved").mkdir()  # an existing empty directory is a fine destination
        export.export(str(dirs[name]), str(root / f"{name}_saved"))
        task = tasks.load(str(dirs[name]))
        model = task.model
        saved = str(root / f"{name}_saved")
        pixels = rng.random((2, *shape)).astype("float32")
        calls[f"{name}_logits"] = (saved, "serving_default", {"images": pixels})
        expected[f"{name}_logits"] = np.asarray(model(pixels))
        for key, paths in (("same_size", images), ("resized", resized)):
            data = np.array([open(p, "rb").read() for p in paths], dtype=object)
            calls[f"{name}_{key}"] = (saved, "classify", {"image_bytes": data})
            expected[f"{name}_{key}"] = task.classify_files(paths, top_k=3)
        calls[f"{name}_not_an_image"] = (saved, "classify", {
            "image_bytes": np.array([(image_dir / "notes.png").read_bytes()], dtype=object)})

    # --- translation: a directory written by Translator.save --------------------------------------------------
    source_tokenizer = make_translation_tokenizer(SOURCE_VOCABULARY)
    target_tokenizer = make_translation_tokenizer(TARGET_VOCABULARY)
    seq2seq = Seq2SeqTransformer(len(SOURCE_VOCABULARY), len(TARGET_VOCABULARY), num_layers=1, num_heads=2,
                                 hidden_dim=16, intermediate_dim=32, max_source_length=8, max_target_length=8,
                                 dropout=0.0, tie_embeddings=False)
    dirs["translation"] = root / "translation"
    Translator(seq2seq, source_tokenizer, target_tokenizer).save(str(dirs["translation"]))
    export.export(str(dirs["translation"]), str(root / "translation_saved"))
    translator = Translator.load(str(dirs["translation"]))
    saved = str(root / "translation_saved")
    texts = ["ein hund läuft.", "Ein GROSSER Katze läuft.", "eine katze", "ein hund " * 4]
    calls["translate"] = (saved, "translate", {"text": np.array(texts, dtype=object)})
    expected["translate"] = translator.translate(texts)
    pair = {"encoder_token_ids": np.array([[4, 5, 6, 0]], "int32"), "decoder_token_ids": np.array([[2, 7, 8]], "int32")}
    calls["translation_logits"] = (saved, "serving_default", pair)
    expected["translation_logits"] = np.asarray(translator.model(pair))
    # --- the bad-input battery (tests/bad_inputs.py): the same decision as the CLI and the Python API ----------
    for case in BY_SURFACE["export"]:
        name, signature, inputs = case.export
        calls[f"bad_{case.id}"] = (str(root / f"{name}_saved"), signature, inputs)
    return {"root": root, "dirs": dirs, "calls": calls, "expected": expected, "translator": translator}


@pytest.fixture(scope="module")
def served(exported):
    """The outputs of every call, made in a fresh process that can import nothing but TensorFlow; and, at the same
    time, what `saved_model_cli show --all` and `saved_model_cli run` print for the GPT's export."""
    root, saved = exported["root"], str(exported["root"] / "gpt_saved")
    with open(root / "calls.pkl", "wb") as file:
        pickle.dump(exported["calls"], file)
    commands = {
        "serve": [sys.executable, "-c", SERVE, str(root / "calls.pkl"), str(root / "results.pkl")],
        "show": [SAVED_MODEL_CLI, "show", "--dir", saved, "--all"],
        "run": [SAVED_MODEL_CLI, "run", "--dir", saved, "--tag_set", "serve", "--signature_def", "generate",
                "--input_exprs", 'prompt="Be";max_new_tokens=5;temperature=0.0;seed=0'],
    }
    processes = {name: subprocess.Popen(command, cwd=str(root), env=_subprocess_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True) for name, command in commands.items()}
    try:
        outputs = {name: process.communicate(timeout=300) for name, process in processes.items()}
    finally:
        for process in processes.values():  # none may outlive a failed test
            if process.poll() is None:
                process.kill()
                process.wait()
    for name, process in processes.items():
        assert process.returncode == 0, (name, outputs[name][1][-3000:])
    with open(root / "results.pkl", "rb") as file:
        results = pickle.load(file)
    results["saved_model_cli"] = {name: outputs[name][0] for name in ("show", "run")}
    return results


def test_the_exports_need_only_tensorflow(served):
    assert served["imported"] == []


def test_cli_export_prints_the_signatures(exported):
    out = exported["expected"]["cli_stdout"]
    assert "(language_model)" in out
    assert "generate(max_new_tokens: int32 (), prompt: string (), seed: int64 (), temperature: float32 ())" in out
    assert "serving_default(token_ids: int32 (None, None)) -> logits: float32 (None, None, " in out


@pytest.mark.parametrize("name", ["gpt", "lstm", "bert", "resnet", "vit", "translation"])
def test_serving_default_is_the_forward_pass(served, exported, name):
    np.testing.assert_allclose(served[f"{name}_logits"]["logits"], exported["expected"][f"{name}_logits"], atol=1e-5)


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_generate_greedy_equals_the_python_api(served, exported, name):
    tokens, vocabulary = exported["expected"][f"{name}_greedy"], exported["expected"]["vocabulary"]
    completion = "".join(vocabulary[i] for i in tokens[2:])
    assert len(completion) == 30  # past the GPT's context of 16, in chunks
    out = served[f"{name}_known"]
    np.testing.assert_array_equal(out["token_ids"], tokens)
    assert out["completion"].decode() == completion
    assert out["text"].decode() == "Be" + completion
    newline = served[f"{name}_newline"]
    assert newline["text"].decode().startswith("\n") and len(newline["completion"].decode()) == 30


def test_generate_sampling_is_seeded_and_bounded(served, exported):
    vocabulary = set(exported["expected"]["vocabulary"])
    a, b, c = (served[f"gpt_sample_{key}"]["text"].decode() for key in "abc")
    assert a == b, "the same seed must give the same text"
    assert a != c, "another seed should give another text"
    assert len(a) == 2 + 20 and a.startswith("Be") and set(a) <= vocabulary


def test_generate_sampling_equals_the_cli(served, exported):
    """A seed and a temperature give the same text in the exported generate as in `keras-tx generate --sampler
    random` (the same loop, the same counter-based random numbers, the same chunks past the context)."""
    expected = exported["expected"]
    for new_tokens in (8, 30):
        assert served[f"gpt_random_{new_tokens}"]["text"].decode() + "\n" == expected[f"gpt_random_{new_tokens}_cli"]
    np.testing.assert_array_equal(served["gpt_random_30"]["token_ids"], expected["gpt_random_30_ids"])


def test_fill_mask_equals_the_python_api(served, exported):
    for key, top_k in (("one", 3), ("two", 4), ("lowercase", 3), ("all", len(BERT_VOCABULARY))):
        out, expected = served[f"fill_{key}"], exported["expected"][f"fill_{key}"]
        assert out["tokens"].shape == out["scores"].shape == (len(expected), top_k)
        for tokens, scores, candidates in zip(out["tokens"], out["scores"], expected):
            assert [t.decode() for t in tokens] == [token for token, _ in candidates]
            np.testing.assert_allclose(scores, [p for _, p in candidates], atol=1e-5)


def test_fill_mask_too_long_is_a_clear_error(served):
    assert "too long" in served["fill_too_long"]["error"] and "max_length=24" in served["fill_too_long"]["error"]


@pytest.mark.parametrize("name", ["resnet", "vit"])
def test_classify_equals_the_python_api(served, exported, name):
    for key, tolerance in (("same_size", 1e-5), ("resized", 0.02)):
        out = served[f"{name}_{key}"]
        assert out["labels"].shape == out["probabilities"].shape == (len(exported["expected"][f"{name}_{key}"]), 3)
        np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1, atol=1e-5)
        assert np.all(np.diff(out["probabilities"], axis=1) <= 0)  # best first
        for labels, probabilities, (_, expected) in zip(out["labels"], out["probabilities"],
                                                        exported["expected"][f"{name}_{key}"]):
            ours = dict(zip((label.decode() for label in labels), probabilities))
            for label, probability in expected:
                assert abs(ours[label] - probability) <= tolerance, (key, label, ours[label], probability)
    assert "error" in served[f"{name}_not_an_image"]


def test_translate_equals_the_python_api(served, exported):
    out = [t.decode() for t in served["translate"]["translation"]]
    assert out == exported["expected"]["translate"] and served["translate"]["token_ids"].shape == (4, 8)


@pytest.mark.parametrize("case", BY_SURFACE["export"], ids=ids(BY_SURFACE["export"]))
def test_bad_input_battery(served, case):
    """InvalidArgument with the sentence of the CLI and the Python API; or, where they accept it, an answer."""
    out = served[f"bad_{case.id}"]
    if case.expect is not None:
        assert case.expect in out.get("error", ""), out.keys()
        return
    assert "error" not in out, out.get("error")
    first = next(iter(out.values()))
    batch = len(case.export[2].get("image_bytes", case.export[2].get("text", [None])))
    assert np.ndim(first) == 0 or len(first) == batch or case.export[1] == "fill_mask"


def test_wordpiece_in_core_ops_equals_keras_hub():
    """Both of keras-hub's paths (TF-Text in a tf.function, pure Python eagerly) on text that tests every rule."""
    import keras_hub

    tokenizers = [
        make_wordpiece_tokenizer(BERT_VOCABULARY),  # lowercase, special tokens kept whole
        make_translation_tokenizer(SOURCE_VOCABULARY),  # lowercase, no special tokens
        keras_hub.tokenizers.WordPieceTokenizer(vocabulary=BERT_VOCABULARY, lowercase=False),
        keras_hub.tokenizers.WordPieceTokenizer(vocabulary=BERT_VOCABULARY, lowercase=True, strip_accents=True),
    ]
    for tokenizer in tokenizers:
        ours = tf.function(export.WordPiece(tokenizer).tokenize)(tf.constant(SENTENCES)).to_list()
        with_tf_text = tf.function(tokenizer)(tf.constant(SENTENCES)).to_list()
        for sentence, mine, theirs in zip(SENTENCES, ours, with_tf_text):
            assert mine == list(theirs) == np.asarray(tokenizer(sentence)).tolist(), sentence


def test_translation_text_equals_the_translator(exported):
    """Detokenizing: "##" pieces, [END] and padding, punctuation, hyphens and apostrophes, on many rows."""
    translator = exported["translator"]
    ids = {token: i for i, token in enumerate(TARGET_VOCABULARY)}
    rows = np.random.default_rng(1).integers(4, len(TARGET_VOCABULARY), (300, 9)).astype("int32")
    rows[::7, 3], rows[::11, 5], rows[::13, 0], rows[::17, 0] = 3, 0, 3, ids["##s"]
    crafted = [["a", "dog", "'", "s", "big", "."], ["well", "-", "known", "-", "a", "-", "cat"],
               ["(", "a", ")", ",", "dog", "!"]]
    rows = np.concatenate([rows, [[ids[t] for t in row] + [0] * (9 - len(row)) for row in crafted]]).astype("int32")
    ours = [t.decode() for t in export.target_texts(export.WordPiece(translator.target_tokenizer),
                                                    tf.constant(rows), 3).numpy()]
    assert ours == translator.decode_targets(rows)
    assert ours[-3:] == ["a dog's big.", "well-known-a-cat", "(a), dog!"]


def test_saved_model_cli_show_and_run(served, exported):
    shown, run = served["saved_model_cli"]["show"], served["saved_model_cli"]["run"]
    for text in ("signature_def['generate']", "signature_def['serving_default']", "inputs['prompt']",
                 "outputs['text']"):
        assert text in shown
    greedy = "Be" + "".join(exported["expected"]["vocabulary"][i] for i in exported["expected"]["gpt_greedy"][2:7])
    assert f"Result for output key text:\n{greedy.encode()!r}" in run


# --- bad input to the verb: one line on stderr, exit status 2, nothing overwritten --------------------------


def _one_line_error(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("keras-tx export: error:"), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_export_of_a_directory_that_is_not_a_model(tmp_path, capsys):
    assert cli.main(["export", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no model.keras" in _one_line_error(capsys.readouterr().err)
    assert cli.main(["export", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "is not a directory" in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_export_never_overwrites(exported, tmp_path, capsys):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    (tmp_path / "a_file").write_text("also mine")
    for out, message in ((occupied, "is not empty"), (tmp_path / "a_file", "is not a directory")):
        assert cli.main(["export", str(exported["dirs"]["gpt"]), str(out)]) == 2
        assert message in _one_line_error(capsys.readouterr().err)
    assert (occupied / "notes.txt").read_text() == "mine" and (tmp_path / "a_file").read_text() == "also mine"
    assert sorted(os.listdir(tmp_path)) == ["a_file", "occupied"]  # and no staging directory left behind


def test_export_of_a_kind_it_does_not_know(tmp_path, capsys):
    (tmp_path / "model.keras").write_bytes(b"")
    (tmp_path / "metadata.json").write_text(json.dumps({"kind": "image_gpt"}))
    assert cli.main(["export", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "kind 'image_gpt'" in _one_line_error(capsys.readouterr().err)
