"""The notebooks in notebooks/ run, and land executed.

Each notebook is executed (a copy; the file is not touched) at smoke size, `KERAS_TX_SMOKE=1`, in a Jupyter kernel
on this very interpreter: a kernelspec for `sys.executable` is installed into a temporary prefix under its own
name, so that no other `python3` kernel on the machine can be picked up. A second test demands that the
committed notebooks carry the outputs of a full, default-size run (they are what the README links to), and a third
that their cells are the ones notebooks/build_notebooks.py reads from their sources, the percent-format scripts
notebooks/NN_name.py (with what they import from notebooks/nb_setup.py written in).
"""

import ast

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "keras-tx-test-kernel"
CELL_TIMEOUT_S = 180  # a smoke cell takes seconds; this only stops a hung kernel
SMOKE_BUDGET_S = 120  # a whole smoke run takes ~20-35 s on two busy CPU cores; default size takes minutes
_IDS = [path.stem for path in NOTEBOOKS]


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("jupyter-prefix")
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL_NAME],
        check=True,
        capture_output=True,
    )
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(prefix / "share" / "jupyter"), *filter(None, [previous])])
    yield KERNEL_NAME
    if previous is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = previous


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


def _builder():
    """notebooks/build_notebooks.py as a module (the notebooks folder is not a package)."""
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOK_DIR / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_match_their_builder():
    """Every notebook has its .py source, and the committed cells are the ones the builder reads from it now."""
    builder = _builder()
    assert sorted(builder.NOTEBOOKS) == [path.name for path in NOTEBOOKS], "notebooks/*.ipynb and *.py disagree"
    for path in NOTEBOOKS:
        built = [(cell.cell_type, cell.source) for cell in builder.read(path.name).cells]
        committed = [(cell.cell_type, cell.source) for cell in nbformat.read(path, as_version=4).cells]
        assert committed == built, (
            f"{path.name} differs from {path.stem}.py: regenerate it with "
            f"`python notebooks/build_notebooks.py --execute {path.stem[:2]}`"
        )


def test_notebook_sources_are_python():
    """The .py sources (and nb_setup.py, which they import) parse as Python, so that linters and tools see them."""
    sources = sorted(NOTEBOOK_DIR.glob("*.py"))
    assert NOTEBOOK_DIR / "nb_setup.py" in sources
    for path in sources:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_nb_setup_imports():
    """nb_setup.py imports as a module (what a notebook's .py run as a script does), with the loaders."""
    names = "load_text, windows, load_sentences, load_images, SMOKE, REPO"
    result = subprocess.run([sys.executable, "-c", f"from nb_setup import {names}"], cwd=NOTEBOOK_DIR,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_IDS)
def test_notebook_runs_at_smoke_size(path, kernel_name, monkeypatch):
    monkeypatch.setenv("KERAS_TX_SMOKE", "1")  # the kernel inherits this process' environment
    nb = nbformat.read(path, as_version=4)
    # One more cell tells which interpreter ran the notebook.
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # run where the notebook lives, as a reader would
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name} failed at smoke size:\n{error}", pytrace=False)
    elapsed = time.perf_counter() - start
    printed = "".join(output.get("text", "") for output in nb.cells[-1].outputs).strip()
    assert printed == sys.prefix, f"the kernel ran {printed!r}, not this venv ({sys.prefix})"
    setup_output = "".join(output.get("text", "") for output in nb.cells[1].outputs)
    assert "SMOKE size" in setup_output, "the notebook did not see KERAS_TX_SMOKE=1"
    assert elapsed < SMOKE_BUDGET_S, f"{path.name} took {elapsed:.0f} s at smoke size"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_IDS)
def test_notebook_is_committed_executed(path):
    nb = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code_cells, f"{path.name} has no code"
    counts = [cell.execution_count for cell in code_cells]
    assert None not in counts, f"{path.name}: code cells {[i for i, c in enumerate(counts) if c is None]} not executed"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), (
        f"{path.name} was not run top to bottom in one session (execution counts {counts})"
    )
    outputs = [output for cell in code_cells for output in cell.outputs]
    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was saved with errors: {errors}"
    assert any("image/png" in output.get("data", {}) for output in outputs), f"{path.name} has no plot"
    text = "".join(output.get("text", "") for output in outputs)
    assert "SMOKE size" not in text, f"{path.name} was saved from a smoke run; execute it at default size"
