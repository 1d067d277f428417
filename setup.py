"""Packaging for dataflow.

The distribution is named ``dataflow-ml`` (``pip install dataflow-ml``): the name
``dataflow`` on PyPI belongs to an unrelated project. The import name is
``dataflow``. The version lives in dataflow/_version.py only.
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(*parts):
    with open(os.path.join(HERE, *parts), encoding="utf-8") as f:
        return f.read()


VERSION = re.search(r'^__version__ = "([^"]+)"', read("dataflow", "_version.py"), re.M).group(1)

EXTRAS = {
    "lmdb": ["lmdb>=1.0"],
    "image": ["opencv-python-headless>=4.5"],
    "hdf5": ["h5py>=3.0"],
    "mat": ["scipy>=1.5"],  # the .mat files of SVHN, BSDS500, Caltech101Silhouettes
    "test": ["pytest>=7", "pytest-timeout>=2.1", "hypothesis>=6.50"],
    # Frameworks fed by dataflow.to_torch / to_jax / to_tf; imported only when used.
    "torch": ["torch>=2.1"],
    "jax": ["jax>=0.4.26"],
    "tf": ["tensorflow>=2.15"],
    # dataflow.ray.RayRunner: workers as Ray actors anywhere in a cluster; not in "all".
    "ray": ["ray>=2.9"],
    # The documentation site (sphinx-build -W docs docs/_build).
    "docs": ["sphinx>=7.2", "myst-parser>=2.0", "furo>=2024.1.29"],
}
EXTRAS["all"] = sorted({req for name in ("lmdb", "image", "hdf5", "mat") for req in EXTRAS[name]})

setup(
    name="dataflow-ml",
    version=VERSION,
    description="Fast, reliable, framework-agnostic data pipelines for machine learning",
    long_description=read("README.md"),
    long_description_content_type="text/markdown",
    license_expression="Apache-2.0",  # SPDX; needs setuptools>=77 (pyproject.toml)
    license_files=["LICENSE"],
    packages=find_packages(include=["dataflow", "dataflow.*"]),
    package_data={"dataflow": ["py.typed"]},
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.20",
        "pyzmq>=22",
        "msgpack>=1.0",
        "msgpack-numpy>=0.4.8",
        "tabulate>=0.8",
        "tqdm>=4.50",
        # pickles the pipeline (lambdas, local functions) for spawn and forkserver workers
        "cloudpickle>=2.0",
    ],
    extras_require=EXTRAS,
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Typing :: Typed",
    ],
    zip_safe=False,
)
