"""Golden outputs of every task surface, captured before the task refactor and compared after it.

    python -m tests.golden.tasks            # rewrite tests/golden/tasks.json from the code as it is

What a user sees is recorded, through the `keras-tx` command (in-process `cli.main`) on the shipped models and
through the exported signatures: generated text (greedy, seeded top-k, beam, past the context), fill-mask
candidates, class probabilities, image completions, translations (greedy and beam), BLEU, `evaluate`'s JSON and
the metrics of tiny training runs, one per training path. tests/test_golden_tasks.py recomputes each part
and compares: text and token ids exactly, numbers to a tolerance (they go through float arithmetic that a
refactor may reorder).
"""

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAVED = os.path.join(ROOT, "saved_models")
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks.json")
NUMBERS = "0123456789"


def run_cli(*argv):
    """stdout lines of `keras-tx ARGV` run in this process; a non-zero exit raises with its stderr."""
    from keras_tx import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    if code:
        raise AssertionError(f"keras-tx {' '.join(map(str, argv))} exited {code}: {err.getvalue()}")
    return out.getvalue().splitlines()


def test_images(folder, count=3):
    """`count` deterministic PNG files (28x28 grey blobs of noise), their paths."""
    from PIL import Image

    rng = np.random.default_rng(5)
    paths = []
    for i in range(count):
        pixels = (rng.random((28, 28)) * 255 * (np.arange(28)[:, None] < 8 + 6 * i)).astype("uint8")
        path = os.path.join(folder, f"image{i}.png")
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _numbers_in(line):
    """A CLI line split into its words, numbers turned into floats (compared with a tolerance)."""
    return [float(w.rstrip(",")) if w.rstrip(",").replace(".", "", 1).isdigit() else w for w in line.split()]


def shipped_cli(folder):
    """Every use verb of the CLI on the shipped models."""
    gpt, bert = os.path.join(SAVED, "gpt_shakespeare"), os.path.join(SAVED, "bert_mlm")
    vit, resnet = os.path.join(SAVED, "vit_fashion_mnist"), os.path.join(SAVED, "resnet_fashion_mnist")
    igpt, translation = os.path.join(SAVED, "igpt_fashion_mnist"), os.path.join(SAVED, "translation_de_en")
    images = test_images(folder)
    results = {
        "generate_greedy": run_cli("generate", gpt, "--prompt", "ROMEO:", "--max-new-tokens", 60, "--sampler", "greedy"),
        "generate_past_context": run_cli("generate", gpt, "--prompt", "JULIET:\n" * 12, "--max-new-tokens", 150,
                                         "--sampler", "greedy"),
        "generate_top_k_seed": run_cli("generate", gpt, "--prompt", "ROMEO:", "--max-new-tokens", 60, "--seed", 7),
        "generate_top_p_seed": run_cli("generate", gpt, "--prompt", "KING:", "--max-new-tokens", 40, "--sampler",
                                       "top_p", "--seed", 3, "--temperature", 0.8),
        "generate_beam": run_cli("generate", gpt, "--prompt", "ROMEO:", "--max-new-tokens", 40, "--sampler", "beam",
                                 "--num-beams", 3),
        "fill_mask": [_numbers_in(line) for line in run_cli(
            "fill-mask", bert, "the movie was [MASK] and the actors were [MASK] .", "--top-k", 5)],
        "classify_vit": [_numbers_in(line.replace(folder, "")) for line in run_cli(
            "classify", vit, *images, "--top-k", 3)],
        "classify_resnet": [_numbers_in(line.replace(folder, "")) for line in run_cli(
            "classify", resnet, *images, "--top-k", 3)],
        "translate_greedy": run_cli("translate", translation, "Ein Mann fährt Fahrrad.",
                                    "Zwei Hunde spielen im Schnee.", "--sampler", "greedy"),
        "translate_beam": run_cli("translate", translation, "Ein Mann fährt Fahrrad.",
                                  "Zwei Hunde spielen im Schnee.", "--sampler", "beam", "--num-beams", 4),
        "evaluate_gpt": json.loads(run_cli("evaluate", gpt, "--batches", 3)[0])["val_loss"],
    }
    out = os.path.join(folder, "completion.png")
    run_cli("complete", igpt, images[1], "--out", out, "--num-samples", 2, "--seed", 3)
    from PIL import Image

    results["complete_pixels_md5"] = hashlib.md5(np.asarray(Image.open(out)).tobytes()).hexdigest()
    pairs = os.path.join(folder, "pairs")
    os.makedirs(pairs)
    for language, lines in (("de", ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.",
                                    "Eine Frau liest ein Buch."]),
                            ("en", ["A man rides a bike.", "Two dogs play in the snow.", "A woman reads a book."])):
        with open(os.path.join(pairs, f"test.{language}"), "w", encoding="utf-8") as file:
            file.write("\n".join(lines) + "\n")
    bleu = json.loads(run_cli("evaluate", translation, "--data-dir", pairs)[0])
    results["evaluate_translation"] = [bleu["bleu_greedy"], bleu["bleu_beam4"]]
    return results


TRAIN_COMMON = ("--no-tensorboard", "--verbose", 0, "--seed", 11, "--deterministic")


def tiny_training(folder):
    """The final metrics of tiny runs of the train verbs on the built-in data: one per training path (random
    windows, epochs of images, image GPT's palette and NLL, translation's BLEU). `train bert` is left out: keras-hub's
    masker draws from unseeded TF state, so its losses differ from run to run (tests/test_cli_bert.py covers it)."""
    text = os.path.join(folder, "text.txt")
    with open(text, "w", encoding="utf-8") as file:
        file.write("the cat sat on the mat and the dog ran in the fog .\n" * 40)
    runs = {
        "gpt": ("gpt", "--num-layers", 1, "--hidden-dim", 16, "--num-heads", 2, "--context", 16, "--steps", 6,
                "--eval-interval", 3, "--eval-batches", 2, "--batch-size", 4, "--text-file", text),
        "resnet": ("resnet", "--width", 4, "--blocks-per-stage", 1, 1, "--epochs", 1, "--train-size", 64,
                   "--batch-size", 32),
        "igpt": ("igpt", "--num-layers", 1, "--hidden-dim", 16, "--num-heads", 2, "--num-colors", 4, "--epochs", 1,
                 "--train-size", 64, "--test-size", 32, "--batch-size", 32),
        "transformer": ("transformer", "--num-layers", 1, "--hidden-dim", 16, "--num-heads", 2, "--epochs", 1,
                        "--max-pairs", 64, "--batch-size", 32, "--bleu-sentences", 8, "--vocabulary-size", 100),
    }
    results = {}
    for name, argv in runs.items():
        out = os.path.join(folder, name)
        run_cli("train", *argv, *TRAIN_COMMON, "--out", out)
        with open(os.path.join(out, "metadata.json")) as file:
            metrics = json.load(file)["metrics"]
        results[name] = {k: v for k, v in sorted(metrics.items()) if k != "training_seconds_this_run"}
    return results


def exported(folder):
    """The outputs of every exported signature of the shipped models (called in this process)."""
    import tensorflow as tf

    from keras_tx import export

    results = {}
    images = test_images(folder)

    def signatures(name):
        out = os.path.join(folder, "export", name)
        export.export(os.path.join(SAVED, name), out)
        return tf.saved_model.load(out).signatures

    def plain(outputs):
        return {k: np.char.decode(np.asarray(v.numpy(), bytes)).tolist() if v.dtype == tf.string
                else v.numpy().tolist() for k, v in sorted(outputs.items())}

    gpt = signatures("gpt_shakespeare")
    for key, temperature, seed in (("generate_greedy", 0.0, 0), ("generate_seed", 0.9, 5)):
        outputs = gpt["generate"](prompt=tf.constant("ROMEO:"), max_new_tokens=tf.constant(80, tf.int32),
                                  temperature=tf.constant(temperature), seed=tf.constant(seed, tf.int64))
        results[key] = plain(outputs)["text"]
    bert = signatures("bert_mlm")
    outputs = plain(bert["fill_mask"](text=tf.constant("the movie was [MASK] ."), top_k=tf.constant(5)))
    results["fill_mask"] = {"tokens": outputs["tokens"], "scores": outputs["scores"]}
    vit = signatures("vit_fashion_mnist")
    data = [open(p, "rb").read() for p in images]
    results["classify_vit"] = plain(vit["classify"](image_bytes=tf.constant(data)))["probabilities"]
    translation = signatures("translation_de_en")
    results["translate"] = plain(translation["translate"](text=tf.constant(
        ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."])))["translation"]
    return results


PARTS = {"shipped_cli": shipped_cli, "tiny_training": tiny_training, "exported": exported}


def collect(part):
    with tempfile.TemporaryDirectory(prefix="keras-tx-golden-") as folder:
        return json.loads(json.dumps(PARTS[part](folder)))


def compare(actual, expected, path="", rtol=1e-4, atol=1e-4):
    """Differences between two JSON values, as readable lines; numbers within the tolerance are equal."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        keys = sorted(set(expected) | set(actual))
        return [d for k in keys for d in (compare(actual.get(k), expected.get(k), f"{path}.{k}", rtol, atol)
                                          if k in actual and k in expected else [f"{path}.{k}: only one side"])]
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (a, e) in enumerate(zip(actual, expected)) for d in compare(a, e, f"{path}[{i}]", rtol, atol)]
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers) and not isinstance(expected, bool):
        return [] if np.isclose(actual, expected, rtol=rtol, atol=atol) else [f"{path}: {actual} != {expected}"]
    return [] if actual == expected else [f"{path}: {actual!r} != {expected!r}"]


if __name__ == "__main__":
    parts = sys.argv[1:] or list(PARTS)
    golden = {}
    if os.path.exists(GOLDEN):
        with open(GOLDEN) as file:
            golden = json.load(file)
    for part in parts:
        golden[part] = collect(part)
        print(f"captured {part}", file=sys.stderr)
    with open(GOLDEN, "w") as file:
        json.dump(golden, file, indent=1, ensure_ascii=False, sort_keys=True)
        file.write("\n")
