"""Side-by-side timing: alternate the contenders in one process, report medians and ratios.

The machines are shared and noisy, so a lone wall-clock figure means little; two contenders timed in
alternation, in the same process, see the same noise, and their ratio is what we report.
"""

import platform
import statistics
import time


def alternate(contenders, repeats=7, iterations=10, warmup=2):
    """Time each `name -> fn()` alternately; fn must block until its work is done.

    Returns {name: median seconds per call}.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(iterations):
                fn()
            samples[name].append((time.perf_counter() - start) / iterations)
    return {name: statistics.median(times) for name, times in samples.items()}


def environment():
    """One line naming the machine and the library versions."""
    import keras

    parts = [platform.processor() or platform.machine(), f"Python {platform.python_version()}", f"Keras {keras.__version__}",
             f"backend {keras.backend.backend()}"]
    try:
        import keras_hub

        parts.append(f"keras-hub {keras_hub.__version__}")
    except ImportError:
        pass
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        parts.append(f"TF {tf.__version__}")
    if keras.backend.backend() == "jax":
        import jax

        parts.append(f"JAX {jax.__version__} on {jax.devices()[0].platform}")
    return ", ".join(parts)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
