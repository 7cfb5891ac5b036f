"""tfx-mtl: a TFX pipeline for multi-task learning.

The repository keeps the TFX template's top-level layout (`pipeline/`,
`components/`, `models/`, `schemas/`, `kubeflow/`); those folders are installed
as sub-packages of one `tfx_mtl` namespace so that generic names such as
`models` or `pipeline` never collide with other packages in site-packages.
"""
from setuptools import find_packages, setup

_SUBPACKAGES = ("pipeline", "components", "models", "schemas", "kubeflow", "bench", "serving")
# Every package: tfx_mtl and its own sub-packages (tfx_mtl/cli, ...), and each folder above
# as tfx_mtl.<folder> with its sub-packages (models/weighting -> tfx_mtl.models.weighting).
_PACKAGES = ["tfx_mtl"] + [f"tfx_mtl.{p}" for p in find_packages("tfx_mtl")] + [
    f"tfx_mtl.{name}{'.' + p if p else ''}" for name in _SUBPACKAGES
    for p in [""] + find_packages(name)]
# What the review notebooks (notebooks/) need beyond the pipeline: tables, static
# plots, and a kernel to run them headless in tests (ipywidgets comes with TFMA).
_NOTEBOOKS = ["matplotlib>=3.8,<4", "nbclient>=0.10,<1", "nbformat>=5.10,<6",
              "ipykernel>=6.29,<8", "pandas>=2,<3"]

setup(
    name="tfx-mtl",
    version="0.1.0",
    description="Multi-task learning (shared trunk, MMoE) as a TFX pipeline",
    python_requires=">=3.11,<3.12",
    packages=_PACKAGES,
    package_dir={"tfx_mtl": "tfx_mtl", **{f"tfx_mtl.{n}": n for n in _SUBPACKAGES}},
    package_data={"tfx_mtl.schemas": ["*/*.yaml", "*/*.pbtxt"]},
    install_requires=[
        # Exact versions live in constraints.txt; these are the direct needs.
        "tfx==1.21.0",
        "tensorflow==2.21.*",
        "tensorflow-transform==1.21.*",
        "tensorflow-model-analysis==0.52.*",
        "tensorflow-data-validation==1.21.*",
        "ml-metadata==1.21.*",
        # Reading a TFRecord --data's columns before the run, without TensorFlow.
        "tfx-bsl==1.21.*",
        "google-crc32c>=1.5",
        "apache-beam[gcp,dask]>=2.47,<3",  # dask: tfx-mtl run --beam-runner dask
        "tensorboard==2.21.*",
        "kfp>=2.17,<3",
        "tensorflow-serving-api>=2.19,<2.22",
        "pyyaml>=6",
        "psutil>=5",  # the serving benchmark reads its servers' memory
    ],
    extras_require={"notebooks": _NOTEBOOKS, "test": ["pytest>=8", "pytest-xdist>=3.5", *_NOTEBOOKS]},
    entry_points={"console_scripts": ["tfx-mtl=tfx_mtl.cli:main"]},
)
