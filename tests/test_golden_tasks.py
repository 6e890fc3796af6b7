"""What users see is unchanged by refactors: every task surface against tests/golden/tasks.json.

The golden file was captured from the code before the task refactor (`python -m tests.golden.tasks`); each part
is recomputed here and compared (text and token ids exactly, numbers to 1e-4). A deliberate change of behaviour
recaptures one part and says why in its commit.
"""

import json

import pytest

from tests.golden import tasks


@pytest.mark.parametrize("part", sorted(tasks.PARTS))
def test_surface_outputs_equal_the_golden_ones(part):
    with open(tasks.GOLDEN) as file:
        expected = json.load(file)[part]
    differences = tasks.compare(tasks.collect(part), expected)
    assert not differences, "\n".join(differences[:20])
