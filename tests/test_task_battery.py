"""Every task passes the task battery (tests/battery.py `run_task_battery`) on its shipped model directory.

A task of `keras_tx.tasks.TASKS` without an entry here fails `test_every_task_has_a_battery_entry`: a new kind of
job gets the directory round trip, the refusals and the serving-equals-Python check by writing one entry.
"""

import os

import numpy as np
import pytest

from keras_tx import tasks
from tests.battery import run_task_battery

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED = os.path.join(ROOT, "saved_models")


def _text(tensor):
    return np.char.decode(np.asarray(tensor.numpy(), bytes)).tolist()


def _image(tmp="battery_image.png"):
    """A 28x28 grey PNG (the shipped image models' size), written once next to this test's outputs."""
    from PIL import Image

    path = os.path.join(os.environ.get("PYTEST_TMP", "/tmp"), f"keras-tx-{os.getpid()}-{tmp}")
    pixels = (np.random.default_rng(3).random((28, 28)) * 255).astype("uint8")
    Image.fromarray(pixels).save(path)
    return path


def _close_rows(served, answer):
    """Exported (labels, probabilities) rows equal the Python (label, probability) lists to 1e-5."""
    for (labels, probabilities), expected in zip(served, answer):
        assert labels[: len(expected)] == [label for label, _ in expected]
        np.testing.assert_allclose(probabilities[: len(expected)], [p for _, p in expected], atol=1e-5)


def _gpt_case():
    def answer(task):
        ids, _ = task.prompt_ids("ROMEO:", 40)
        return task.tokenizer.decode(task.generate_ids(ids, 40, sampler="random", temperature=0.8, seed=5))

    def serve(signatures):
        import tensorflow as tf

        out = signatures["generate"](prompt=tf.constant("ROMEO:"), max_new_tokens=tf.constant(40),
                                     temperature=tf.constant(0.8), seed=tf.constant(5, tf.int64))
        return out["text"].numpy().decode()

    return "gpt_shakespeare", answer, serve, None


def _bert_case():
    def answer(task):
        return [[token for token, _ in candidates] for candidates in task.fill_mask("the movie was [MASK] .", 5)]

    def serve(signatures):
        import tensorflow as tf

        return _text(signatures["fill_mask"](text=tf.constant("the movie was [MASK] ."), top_k=tf.constant(5))["tokens"])

    return "bert_mlm", answer, serve, None


def _image_case(name):
    def answer(task):
        return [[(label, round(p, 5)) for label, p in task.classify_files([_image()], top_k=10)[0][1]]]

    def serve(signatures):
        import tensorflow as tf

        out = signatures["classify"](image_bytes=tf.constant([open(_image(), "rb").read()]))
        return list(zip(_text(out["labels"]), out["probabilities"].numpy().tolist()))

    return name, answer, serve, _close_rows


def _translation_case():
    texts = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]

    def serve(signatures):
        import tensorflow as tf

        return _text(signatures["translate"](text=tf.constant(texts))["translation"])

    return "translation_de_en", lambda task: task.translate(texts, sampler="greedy"), serve, None


def _sentiment_case():
    texts = ["a gorgeous , witty film", "dull and far too long"]

    def answer(task):
        return [[(label, round(p, 5)) for label, p in ranked] for _, ranked in task.classify(texts, top_k=2)]

    def serve(signatures):
        import tensorflow as tf

        out = signatures["classify_text"](text=tf.constant(texts))
        return list(zip(_text(out["labels"]), out["probabilities"].numpy().tolist()))

    return "sentiment_sst2", answer, serve, _close_rows


def _igpt_case():
    def answer(task):
        return int(task.complete_file(_image(), num_samples=1, seed=1).sum())

    return "igpt_fashion_mnist", answer, None, None


CASES = {
    "language_model": _gpt_case,
    "masked_lm": _bert_case,
    "image_classifier": lambda: _image_case("vit_fashion_mnist"),
    "image_gpt": _igpt_case,
    "translation": _translation_case,
    "text_classifier": _sentiment_case,
}


def test_every_task_has_a_battery_entry():
    assert set(CASES) == set(tasks.TASKS), "a task without a battery entry (or an entry without a task)"


@pytest.mark.parametrize("kind", sorted(CASES))
def test_task_battery(kind):
    name, answer, serve, compare = CASES[kind]()
    other = "resnet_fashion_mnist" if kind != "image_classifier" else "gpt_shakespeare"
    run_task_battery(tasks.TASKS[kind], os.path.join(SAVED, name), answer, serve, compare,
                     other_kind_dir=os.path.join(SAVED, other))
