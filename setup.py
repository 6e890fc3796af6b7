"""keras-tx: the Transformer family, from the RNN to image GPT, as Keras 3 layers."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"',
    (HERE / "keras_tx" / "__init__.py").read_text(),
    re.M,
).group(1)

# Versions measured to work together (Python 3.11, 2026-11): TF 2.21, Keras 3.15, keras-hub 0.32.
INSTALL_REQUIRES = [
    "tensorflow==2.21.*",
    "keras==3.15.*",
    "keras-hub==0.32.*",
    "tensorflow-datasets==4.9.10",
    "importlib_resources>=6",  # tfds 4.9.10 imports it on Python 3.11 without declaring it
    "streamlit==1.67.*",
    "tensorboard==2.21.*",
    "pillow>=10",
    "scikit-learn>=1.5,<2",  # k-means for image GPT's palette; its digits are the offline image default
    "numpy>=1.26,<3",
    "regex>=2023",  # GPT-2's pre-tokenization pattern (keras_tx/data/bpe.py); keras-hub needs it too
]

EXTRAS = {
    "test": ["pytest>=9,<10", "pytest-xdist==3.*", "scipy>=1.11", "jax[cpu]>=0.10.2,<0.13"],
    "notebooks": ["nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6", "matplotlib>=3.8", "jupytext>=1.16"],
    "bench": ["psutil>=5.9"],
}
EXTRAS["dev"] = sorted({r for reqs in EXTRAS.values() for r in reqs})

setup(
    name="keras-tx",
    version=VERSION,
    description="The Transformer family from the RNN to image GPT, as readable Keras 3 layers.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_tx", "keras_tx.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["keras-tx=keras_tx.cli:main"]},
)
