"""Keep TensorFlow's C++ start-up chatter out of a user's terminal.

TF 2.21 writes lines such as "oneDNN custom operations are on", "Could not find cuda drivers" and, on a machine
without a GPU, "failed call to cuInit" to the process's stderr while it is imported, before its logging is
configured: TF_CPP_MIN_LOG_LEVEL cannot hide them. They are not errors; a newcomer reads them as such. Python
exceptions are unaffected: they propagate, and are printed after stderr is restored.
"""

import contextlib
import os


@contextlib.contextmanager
def muted_stderr():
    """Send file descriptor 2 to /dev/null inside the block (C++ writes included)."""
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
