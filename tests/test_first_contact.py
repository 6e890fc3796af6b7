"""What a newcomer meets first: `import keras_tx` is enough to load a .keras file, `keras-tx --help` and usage
errors answer before TensorFlow starts, `evaluate` defaults to the model's own data, nothing alarming on stderr."""

import json
import os
import subprocess
import sys

from keras_tx import artifacts, cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_GPT = os.path.join(ROOT, "saved_models", "gpt_shakespeare", "model.keras")


def run_python(code, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}  # TensorFlow's own defaults
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)


def test_import_keras_tx_is_enough_to_load_a_keras_file():
    result = run_python("import sys, keras, keras_tx\n"
                        "model = keras.saving.load_model(sys.argv[1])\n"
                        "print(type(model).__name__)", SHIPPED_GPT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "GPT"
    imported = run_python("import keras_tx")
    assert imported.returncode == 0 and imported.stderr == "", imported.stderr  # no TensorFlow start-up chatter


def test_help_and_usage_errors_do_not_start_tensorflow():
    code = ("import sys\nsys.argv = ['keras-tx'] + sys.argv[1:]\nfrom keras_tx.cli import main\ncode = main()\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
            "sys.exit(code)")
    result = run_python(code, "--help")
    assert result.returncode == 0 and "train" in result.stdout, result.stderr[-2000:]
    result = run_python(code, "generate", "some_dir", "--prompt", "x", "--max-new-tokens", "100000")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "argument --max-new-tokens: must be an integer from 1 to 2,000" in result.stderr


def test_every_train_verb_is_described_in_a_sentence(capsys):
    """`keras-tx train --help` lists each verb with its one-line description, never a dataclass's generated
    signature (`rnn  str = 'rnn', dataset: str = None, ...` before the RNN had a docstring of its own)."""
    try:
        cli.main(["train", "--help"])
    except SystemExit as stop:
        assert stop.code == 0
    listing = capsys.readouterr().out
    for verb in ("gpt", "lstm", "rnn", "bert", "vit", "resnet", "igpt", "transformer", "sentiment"):
        assert f"    {verb} " in listing
    assert "str = " not in listing and ": int = " not in listing, listing


def test_a_successful_command_prints_nothing_on_stderr(tmp_path):
    """The console script, as a user runs it: TensorFlow's oneDNN / CUDA lines stay out of the terminal."""
    script = os.path.join(os.path.dirname(sys.executable), "keras-tx")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    result = subprocess.run([script, "generate", os.path.dirname(SHIPPED_GPT), "--prompt", "ROMEO:",
                             "--max-new-tokens", "3", "--sampler", "greedy"], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0 and result.stdout.startswith("ROMEO:"), result.stderr[-2000:]
    assert result.stderr == "", result.stderr


def test_evaluate_defaults_to_the_text_the_model_was_trained_on(tmp_path, capsys):
    corpus = tmp_path / "input.txt"
    corpus.write_text("Zounds! Quoth the raven, 0123 times.\n" * 200)  # characters the built-in text lacks
    out = tmp_path / "gpt"
    argv = ["train", "gpt", "--text-file", str(corpus), "--out", str(out), "--steps", "2", "--num-layers", "1",
            "--num-heads", "2", "--hidden-dim", "16", "--context", "16", "--batch-size", "4", "--eval-batches", "1",
            "--no-tensorboard", "--verbose", "0"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--batches", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["val_loss"] > 0 and result["batches"] == 2
