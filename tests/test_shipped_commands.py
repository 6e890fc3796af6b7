"""Every shipped model is reproducible by `keras-tx` commands: the command in its metadata.json is a `keras-tx train`
line of the Makefile's `saved-models` recipe (up to where it wrote). tests/apps/test_demo.py checks the demo's "how
to train it" hint for a missing model against the same lines."""

import json
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED = os.path.join(ROOT, "saved_models")
SHIPPED = sorted(name for name in os.listdir(SAVED) if os.path.isfile(os.path.join(SAVED, name, "metadata.json")))
# How a run executes, not what it computes (keras_tx.config.RUNTIME_FIELDS): the demo's hints may leave them out.
RUNTIME = {"--no-tensorboard": 0, "--verbose": 1, "--jit-compile": 1, "--force": 0, "--out": 1}


def _arguments(command, drop=("--out", "--force")):
    """The words of a command after `keras-tx`, without `drop` flags (and their values)."""
    words = shlex.split(command)
    assert words[0] == "keras-tx", command
    kept, skip = [], 0
    for word in words[1:]:
        if skip:
            skip -= 1
        elif word in drop:
            skip = RUNTIME[word]
        else:
            kept.append(word)
    return kept


def _makefile_commands():
    """The `keras-tx` lines of the Makefile's saved-models recipe, continuation lines joined, variables filled in."""
    with open(os.path.join(ROOT, "Makefile")) as file:
        text = file.read().replace("\\\n", " ")
    recipe = text.split("\nsaved-models:", 1)[1].split("\n\n", 1)[0]
    lines = [re.sub(r"\s+", " ", line.strip()) for line in recipe.splitlines()[1:]]
    return [line.replace("$(KT)", "keras-tx").replace("$(DATA)", "../shared/datasets")
            for line in lines if line.startswith("$(KT) ")]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_was_made_by_a_keras_tx_command_of_the_makefile(name):
    with open(os.path.join(SAVED, name, "metadata.json")) as file:
        command = json.load(file)["command"]
    assert command.startswith("keras-tx train "), f"{name} was made by {command!r}, not by `keras-tx train`"
    makefile = [line for line in _makefile_commands() if _arguments(line) == _arguments(command)]
    assert makefile, f"the Makefile's saved-models recipe has no line for {name}'s command {command!r}"
    assert f"saved_models/{name}" in makefile[0]
