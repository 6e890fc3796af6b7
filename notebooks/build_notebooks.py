"""Writes the notebooks of this folder from their sources, the percent-format scripts NN_name.py, and optionally
executes them.

Each NN_name.py holds one notebook's cells (`# %%` code, `# %% [markdown]` text) and imports what the notebooks
share from nb_setup.py. In the .ipynb, a line `from nb_setup import ...` becomes the source of what it imports
(functions by name; any other name, the set-up code above nb_setup's first function), so that each notebook stands
alone for its readers. After editing, regenerate and re-execute (at default size, a few minutes each on two CPU
cores) so that the committed notebooks carry their outputs:

    python notebooks/build_notebooks.py --execute            # all notebooks
    python notebooks/build_notebooks.py --execute 02         # only those whose name contains "02"

Without --execute a notebook keeps the outputs of its code cells up to the first whose source changed (none, if its
first code cell changed; tests/test_notebooks.py then refuses it until it is executed).
`KERAS_TX_SMOKE=1` in the environment makes every notebook run at toy size in seconds (what the tests do).
"""

import argparse
import ast
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
SHARED = HERE / "nb_setup.py"
NOTEBOOKS = sorted(path.stem + ".ipynb" for path in HERE.glob("[0-9][0-9]_*.py"))
KERNEL_NAME = "keras-tx-notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
IMPORT = re.compile(r"from nb_setup import ([\w, ]+?)\s*(#.*)?")


def shared_sources(path=SHARED):
    """{name: source} of nb_setup.py: each function's, and under "" the set-up code above the first function."""
    text = path.read_text(encoding="utf-8")
    lines, body = text.splitlines(), ast.parse(text).body
    if ast.get_docstring(ast.Module(body=body, type_ignores=[])):
        body = body[1:]
    functions = [node for node in body if isinstance(node, ast.FunctionDef)]
    setup_end = functions[0].lineno - 1 if functions else len(lines)
    sources = {"": "\n".join(lines[body[0].lineno - 1:setup_end]).strip()}
    for node in functions:
        start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        sources[node.name] = "\n".join(lines[start - 1:node.end_lineno])
    return sources


def expand(source, shared):
    """`source` with each `from nb_setup import ...` line replaced by the source of what it imports."""
    out = []
    for line in source.split("\n"):
        match = IMPORT.fullmatch(line)
        if not match:
            out.append(line)
            continue
        names = [name.strip() for name in match.group(1).split(",") if name.strip()]
        parts = [shared[""]] if any(name not in shared for name in names) else []
        out.append("\n\n\n".join(parts + [shared[name] for name in names if name in shared]))
    return "\n".join(out)


def read(name):
    """The notebook `name` (NN_name.ipynb) as its .py source says, without outputs."""
    nb = jupytext.read(HERE / name.replace(".ipynb", ".py"), fmt="py:percent")
    shared = shared_sources()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = expand(cell.source, shared)
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    return nb


def build(name):
    """read(name), with the metadata and cell ids of the committed notebook, and its outputs up to the first code
    cell whose source changed."""
    nb = read(name)
    path = HERE / name
    if not path.is_file():
        return nb
    committed = nbformat.read(path, as_version=4)
    nb.metadata, old = committed.metadata, committed.cells
    unchanged = True
    old_code = iter(cell for cell in old if cell.cell_type == "code")
    for i, cell in enumerate(nb.cells):
        if i < len(old) and old[i].cell_type == cell.cell_type and "id" in old[i]:
            cell.id = old[i].id
        if cell.cell_type != "code":
            continue
        previous = next(old_code, None)
        unchanged = unchanged and previous is not None and previous.source == cell.source
        if unchanged:
            cell.update(outputs=previous.outputs, execution_count=previous.execution_count, metadata=previous.metadata)
    return nb


def _install_kernel(prefix):
    """A kernelspec for sys.executable under `prefix`, found first through JUPYTER_PATH."""
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", prefix, "--name", KERNEL_NAME],
                   check=True, capture_output=True)
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(Path(prefix) / "share" / "jupyter"), *filter(None, [os.environ.get("JUPYTER_PATH")])]
    )


def execute(nb, timeout=1200):
    """Runs `nb` in place in notebooks/ with a kernel on this very interpreter (not whatever `python3` means)."""
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as prefix:
        _install_kernel(prefix)
        client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME,
                                resources={"metadata": {"path": str(HERE)}})
        client.execute()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nb


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="build only notebooks whose name contains one of these")
    parser.add_argument("--execute", action="store_true", help="execute and save with outputs")
    args = parser.parse_args()
    for name in NOTEBOOKS:
        if args.only and not any(part in name for part in args.only):
            continue
        nb = build(name)
        if args.execute:
            start = time.perf_counter()
            execute(nb)
            print(f"{name}: executed in {time.perf_counter() - start:.0f} s")
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
