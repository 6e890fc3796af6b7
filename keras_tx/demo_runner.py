"""`keras-tx demo`: start the Streamlit demo (apps/demo.py) on the model directories of a folder.

The app lives in the repository, not in the package: `keras-tx demo` works from a checkout (an editable install,
`pip install -e .`), and says so clearly when the package was installed without one.
"""

import os
import signal
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(REPO, "apps", "demo.py")


def command(port=8501, address="localhost", headless=True, app=APP):
    """The `streamlit run` command line for the demo.

    Example:
    >>> command(8502)[-4:]
    ['--server.port', '8502', '--server.address', 'localhost']
    """
    return [
        sys.executable, "-m", "streamlit", "run", app,
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
        "--server.port", str(int(port)),
        "--server.address", address,
    ]


def run(port=8501, models_dir=None, address="localhost", headless=True):
    """Run the demo until it is stopped (Ctrl-C); returns Streamlit's exit status.

    Args:
        port: the port to serve on (http://localhost:PORT).
        models_dir: a folder of model directories or a model directory, or a list of them; default the repo's
            saved_models/ (or $KERAS_TX_MODELS).
        address: the address to bind; "localhost" keeps the demo on this machine, "0.0.0.0" shares it.
        headless: do not open a browser window.

    Example:
    >>> run(port=8501, models_dir="saved_models")  # doctest: +SKIP
    """
    if not os.path.isfile(APP):
        raise ValueError(
            f"The demo app {APP} is missing: keras-tx was installed without its repository. Run `keras-tx demo` "
            "from a checkout (git clone ..., then pip install -e .), or `streamlit run apps/demo.py` there."
        )
    if not 0 < int(port) < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {port}.")
    env = dict(os.environ)
    if models_dir is not None:
        paths = [models_dir] if isinstance(models_dir, str) else list(models_dir)
        for path in paths:
            if not os.path.isdir(path):
                raise ValueError(f"--models {path} is not a directory (expected a folder of model directories, or a "
                                 "model directory).")
        env["KERAS_TX_MODELS"] = os.pathsep.join(os.path.abspath(path) for path in paths)
    print(f"keras-tx demo: http://{address}:{port} (models from {env.get('KERAS_TX_MODELS', 'saved_models/')}); "
          "Ctrl-C stops it.", file=sys.stderr)
    process = subprocess.Popen(command(port, address, headless), env=env, cwd=REPO)  # metadata paths are repo-relative
    # Stopping keras-tx stops the server: SIGTERM is passed on, and so is Ctrl-C (SIGINT).
    forward = threading.current_thread() is threading.main_thread()
    if forward:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
    finally:
        if forward:
            signal.signal(signal.SIGTERM, previous)
